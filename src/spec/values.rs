//! Single values of a pod.yaml, judged on their own (no file, no position): signal names, file
//! modes, cluster names and patterns, and how a diagnostic quotes a value. Used by the loader
//! ([`super::load()`]), the validator ([`super::validate`]) and the section parsers.

use std::str::FromStr;

use super::Signal;

/// A signal name that is not one; fatal for the pod.yaml that has it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a signal name like TERM, HUP or SIGUSR1, found {text:?}")]
pub struct SignalError {
    pub text: String,
}

/// Parses a signal name as pod.yaml and `ochopod ctl signal` write it: `TERM`, `SIGTERM`, `hup`.
pub fn parse_signal(text: &str) -> Result<Signal, SignalError> {
    let upper = text.trim().to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| SignalError {
        text: text.to_string(),
    })
}

/// `text` with its control characters escaped (`\n`, `\0`, ...): a diagnostic that quotes a value
/// from the file or the environment stays one line of `check`'s output.
pub(super) fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// `[a-z0-9-]+`: the charset of cluster and namespace names (they become ZooKeeper paths).
pub(super) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A name that may contain `*` wildcards.
pub(super) fn is_pattern(s: &str) -> bool {
    !s.is_empty() && is_name(&s.replace('*', "x"))
}

/// Octal file mode as chmod reads it: `0644`, `644`, `0o644` (an unquoted YAML int included).
pub(super) fn parse_mode(text: &str) -> Option<u32> {
    let t = text.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_are_case_insensitive_with_or_without_sig() {
        assert_eq!(parse_signal("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("sigterm"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("hup"), Ok(Signal::SIGHUP));
        assert_eq!(parse_signal("SIGUSR1"), Ok(Signal::SIGUSR1));
        assert!(parse_signal("TERMINATE").is_err());
        assert!(parse_signal("").is_err());
    }

    #[test]
    fn modes_are_octal_as_chmod_reads_them() {
        assert_eq!(parse_mode("0644"), Some(0o644));
        assert_eq!(parse_mode("644"), Some(0o644));
        assert_eq!(parse_mode("0o755"), Some(0o755));
        assert_eq!(parse_mode("0600"), Some(0o600));
        assert_eq!(parse_mode("0888"), None);
        assert_eq!(parse_mode("rw"), None);
        assert_eq!(parse_mode("17777"), None);
    }
}
