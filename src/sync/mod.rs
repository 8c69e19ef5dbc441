//! The sync loop: the pod's life in ZooKeeper (SPEC §1.1, §4, §6).
//!
//! Owns the ZooKeeper session. It connects (retrying with backoff while ZooKeeper is down),
//! registers the pod (seq claim, ephemeral znode), joins the election, and when it leads runs the
//! leader loop (`leader`) that configures every pod of the cluster. It receives the pod's own
//! state (`pod_state`, from supervise) and writes it into the pod's znode, and commands from
//! [`Handle`] (`/reset`, leaving, deregistering). It emits [`SyncStatus`] on a watch channel for
//! `/info`.
//!
//! Faults: a connection loss keeps everything running (the client reconnects on its own, watches
//! come back); a session that ends (expired, auth failed, closed, or `/reset`) is replaced by a
//! new one and the pod registers again as itself, same uuid and seq. The process is never touched
//! from here. Shuts down when the shutdown token is cancelled (the session is closed, the pod's
//! ephemeral nodes go with it) or after [`Handle::deregister`].
//!
//! Inside: `member` (election, leaving), `leader` (the watch-driven loop), `decide` (whether a
//! configuration is due, pure), `lost` (the lost-pods safety net, pure), `configure` (one
//! configuration), [`calls`] (HTTP to pods and local commands), [`plan`] (hash, diff, order,
//! dependency resolution, damper: pure).

pub mod calls;
mod configure;
mod decide;
pub mod delivery;
mod leader;
mod lost;
mod member;
pub mod plan;
mod stop;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use zookeeper_client as zkc;

use crate::model::{Pod, PodState};
use crate::spec::PodSpec;
use crate::zk::paths::ClusterPaths;
use crate::zk::{self, register, snapshot, Acls, Client, ZkConfig, ZkError};

/// What the sync loop needs to start.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub spec: Arc<PodSpec>,
    /// The pod's identity; `seq` 0 means "claim one", > 0 "this one if possible" (state dir,
    /// StatefulSet ordinal + 1).
    pub me: Pod,
    /// Where the claimed seq is kept (`<state_dir>/seq`).
    pub state_dir: PathBuf,
    pub zk: ZkConfig,
    /// Signs the leader's calls to pods (None: no token set).
    pub signer: Option<crate::auth::Signer>,
    /// The supervise loop's view of the pod: the leader runs `apply` and `probe` through it
    /// (templates compiled once, the pod's log ring, its state dir).
    pub pod: Arc<crate::supervise::PodContext>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No session, or not registered yet.
    Connecting,
    Follower,
    Leader,
}

/// What `/info` shows of the sync loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncStatus {
    pub role: Role,
    /// One human line: what the loop is doing or waiting for, and why.
    pub status: String,
    /// The claimed seq (0 until claimed).
    pub seq: u32,
    /// Whether the session is connected right now.
    pub connected: bool,
    /// The cluster's last configuration known here (the snapshot's generation).
    pub generation: u64,
    /// While leading: registrations under `pods/` refused as invalid (left out of every map).
    pub rejected: usize,
    /// What the leader saw and did (`/metrics`); meaningful while `role` is `Leader`.
    pub leader: LeaderStats,
}

/// What a leader publishes about its cluster and its configurations (`/metrics`). Everything but
/// the attempt counters starts afresh with each leadership.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderStats {
    /// `settings.min_size`.
    pub min_size: usize,
    /// Registered pods by their state, as last read.
    pub pods: PodCounts,
    /// Pods a configuration includes: running and not evicted.
    pub live: usize,
    /// Running pods left out after failing `evict_after` times.
    pub evicted: usize,
    /// The cluster's pause, as last read (an operator's, or this leader's for `max_lost`).
    pub paused: Option<crate::zk::pause::Pause>,
    /// Pods of the last configuration that vanished without leaving (`settings.max_lost`).
    pub lost: usize,
    /// The longest a configuration of the live pods may take ([`configuration_bound`]).
    pub bound: Duration,
    /// When the configuration under way started.
    pub configuring: Option<std::time::Instant>,
    /// The last configuration that ended: how long it took, whether it succeeded.
    pub last: Option<(Duration, bool)>,
    /// When the last successful configuration ended.
    pub last_success: Option<std::time::SystemTime>,
    /// Configurations this pod ran while leading (all its leaderships), by result.
    pub succeeded: u64,
    pub failed: u64,
}

/// Registered pods by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodCounts {
    pub running: usize,
    pub held: usize,
    pub failed: usize,
    pub leaving: usize,
}

impl LeaderStats {
    /// A leadership starts: nothing seen or configured yet (the counters go on).
    fn lead(&mut self, min_size: usize) {
        *self = LeaderStats {
            min_size,
            succeeded: self.succeeded,
            failed: self.failed,
            ..LeaderStats::default()
        };
    }

    /// The cluster as just read. False when nothing changed.
    fn observed(&mut self, w: &leader::World, settings: &crate::spec::Settings) -> bool {
        let mut pods = PodCounts::default();
        for r in w.registered.values() {
            let n = match r.pod.state {
                PodState::Running => &mut pods.running,
                PodState::Held => &mut pods.held,
                PodState::Failed => &mut pods.failed,
                PodState::Leaving => &mut pods.leaving,
            };
            *n = n.saturating_add(1);
        }
        let paused = w.paused.as_ref().map(|(p, _)| p.clone());
        let before = (self.pods, self.live, self.evicted, self.bound, self.lost);
        let pause_changed = self.paused != paused;
        self.pods = pods;
        self.live = w.live.len();
        self.evicted = w.evicted.len();
        self.bound = configuration_bound(settings, w.live.len());
        self.paused = paused;
        self.lost = w.lost.len();
        pause_changed || before != (self.pods, self.live, self.evicted, self.bound, self.lost)
    }

    fn started(&mut self) {
        self.configuring = Some(std::time::Instant::now());
    }

    fn finished(&mut self, ok: bool) {
        let took = self.configuring.take().map_or(Duration::ZERO, |t| t.elapsed());
        self.last = Some((took, ok));
        if ok {
            self.last_success = Some(std::time::SystemTime::now());
            self.succeeded = self.succeeded.saturating_add(1);
        } else {
            self.failed = self.failed.saturating_add(1);
        }
    }
}

/// The longest a configuration of `pods` pods can take when every call uses up its
/// `settings.timeout` (SPEC §3): a round of `check`, of `off` with `full_shutdown`, of `on` (one
/// call per pod when `sequential`), of `ok`, each round `parallelism` calls at a time, then
/// `apply`. ZooKeeper round trips come on top.
pub fn configuration_bound(settings: &crate::spec::Settings, pods: usize) -> Duration {
    let rounds = pods.max(1).div_ceil(settings.parallelism.max(1));
    let on = if settings.sequential { pods.max(1) } else { rounds };
    let off = if settings.full_shutdown { rounds } else { 0 };
    let apply = usize::from(settings.apply.is_some());
    let calls = rounds
        .saturating_mul(2)
        .saturating_add(on)
        .saturating_add(off)
        .saturating_add(apply);
    settings
        .timeout
        .saturating_mul(u32::try_from(calls).unwrap_or(u32::MAX))
}

/// Requests to the sync loop; each answers on its oneshot once done.
#[derive(Debug)]
enum Command {
    /// Drop the session and register again (`POST /reset`).
    Reset(oneshot::Sender<()>),
    /// Mark the pod `leaving`, then answer once a snapshot without it exists, or after `drain`.
    Leave(Duration, oneshot::Sender<()>),
    /// Delete the pod's znode, close the session and stop.
    Deregister(oneshot::Sender<()>),
}

/// Talks to the sync loop. Cloneable; every call is a no-op once the loop has stopped.
#[derive(Debug, Clone)]
pub struct Handle {
    /// The other end is held by the sync loop's actor.
    tx: mpsc::Sender<Command>,
}

impl Handle {
    async fn ask(&self, make: impl FnOnce(oneshot::Sender<()>) -> Command) {
        let (reply, done) = oneshot::channel();
        if self.tx.send(make(reply)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// Drops the ZooKeeper session and registers again; the process keeps running.
    pub async fn reset(&self) {
        self.ask(Command::Reset).await
    }

    /// Marks the pod `leaving` and waits up to `drain` for a configuration without it.
    pub async fn leave(&self, drain: Duration) {
        self.ask(|r| Command::Leave(drain, r)).await
    }

    /// Deletes the pod's znode and closes the session; the loop stops.
    pub async fn deregister(&self) {
        self.ask(Command::Deregister).await
    }
}

/// Starts the sync loop.
pub fn spawn(
    cfg: SyncConfig,
    pod_state: watch::Receiver<PodState>,
    shutdown: CancellationToken,
) -> (Handle, watch::Receiver<SyncStatus>) {
    let (tx, rx) = mpsc::channel(8);
    let initial = SyncStatus {
        role: Role::Connecting,
        status: format!("connecting to ZooKeeper at {}", cfg.zk.connect),
        seq: cfg.me.seq,
        connected: false,
        generation: 0,
        rejected: 0,
        leader: LeaderStats::default(),
    };
    let (status_tx, status_rx) = watch::channel(initial);
    let actor = Actor::new(cfg, pod_state, status_tx, rx, shutdown);
    tokio::spawn(async move {
        let span = tracing::info_span!("sync");
        let _ = tracing::Instrument::instrument(actor.run(), span).await;
    });
    (Handle { tx }, status_rx)
}

/// The sync loop's state, owned by one task.
struct Actor {
    ctx: Arc<leader::Ctx>,
    cfg: SyncConfig,
    paths: ClusterPaths,
    acls: Acls,
    /// From supervise: the pod's own state.
    pod_state: watch::Receiver<PodState>,
    /// From [`Handle`].
    commands: mpsc::Receiver<Command>,
    shutdown: CancellationToken,
    /// Set by `leave`: overrides `pod_state` in the znode from then on.
    leaving: bool,
    /// The last session, to re-establish rather than replace after the client gave it up
    /// (ZooKeeper gone longer than the client waits, see [`zk::try_resume`]); None after a
    /// `/reset` or an end the server decided.
    resume: Option<zk::SessionInfo>,
}

/// How one session ended.
enum SessionEnd {
    /// Build a new session and register again.
    Again,
    /// Stop the loop.
    Stop,
}

impl Actor {
    fn new(
        cfg: SyncConfig,
        pod_state: watch::Receiver<PodState>,
        status: watch::Sender<SyncStatus>,
        commands: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
    ) -> Actor {
        let paths = ClusterPaths::new(&cfg.spec.key());
        let acls = Acls::new(&cfg.zk);
        let ctx = Arc::new(leader::Ctx {
            spec: cfg.spec.clone(),
            uuid: cfg.me.uuid.clone(),
            paths: paths.clone(),
            acls,
            signer: cfg.signer.clone(),
            pod: cfg.pod.clone(),
            status,
        });
        Actor {
            ctx,
            cfg,
            paths,
            acls,
            pod_state,
            commands,
            shutdown,
            leaving: false,
            resume: None,
        }
    }

    fn status(&self, f: impl FnOnce(&mut SyncStatus)) {
        self.ctx.status.send_modify(f);
    }

    fn desired_state(&self) -> PodState {
        if self.leaving {
            PodState::Leaving
        } else {
            *self.pod_state.borrow()
        }
    }

    async fn run(mut self) {
        loop {
            let Some(client) = self.connect().await else {
                return;
            };
            match self.session(client).await {
                SessionEnd::Again => continue,
                SessionEnd::Stop => return,
            }
        }
    }

    /// Connects, backing off while ZooKeeper is unreachable. None: stop (shutdown or deregister).
    async fn connect(&mut self) -> Option<Client> {
        // At least 4 attempts per session timeout: a restarted ZooKeeper gives the sessions it
        // restores one timeout to come back, and a pod back in time keeps its registration.
        let max_delay =
            (self.cfg.zk.session_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(10));
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(250))
            .with_max_delay(max_delay)
            .with_jitter()
            .without_max_times()
            .build();
        let mut attempt = 0u32;
        loop {
            self.status(|s| {
                s.role = Role::Connecting;
                s.connected = false;
            });
            let resume = self.resume.clone();
            let resuming = resume.is_some();
            let attempt_once = async {
                match resume {
                    Some(session) => zk::try_resume(&self.cfg.zk, session).await,
                    None => zk::try_connect(&self.cfg.zk).await,
                }
            };
            let err = tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                r = attempt_once => match r {
                    Ok(c) => return Some(c),
                    Err(e) => e,
                },
            };
            if resuming && matches!(err.source_error(), Some(zkc::Error::SessionExpired)) {
                tracing::info!("the previous session expired on the server, opening a new one");
                self.resume = None;
                continue;
            }
            attempt += 1;
            let wait = backoff.next().unwrap_or(Duration::from_secs(10));
            tracing::warn!(error = %err, attempt, retry_in = ?wait, "ZooKeeper unreachable");
            self.status(|s| {
                s.status = format!(
                    "{err} (attempt {attempt}); retrying in {}",
                    crate::spec::format_duration(wait)
                )
            });
            if !self.idle(wait).await {
                return None;
            }
        }
    }

    /// Waits, still answering commands (there is no session to act on). False: stop.
    async fn idle(&mut self, wait: Duration) -> bool {
        let until = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                _ = tokio::time::sleep_until(until) => return true,
                cmd = self.commands.recv() => match cmd {
                    None => return false,
                    Some(Command::Deregister(reply)) => { let _ = reply.send(()); return false }
                    Some(Command::Reset(reply)) => { self.resume = None; let _ = reply.send(()); return true }
                    Some(Command::Leave(_, reply)) => { self.leaving = true; let _ = reply.send(()); }
                },
            }
        }
    }

    /// Registers, then serves one session until it ends.
    async fn session(&mut self, client: Client) -> SessionEnd {
        tracing::info!(session = %client.session_id(), "ZooKeeper session established");
        self.resume = Some(client.session().clone());
        let mut states = client.state_watcher();
        let mut written = loop {
            match self.register(&client).await {
                Ok(state) => break Some(state),
                Err(e) if e.is_session_lost() => return SessionEnd::Again,
                // A tree ochopod may not trust (zk::acl): the loop ends, the runtime exits 2.
                Err(e) if e.is_fatal() => {
                    tracing::error!(error = %e, "refusing to run on this ZooKeeper tree");
                    self.status(|s| s.status = format!("refusing to run: {e}"));
                    return SessionEnd::Stop;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "registration failed, retrying");
                    self.status(|s| s.status = format!("registration failed: {e}; retrying"));
                    if !self.idle(Duration::from_secs(1)).await {
                        return SessionEnd::Stop;
                    }
                    if client.state().is_terminated() {
                        return SessionEnd::Again;
                    }
                }
            }
        };
        let member_stop = self.shutdown.child_token();
        let member = tokio::spawn(member::member(
            self.ctx.clone(),
            client.clone(),
            member_stop.clone(),
        ));
        let mut supervise_gone = false;
        let end = loop {
            // Rewrite the znode when the wanted state differs from the one written (changes seen
            // while disconnected are written on reconnection).
            let want = self.desired_state();
            if written != Some(want) && client.state() == zkc::SessionState::SyncConnected {
                match register::update(&client, &self.paths, &self.pod_with(want)).await {
                    Ok(()) => written = Some(want),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot write the pod's state, retrying on reconnection")
                    }
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => break SessionEnd::Stop,
                r = self.pod_state.changed(), if !supervise_gone => {
                    // supervise is gone (the process ended for good): nothing more will change,
                    // but commands (deregister above all) must still be served.
                    supervise_gone = r.is_err();
                }
                state = states.changed() => {
                    let connected = state == zkc::SessionState::SyncConnected;
                    self.status(|s| s.connected = connected);
                    if state.is_terminated() {
                        tracing::warn!(?state, "ZooKeeper session ended, registering again");
                        // Expired may be the client's own verdict (no server for 1.4 x the
                        // timeout): worth one attempt to resume. Anything else is final.
                        if state != zkc::SessionState::Expired {
                            self.resume = None;
                        }
                        break SessionEnd::Again;
                    }
                    if !connected {
                        tracing::warn!(?state, "ZooKeeper connection lost, waiting for it to come back");
                        self.status(|s| s.status = "ZooKeeper connection lost; reconnecting (the process keeps running)".into());
                    } else {
                        tracing::info!("ZooKeeper connection back");
                        // The leader loop rewrites its own line when its watches wake it up.
                        self.status(|s| s.status = match s.role {
                            Role::Leader => "leading".into(),
                            _ => "following".into(),
                        });
                    }
                }
                cmd = self.commands.recv() => match cmd {
                    None => break SessionEnd::Stop,
                    Some(Command::Reset(reply)) => {
                        tracing::info!("reset: dropping the session");
                        self.resume = None;
                        let _ = reply.send(());
                        break SessionEnd::Again;
                    }
                    Some(Command::Deregister(reply)) => {
                        member_stop.cancel();
                        let _ = member.await;
                        // Bounded: with ZooKeeper unreachable, closing the session (below) is all
                        // that can be done, and its expiry removes the znode.
                        let withdraw = register::withdraw(&client, &self.paths, &self.cfg.me.uuid);
                        match tokio::time::timeout(self.cfg.zk.session_timeout, withdraw).await {
                            Ok(Ok(())) => tracing::info!("deregistered"),
                            Ok(Err(e)) => tracing::warn!(error = %e, "cannot delete the pod's znode; closing the session removes it"),
                            Err(_) => tracing::warn!("ZooKeeper did not answer; closing the session removes the pod's znode"),
                        }
                        self.status(|s| { s.role = Role::Connecting; s.connected = false; s.status = "deregistered".into() });
                        drop(client);
                        let _ = reply.send(());
                        return SessionEnd::Stop;
                    }
                    Some(Command::Leave(drain, reply)) => {
                        self.leaving = true;
                        tokio::spawn(member::drain_then_reply(client.clone(), self.paths.clone(), self.cfg.me.uuid.clone(), drain, member_stop.clone(), reply));
                    }
                },
            }
        };
        // Every clone of the client must go for the session to close: stop the member first.
        member_stop.cancel();
        let _ = member.await;
        self.status(|s| {
            s.role = Role::Connecting;
            s.connected = false;
        });
        end
    }

    fn pod_with(&self, state: PodState) -> Pod {
        let seq = self.ctx.status.borrow().seq;
        Pod {
            seq,
            state,
            ..self.cfg.me.clone()
        }
    }

    /// Claims the seq, publishes the pod; returns the state written.
    async fn register(&mut self, client: &Client) -> Result<PodState, ZkError> {
        register::ensure_layout(client, &self.paths, self.acls).await?;
        zk::acl::secure(client, &self.paths, &self.cfg.zk).await?;
        // This session's claim, else the identity given (StatefulSet ordinal + 1), else the one
        // kept in the state dir by an earlier run.
        let preferred = match (self.ctx.status.borrow().seq, self.cfg.me.seq) {
            (0, 0) => register::read_seq(&self.cfg.state_dir).unwrap_or(0),
            (0, given) => given,
            (claimed, _) => claimed,
        };
        let seq = register::claim_seq(client, &self.paths, self.acls, &self.cfg.me.uuid, preferred).await?;
        if let Err(e) = register::persist_seq(&self.cfg.state_dir, seq) {
            tracing::warn!(error = %e, dir = %self.cfg.state_dir.display(), "cannot keep the seq in the state dir");
        }
        self.status(|s| s.seq = seq);
        let state = self.desired_state();
        register::publish(client, &self.paths, self.acls, &self.pod_with(state)).await?;
        let generation = snapshot::read(client, &self.paths.snapshot())
            .await?
            .map_or(0, |(s, _)| s.generation);
        tracing::info!(seq, uuid = %self.cfg.me.uuid, "registered");
        self.status(|s| {
            s.connected = true;
            s.generation = s.generation.max(generation);
            s.status = "registered".into();
        });
        Ok(state)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn settings(yaml: &str) -> crate::spec::Settings {
        let text = format!("cluster: c\nsettings: {yaml}\nprocess: {{ command: 'true' }}\n");
        crate::spec::load_with_env(std::path::Path::new("pod.yaml"), &text, &|_| None)
            .unwrap()
            .settings
            .clone()
    }

    #[test]
    fn a_configuration_is_bounded_by_one_timeout_per_round_of_calls() {
        let secs = Duration::from_secs;
        // check, on, ok: one round each with the default parallelism.
        assert_eq!(configuration_bound(&settings("{ timeout: 10s }"), 5), secs(30));
        // Two at a time: 3 rounds per phase for 5 pods.
        assert_eq!(
            configuration_bound(&settings("{ timeout: 10s, parallelism: 2 }"), 5),
            secs(90)
        );
        // One by one: one `on` per pod; off and apply add theirs.
        let all =
            settings("{ timeout: 10s, sequential: true, full_shutdown: true, apply: { command: 'true' } }");
        assert_eq!(configuration_bound(&all, 5), secs(10 * (1 + 5 + 1 + 1 + 1)));
        // No pods yet still means one round.
        assert_eq!(configuration_bound(&settings("{ timeout: 10s }"), 0), secs(30));
    }

    #[test]
    fn a_new_leadership_keeps_only_the_attempt_counters() {
        let mut s = LeaderStats::default();
        s.lead(3);
        s.started();
        assert!(s.configuring.is_some());
        s.finished(false);
        s.started();
        s.finished(true);
        assert_eq!((s.succeeded, s.failed), (1, 1));
        assert!(s.configuring.is_none() && s.last_success.is_some());
        assert_eq!(s.last.map(|(_, ok)| ok), Some(true));
        s.lead(2);
        assert_eq!((s.succeeded, s.failed, s.min_size), (1, 1, 2));
        assert!(s.last.is_none() && s.last_success.is_none());
    }
}
