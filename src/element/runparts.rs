//! dib-run-parts ordering and file selection.
//!
//! DIB lists a phase directory with `find -maxdepth 1 -xtype f -executable`, keeps names
//! matching `^[0-9A-Za-z_-]+$` and sorts with `LANG=C sort -n`: by the number each name starts
//! with (no number counts as 0), ties broken bytewise. `environment.d` files need not be
//! executable and may contain dots (`10-distro.bash`).

use std::cmp::Ordering;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::error::ElementError;

/// Which files of a directory dib-run-parts would pick up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Phase scripts: executable, names `^[0-9A-Za-z_-]+$`.
    Scripts,
    /// `environment.d`: any regular file, names `^[0-9A-Za-z_.-]+$`.
    EnvironmentFiles,
}

impl Selection {
    /// Whether DIB's name filter accepts `name`.
    pub fn accepts_name(self, name: &str) -> bool {
        !name.is_empty()
            && name.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || b == b'_'
                    || b == b'-'
                    || (b == b'.' && self == Selection::EnvironmentFiles)
            })
    }
}

/// One file dib-run-parts would consider, whether or not it is selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub path: PathBuf,
    /// Why it is skipped, if it is.
    pub skipped: Option<&'static str>,
}

/// Every regular file (symlinks followed) directly inside `dir`, in run-parts order, each
/// marked selected or skipped. A missing directory has no files.
pub fn list_dir(dir: &Path, selection: Selection) -> Result<Vec<Candidate>, ElementError> {
    let mut found = Vec::new();
    for (name, path) in entries(dir)? {
        // metadata() follows symlinks, like find's -xtype f; a dangling link is no file.
        let Ok(meta) = std::fs::metadata(&path) else {
            tracing::debug!("skipping dangling link {}", path.display());
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let skipped = if !selection.accepts_name(&name) {
            Some(match selection {
                Selection::Scripts => "name does not match ^[0-9A-Za-z_-]+$",
                Selection::EnvironmentFiles => "name does not match ^[0-9A-Za-z_.-]+$",
            })
        } else if selection == Selection::Scripts && meta.permissions().mode() & 0o111 == 0 {
            Some("not executable")
        } else {
            None
        };
        found.push(Candidate { name, path, skipped });
    }
    found.sort_by(|a, b| compare(&a.name, &b.name));
    Ok(found)
}

/// (name, path) of each entry of a phase or install-type directory, unsorted; a missing
/// directory has none (elements ship only the phases they use), any other error names `dir`.
pub(crate) fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, ElementError> {
    let read_error = |cause| ElementError::Read { path: dir.to_owned(), cause };
    let listing = match std::fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(cause) => return Err(read_error(cause)),
    };
    listing
        .map(|entry| entry.map(|e| (e.file_name().to_string_lossy().into_owned(), e.path())).map_err(read_error))
        .collect()
}

/// The selected files of `dir`, in run-parts order; skipped ones are logged at debug level.
pub fn select(dir: &Path, selection: Selection) -> Result<Vec<Candidate>, ElementError> {
    let mut selected = list_dir(dir, selection)?;
    selected.retain(|candidate| match candidate.skipped {
        Some(reason) => {
            tracing::debug!("dib-run-parts skips {}: {reason}", candidate.path.display());
            false
        }
        None => true,
    });
    Ok(selected)
}

/// `LANG=C sort -n` order: the leading number (optional `-`, digits, optional `.digits`; none
/// is 0), then the whole name bytewise.
pub fn compare(a: &str, b: &str) -> Ordering {
    compare_numbers(&leading_number(a), &leading_number(b)).then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// A decimal number as text: sign, integer digits without leading zeros, fraction digits
/// without trailing zeros. Kept as text so long digit runs compare exactly.
#[derive(Debug, PartialEq, Eq)]
struct Number<'a> {
    negative: bool,
    integer: &'a str,
    fraction: &'a str,
}

impl Number<'_> {
    fn is_zero(&self) -> bool {
        self.integer.is_empty() && self.fraction.is_empty()
    }
}

fn leading_number(name: &str) -> Number<'_> {
    let (negative, rest) = match name.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let integer = rest[..int_len].trim_start_matches('0');
    let after = &rest[int_len..];
    let fraction = match after.strip_prefix('.') {
        Some(frac) => {
            let len = frac.bytes().take_while(u8::is_ascii_digit).count();
            frac[..len].trim_end_matches('0')
        }
        None => "",
    };
    Number { negative, integer, fraction }
}

fn compare_numbers(a: &Number, b: &Number) -> Ordering {
    let sign = |n: &Number| {
        if n.is_zero() {
            0
        } else if n.negative {
            -1
        } else {
            1
        }
    };
    match sign(a).cmp(&sign(b)) {
        Ordering::Equal => {}
        other => return other,
    }
    let magnitude = a
        .integer
        .len()
        .cmp(&b.integer.len())
        .then_with(|| a.integer.cmp(b.integer))
        .then_with(|| a.fraction.cmp(b.fraction));
    if sign(a) < 0 {
        magnitude.reverse()
    } else {
        magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(names: &[&str]) -> Vec<String> {
        let mut names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        names.sort_by(|a, b| compare(a, b));
        names
    }

    #[test]
    fn numbers_sort_numerically_not_lexically() {
        assert_eq!(sorted(&["10-b", "9-a", "100-c", "01-d"]), ["01-d", "9-a", "10-b", "100-c"]);
    }

    #[test]
    fn ties_break_bytewise_and_unnumbered_names_count_as_zero() {
        assert_eq!(
            sorted(&["50-b", "50-a", "50-B", "zeta", "0-x", "1-y"]),
            ["0-x", "zeta", "1-y", "50-B", "50-a", "50-b"]
        );
        // Leading zeros do not change the number; the bytes decide the tie.
        assert_eq!(sorted(&["010-a", "10-a"]), ["010-a", "10-a"]);
    }

    #[test]
    fn negative_and_fractional_prefixes_follow_sort_n() {
        assert_eq!(sorted(&["5-a", "-5-b", "-10-c", "1.5-d", "1.25-e"]), ["-10-c", "-5-b", "1.25-e", "1.5-d", "5-a"]);
    }

    #[test]
    fn name_filter_matches_dib_regex() {
        assert!(Selection::Scripts.accepts_name("50-install_thing"));
        assert!(!Selection::Scripts.accepts_name("50-thing.sh"));
        assert!(!Selection::Scripts.accepts_name("50-thing~"));
        assert!(!Selection::Scripts.accepts_name(""));
        assert!(Selection::EnvironmentFiles.accepts_name("10-distro.bash"));
    }
}
