//! Errors of the supervise loop: [`ControlError`], what a control call answers (each variant maps
//! to one HTTP status in `control::handlers`), and [`RunError`], why a hook, check or command run
//! by [`super::runner`] did not give an answer. Neither is retried here: the leader retries a
//! failed configuration with its backoff, an operator retries a call.

use std::time::Duration;

use super::shell::{ShellError, MAX_STDOUT};
use crate::fsutil::WriteError;
use crate::render::RenderError;

/// Why a control request was refused. Each maps to one HTTP status in the control API.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// 410: the pod was killed or its process ended for good.
    #[error("the pod is gone (killed, or its process ended for good)")]
    Gone,
    /// 409: a map older than the one applied: from an earlier leader (a lower epoch), or of a
    /// lower generation.
    #[error("stale map (epoch {}, generation {}): epoch {}, generation {} is applied", got.0, got.1, have.0, have.1)]
    Stale { have: (u64, u64), got: (u64, u64) },
    /// 409: an empty `on` with no map to re-apply.
    #[error("no cluster map to re-apply: this pod was never configured")]
    NoMap,
    /// 400: a map that is not addressed to this pod.
    #[error(transparent)]
    BadMap(#[from] Misaddressed),
    /// 406: `can_configure` said no.
    #[error("vetoed by hooks.can_configure: exit {code}")]
    Vetoed { code: i32 },
    /// 504: the ready check did not pass in time.
    #[error("not ready after {0:?}")]
    NotReady(Duration),
    /// 500: a hook or command failed.
    #[error(transparent)]
    Run(Box<RunError>),
    /// 500: the map does not render.
    #[error(transparent)]
    Render(Box<RenderError>),
    /// 500: `cluster.json` could not be written.
    #[error("cannot write the cluster file: {0}")]
    ClusterFile(#[source] ClusterFileError),
    /// 500: an `on` that should have started the process did not (`initialize`, `pre_start` or
    /// the spawn failed; the restart policy still retries in the background).
    #[error("the process did not start: {status}")]
    NotStarted { status: String },
    /// 500: the process an `on` started ended before it was ready.
    #[error("the process stopped while starting: {status}")]
    StoppedWhileStarting { status: String },
    /// 501: the request needs something the pod.yaml does not declare.
    #[error("no {field} in the pod.yaml")]
    NotDeclared { field: &'static str },
}

// Boxed: a `Result<_, ControlError>` stays small on the paths that do not fail.
impl From<RunError> for ControlError {
    fn from(e: RunError) -> ControlError {
        ControlError::Run(Box::new(e))
    }
}

impl From<RenderError> for ControlError {
    fn from(e: RenderError) -> ControlError {
        ControlError::Render(Box::new(e))
    }
}

/// Why a map is not addressed to this pod (400).
#[derive(Debug, thiserror::Error)]
pub enum Misaddressed {
    #[error("the map is addressed to {key:?}, this pod is {uuid}")]
    OtherPod { key: String, uuid: String },
    #[error("the map's key is not one of its pods")]
    KeyNotInMap,
    #[error("the map is for {namespace}.{cluster}, this pod is of {mine}")]
    OtherCluster {
        namespace: String,
        cluster: String,
        mine: String,
    },
}

/// Why a cluster map could not be written to a file.
#[derive(Debug, thiserror::Error)]
pub enum ClusterFileError {
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Why a hook, check or command did not give an answer. `field` is the pod.yaml field it comes
/// from (`hooks.pre_start`, `settings.apply.command`).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Its template does not render against this map.
    #[error("{field}: {source}")]
    Render {
        field: &'static str,
        #[source]
        source: Box<RenderError>,
    },
    #[error("{field}: cannot write the cluster file: {source}")]
    ClusterFile {
        field: &'static str,
        #[source]
        source: ClusterFileError,
    },
    /// It could not start, or did not end in time.
    #[error(transparent)]
    Shell(#[from] ShellError),
    /// It ended with a code other than 0.
    #[error("{field}: exit {code}")]
    Exit { field: &'static str, code: i32 },
    /// Its stdout, which the caller reads, was cut: the answer is refused rather than half read.
    #[error(
        "{field}: printed more than {MAX_STDOUT} bytes on stdout ({dropped} over); its answer is refused"
    )]
    StdoutCut { field: &'static str, dropped: u64 },
}
