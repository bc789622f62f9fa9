//! Checks on YAML text before the parser sees it: nesting deep enough to make the parser
//! crawl (100 000 `[` took 31 s to be refused) and duplicate keys, which the parser reports
//! at the line of the mapping instead of the line of the second key.

/// Deeper flow nesting than any recipe or config needs.
pub const MAX_DEPTH: usize = 64;

/// Both checks: `Err((line, message))` for the first problem.
pub fn check(text: &str) -> Result<(), (usize, String)> {
    if let Some(line) = too_deep(text) {
        return Err((line, format!("nested deeper than {MAX_DEPTH} levels")));
    }
    if let Some((line, key)) = duplicate_key(text) {
        return Err((line, format!("duplicate key `{key}`")));
    }
    Ok(())
}

/// Where the text nests `[`/`{` deeper than [`MAX_DEPTH`]: its 1-based line.
pub fn too_deep(text: &str) -> Option<usize> {
    let (mut depth, mut line, mut quote) = (0usize, 1usize, None::<char>);
    let mut comment = false;
    for c in text.chars() {
        match (c, quote) {
            ('\n', _) => {
                line += 1;
                comment = false;
            }
            _ if comment => {}
            (q, Some(open)) if q == open => quote = None,
            (_, Some(_)) => {}
            ('"' | '\'', None) => quote = Some(c),
            ('#', None) => comment = true,
            ('[' | '{', None) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(line);
                }
            }
            (']' | '}', None) => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// The first key repeated within one block mapping: (1-based line of the repeat, key). Block
/// scalars (`|`, `>`) are skipped; flow mappings are left to the parser.
pub fn duplicate_key(text: &str) -> Option<(usize, String)> {
    // (indent, keys) of the open mappings, innermost last.
    let mut open: Vec<(usize, Vec<String>)> = Vec::new();
    let mut scalar_above: Option<usize> = None;
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        let mut indent = raw.len() - trimmed.len();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(block) = scalar_above {
            if indent > block {
                continue;
            }
            scalar_above = None;
        }
        let mut rest = trimmed;
        let mut new_item = false;
        while let Some(after) = rest.strip_prefix("- ") {
            indent += 2;
            rest = after.trim_start();
            new_item = true;
        }
        let Some((key, value)) = rest.split_once(':') else { continue };
        let is_key = !key.is_empty()
            && key.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            && (value.is_empty() || value.starts_with(' '));
        if !is_key {
            continue;
        }
        while open.last().is_some_and(|(level, _)| *level > indent || (new_item && *level == indent)) {
            open.pop();
        }
        match open.last_mut() {
            Some((level, keys)) if *level == indent => {
                if keys.iter().any(|k| k == key) {
                    return Some((index + 1, key.to_owned()));
                }
                keys.push(key.to_owned());
            }
            _ => open.push((indent, vec![key.to_owned()])),
        }
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            scalar_above = Some(indent);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_found_quickly() {
        let deep = format!("name: x\nx: {}", "[".repeat(100_000));
        assert_eq!(too_deep(&deep), Some(2));
        assert_eq!(too_deep("a: [1, [2, {b: \"[[[[\"}]]  # [[[[\n"), None);
    }

    #[test]
    fn duplicates_are_found_at_their_own_line() {
        let text = "name: d\nimage:\n  size: 1G\n  format: qcow2\nelements: [a]\nscript: |\n  name: x\n  name: y\nelements: [b]\n";
        assert_eq!(duplicate_key(text), Some((9, "elements".to_owned())));
        let list = "checks:\n  - name: a\n    run: x\n  - name: b\n    run: y\n";
        assert_eq!(duplicate_key(list), None);
        assert_eq!(duplicate_key("a:\n  b: 1\nc:\n  b: 2\n"), None);
    }
}
