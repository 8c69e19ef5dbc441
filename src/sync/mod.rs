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
//! The status has one writer, this actor: the member and leader tasks report to it
//! (`status::Report`, over a channel) and it applies what they say.
//!
//! Inside: `status` (what is published, the reports, pure), `world` (the leader's shared types),
//! `member` (election, leaving), `leader` (the watch-driven loop), `watches` and `cache` (the
//! leader's view of ZooKeeper, kept from events), `decide` (whether a configuration is due,
//! pure), `lost` (the lost-pods safety net, pure), `configure` (one configuration), [`calls`]
//! (HTTP to pods and local commands), [`plan`] (hash, diff, order, dependency resolution,
//! damper: pure), `seqs` (which seqs a configuration frees, pure).

mod cache;
pub mod calls;
mod configure;
mod decide;
pub mod delivery;
mod evictions;
mod leader;
mod lost;
mod member;
pub mod plan;
mod seqs;
mod status;
mod stop;
mod watches;
mod world;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use zookeeper_client as zkc;

use crate::model::{Pod, PodState};
use crate::spec::PodSpec;
use crate::zk::paths::ClusterPaths;
use crate::zk::{self, register, snapshot, Acls, Client, ZkConfig, ZkError};
use status::Report;

/// What the sync loop needs to start.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub spec: Arc<PodSpec>,
    /// The pod's identity; `seq` 0 means "claim one", > 0 "this one if possible" (state dir,
    /// StatefulSet ordinal + 1).
    pub me: Pod,
    /// Where the claimed seq is kept (`<state_dir>/seq`).
    pub state_dir: PathBuf,
    /// The uuid was made by this run, not read from the state dir: it cannot hold a seq yet, so
    /// the first claim does not look for one (`register::claim_seq`).
    pub new_uuid: bool,
    pub zk: ZkConfig,
    /// Signs the leader's calls to pods (None: no token set).
    pub signer: Option<crate::auth::Signer>,
    /// The supervise loop's view of the pod: the leader runs `apply` and `probe` through it
    /// (templates compiled once, the pod's log ring, its state dir).
    pub pod: Arc<crate::supervise::PodContext>,
}

pub use status::{configuration_bound, LeaderStats, PodCounts, Role, SyncStatus};

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
    ctx: Arc<world::Ctx>,
    /// What `/info` and `/metrics` show; written here only.
    status: watch::Sender<SyncStatus>,
    /// From the member and leader tasks (their sender is in `ctx`).
    reports: mpsc::UnboundedReceiver<Report>,
    /// The claimed seq (0 until claimed; at first the one given, if any), kept here: the
    /// status only shows it.
    seq: u32,
    /// The current session was resumed, not opened anew (it may hold an election node).
    resumed: bool,
    /// No claim was tried yet with a uuid this run made: none can hold a seq.
    fresh_uuid: bool,
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
        let (report, reports) = mpsc::unbounded_channel();
        let ctx = Arc::new(world::Ctx {
            spec: cfg.spec.clone(),
            uuid: cfg.me.uuid.clone(),
            paths: paths.clone(),
            acls,
            signer: cfg.signer.clone(),
            pod: cfg.pod.clone(),
            report,
        });
        Actor {
            ctx,
            status,
            reports,
            seq: cfg.me.seq,
            resumed: false,
            fresh_uuid: cfg.new_uuid,
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
        self.status.send_modify(f);
    }

    /// Applies what the member and leader tasks reported.
    fn report(&self, r: Report) {
        self.status.send_if_modified(|s| status::apply(s, r));
    }

    /// Applies every report waiting (the member task is over: nothing more comes from it).
    fn drain_reports(&mut self) {
        while let Ok(r) = self.reports.try_recv() {
            self.report(r);
        }
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
        let mut backoff = crate::backoff::Backoff::new(Duration::from_millis(250), max_delay).with_jitter();
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
                    Ok(c) => {
                        self.resumed = resuming;
                        return Some(c);
                    }
                    Err(e) => e,
                },
            };
            if resuming && matches!(err.source_error(), Some(zkc::Error::SessionExpired)) {
                tracing::info!("the previous session expired on the server, opening a new one");
                self.resume = None;
                continue;
            }
            attempt += 1;
            let wait = backoff.next_wait();
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
            !self.resumed,
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
                Some(r) = self.reports.recv() => self.report(r),
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
                        self.drain_reports();
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
        self.drain_reports();
        self.status(|s| {
            s.role = Role::Connecting;
            s.connected = false;
        });
        end
    }

    fn pod_with(&self, state: PodState) -> Pod {
        let seq = self.seq;
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
        let preferred = match (self.seq, self.cfg.me.seq) {
            (0, 0) => register::read_seq(&self.cfg.state_dir).unwrap_or(0),
            (0, given) => given,
            (claimed, _) => claimed,
        };
        // Whatever this claim's outcome, it may have created a seq (an answer lost with the
        // connection): the next one looks for it.
        let fresh = std::mem::take(&mut self.fresh_uuid);
        let seq = register::claim_seq(
            client,
            &self.paths,
            self.acls,
            &self.cfg.me.uuid,
            preferred,
            fresh,
        )
        .await?;
        if let Err(e) = register::persist_seq(&self.cfg.state_dir, seq) {
            tracing::warn!(error = %e, dir = %self.cfg.state_dir.display(), "cannot keep the seq in the state dir");
        }
        self.seq = seq;
        self.status(|s| s.seq = seq);
        let state = self.desired_state();
        register::publish(client, &self.paths, self.acls, &self.pod_with(state)).await?;
        // Only the generation: neither the pods nor, for a snapshot in parts, the parts.
        let generation = snapshot::generation(client, &self.paths.snapshot()).await?;
        tracing::info!(seq, uuid = %self.cfg.me.uuid, "registered");
        self.status(|s| {
            s.connected = true;
            s.generation = s.generation.max(generation);
            s.status = "registered".into();
        });
        Ok(state)
    }
}
