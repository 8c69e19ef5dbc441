//! The supervise actor: one task that owns the process and the applied configuration.
//!
//! Everything that changes the process goes through here, one command at a time, so there is
//! never a question of who restarted what. Long waits (a stop's grace, a hook) do block the
//! actor; readers are not affected because they read the published [`Status`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::child::{Exit, Launch, Running};
use super::shell::{self, Output};
use super::{Command, ControlError, Origin, PodContext, ProcessState, Status};
use crate::model::{ClusterMap, PodState};
use crate::render::{Context, RenderState, Rendered};
use crate::spec::{Check, CommandLine, ReloadAction, ReloadFailure, RestartPolicy};

/// What check tasks report.
#[derive(Debug)]
enum Event {
    /// The ready check passed for this incarnation.
    Ready(u64),
    /// A sanity check result for this incarnation.
    Sanity(u64, bool),
}

/// What the actor publishes; the [`super::Handle`]s hold the receivers.
pub(super) struct Publish {
    pub status: watch::Sender<Status>,
    /// `Status::state` alone, for the sync loop (the pod's znode).
    pub pod_state: watch::Sender<PodState>,
    pub last_map: watch::Sender<Option<Arc<ClusterMap>>>,
    /// What the last applied map rendered (for `check` to tell what a new one would change).
    pub rendered: watch::Sender<Option<Arc<Rendered>>>,
}

pub(super) struct Actor {
    ctx: Arc<PodContext>,
    /// The [`super::Handle`]s hold the senders.
    rx: mpsc::Receiver<Command>,
    status: watch::Sender<Status>,
    pod_state: watch::Sender<PodState>,
    last_map: watch::Sender<Option<Arc<ClusterMap>>>,
    /// What the last applied map rendered (for `check` to tell what a new one would change).
    rendered: watch::Sender<Option<Arc<Rendered>>>,
    /// Check tasks hold clones of the sender.
    events_tx: mpsc::Sender<Event>,
    events_rx: mpsc::Receiver<Event>,
    running: Option<Running>,
    /// The rendered command of the last applied map.
    launch: Option<Launch>,
    render_state: Option<RenderState>,
    backoff: Backoff,
    restart_at: Option<Instant>,
    /// The process should run (false before the first `on`, after an `off`, with `start: false`).
    enabled: bool,
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
        let (events_tx, events_rx) = mpsc::channel(16);
        let restart = &ctx.spec.process.restart;
        let backoff = Backoff::new(restart.backoff, restart.max_backoff);
        let render_state = match RenderState::open(&ctx.state_dir, &ctx.me.uuid) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(dir = %ctx.state_dir.display(), error = %e, "cannot open the state dir: every map counts as a change");
                None
            }
        };
        Actor {
            ctx,
            rx,
            status: publish.status,
            pod_state: publish.pod_state,
            last_map: publish.last_map,
            rendered: publish.rendered,
            events_tx,
            events_rx,
            running: None,
            launch: None,
            render_state,
            backoff,
            restart_at: None,
            enabled: false,
            checks: CancellationToken::new(),
        }
    }

    fn publish(&self, f: impl FnOnce(&mut Status)) {
        self.status.send_modify(f);
        let state = self.status.borrow().state;
        self.pod_state
            .send_if_modified(|s| std::mem::replace(s, state) != state);
    }

    fn current(&self) -> Status {
        self.status.borrow().clone()
    }

    pub(super) async fn run(mut self) {
        loop {
            let restart_at = self.restart_at;
            tokio::select! {
                cmd = self.rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    if let Some(reply) = self.handle(cmd).await {
                        self.stop_process().await;
                        self.checks.cancel();
                        let _ = reply.send(self.current().last_exit);
                        break;
                    }
                }
                exit = exited(&mut self.running) => self.on_exit(exit).await,
                _ = sleep_until(restart_at) => {
                    self.restart_at = None;
                    self.start().await;
                }
                Some(event) = self.events_rx.recv() => self.on_event(event).await,
            }
        }
    }

    /// Handles one command; returns the reply sender when the loop must end.
    async fn handle(&mut self, cmd: Command) -> Option<oneshot::Sender<Option<Exit>>> {
        match cmd {
            Command::On { map, origin, reply } => {
                let result = self.on(map.map(|m| *m), origin).await;
                let _ = reply.send(result);
            }
            Command::Off { origin, reply } => {
                if origin == Origin::Operator {
                    self.publish(|s| s.state = PodState::Held);
                }
                self.enabled = false;
                self.restart_at = None;
                self.stop_process().await;
                self.publish(|s| {
                    s.status = format!(
                        "off ({})",
                        if origin == Origin::Operator {
                            "held by an operator"
                        } else {
                            "by the leader"
                        }
                    )
                });
                let _ = reply.send(Ok(()));
            }
            Command::Kill { reply } => {
                self.enabled = false;
                self.restart_at = None;
                self.stop_process().await;
                self.finalize().await;
                let code = if self.ctx.spec.process.linger {
                    None
                } else {
                    Some(0)
                };
                self.publish(|s| {
                    s.process = ProcessState::Dead;
                    s.status = "killed".into();
                    s.exit_code = code;
                });
                let _ = reply.send(Ok(()));
            }
            Command::Leave => self.publish(|s| {
                s.state = PodState::Leaving;
                s.status = "leaving".into();
            }),
            Command::Forward(sig) => {
                if let Some(r) = &self.running {
                    tracing::info!(pid = r.pid(), signal = %sig, "forwarding signal to the process group");
                    let _ = r.signal_group(sig);
                }
            }
            Command::Shutdown { reply } => return Some(reply),
        }
        None
    }

    /// Applies a map: render, record, then start, reload, restart or keep the process.
    async fn on(&mut self, map: Option<ClusterMap>, origin: Origin) -> Result<Option<u64>, ControlError> {
        let now = self.current();
        if now.process == ProcessState::Dead {
            return Err(ControlError::Gone);
        }
        let previous = self.last_map.borrow().clone();
        let map = match map {
            Some(m) => m,
            None => previous.as_deref().cloned().ok_or(ControlError::NoMap)?,
        };
        super::admit(&self.ctx, &now, &map)?;
        let spec = &self.ctx.spec;
        let context = Context::new(spec, &map, previous.as_deref(), &self.ctx.env)
            .map_err(|e| ControlError::Failed(e.to_string()))?;
        let rendered = self
            .ctx
            .renderer
            .render_pod(&context)
            .map_err(|e| ControlError::Failed(e.to_string()))?;
        let changed = match &mut self.render_state {
            Some(state) => state
                .apply(&rendered)
                .map_err(|e| ControlError::Failed(e.to_string()))?,
            None => true,
        };
        let cluster_file = write_map(&self.ctx.state_dir.join("cluster.json"), &map)
            .map_err(|e| ControlError::Failed(format!("cannot write the cluster file: {e}")))?;
        let mut env = rendered.env.clone();
        env.extend(hook_env(&self.ctx, &map, &cluster_file));
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
        self.last_map.send_replace(Some(Arc::new(map)));
        self.rendered.send_replace(Some(Arc::new(rendered)));
        let held = now.state == PodState::Held;
        self.publish(|s| {
            s.generation = generation;
            s.epoch = epoch;
            s.configurations = s.configurations.saturating_add(1);
            s.dependencies = dependencies;
            if origin == Origin::Operator && matches!(s.state, PodState::Held | PodState::Failed) {
                s.state = PodState::Running;
            }
        });
        tracing::info!(generation, changed, ?origin, "cluster map applied");

        if origin == Origin::Operator {
            self.enabled = true;
        } else if held {
            // The leader skips held pods; if its `on` crossed an operator's `off`, the hold wins.
            return Ok(None);
        } else if spec.process.start {
            self.enabled = true;
        }
        if !self.enabled {
            self.publish(|s| s.status = "configured; waiting for an explicit on (start: false)".into());
            return Ok(None);
        }
        if self.running.is_some() {
            if spec.process.strict {
                self.restart("strict: every on restarts").await;
            } else if changed {
                self.reload_or_restart().await;
            } else {
                tracing::info!("configuration unchanged: the process keeps running");
            }
        } else {
            self.backoff.reset();
            self.restart_at = None;
            self.start().await;
            if self.running.is_none() {
                // pre_start, initialize or the spawn failed: the leader must not count this pod
                // as configured (the restart policy still retries in the background).
                let status = self.current().status;
                return Err(ControlError::Failed(format!(
                    "the process did not start: {status}"
                )));
            }
        }
        Ok(self.running.is_some().then(|| self.current().incarnation))
    }

    async fn reload_or_restart(&mut self) {
        let Some(reload) = self.ctx.spec.process.reload.clone() else {
            return self.restart("configuration changed").await;
        };
        let ok = match &reload.action {
            ReloadAction::Signal(sig) => match &self.running {
                Some(r) => {
                    tracing::info!(pid = r.pid(), signal = %sig, "configuration changed: reloading by signal");
                    r.signal_group(*sig).is_ok()
                }
                None => false,
            },
            ReloadAction::Command(line) => {
                let map = self.last_map.borrow().clone();
                match map {
                    Some(map) => {
                        match run_command(&self.ctx, "process.reload.command", line, &map, None).await {
                            Ok(out) if out.success() => true,
                            Ok(out) => {
                                tracing::warn!(code = out.exit.shell_code(), "reload command failed");
                                false
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "reload command failed");
                                false
                            }
                        }
                    }
                    None => false,
                }
            }
        };
        if !ok && reload.on_failure == ReloadFailure::Restart {
            self.restart("reload failed").await;
        }
    }

    async fn restart(&mut self, why: &str) {
        tracing::info!(reason = why, "restarting the process");
        self.stop_process().await;
        self.backoff.reset();
        self.start().await;
    }

    /// Runs `initialize` (once per state dir) and `pre_start`, then spawns the process.
    async fn start(&mut self) {
        let Some(launch) = self.launch.clone() else { return };
        if !self.enabled || self.running.is_some() {
            return;
        }
        if let Err(why) = self.hooks_before_start().await {
            tracing::error!(error = %why, "cannot start the process");
            return self
                .after_exit(
                    Exit {
                        code: Some(1),
                        signal: None,
                    },
                    Duration::ZERO,
                    &why,
                )
                .await;
        }
        match Running::spawn(&launch, &self.ctx.ring) {
            Ok(running) => {
                let pid = running.pid();
                tracing::info!(pid, "process started");
                self.running = Some(running);
                let ready = self.ctx.spec.checks.ready.is_none();
                self.publish(|s| {
                    s.process = ProcessState::Running;
                    s.pid = Some(pid);
                    s.incarnation = s.incarnation.wrapping_add(1);
                    s.ready = ready;
                    s.sanity_failures = 0;
                    s.status = if ready {
                        "running".into()
                    } else {
                        "running; waiting for the ready check".into()
                    };
                });
                self.spawn_checks();
            }
            Err(e) => {
                let why = format!("cannot spawn the process: {e}");
                tracing::error!(error = %e, "cannot spawn the process");
                // 127 is what a shell says for a command it cannot run.
                self.after_exit(
                    Exit {
                        code: Some(127),
                        signal: None,
                    },
                    Duration::ZERO,
                    &why,
                )
                .await;
            }
        }
    }

    async fn hooks_before_start(&mut self) -> Result<(), String> {
        let Some(map) = self.last_map.borrow().clone() else {
            return Ok(());
        };
        let hooks = self.ctx.spec.hooks.clone();
        let marker = self.ctx.state_dir.join("initialized");
        if let Some(hook) = &hooks.initialize {
            if !marker.exists() {
                let out = run_hook(&self.ctx, "hooks.initialize", hook, &map, None)
                    .await
                    .map_err(|e| e.to_string())?;
                if !out.success() {
                    return Err(format!("hooks.initialize: exit {}", out.exit.shell_code()));
                }
                std::fs::write(&marker, b"")
                    .map_err(|e| format!("cannot write {}: {e}", marker.display()))?;
            }
        }
        if let Some(hook) = &hooks.pre_start {
            let out = run_hook(&self.ctx, "hooks.pre_start", hook, &map, None)
                .await
                .map_err(|e| e.to_string())?;
            if !out.success() {
                return Err(format!("hooks.pre_start: exit {}", out.exit.shell_code()));
            }
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
            ?ran_for,
            "process exited"
        );
        self.after_exit(exit, ran_for, "").await;
    }

    /// Applies the restart policy after a run (or a failed start).
    async fn after_exit(&mut self, exit: Exit, ran_for: Duration, why: &str) {
        self.checks.cancel();
        let policy = self.ctx.spec.process.restart.policy;
        let done = match policy {
            RestartPolicy::Always => false,
            RestartPolicy::OnFailure => exit.success(),
            RestartPolicy::Never => true,
        };
        let what = if why.is_empty() {
            describe(exit)
        } else {
            why.to_string()
        };
        if done {
            self.enabled = false;
            self.finalize().await;
            let code = (!self.ctx.spec.process.linger).then(|| exit.shell_code());
            self.publish(|s| {
                s.process = ProcessState::Dead;
                s.pid = None;
                s.ready = false;
                s.last_exit = Some(exit);
                s.exit_code = code;
                s.status = format!("process ended for good: {what}");
            });
            return;
        }
        let delay = self.backoff.next_delay(ran_for);
        // A delay is at most max_backoff, itself at most spec::MAX_DURATION: a monotonic clock
        // cannot overflow adding that, but a panic here would take PID 1 down, so check anyway.
        self.restart_at = Instant::now().checked_add(delay);
        if self.restart_at.is_none() {
            tracing::error!(?delay, "restart delay out of range: not restarting");
        }
        self.publish(|s| {
            s.process = ProcessState::Stopped;
            s.pid = None;
            s.ready = false;
            s.last_exit = Some(exit);
            s.restarts = s.restarts.saturating_add(1);
            s.status = format!("{what}; restarting in {}", crate::spec::format_duration(delay));
        });
    }

    /// tear_down, stop signal to the group, grace, KILL. Nothing when the process is not running.
    async fn stop_process(&mut self) {
        self.checks.cancel();
        let Some(running) = self.running.take() else {
            return;
        };
        self.publish(|s| {
            s.process = ProcessState::Terminating;
            s.ready = false;
        });
        if let Some(hook) = self.ctx.spec.hooks.tear_down.clone() {
            let map = self.last_map.borrow().clone();
            if let Some(map) = map {
                if let Err(e) = run_hook(&self.ctx, "hooks.tear_down", &hook, &map, None).await {
                    tracing::warn!(error = %e, "tear_down failed; stopping anyway");
                }
            }
        }
        let stop = &self.ctx.spec.process.stop;
        let pid = running.pid();
        let exit = running.stop(stop.signal, stop.grace).await;
        tracing::info!(pid, code = exit.code, signal = exit.signal, "process stopped");
        self.publish(|s| {
            s.process = ProcessState::Stopped;
            s.pid = None;
            s.last_exit = Some(exit);
            s.status = "stopped".into();
        });
    }

    async fn finalize(&mut self) {
        let Some(hook) = self.ctx.spec.hooks.finalize.clone() else {
            return;
        };
        let map = self
            .last_map
            .borrow()
            .clone()
            .map(|m| (*m).clone())
            .unwrap_or_else(|| ClusterMap::of_one(&self.ctx.me, 0));
        if let Err(e) = run_hook(&self.ctx, "hooks.finalize", &hook, &map, None).await {
            tracing::warn!(error = %e, "finalize failed");
        }
    }

    async fn on_event(&mut self, event: Event) {
        let incarnation = self.current().incarnation;
        match event {
            Event::Ready(n) if n == incarnation && self.running.is_some() => {
                tracing::info!("ready check passed");
                self.publish(|s| {
                    s.ready = true;
                    s.status = "running".into();
                });
                self.spawn_sanity();
            }
            Event::Sanity(n, ok) if n == incarnation && self.running.is_some() => {
                let budget = self
                    .ctx
                    .spec
                    .checks
                    .sanity
                    .as_ref()
                    .map(|c| c.failures)
                    .unwrap_or(1);
                let failures = if ok {
                    0
                } else {
                    self.current().sanity_failures.saturating_add(1)
                };
                let spent = failures >= budget.max(1);
                // Unready in the same publish as the count that spends the budget, so that no
                // reader sees the pod ready with its budget spent.
                self.publish(|s| {
                    s.sanity_failures = failures;
                    if spent {
                        s.ready = false;
                    }
                });
                if spent {
                    tracing::error!(failures, "sanity check failed too often: turning the pod off");
                    self.enabled = false;
                    self.restart_at = None;
                    self.stop_process().await;
                    self.publish(|s| {
                        s.state = PodState::Failed;
                        s.sanity_failures = failures;
                        s.status =
                            format!("sanity check failed {failures} times in a row: off, marked failed");
                    });
                } else if !ok {
                    tracing::warn!(failures, budget, "sanity check failed");
                }
            }
            _ => {}
        }
    }

    /// Starts the ready and sanity check tasks of the run that just started.
    fn spawn_checks(&mut self) {
        self.checks.cancel();
        self.checks = CancellationToken::new();
        let Some(map) = self.last_map.borrow().clone() else {
            return;
        };
        let incarnation = self.current().incarnation;
        let checks = self.ctx.spec.checks.clone();
        if let Some(check) = &checks.ready {
            let check = PreparedCheck::new(&self.ctx, "checks.ready", check, &map);
            let (ring, token, tx) = (self.ctx.ring.clone(), self.checks.clone(), self.events_tx.clone());
            tokio::spawn(async move {
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
            });
        }
        if checks.ready.is_none() {
            self.spawn_sanity();
        }
    }

    /// Starts the sanity checks of the current run once it is ready: a slow starter is not
    /// failing while it boots.
    fn spawn_sanity(&mut self) {
        let Some(map) = self.last_map.borrow().clone() else {
            return;
        };
        let incarnation = self.current().incarnation;
        if let Some(check) = &self.ctx.spec.checks.sanity {
            let check = PreparedCheck::new(&self.ctx, "checks.sanity", check, &map);
            let (ring, token, tx) = (self.ctx.ring.clone(), self.checks.clone(), self.events_tx.clone());
            tokio::spawn(async move {
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
            });
        }
    }
}

fn describe(exit: Exit) -> String {
    match (exit.code, exit.signal) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "ended".into(),
    }
}

/// Writes a map as JSON, atomically (hooks may read it while a new one is written).
fn write_map(path: &std::path::Path, map: &ClusterMap) -> Result<PathBuf, String> {
    let json = serde_json::to_vec_pretty(map).map_err(|e| e.to_string())?;
    crate::render::write_atomic(path, &json, 0o600).map_err(|e| e.to_string())?;
    Ok(path.to_path_buf())
}

/// `OCHOPOD_CLUSTER_FILE` and `OCHOPOD_POD_JSON` for hooks and the process.
fn hook_env(ctx: &PodContext, map: &ClusterMap, cluster_file: &std::path::Path) -> BTreeMap<String, String> {
    let me = map.me().unwrap_or(&ctx.me);
    let mut env = BTreeMap::new();
    env.insert("OCHOPOD_CLUSTER_FILE".into(), cluster_file.display().to_string());
    env.insert(
        "OCHOPOD_POD_JSON".into(),
        serde_json::to_string(me).unwrap_or_default(),
    );
    env
}

/// Renders and runs a hook (a shell string) against `map`, with the map in a file of its own.
pub(super) async fn run_hook(
    ctx: &PodContext,
    what: &str,
    template: &str,
    map: &ClusterMap,
    stdin: Option<Vec<u8>>,
) -> Result<Output, ControlError> {
    run_command(ctx, what, &CommandLine::Shell(template.to_string()), map, stdin).await
}

/// Renders each part of `line` against `map` and runs it with the hook environment.
pub(super) async fn run_command(
    ctx: &PodContext,
    what: &str,
    line: &CommandLine,
    map: &ClusterMap,
    stdin: Option<Vec<u8>>,
) -> Result<Output, ControlError> {
    let fail = |e: String| ControlError::Failed(format!("{what}: {e}"));
    // Waits for a turn before anything else (the cluster file included). The semaphore is never
    // closed, so acquiring cannot fail.
    let _permit = ctx
        .hook_slots
        .acquire()
        .await
        .map_err(|_| fail("closed".into()))?;
    let context = Context::new(&ctx.spec, map, None, &ctx.env).map_err(|e| fail(e.to_string()))?;
    let render = |t: &str| {
        ctx.renderer
            .render_str(what, t, &context)
            .map_err(|e| fail(e.to_string()))
    };
    let line = match line {
        CommandLine::Shell(s) => CommandLine::Shell(render(s)?),
        CommandLine::Exec(v) => CommandLine::Exec(v.iter().map(|s| render(s)).collect::<Result<_, _>>()?),
    };
    let dir = ctx.state_dir.join("tmp");
    let file = dir.join(format!("cluster-{}.json", uuid::Uuid::new_v4()));
    write_map(&file, map).map_err(|e| fail(format!("cannot write the cluster file: {e}")))?;
    let env = hook_env(ctx, map, &file);
    let result = shell::run(what, &line, &env, stdin, ctx.spec.settings.timeout, &ctx.ring).await;
    let _ = std::fs::remove_file(&file);
    result.map_err(|e| ControlError::Failed(e.to_string()))
}

/// A check as one run of the process runs it: rendered once against the run's map (which does
/// not change during the run), then executed every `every`.
struct PreparedCheck {
    what: &'static str,
    /// None when it does not render: every run of it fails.
    script: Option<String>,
    env: BTreeMap<String, String>,
    every: Duration,
    /// A single run may not outlast the check's period (nor be shorter than a second).
    timeout: Duration,
}

impl PreparedCheck {
    fn new(ctx: &PodContext, what: &'static str, check: &Check, map: &ClusterMap) -> PreparedCheck {
        let script = Context::new(&ctx.spec, map, None, &ctx.env)
            .and_then(|context| ctx.renderer.render_str(what, &check.command, &context))
            .map_err(|e| tracing::warn!(error = %e, "{what} does not render: it fails until the next start"))
            .ok();
        PreparedCheck {
            what,
            script,
            env: hook_env(ctx, map, &ctx.state_dir.join("cluster.json")),
            every: check.every,
            timeout: check.every.max(Duration::from_secs(1)),
        }
    }

    /// One run; a failure to run counts as a failed check.
    async fn passes(&self, ring: &crate::logs::LogRing) -> bool {
        let Some(script) = &self.script else { return false };
        let line = CommandLine::Shell(script.clone());
        match shell::run(self.what, &line, &self.env, None, self.timeout, ring).await {
            Ok(out) => out.success(),
            Err(e) => {
                tracing::debug!(error = %e, "{} failed", self.what);
                false
            }
        }
    }
}
