//! Loading: a pod.yaml's text → [`PodSpec`], or every diagnostic.
//!
//! Receives the pod.yaml's path and text and a view of the environment (for the overrides of
//! SPEC §3); emits either the validated [`PodSpec`] or [`Diagnostics`], every problem found, in
//! file order. A YAML that does not even deserialize (bad syntax, unknown key, wrong shape) stops
//! at that one diagnostic: serde cannot go on past it. Everything else is judged by
//! [`Validator`], one value at a time. Nothing here retries: a bad
//! pod.yaml is fatal for `run` and printed by `check`.

use std::path::Path;
use std::str::FromStr;

use serde_saphyr::{MessageFormatter, UserMessageFormatter};

use super::raw::RawPod;
use super::validate::Validator;
use super::{Diagnostic, Diagnostics, PodSpec, Signal};

/// Reads, parses and validates a pod.yaml, applying the environment overrides of SPEC §3.
pub fn load(path: &Path) -> Result<PodSpec, Diagnostics> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic {
            file: path.to_path_buf(),
            line: 0,
            col: 0,
            message: format!("cannot read: {e}"),
        }])
    })?;
    load_str(path, &text)
}

/// As [`load`], for text already read (`path` names it in diagnostics and anchors templates).
pub fn load_str(path: &Path, text: &str) -> Result<PodSpec, Diagnostics> {
    load_with_env(path, text, &|name| std::env::var(name).ok())
}

/// As [`load_str`], with the environment given as a lookup (tests pass a fixed map).
pub fn load_with_env(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PodSpec, Diagnostics> {
    let raw: RawPod = serde_saphyr::from_str(text).map_err(|e| {
        let (line, col) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        // The formatter's text has no location suffix. "key" is pod.yaml's word for a serde field;
        // control characters are escaped because the message may quote the user's input.
        let text = UserMessageFormatter.format_message(e.without_snippet());
        let message = match text.strip_prefix("unknown field ") {
            Some(rest) => escape_controls(&format!("unknown key {rest}")),
            None => escape_controls(&text),
        };
        Diagnostics(vec![Diagnostic {
            file: path.to_path_buf(),
            line,
            col,
            message,
        }])
    })?;
    let mut v = Validator::new(path);
    let spec = v.pod(path, raw, env);
    if v.diags.is_empty() {
        Ok(spec)
    } else {
        // A stable sort keeps the order checks ran in for problems at the same place.
        v.diags.sort_by_key(|d| (d.line, d.col));
        Err(Diagnostics(v.diags))
    }
}

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
