//! The one redaction layer: every way text leaves the tool (terminal logs, `--log-file`, error
//! messages, `--dry-run` and `--dry-run --json`, the manifest) passes through [`text`].
//!
//! Three rules, applied in this order:
//! 1. URL userinfo: `scheme://user:password@host` keeps the user, masks the password.
//! 2. Assignments to secret-named variables: `NAME=value`, `NAME="value"` and the JSON form
//!    `"NAME": "value"` keep the name and mask the value. A name is secret when it contains
//!    PASSWORD, PASSWD, SECRET, TOKEN or KEY or ends in `_PASS` (see [`is_secret_name`], and
//!    [`NOT_SECRET`] for the exceptions), which covers `OS_PASSWORD`, `OS_TOKEN`,
//!    `OS_APPLICATION_CREDENTIAL_SECRET` and `DIB_REPO_PASSWORD` alike.
//! 3. Known secret values wherever they appear (a password quoted back by a server, echoed by a
//!    script): the values of secret-named variables of the environment, `-e`, the recipe, and
//!    clouds.yaml/secure.yaml credentials are [`register`]ed as soon as they are read.

use std::borrow::Cow;
use std::sync::{Mutex, PoisonError};

/// What a masked secret is replaced with.
pub const MASK: &str = "***";

/// Shorter values are not masked by value (rule 3): masking `1` or `yes` everywhere would
/// garble the output and protect nothing. They are still masked by name (rule 2).
const MIN_VALUE_LEN: usize = 4;

static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Words that make a name secret in any case (clouds.yaml says `password`).
const SECRET_WORDS: [&str; 4] = ["PASSWORD", "PASSWD", "SECRET", "TOKEN"];

/// Names that match the secret rules but hold no secret: the one place they are listed. The
/// repository keys are public signing keys named by their file's path; masking that path would
/// hide the culprit of a "no such file" error.
pub const NOT_SECRET: [&str; 6] = [
    "DIB_MESOS_REPO_KEY",
    "DIB_JAVA_REPO_KEY",
    "DIB_DEV_USER_AUTHORIZED_KEYS",
    "DIB_APT_KEYRING",
    "KEYMAP",
    "XKBKEYMAP",
];

/// Whether a variable or setting of this name holds a secret: PASSWORD, PASSWD, SECRET or TOKEN
/// in any case, a name ending in `_PASS` or `PASS` alone, KEY only in upper case, as
/// environment variables spell it (`cache_key` in the manifest is a hash, not a secret); never
/// one of [`NOT_SECRET`].
pub fn is_secret_name(name: &str) -> bool {
    if NOT_SECRET.contains(&name) {
        return false;
    }
    let upper = name.to_ascii_uppercase();
    SECRET_WORDS.iter().any(|word| upper.contains(word))
        || upper.ends_with("_PASS")
        || upper == "PASS"
        || name.contains("KEY")
}

/// Remember a secret value so it is masked wherever it appears, whatever it looks like (a
/// password may well start with `/`).
pub fn register(value: &str) {
    if value.len() < MIN_VALUE_LEN || value == MASK {
        return;
    }
    let mut secrets = SECRETS.lock().unwrap_or_else(PoisonError::into_inner);
    for form in echoed_forms(value) {
        if !secrets.contains(&form) {
            secrets.push(form);
        }
    }
    // Longest first, so a secret containing another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// The forms a server echoes a value back in: as sent, JSON-escaped (Keystone's error bodies
/// quote the request) and percent-encoded (a form or query string).
fn echoed_forms(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_owned()];
    let json = serde_json::to_string(value).unwrap_or_default();
    let json = json.trim_start_matches('"').trim_end_matches('"').to_owned();
    let percent: String = value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    for form in [json, percent] {
        if !forms.contains(&form) && !form.is_empty() {
            forms.push(form);
        }
    }
    forms
}

/// Register the values of every secret-named variable among `vars`.
pub fn register_env<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) {
    for (name, value) in vars {
        if is_secret_name(name) {
            register(value);
        }
    }
}

/// `text` with every secret masked.
pub fn text(input: &str) -> String {
    let step = mask_url_userinfo(input);
    let step = mask_assignments(&step);
    mask_known_values(&step).into_owned()
}

/// Rule 1: `://user:password@` -> `://user:***@`.
fn mask_url_userinfo(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(index) = rest.find("://") {
        let (before, after) = rest.split_at(index + 3);
        out.push_str(before);
        let authority_end = after.find(|c: char| "/?#\"' \t\n<>,;)]}".contains(c)).unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, _)) => {
                        out.push_str(user);
                        out.push(':');
                        out.push_str(MASK);
                    }
                    // A bare token as userinfo (`https://TOKEN@host`) is a secret too.
                    None => out.push_str(MASK),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    out
}

/// Rule 2: `NAME=value`, `NAME="value"`, `"NAME": "value"` for secret names.
fn mask_assignments(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut copied = 0;
    let mut index = 0;
    while index < bytes.len() {
        let starts_name = is_name_start(bytes[index]) && (index == 0 || !is_name_byte(bytes[index - 1]));
        if !starts_name {
            index += 1;
            continue;
        }
        let name_end = index + bytes[index..].iter().take_while(|b| is_name_byte(**b)).count();
        let name = &input[index..name_end];
        let Some(value_start) = value_start(bytes, name_end) else {
            index = name_end;
            continue;
        };
        // `KEY=VALUE` is how usage text spells a pair, not a secret.
        if !is_secret_name(name) || name == "KEY" {
            index = name_end;
            continue;
        }
        let (value_from, value_to) = value_span(bytes, value_start);
        if value_to > value_from {
            out.push_str(&input[copied..value_from]);
            out.push_str(MASK);
            copied = value_to;
        }
        index = value_to.max(name_end);
    }
    out.push_str(&input[copied..]);
    out
}

fn is_name_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_'
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// Where an assigned value starts after a name ending at `name_end`: after `=`, or after
/// `": ` in JSON (the name then closes a quote).
fn value_start(bytes: &[u8], name_end: usize) -> Option<usize> {
    match bytes.get(name_end) {
        Some(b'=') if bytes.get(name_end + 1) != Some(&b'=') => Some(name_end + 1),
        Some(b'"') => {
            let mut at = name_end + 1;
            if bytes.get(at) != Some(&b':') {
                return None;
            }
            at += 1;
            while bytes.get(at) == Some(&b' ') {
                at += 1;
            }
            (bytes.get(at) == Some(&b'"')).then_some(at)
        }
        _ => None,
    }
}

/// The value's byte span: inside quotes when it is quoted, else up to white space or a quote.
fn value_span(bytes: &[u8], start: usize) -> (usize, usize) {
    match bytes.get(start) {
        Some(&quote @ (b'"' | b'\'')) => {
            let mut end = start + 1;
            while end < bytes.len() && bytes[end] != quote {
                // JSON and Rust's Debug escape quotes inside the value.
                end += if bytes[end] == b'\\' { 2 } else { 1 };
            }
            (start + 1, end.min(bytes.len()))
        }
        // Quoted inside an enclosing JSON or Debug string: `NAME=\"value\"` (DIB_ENV's `declare -x`
        // lines in the plan's JSON). The escaped quotes stay, or the enclosing string breaks.
        Some(b'\\') if matches!(bytes.get(start + 1), Some(b'"' | b'\'')) => {
            let quote = bytes[start + 1];
            let mut end = start + 2;
            while end < bytes.len() && !(bytes[end] == b'\\' && bytes.get(end + 1) == Some(&quote)) {
                end += if bytes[end] == b'\\' { 2 } else { 1 };
            }
            (start + 2, end.min(bytes.len()))
        }
        _ => {
            let len = bytes[start..].iter().take_while(|b| !b" \t\r\n\"',;".contains(b)).count();
            (start, start + len)
        }
    }
}

/// Rule 3: registered values, wherever they appear.
fn mask_known_values(input: &str) -> Cow<'_, str> {
    let secrets = SECRETS.lock().unwrap_or_else(PoisonError::into_inner);
    let mut out = Cow::Borrowed(input);
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), MASK));
        }
    }
    out
}

/// A `tracing` writer that redacts each formatted event before it reaches stderr.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

impl std::io::Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // tracing-subscriber formats a whole event into one buffer and writes it at once.
        let redacted = text(&String::from_utf8_lossy(buf));
        std::io::stderr().write_all(redacted.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Stderr {
    type Writer = Stderr;
    fn make_writer(&'a self) -> Stderr {
        Stderr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_userinfo_keeps_the_user() {
        assert_eq!(
            text("auth at http://admin:s3cret@10.0.0.1:5000/v3 failed"),
            "auth at http://admin:***@10.0.0.1:5000/v3 failed"
        );
        assert_eq!(text("https://tok3n@host/x"), "https://***@host/x");
        assert_eq!(text("http://host:5000/v3"), "http://host:5000/v3");
    }

    #[test]
    fn assignments_quoted_inside_a_json_string_keep_it_valid() {
        let plan = serde_json::json!({"DIB_ENV": "declare -x DIB_X=\"1\"\ndeclare -x DIB_REPO_KEY=\"/k/key.asc\"\n"});
        let masked = text(&plan.to_string());
        let parsed: serde_json::Value = serde_json::from_str(&masked).expect("still JSON");
        assert_eq!(parsed["DIB_ENV"], "declare -x DIB_X=\"1\"\ndeclare -x DIB_REPO_KEY=\"***\"\n");
    }

    #[test]
    fn assignments_keep_the_name() {
        assert_eq!(text("-e DIB_REPO_PASSWORD=hunter22 -x"), "-e DIB_REPO_PASSWORD=*** -x");
        assert_eq!(text(r#"OS_TOKEN="abc def" FOO="bar""#), r#"OS_TOKEN="***" FOO="bar""#);
        assert_eq!(
            text(r#"{"OS_APPLICATION_CREDENTIAL_SECRET": "zz9", "name": "x"}"#),
            r#"{"OS_APPLICATION_CREDENTIAL_SECRET": "***", "name": "x"}"#
        );
        assert_eq!(text("DIB_RELEASE=bookworm API_KEY=k1"), "DIB_RELEASE=bookworm API_KEY=***");
        assert_eq!(text(r#""cache_key": "abc", "password": "p""#), r#""cache_key": "abc", "password": "***""#);
        assert_eq!(text("if PASSWORD == x"), "if PASSWORD == x");
        assert_eq!(text("--property x: expected KEY=VALUE"), "--property x: expected KEY=VALUE");
    }

    #[test]
    fn registered_values_are_masked_anywhere_but_short_ones_are_not() {
        register("correct-horse-battery");
        register("ab");
        register("/slash-first-password");
        assert_eq!(text("server said: bad password correct-horse-battery"), "server said: bad password ***");
        assert_eq!(text("ab /slash-first-password"), "ab ***");
    }

    #[test]
    fn secrets_echoed_json_escaped_or_percent_encoded_are_masked() {
        register(r#"pa"ss\word/1"#);
        assert_eq!(
            text(r#"{"error": {"message": "bad password pa\"ss\\word/1"}}"#),
            r#"{"error": {"message": "bad password ***"}}"#
        );
        assert_eq!(text("q=pa%22ss%5Cword%2F1&x=1"), "q=***&x=1");
    }

    #[test]
    fn secret_names_by_the_table() {
        for name in
            ["OS_PASSWORD", "DIB_REPO_PASSWD", "FTP_PASS", "PASS", "API_SECRET", "OS_TOKEN", "SSH_KEY", "password"]
        {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["DIB_MESOS_REPO_KEY", "DIB_JAVA_REPO_KEY", "PASSENGER", "DIB_PASSTHROUGH", "cache_key", "PATH"] {
            assert!(!is_secret_name(name), "{name}");
        }
    }
}
