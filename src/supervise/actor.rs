//! The supervise actor: one task that owns the process and the applied configuration.
//!
//! Everything that changes the process goes through here, one command at a time, so there is
//! never a question of who restarted what. The decisions are [`step::step`]'s (pure); this file
//! turns commands, exits, the restart timer and check results into its events, and carries out
//! the effects it asks for (render and write a map, spawn, stop, hooks, checks), feeding what
//! they lead to back in. Long waits (a stop's grace, a hook) do block the actor; readers are not
//! affected because they read the published [`Status`].

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::child::{Exit, Launch, Running};
use super::error::{ControlError, RunError};
use super::runner::{self, PreparedCheck};
use super::status::{ProcessState, Status};
use super::step::{self, Effect, Event, Rules, State, StopFor};
use super::{Backoff, Command, Origin, PodContext};
use crate::model::held::Known;
use crate::model::{ClusterMap, PodState};
use crate::render::{fields, Context, RenderState, Rendered};
use crate::spec::ReloadAction;

/// What the actor publishes; the [`super::Handle`]s hold the receivers.
pub(super) struct Publish {
    pub status: watch::Sender<Status>,
    /// `Status::state` alone, for the sync loop (the pod's znode).
    pub pod_state: watch::Sender<PodState>,
    pub last_map: watch::Sender<Option<Known>>,
    /// What the last applied map rendered (for `check` to tell what a new one would change).
    pub rendered: watch::Sender<Option<Arc<Rendered>>>,
}

/// Why the process could not be started (`initialize`, `pre_start`, the `initialized` marker).
#[derive(Debug, thiserror::Error)]
enum NotStarted {
    #[error(transparent)]
    Hook(#[from] RunError),
    #[error("cannot write {}: {source}", .path.display())]
    Marker {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub(super) struct Actor {
    ctx: Arc<PodContext>,
    rules: Rules,
    /// Its own record; [`Actor::step`] publishes `state.shown` after each change.
    state: State,
    /// The [`super::Handle`]s hold the senders.
    rx: mpsc::Receiver<Command>,
    publish: Publish,
    /// The last applied map (published on `publish.last_map`).
    map: Option<Known>,
    /// Check tasks hold clones of the sender; they send `Ready` and `Sanity` events.
    checks_tx: mpsc::Sender<Event>,
    checks_rx: mpsc::Receiver<Event>,
    running: Option<Running>,
    /// The rendered command of the last applied map.
    launch: Option<Launch>,
    render_state: Option<RenderState>,
    restart_at: Option<Instant>,
    /// Cancels the check tasks of the current run.
    checks: CancellationToken,
}

/// Waits for the process if there is one, forever otherwise (a disabled `select!` branch).
async fn exited(running: &mut Option<Running>) -> Exit {
    match running {
        Some(r) => r.wait().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Actor {
    pub(super) fn new(ctx: Arc<PodContext>, rx: mpsc::Receiver<Command>, publish: Publish) -> Actor {
        let (checks_tx, checks_rx) = mpsc::channel(16);
        let restart = &ctx.spec.process.restart;
        let rules = Rules::of(&ctx.spec);
        let state = State::new(&rules, Backoff::new(restart.backoff, restart.max_backoff));
        let render_state = match RenderState::open(&ctx.state_dir, &ctx.me.uuid) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(dir = %ctx.state_dir.display(), error = %e, "cannot open the state dir: every map counts as a change");
                None
            }
        };
        Actor {
            ctx,
            rules,
            state,
            rx,
            publish,
            map: None,
            checks_tx,
            checks_rx,
            running: None,
            launch: None,
            render_state,
            restart_at: None,
            checks: CancellationToken::new(),
        }
    }

    pub(super) async fn run(mut self) {
        loop {
            let restart_at = self.restart_at;
            tokio::select! {
                cmd = self.rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    if let Some(reply) = self.handle(cmd).await {
                        self.checks.cancel();
                        let _ = reply.send(self.state.shown.last_exit);
                        break;
                    }
                }
                exit = exited(&mut self.running) => self.on_exit(exit).await,
                _ = sleep_until(restart_at) => {
                    self.restart_at = None;
                    self.drive(Event::RestartDue).await;
                }
                Some(event) = self.checks_rx.recv() => { self.drive(event).await; }
            }
        }
    }

    /// One transition, then its publication.
    fn step(&mut self, event: Event) -> Vec<Effect> {
        let effects = step::step(&mut self.state, &self.rules, event);
        let shown = &self.state.shown;
        self.publish.status.send_if_modified(|s| {
            let changed = s != shown;
            if changed {
                s.clone_from(shown);
            }
            changed
        });
        let state = shown.state;
        self.publish
            .pod_state
            .send_if_modified(|s| std::mem::replace(s, state) != state);
        effects
    }

    /// Steps `event` and carries out its effects, and those of the events they lead to, depth
    /// first; answers the effects of `event` itself.
    async fn drive(&mut self, event: Event) -> Vec<Effect> {
        let first = self.step(event);
        let mut todo: Vec<Effect> = first.iter().rev().cloned().collect();
        while let Some(effect) = todo.pop() {
            if let Some(next) = self.execute(effect).await {
                todo.extend(self.step(next).into_iter().rev());
            }
        }
        first
    }

    /// Handles one command; returns the reply sender when the loop must end.
    async fn handle(&mut self, cmd: Command) -> Option<oneshot::Sender<Option<Exit>>> {
        match cmd {
            Command::On { map, origin, reply } => {
                let result = self.on(map, origin).await;
                let _ = reply.send(result);
            }
            Command::Off { origin, reply } => {
                self.drive(Event::Off(origin)).await;
                let _ = reply.send(Ok(()));
            }
            Command::Kill { reply } => {
                self.drive(Event::Kill).await;
                let _ = reply.send(Ok(()));
            }
            Command::Leave => {
                self.drive(Event::Leave).await;
            }
            Command::Forward(sig) => {
                if let Some(r) = &self.running {
                    tracing::info!(pid = r.pid(), signal = %sig, "forwarding signal to the process group");
                    let _ = r.signal_group(sig);
                }
            }
            Command::Shutdown { reply } => {
                self.drive(Event::Shutdown).await;
                return Some(reply);
            }
        }
        None
    }

    /// Applies a map: render, record, then start, reload, restart or keep the process.
    async fn on(&mut self, map: Option<Known>, origin: Origin) -> Result<Option<u64>, ControlError> {
        if self.state.shown.process == ProcessState::Dead {
            return Err(ControlError::Gone);
        }
        let previous = self.map.clone();
        let map = match map {
            Some(m) => m,
            None => previous.clone().ok_or(ControlError::NoMap)?,
        };
        super::admit(&self.ctx, &self.state.shown, &map)?;
        let context = Context::new(&self.ctx.spec, &map, previous.as_deref(), &self.ctx.env)?;
        let rendered = self.ctx.renderer.render_pod(&context)?;
        let changed = match &mut self.render_state {
            Some(state) => state.apply(&rendered)?,
            None => true,
        };
        let cluster_file = self.ctx.state_dir.join("cluster.json");
        runner::write_map(&cluster_file, &map).map_err(ControlError::ClusterFile)?;
        let mut env = rendered.env.clone();
        env.extend(runner::hook_env(&self.ctx, &map, &cluster_file));
        self.launch = Some(Launch {
            command: rendered.command.clone(),
            env,
            cwd: rendered.cwd.clone(),
        });
        let dependencies = map
            .dependencies
            .iter()
            .map(|(k, v)| (k.clone(), v.len()))
            .collect();
        let (generation, epoch) = (map.generation, map.epoch);
        self.map = Some(map.clone());
        self.publish.last_map.send_replace(Some(map));
        self.publish.rendered.send_replace(Some(Arc::new(rendered)));
        tracing::info!(generation, changed, origin = origin.name(), "cluster map applied");
        let first = self
            .drive(Event::Applied {
                origin,
                changed,
                generation,
                epoch,
                dependencies,
            })
            .await;
        if first.contains(&Effect::Start) && self.running.is_none() {
            // pre_start, initialize or the spawn failed: the leader must not count this pod as
            // configured (the restart policy still retries in the background).
            return Err(ControlError::NotStarted {
                status: self.state.shown.status.clone(),
            });
        }
        Ok(self.running.is_some().then_some(self.state.shown.incarnation))
    }

    /// Carries out one effect; the event it leads to, if any.
    async fn execute(&mut self, effect: Effect) -> Option<Event> {
        match effect {
            Effect::Start => self.start().await,
            Effect::Stop(stop) => Some(self.stop(stop).await),
            Effect::Reload => Some(Event::Reloaded {
                ok: self.reload().await,
            }),
            Effect::Finalize(f) => {
                self.finalize().await;
                Some(Event::Finalized(f))
            }
            Effect::RestartAfter(delay) => {
                // A delay is at most max_backoff, itself at most spec::MAX_DURATION: a monotonic
                // clock cannot overflow adding that, but a panic here would take PID 1 down.
                self.restart_at = Instant::now().checked_add(delay);
                if self.restart_at.is_none() {
                    tracing::error!(
                        delay_s = delay.as_secs_f64(),
                        "restart delay out of range: not restarting"
                    );
                }
                None
            }
            Effect::CancelRestart => {
                self.restart_at = None;
                None
            }
            Effect::CancelChecks => {
                self.checks.cancel();
                None
            }
            Effect::SpawnChecks(incarnation) => {
                self.spawn_checks(incarnation);
                None
            }
            Effect::SpawnSanity(incarnation) => {
                self.spawn_sanity(incarnation);
                None
            }
        }
    }

    /// Runs `initialize` (once per state dir) and `pre_start`, then spawns the process. Nothing
    /// before a map was applied, or while a process runs.
    async fn start(&mut self) -> Option<Event> {
        let launch = self.launch.clone()?;
        if self.running.is_some() {
            return None;
        }
        if let Err(e) = self.hooks_before_start().await {
            tracing::error!(error = %e, "cannot start the process");
            return Some(Event::StartFailed {
                code: 1,
                why: e.to_string(),
            });
        }
        match Running::spawn(&launch, &self.ctx.ring) {
            Ok(running) => {
                let pid = running.pid();
                tracing::info!(pid, "process started");
                self.running = Some(running);
                Some(Event::Started { pid })
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot spawn the process");
                // 127 is what a shell says for a command it cannot run.
                Some(Event::StartFailed {
                    code: 127,
                    why: format!("cannot spawn the process: {e}"),
                })
            }
        }
    }

    async fn hooks_before_start(&mut self) -> Result<(), NotStarted> {
        let Some(map) = self.map.clone() else {
            return Ok(());
        };
        let hooks = &self.ctx.spec.hooks;
        let marker = self.ctx.state_dir.join("initialized");
        if hooks.initialize.is_some() && !marker.exists() {
            runner::run_ok(&self.ctx, fields::INITIALIZE, &map, None).await?;
            std::fs::write(&marker, b"").map_err(|source| NotStarted::Marker {
                path: marker.clone(),
                source,
            })?;
        }
        if hooks.pre_start.is_some() {
            runner::run_ok(&self.ctx, fields::PRE_START, &map, None).await?;
        }
        Ok(())
    }

    /// The process ended on its own.
    async fn on_exit(&mut self, exit: Exit) {
        let Some(running) = self.running.take() else {
            return;
        };
        // Whatever the run left in its group (workers, daemons) must not hold ports for the next.
        let _ = super::child::signal_group(running.pid(), nix::sys::signal::Signal::SIGKILL);
        let ran_for = running.started.elapsed();
        tracing::info!(
            pid = running.pid(),
            code = exit.code,
            signal = exit.signal,
            ran_for_s = ran_for.as_secs_f64(),
            "process exited"
        );
        self.drive(Event::Exited { exit, ran_for }).await;
    }

    /// tear_down, stop signal to the group, grace, KILL. Nothing when the process is not running.
    async fn stop(&mut self, stop: StopFor) -> Event {
        self.checks.cancel();
        let Some(running) = self.running.take() else {
            return Event::Stopped { exit: None, stop };
        };
        if let (Some(_), Some(map)) = (&self.ctx.spec.hooks.tear_down, self.map.clone()) {
            if let Err(e) = runner::run(&self.ctx, fields::TEAR_DOWN, &map, None).await {
                tracing::warn!(error = %e, "tear_down failed; stopping anyway");
            }
        }
        let spec = &self.ctx.spec.process.stop;
        let pid = running.pid();
        let exit = running.stop(spec.signal, spec.grace).await;
        tracing::info!(pid, code = exit.code, signal = exit.signal, "process stopped");
        Event::Stopped {
            exit: Some(exit),
            stop,
        }
    }

    /// The reload signal to the group, or the reload command; whether it worked.
    async fn reload(&mut self) -> bool {
        match self.ctx.spec.process.reload.as_ref().map(|r| &r.action) {
            Some(ReloadAction::Signal(sig)) => match &self.running {
                Some(r) => {
                    tracing::info!(pid = r.pid(), signal = %sig, "configuration changed: reloading by signal");
                    r.signal_group(*sig).is_ok()
                }
                None => false,
            },
            Some(ReloadAction::Command(_)) => {
                let Some(map) = self.map.clone() else { return false };
                match runner::run_ok(&self.ctx, fields::RELOAD, &map, None).await {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, "reload command failed");
                        false
                    }
                }
            }
            None => false,
        }
    }

    async fn finalize(&mut self) {
        if self.ctx.spec.hooks.finalize.is_none() {
            return;
        }
        let map = self
            .map
            .as_deref()
            .cloned()
            .unwrap_or_else(|| ClusterMap::of_one(&self.ctx.me, 0));
        if let Err(e) = runner::run(&self.ctx, fields::FINALIZE, &map, None).await {
            tracing::warn!(error = %e, "finalize failed");
        }
    }

    /// Starts the ready check of the run that just started, or its sanity check when no ready
    /// check is declared.
    fn spawn_checks(&mut self, incarnation: u64) {
        self.checks.cancel();
        self.checks = CancellationToken::new();
        let Some(check) = &self.ctx.spec.checks.ready else {
            return self.spawn_sanity(incarnation);
        };
        let Some(map) = self.map.clone() else { return };
        let check = PreparedCheck::new(&self.ctx, fields::READY, check, &map);
        let (ring, token, tx) = (self.ctx.ring.clone(), self.checks.clone(), self.checks_tx.clone());
        let span = tracing::info_span!("check", field = fields::READY, incarnation);
        tokio::spawn(
            async move {
                token
                    .run_until_cancelled(async move {
                        loop {
                            if check.passes(&ring).await {
                                let _ = tx.send(Event::Ready(incarnation)).await;
                                return;
                            }
                            tokio::time::sleep(check.every).await;
                        }
                    })
                    .await
            }
            .instrument(span),
        );
    }

    /// Starts the sanity checks of the current run once it is ready: a slow starter is not
    /// failing while it boots.
    fn spawn_sanity(&mut self, incarnation: u64) {
        let (Some(check), Some(map)) = (&self.ctx.spec.checks.sanity, self.map.clone()) else {
            return;
        };
        let check = PreparedCheck::new(&self.ctx, fields::SANITY, check, &map);
        let (ring, token, tx) = (self.ctx.ring.clone(), self.checks.clone(), self.checks_tx.clone());
        let span = tracing::info_span!("check", field = fields::SANITY, incarnation);
        tokio::spawn(
            async move {
                token
                    .run_until_cancelled(async move {
                        loop {
                            tokio::time::sleep(check.every).await;
                            let ok = check.passes(&ring).await;
                            if tx.send(Event::Sanity(incarnation, ok)).await.is_err() {
                                return;
                            }
                        }
                    })
                    .await
            }
            .instrument(span),
        );
    }
}
