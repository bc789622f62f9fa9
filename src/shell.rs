//! Text handed to `sh`: the one way a value is quoted for a shell command line (build hooks,
//! mmdebstrap's setup hooks, the guest's check script).

/// Single-quote `text` for `sh`: nothing inside single quotes is special except the quote.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn a_single_quote_closes_escapes_and_reopens() {
        assert_eq!(quote("a'b"), r"'a'\''b'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn sh_reads_back_what_was_quoted() {
        let output = Command::new("sh").arg("-c").arg(format!("printf %s {}", quote("it's $HOME"))).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout), "it's $HOME");
    }
}
