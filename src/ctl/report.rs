//! What ctl prints: each pod's outcome ([`PodReport`]), the table or `--json` document on
//! stdout, one line per failed pod on stderr, and the exit code they make. Shared by every verb.

use std::io::Write;

use serde::Serialize;
use serde_json::{json, Value};

use super::context::Ctx;
use super::discover::Target;
use super::http::Failure;
use super::{CtlError, EXIT_FAILED, EXIT_OK};

/// One pod's outcome, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct PodReport {
    /// `<namespace>.<cluster> #<seq>`.
    pub pod: String,
    pub cluster: String,
    pub seq: u32,
    pub uuid: String,
    /// The control API's `ip:port`.
    pub address: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The pod's JSON answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<Value>,
}

impl PodReport {
    pub fn new(target: &Target, result: Result<Value, Failure>) -> PodReport {
        let (ok, error, answer) = match result {
            Ok(v) => (true, None, Some(v)),
            Err(f) => (false, Some(f.to_string()), None),
        };
        PodReport {
            pod: target.name(),
            cluster: target.cluster.clone(),
            seq: target.pod.seq,
            uuid: target.pod.uuid.clone(),
            address: target.address(),
            ok,
            error,
            answer,
        }
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a panic.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Prints JSON on stdout.
pub fn out_json(value: &Value) {
    out(&format!(
        "{}\n",
        serde_json::to_string_pretty(value).unwrap_or_default()
    ));
}

/// Names each failure on stderr; the exit code for these reports.
pub fn conclude(reports: &[PodReport]) -> i32 {
    let mut code = EXIT_OK;
    for r in reports.iter().filter(|r| !r.ok) {
        eprintln!(
            "ochopod ctl: {}: {}",
            r.pod,
            r.error.as_deref().unwrap_or("failed")
        );
        code = EXIT_FAILED;
    }
    code
}

/// Prints the table (or `{"ok", "pods"}`) and names the failures; the exit code.
pub fn finish(ctx: &Ctx, reports: &[PodReport], human: String) -> Result<i32, CtlError> {
    let code = conclude(reports);
    if ctx.json {
        out_json(&json!({"ok": code == EXIT_OK, "pods": reports}));
    } else {
        out(&human);
    }
    Ok(code)
}
