//! The supervise loop: everything that happens inside the pod.
//!
//! It owns the process (spawn, restart with backoff, stop with grace, reload), the last cluster
//! map the pod applied, the render state and the pod's standing (`held`, `failed`, `leaving`). It
//! receives [`Command`]s from the control API and the runtime through a [`Handle`], and publishes a
//! [`Status`] on a `watch` channel that anyone reads without waiting (`/info`, `/readyz`,
//! `/metrics`, the sync loop for the pod's state).
//!
//! Checks (`ready`, `sanity`) run in tasks of their own per run of the process and report back as
//! events, so a slow check never holds a command up. The actor stops on [`Command::Shutdown`],
//! which stops the process in the declared way and answers with its exit.

mod actor;
mod backoff;
mod child;
mod reaper;
mod shell;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

pub use backoff::Backoff;
pub use child::Exit;
pub use reaper::{become_subreaper, reap_orphans, run as run_reaper};
pub use shell::{Output as ShellOutput, ShellError, MAX_STDOUT};

use crate::logs::LogRing;
use crate::model::{Action, ClusterMap, Pod, PodState};
use crate::render::{Context, Rendered, Renderer};
use crate::spec::{PodSpec, Signal};

/// What the process is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessState {
    /// Not started yet, or stopped by an `off`, or waiting for a restart.
    Stopped,
    Running,
    /// Being stopped: stop signal sent, grace running.
    Terminating,
    /// Ended for good (policy, `kill`); control calls answer 410.
    Dead,
}

/// The supervise loop's state as others see it. Cheap to clone; published on every change.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub process: ProcessState,
    pub pid: Option<u32>,
    /// The pod's standing in its cluster.
    pub state: PodState,
    /// Restarts after the process ended on its own.
    pub restarts: u64,
    pub last_exit: Option<Exit>,
    /// The generation of the last map applied (0: none yet).
    pub generation: u64,
    /// The epoch of the leader that sent it (0: none yet, or standalone).
    pub epoch: u64,
    /// How many maps were applied.
    pub configurations: u64,
    /// The ready check passed for the current run (true at once when none is declared); false
    /// again once the sanity check spent its budget (`checks.sanity.failures`).
    pub ready: bool,
    /// Consecutive sanity check failures. Within the budget they do not make the pod unready:
    /// `ready` is the only input of [`Status::is_ready`] the sanity check moves.
    pub sanity_failures: u32,
    /// Counts runs of the process; an `on` waits for readiness of a given run.
    #[serde(skip)]
    pub incarnation: u64,
    /// A human line about what is happening (`restarting in 2s`, `sanity check failed 3 times`).
    pub status: String,
    /// Dependency name → pods in the last applied map.
    pub dependencies: BTreeMap<String, usize>,
    /// The exit code ochopod should end with, once the process ended for good and the pod does
    /// not linger.
    #[serde(skip)]
    pub exit_code: Option<i32>,
}

impl Status {
    fn new(process_start: bool) -> Status {
        Status {
            process: ProcessState::Stopped,
            pid: None,
            state: PodState::Running,
            restarts: 0,
            last_exit: None,
            generation: 0,
            epoch: 0,
            configurations: 0,
            ready: false,
            sanity_failures: 0,
            incarnation: 0,
            status: if process_start {
                "waiting for a configuration"
            } else {
                "configured only on an explicit on"
            }
            .to_string(),
            dependencies: BTreeMap::new(),
            exit_code: None,
        }
    }

    /// `/readyz`: running, a configuration applied, the ready check passed (and the sanity
    /// budget not spent, which clears `ready`). A sanity failure within the budget does not
    /// count: readiness would flap with every transient failure, and rolling restarts and load
    /// balancers read it.
    pub fn is_ready(&self) -> bool {
        self.process == ProcessState::Running && self.generation > 0 && self.ready
    }
}

/// Why a control request was refused. Each maps to one HTTP status in the control API.
#[derive(Debug, Clone, thiserror::Error)]
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
    #[error("{0}")]
    BadMap(String),
    /// 406: `can_configure` said no.
    #[error("vetoed by hooks.can_configure: {0}")]
    Vetoed(String),
    /// 504: the ready check did not pass in time.
    #[error("not ready after {0:?}")]
    NotReady(Duration),
    /// 500: rendering, a hook or the process failed.
    #[error("{0}")]
    Failed(String),
    /// 501: the request needs something the pod.yaml does not declare.
    #[error("{0}")]
    NotDeclared(String),
}

/// Who sent an `on`/`off`: the leader (a cluster map) or an operator (an empty body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Leader,
    Operator,
}

/// Requests to the supervise actor. Each carries the sender of its reply.
#[derive(Debug)]
pub enum Command {
    /// Apply a map (None: the last one), then start, reload or keep the process.
    /// Answers with the incarnation to wait on for readiness, or None when nothing runs.
    On {
        map: Option<Box<ClusterMap>>,
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

/// The cloneable way to talk to the supervise loop.
#[derive(Clone)]
pub struct Handle {
    /// The actor holds the receiving end.
    tx: mpsc::Sender<Command>,
    status: watch::Receiver<Status>,
    /// The pod's standing alone (`Status::state`), for the sync loop to write into the znode.
    pod_state: watch::Receiver<PodState>,
    /// The last applied map, published by the actor (for `check`, `ok`, `signal`).
    last_map: watch::Receiver<Option<Arc<ClusterMap>>>,
    /// What the last applied map rendered, published by the actor (for `check`).
    rendered: watch::Receiver<Option<Arc<Rendered>>>,
    ctx: Arc<PodContext>,
}

/// Renders a command field against `map` and runs it as hooks run: under the reaper, with the
/// map in `$OCHOPOD_CLUSTER_FILE`, the pod in `$OCHOPOD_POD_JSON`, output in the log ring and
/// `settings.timeout`. The leader's `apply` and `probe` use it too; since they read its stdout,
/// a stdout over [`MAX_STDOUT`] fails it.
pub async fn run_with_map(
    ctx: &PodContext,
    what: &str,
    line: &crate::spec::CommandLine,
    map: &ClusterMap,
) -> Result<ShellOutput, ControlError> {
    let out = actor::run_command(ctx, what, line, map, None).await?;
    whole_stdout(what, &out)?;
    Ok(out)
}

/// Refuses an output whose stdout was cut: a caller that reads the answer must not act on half
/// of it.
fn whole_stdout(what: &str, out: &ShellOutput) -> Result<(), ControlError> {
    if out.stdout_dropped > 0 {
        return Err(ControlError::Failed(format!(
            "{what}: printed more than {MAX_STDOUT} bytes on stdout ({} over); its answer is refused",
            out.stdout_dropped
        )));
    }
    Ok(())
}

/// Whether a map may be applied by this pod, given what it applied last (SPEC §6, §7): it must be
/// addressed to this pod (`key` is its uuid, its entry is of this cluster and namespace), and
/// not older than the applied one: maps are ordered by the leader's epoch, then by generation.
/// A later leader's map always wins, so a deposed leader's late calls change nothing, whatever
/// generation they carry; the same map again (a retry, `check` then `on`) is accepted.
pub fn admit(ctx: &PodContext, applied: &Status, map: &ClusterMap) -> Result<(), ControlError> {
    if map.key != ctx.me.uuid {
        return Err(ControlError::BadMap(format!(
            "the map is addressed to {:?}, this pod is {}",
            map.key, ctx.me.uuid
        )));
    }
    let Some(me) = map.me() else {
        return Err(ControlError::BadMap(
            "the map's key is not one of its pods".into(),
        ));
    };
    if me.cluster != ctx.spec.cluster || me.namespace != ctx.spec.namespace {
        return Err(ControlError::BadMap(format!(
            "the map is for {}.{}, this pod is of {}",
            me.namespace,
            me.cluster,
            ctx.spec.key()
        )));
    }
    let (have, got) = ((applied.epoch, applied.generation), (map.epoch, map.generation));
    if got < have {
        return Err(ControlError::Stale { have, got });
    }
    Ok(())
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
    tokio::spawn(actor::Actor::new(ctx.clone(), rx, publish).run());
    Handle {
        tx,
        status,
        pod_state,
        last_map,
        rendered,
        ctx,
    }
}

impl Handle {
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// The pod's standing (`running`, `held`, `failed`, `leaving`), on a watch of its own.
    pub fn pod_state(&self) -> watch::Receiver<PodState> {
        self.pod_state.clone()
    }

    pub fn last_map(&self) -> Option<Arc<ClusterMap>> {
        self.last_map.borrow().clone()
    }

    pub fn context(&self) -> &Arc<PodContext> {
        &self.ctx
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, ControlError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| ControlError::Gone)?;
        rx.await.map_err(|_| ControlError::Gone)
    }

    fn refuse_if_gone(&self) -> Result<(), ControlError> {
        if self.status.borrow().process == ProcessState::Dead {
            return Err(ControlError::Gone);
        }
        Ok(())
    }

    /// Whether `map` may be applied here now (see [`admit`]).
    pub fn admits(&self, map: &ClusterMap) -> Result<(), ControlError> {
        admit(&self.ctx, &self.status.borrow(), map)
    }

    /// `POST /control/check`: can this pod take `map`? Runs `hooks.can_configure`, and answers
    /// what applying it would do to the process.
    pub async fn check(&self, map: ClusterMap) -> Result<Action, ControlError> {
        self.refuse_if_gone()?;
        self.admits(&map)?;
        let action = self.action(&map);
        let Some(hook) = self.ctx.spec.hooks.can_configure.clone() else {
            return Ok(action);
        };
        let out = actor::run_hook(&self.ctx, "hooks.can_configure", &hook, &map, None).await?;
        if out.success() {
            Ok(action)
        } else {
            Err(ControlError::Vetoed(format!("exit {}", out.exit.shell_code())))
        }
    }

    /// What applying `map` would do to the process, as `on` would decide it: start it when it
    /// does not run, restart it when `strict`, else compare what `map` renders with what the
    /// last map rendered. A map that does not render says `restart` (its `on` will fail).
    fn action(&self, map: &ClusterMap) -> Action {
        let spec = &self.ctx.spec;
        if self.status.borrow().process != ProcessState::Running {
            return Action::Start;
        }
        if spec.process.strict {
            return Action::Restart;
        }
        let previous = self.last_map();
        let new = Context::new(spec, map, previous.as_deref(), &self.ctx.env)
            .and_then(|context| self.ctx.renderer.render_pod(&context));
        let last = self.rendered.borrow().clone();
        match (new, last) {
            (Ok(new), Some(last)) if new.same_as(&last) => Action::Keep,
            (Ok(_), Some(_)) if spec.process.reload.is_some() => Action::Reload,
            _ => Action::Restart,
        }
    }

    /// `POST /control/on`: apply `map` (None: the last one) and answer once the pod is ready.
    pub async fn on(&self, map: Option<ClusterMap>, origin: Origin) -> Result<(), ControlError> {
        self.refuse_if_gone()?;
        let incarnation = self
            .ask(|reply| Command::On {
                map: map.map(Box::new),
                origin,
                reply,
            })
            .await??;
        let Some(incarnation) = incarnation else {
            return Ok(());
        };
        let timeout = self
            .ctx
            .spec
            .checks
            .ready
            .as_ref()
            .map(|c| c.timeout)
            .unwrap_or(Duration::from_secs(60));
        let mut status = self.status.clone();
        let waited = tokio::time::timeout(timeout, async {
            loop {
                {
                    let s = status.borrow_and_update();
                    if s.incarnation != incarnation || s.process != ProcessState::Running {
                        return Err(ControlError::Failed(format!(
                            "the process stopped while starting: {}",
                            s.status
                        )));
                    }
                    if s.ready {
                        return Ok(());
                    }
                }
                if status.changed().await.is_err() {
                    return Err(ControlError::Gone);
                }
            }
        })
        .await;
        waited.unwrap_or(Err(ControlError::NotReady(timeout)))
    }

    /// `POST /control/off`.
    pub async fn off(&self, origin: Origin) -> Result<(), ControlError> {
        self.refuse_if_gone()?;
        self.ask(|reply| Command::Off { origin, reply }).await?
    }

    /// `POST /control/ok`: the configuration is complete; runs `hooks.configured`.
    pub async fn ok(&self) -> Result<(), ControlError> {
        self.refuse_if_gone()?;
        let (Some(hook), Some(map)) = (self.ctx.spec.hooks.configured.clone(), self.last_map()) else {
            return Ok(());
        };
        let out = actor::run_hook(&self.ctx, "hooks.configured", &hook, &map, None).await?;
        if out.success() {
            Ok(())
        } else {
            Err(ControlError::Failed(format!(
                "hooks.configured: exit {}",
                out.exit.shell_code()
            )))
        }
    }

    /// `POST /control/signal`: pass `body` to `hooks.signaled`; its stdout (JSON) is the answer.
    pub async fn signal(&self, body: Vec<u8>) -> Result<serde_json::Value, ControlError> {
        self.refuse_if_gone()?;
        let Some(hook) = self.ctx.spec.hooks.signaled.clone() else {
            return Err(ControlError::NotDeclared(
                "no hooks.signaled in the pod.yaml".into(),
            ));
        };
        let map = self
            .last_map()
            .map(|m| (*m).clone())
            .unwrap_or_else(|| ClusterMap::of_one(&self.ctx.me, 0));
        let out = actor::run_hook(&self.ctx, "hooks.signaled", &hook, &map, Some(body)).await?;
        if !out.success() {
            return Err(ControlError::Failed(format!(
                "hooks.signaled: exit {}",
                out.exit.shell_code()
            )));
        }
        whole_stdout("hooks.signaled", &out)?;
        let text = out.stdout.trim();
        if text.is_empty() {
            return Ok(serde_json::json!({}));
        }
        Ok(serde_json::from_str(text).unwrap_or_else(|_| serde_json::json!({ "output": text })))
    }

    /// `POST /control/kill`: finalize and stop for good.
    pub async fn kill(&self) -> Result<(), ControlError> {
        self.refuse_if_gone()?;
        self.ask(|reply| Command::Kill { reply }).await?
    }

    /// Marks the pod leaving (SIGTERM).
    pub async fn leave(&self) {
        let _ = self.tx.send(Command::Leave).await;
    }

    /// Forwards a signal to the process group.
    pub async fn forward(&self, sig: Signal) {
        let _ = self.tx.send(Command::Forward(sig)).await;
    }

    /// Stops the process and the loop; the process's last exit.
    pub async fn shutdown(&self) -> Option<Exit> {
        self.ask(|reply| Command::Shutdown { reply }).await.ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> Status {
        let mut s = Status::new(true);
        s.process = ProcessState::Running;
        s.generation = 1;
        s.ready = true;
        s
    }

    #[test]
    fn sanity_failures_within_the_budget_keep_the_pod_ready() {
        let mut s = running();
        assert!(s.is_ready());
        s.sanity_failures = 2;
        assert!(
            s.is_ready(),
            "a failure within the budget does not flap readiness"
        );
        // The actor clears `ready` in the publish that spends the budget.
        s.ready = false;
        assert!(!s.is_ready());
    }

    #[test]
    fn readiness_needs_a_running_configured_process_past_its_ready_check() {
        for unready in [
            Status {
                ready: false,
                ..running()
            },
            Status {
                generation: 0,
                ..running()
            },
            Status {
                process: ProcessState::Terminating,
                ..running()
            },
        ] {
            assert!(!unready.is_ready(), "{unready:?}");
        }
    }
}
