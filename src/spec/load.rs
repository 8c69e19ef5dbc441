//! Loading: a pod.yaml's text → [`PodSpec`], or every diagnostic.
//!
//! Receives the pod.yaml's path and text and a view of the environment (for the overrides of
//! SPEC §3); emits either the validated [`PodSpec`] or [`Diagnostics`], every problem found, in
//! file order. A YAML that does not even deserialize (bad syntax, unknown key, wrong shape) stops
//! at that one diagnostic: serde cannot go on past it. Everything else is judged by
//! [`Validator`], one value at a time. Nothing here retries: a bad
//! pod.yaml is fatal for `run` and printed by `check`.

use std::path::Path;

use serde_saphyr::{MessageFormatter, UserMessageFormatter};

use super::raw::RawPod;
use super::validate::Validator;
use super::values::escape_controls;
use super::{Diagnostic, Diagnostics, PodSpec};

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
