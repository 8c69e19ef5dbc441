//! Validation: raw YAML → [`PodSpec`](super::PodSpec), collecting every diagnostic.

use std::path::Path;

use super::{Diagnostics, PodSpec};

/// Reads, parses and validates a pod.yaml, applying the environment overrides of SPEC §3.
pub fn load(path: &Path) -> Result<PodSpec, Diagnostics> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![super::Diagnostic {
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
    let _ = (path, text);
    todo!("spec loading")
}
