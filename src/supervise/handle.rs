//! [`Handle`]: the cloneable way to talk to the supervise loop. Changes go to the actor as
//! [`Command`]s; `check`, `ok` and `signal` run their hooks here, outside the actor, reading what
//! it publishes, so a slow hook does not hold up an `off`; `on` waits for readiness here too.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::child::Exit;
use super::error::{ControlError, Misaddressed};
use super::runner;
use super::status::{ProcessState, Status};
use super::{Command, Origin, PodContext};
use crate::model::held::Known;
use crate::model::{Action, ClusterMap, PodState};
use crate::render::{fields, Context, Rendered};
use crate::spec::Signal;

/// The cloneable way to talk to the supervise loop.
#[derive(Clone)]
pub struct Handle {
    /// The actor holds the receiving end.
    pub(super) tx: mpsc::Sender<Command>,
    /// Published by the actor.
    pub(super) status: watch::Receiver<Status>,
    /// The pod's standing alone (`Status::state`), for the sync loop to write into the znode.
    pub(super) pod_state: watch::Receiver<PodState>,
    /// The last applied map, published by the actor (for `check`, `ok`, `signal`).
    pub(super) last_map: watch::Receiver<Option<Known>>,
    /// What the last applied map rendered, published by the actor (for `check`).
    pub(super) rendered: watch::Receiver<Option<Arc<Rendered>>>,
    pub(super) ctx: Arc<PodContext>,
}

/// Whether a map may be applied by this pod, given what it applied last (SPEC §6, §7): it must be
/// addressed to this pod (`key` is its uuid, its entry is of this cluster and namespace), and
/// not older than the applied one: maps are ordered by the leader's epoch, then by generation.
/// A later leader's map always wins, so a deposed leader's late calls change nothing, whatever
/// generation they carry; the same map again (a retry, `check` then `on`) is accepted.
pub fn admit(ctx: &PodContext, applied: &Status, map: &ClusterMap) -> Result<(), ControlError> {
    if map.key != ctx.me.uuid {
        return Err(Misaddressed::OtherPod {
            key: map.key.clone(),
            uuid: ctx.me.uuid.clone(),
        }
        .into());
    }
    let Some(me) = map.me() else {
        return Err(Misaddressed::KeyNotInMap.into());
    };
    if me.cluster != ctx.spec.cluster || me.namespace != ctx.spec.namespace {
        return Err(Misaddressed::OtherCluster {
            namespace: me.namespace.clone(),
            cluster: me.cluster.clone(),
            mine: ctx.spec.key().to_string(),
        }
        .into());
    }
    let (have, got) = ((applied.epoch, applied.generation), (map.epoch, map.generation));
    if got < have {
        return Err(ControlError::Stale { have, got });
    }
    Ok(())
}

impl Handle {
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// The pod's standing (`running`, `held`, `failed`, `leaving`), on a watch of its own.
    pub fn pod_state(&self) -> watch::Receiver<PodState> {
        self.pod_state.clone()
    }

    /// The last applied map, with its digest (computed once).
    pub fn last_map(&self) -> Option<Known> {
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
    pub async fn check(&self, map: &ClusterMap) -> Result<Action, ControlError> {
        self.refuse_if_gone()?;
        self.admits(map)?;
        let action = self.action(map);
        if self.ctx.spec.hooks.can_configure.is_none() {
            return Ok(action);
        }
        let out = runner::run(&self.ctx, fields::CAN_CONFIGURE, map, None).await?;
        if out.success() {
            Ok(action)
        } else {
            Err(ControlError::Vetoed {
                code: out.exit.shell_code(),
            })
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
    pub async fn on(&self, map: Option<Known>, origin: Origin) -> Result<(), ControlError> {
        self.refuse_if_gone()?;
        let incarnation = self.ask(|reply| Command::On { map, origin, reply }).await??;
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
                        return Err(ControlError::StoppedWhileStarting {
                            status: s.status.clone(),
                        });
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
        let (Some(_), Some(map)) = (&self.ctx.spec.hooks.configured, self.last_map()) else {
            return Ok(());
        };
        runner::run_ok(&self.ctx, fields::CONFIGURED, &map, None).await?;
        Ok(())
    }

    /// `POST /control/signal`: pass `body` to `hooks.signaled`; its stdout (JSON) is the answer.
    pub async fn signal(&self, body: Vec<u8>) -> Result<serde_json::Value, ControlError> {
        self.refuse_if_gone()?;
        if self.ctx.spec.hooks.signaled.is_none() {
            return Err(ControlError::NotDeclared {
                field: fields::SIGNALED,
            });
        }
        let map = self
            .last_map()
            .map(|m| m.map().clone())
            .unwrap_or_else(|| ClusterMap::of_one(&self.ctx.me, 0));
        let out = runner::run_ok(&self.ctx, fields::SIGNALED, &map, Some(body)).await?;
        runner::whole_stdout(fields::SIGNALED, &out)?;
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
