//! The supervise loop: everything that happens inside the pod.
//!
//! It owns the process (spawn, restart with backoff, stop with grace, reload), the last cluster
//! map the pod applied, the render state and the pod's standing (`held`, `failed`, `leaving`). It
//! receives [`Command`]s from the control API and the runtime through a [`Handle`], and publishes a
//! [`Status`] on a `watch` channel that anyone reads without waiting (`/info`, `/readyz`,
//! `/metrics`), and the pod's standing alone on another (the sync loop, for the pod's znode).
//!
//! `actor.rs` is the task; its decisions are `step.rs`'s, a pure function of its state and an
//! event. `runner.rs` renders and runs hooks, checks and commands; `handle.rs` is the callers'
//! side. Checks (`ready`, `sanity`) run in tasks of their own per run of the process and report
//! back as events, so a slow check never holds a command up. The actor stops on
//! [`Command::Shutdown`], which stops the process in the declared way and answers with its exit.

mod actor;
mod child;
mod error;
mod handle;
mod reaper;
mod runner;
mod shell;
mod status;
mod step;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tracing::Instrument as _;

pub use crate::backoff::Backoff;
// `super::backoff::Backoff` in actor.rs: the backoff moved to the crate root (one for every loop).
use crate::backoff;
pub use child::Exit;
pub use error::{ClusterFileError, ControlError, Misaddressed, RunError};
pub use handle::{admit, Handle};
pub use reaper::{become_subreaper, reap_orphans, run as run_reaper};
pub use runner::run_with_map;
pub use shell::{Output as ShellOutput, ShellError, MAX_STDOUT};
pub use status::{ProcessState, Status};

use crate::logs::LogRing;
use crate::model::held::Known;
use crate::model::{Pod, PodState};
use crate::render::Renderer;
use crate::spec::{PodSpec, Signal};

/// Who sent an `on`/`off`: the leader (a cluster map) or an operator (an empty body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Leader,
    Operator,
}

impl Origin {
    /// `leader` or `operator`, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Origin::Leader => "leader",
            Origin::Operator => "operator",
        }
    }
}

/// Requests to the supervise actor. Each carries the sender of its reply.
#[derive(Debug)]
pub enum Command {
    /// Apply a map (None: the last one), then start, reload or keep the process.
    /// Answers with the incarnation to wait on for readiness, or None when nothing runs.
    On {
        /// With its digest, computed once (SPEC §7, [`crate::model::held::Held`]).
        map: Option<Known>,
        origin: Origin,
        reply: oneshot::Sender<Result<Option<u64>, ControlError>>,
    },
    /// Stop the process; an operator's off holds the pod.
    Off {
        origin: Origin,
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
    /// finalize, stop for good.
    Kill {
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
    /// The pod is shutting down: mark it leaving.
    Leave,
    /// Forward a signal to the process group.
    Forward(Signal),
    /// Stop the process and end the loop; answers with the process's last exit.
    Shutdown { reply: oneshot::Sender<Option<Exit>> },
}

/// Everything the supervise loop needs to know about the pod, fixed at start.
pub struct PodContext {
    pub spec: Arc<PodSpec>,
    pub renderer: Renderer,
    /// The pod as known before any map (its own entry in a map wins).
    pub me: Pod,
    /// The environment templates see as `env`.
    pub env: BTreeMap<String, String>,
    pub state_dir: PathBuf,
    pub ring: LogRing,
    /// Every hook, `reload.command`, `apply` and `probe` runs holding one of these permits
    /// ([`HOOKS_IN_FLIGHT`]): `/control/check`, `/ok` and `/signal` run their hooks outside the
    /// actor, and parallel calls must queue rather than fork without bound. Checks do not take
    /// one: at most one ready and one sanity check run at a time, and a slow hook must not make
    /// them fail.
    pub hook_slots: Semaphore,
}

/// How many hooks and commands may run at once (see [`PodContext::hook_slots`]).
pub const HOOKS_IN_FLIGHT: usize = 4;

impl std::fmt::Debug for PodContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodContext")
            .field("cluster", &self.spec.key())
            .field("uuid", &self.me.uuid)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

/// Starts the supervise loop.
pub fn spawn(ctx: PodContext) -> Handle {
    let ctx = Arc::new(ctx);
    let (tx, rx) = mpsc::channel(32);
    let (status_tx, status) = watch::channel(Status::new(ctx.spec.process.start));
    let (map_tx, last_map) = watch::channel(None);
    let (rendered_tx, rendered) = watch::channel(None);
    let (pod_state_tx, pod_state) = watch::channel(PodState::Running);
    let publish = actor::Publish {
        status: status_tx,
        pod_state: pod_state_tx,
        last_map: map_tx,
        rendered: rendered_tx,
    };
    let actor = actor::Actor::new(ctx.clone(), rx, publish);
    tokio::spawn(actor.run().instrument(tracing::info_span!("supervise")));
    Handle {
        tx,
        status,
        pod_state,
        last_map,
        rendered,
        ctx,
    }
}
