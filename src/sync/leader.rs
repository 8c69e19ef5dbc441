//! The leader loop: watch the cluster and its dependencies, and configure every pod when the
//! configuration changes (SPEC §3 settings, §6, §7).
//!
//! Driven by ZooKeeper watches, never by polling: a persistent recursive watch on the cluster's
//! `pods/` (arrivals, departures, state changes), and on each dependency's `pods/` and
//! `snapshot`, plus a persistent watch on `/ochopod/clusters` when a wildcard needs the list.
//! Each watch event only wakes the loop, which re-reads everything (events can be lost across a
//! reconnection, ZOOKEEPER-4698, so knowledge is always rebuilt, never patched).
//!
//! A configuration is due when the hash of (live pods, dependencies) differs from the snapshot's;
//! it then waits for `damper` of quiet (at most `damper_max` after the first change). The loop
//! ends when its token is cancelled (session over or shutdown) or when it is deposed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use zookeeper_client as zkc;

use super::calls::{last_line, run_local};
use super::configure::{configure, Evictions, Stop};
use super::plan::{self, Damper, Pods, ResolvedDep};
use super::SyncStatus;
use crate::model::ClusterMap;
use crate::render::{fields, Context, Renderer};
use crate::spec::{CommandLine, PodSpec};
use crate::zk::cluster::{self, HeldSeq, Registered};
use crate::zk::election::Candidate;
use crate::zk::paths::{ClusterPaths, CLUSTERS};
use crate::zk::snapshot::{self, Snapshot};
use crate::zk::{Acls, Client, ZkError};

/// What the leader needs from the sync loop.
pub(super) struct Ctx {
    pub spec: Arc<PodSpec>,
    pub uuid: String,
    pub paths: ClusterPaths,
    pub acls: Acls,
    pub token: Option<String>,
    pub state_dir: PathBuf,
    /// Read by `/info` (through the runtime); the leader writes role, status and generation.
    pub status: watch::Sender<SyncStatus>,
    /// For `settings.apply` and `settings.probe`, which are templates (SPEC §3); None when the
    /// pod.yaml's templates do not compile (the runtime refuses those before we get here).
    pub renderer: Option<Renderer>,
    /// The environment templates see as `env`.
    pub env: BTreeMap<String, String>,
}

impl Ctx {
    /// Renders a command field (`settings.apply` / `settings.probe`) for the leader's own pod
    /// against `map`; the command as written when there is no renderer.
    pub(super) fn command(
        &self,
        field: &str,
        written: &CommandLine,
        map: &ClusterMap,
    ) -> Result<CommandLine, String> {
        let Some(r) = &self.renderer else {
            return Ok(written.clone());
        };
        let mine = ClusterMap {
            key: self.uuid.clone(),
            ..map.clone()
        };
        let ctx = Context::new(&self.spec, &mine, None, &self.env).map_err(|e| e.to_string())?;
        r.render_command(field, &ctx).map_err(|e| e.to_string())
    }

    fn say(&self, status: String) {
        self.status.send_if_modified(|s| {
            let changed = s.status != status;
            s.status = status;
            changed
        });
    }
}

/// Everything the decision depends on, read afresh after every wake-up.
pub(super) struct World {
    pub registered: BTreeMap<String, Registered>,
    pub live: Pods,
    pub deps: BTreeMap<String, Pods>,
    pub resolved: Vec<ResolvedDep>,
    pub snapshot: Option<(Snapshot, i32)>,
    pub held: Vec<HeldSeq>,
    pub hash: String,
}

/// Forwards watch events into one wake-up channel; the watches go away with it.
struct Watches {
    wake: mpsc::Sender<()>,
    tasks: JoinSet<()>,
    paths: BTreeSet<(String, bool)>,
    /// Set by the watch tasks when the connection comes back: zookeeper-client 0.11.2 does not
    /// restore persistent watches on the server after a reconnection within the same session
    /// (its `resend_watches` never sends SetWatches2), so they must be added again ([`Self::renew`]).
    reconnected: Arc<AtomicBool>,
}

impl Watches {
    async fn add(&mut self, client: &Client, path: &str, recursive: bool) -> Result<(), ZkError> {
        if self.paths.contains(&(path.to_string(), recursive)) {
            return Ok(());
        }
        let mode = if recursive {
            zkc::AddWatchMode::PersistentRecursive
        } else {
            zkc::AddWatchMode::Persistent
        };
        let mut w = client
            .watch(path, mode)
            .await
            .map_err(ZkError::op("watching", path))?;
        self.paths.insert((path.to_string(), recursive));
        let wake = self.wake.clone();
        let reconnected = self.reconnected.clone();
        self.tasks.spawn(async move {
            loop {
                let event = w.changed().await;
                if event.event_type == zkc::EventType::Session
                    && event.session_state == zkc::SessionState::SyncConnected
                {
                    reconnected.store(true, Ordering::SeqCst);
                }
                // A full channel already holds a wake-up: coalescing is the point.
                let _ = wake.try_send(());
                // A persistent watcher panics if asked again after a terminal session event.
                if event.event_type == zkc::EventType::Session && event.session_state.is_terminated() {
                    break;
                }
            }
        });
        Ok(())
    }

    /// After a reconnection, drops every watch and adds it again (see `reconnected`). On failure
    /// the renewal stays due, for the next wake-up.
    async fn renew(&mut self, client: &Client) -> Result<(), ZkError> {
        if !self.reconnected.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        tracing::info!(watches = self.paths.len(), "connection back: watching again");
        let paths = std::mem::take(&mut self.paths);
        self.tasks.abort_all();
        for (path, recursive) in &paths {
            if let Err(e) = self.add(client, path, *recursive).await {
                self.paths.extend(paths.iter().cloned());
                self.reconnected.store(true, Ordering::SeqCst);
                return Err(e);
            }
        }
        Ok(())
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Leads until `stop` is cancelled; errors when deposed or when the session is lost.
pub(super) async fn lead(
    ctx: &Ctx,
    client: &Client,
    me: &Candidate,
    stop: &CancellationToken,
) -> Result<(), ZkError> {
    let settings = &ctx.spec.settings;
    let (wake_tx, mut wake) = mpsc::channel(1);
    let mut watches = Watches {
        wake: wake_tx,
        tasks: JoinSet::new(),
        paths: BTreeSet::new(),
        reconnected: Arc::new(AtomicBool::new(false)),
    };
    watches.add(client, &ctx.paths.pods(), true).await?;
    if ctx.spec.depends_on.iter().any(|d| plan::is_pattern(&d.cluster)) {
        watches.add(client, CLUSTERS, false).await?;
    }
    let mut pending = Pending {
        damper: Damper::new(settings.damper, settings.damper_max),
        ..Pending::default()
    };
    let mut evictions = Evictions::default();
    let mut next_probe = settings.probe.as_ref().map(|_| Instant::now());
    loop {
        let read = match watches.renew(client).await {
            Ok(()) => observe(ctx, client, &evictions).await,
            Err(e) => Err(e),
        };
        let world = match read {
            Ok(w) => Some(w),
            Err(e) if e.is_session_lost() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cluster, retrying");
                ctx.say(format!("leader: cannot read the cluster: {e}"));
                None
            }
        };
        if let Some(world) = &world {
            for dep in &world.resolved {
                let p = ClusterPaths::new(&dep.key);
                watches.add(client, &p.pods(), true).await?;
                watches.add(client, &p.snapshot(), false).await?;
            }
            ctx.say(pending.decide(&ctx.spec, world, Instant::now()));
        }
        // After a failed read, the watches wake us on reconnection; this timer only covers an
        // error they will not report.
        let retry_read = world.is_none().then(|| Instant::now() + Duration::from_secs(1));
        let deadline = if world.is_some() {
            pending.damper.deadline()
        } else {
            None
        };
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = wake.recv() => {}
            _ = sleep_until(retry_read) => {}
            _ = sleep_until(deadline) => {
                let Some(world) = world else { continue };
                ctx.say(format!("configuring {} pods", world.live.len()));
                match configure(ctx, client, me, &world, &mut evictions).await {
                    Ok(generation) => {
                        pending.done();
                        ctx.status.send_modify(|s| s.generation = generation);
                        tracing::info!(generation, pods = world.live.len(), "cluster configured");
                    }
                    Err(Stop::Zk(e)) if e.is_session_lost() || matches!(e, ZkError::Deposed { .. }) => return Err(e),
                    Err(why) => {
                        tracing::warn!(reason = %why, "configuration did not complete, retrying after the damper");
                        pending.failed(why.to_string(), Instant::now());
                    }
                }
            }
            _ = sleep_until(next_probe) => {
                if let Some(probe) = &settings.probe {
                    pending.probe = Some(run_probe(ctx, client, &probe.command).await);
                    next_probe = Some(Instant::now() + probe.every);
                }
            }
        }
    }
}

/// The leader's pending change and the words for it.
#[derive(Default)]
struct Pending {
    damper: Damper,
    /// The hash last seen, to tell a new change from the same one seen again.
    seen: Option<String>,
    /// Why the last attempt failed, until one succeeds or the cluster is back as configured.
    failure: Option<String>,
    /// The probe's last line, shown while nothing else is going on.
    probe: Option<String>,
}

impl Pending {
    /// Updates the damper from a fresh view of the world; returns the status line.
    fn decide(&mut self, spec: &PodSpec, w: &World, now: Instant) -> String {
        let changed = self.seen.as_deref() != Some(w.hash.as_str());
        self.seen = Some(w.hash.clone());
        let snapshot = w.snapshot.as_ref().map(|(s, _)| s);
        if let Some(s) = snapshot.filter(|s| s.hash == w.hash) {
            self.damper.clear();
            self.failure = None;
            return match &self.probe {
                Some(line) => line.clone(),
                None => format!("configured: {} pods, generation {}", s.pods.len(), s.generation),
            };
        }
        if snapshot.is_none() {
            let min = spec.settings.min_size;
            if w.live.len() < min {
                self.damper.clear();
                return format!("waiting for min_size: {}/{min} pods", w.live.len());
            }
            if let Some((d, n)) = plan::unmet_min(&spec.depends_on, &w.resolved, &w.deps) {
                self.damper.clear();
                return format!("waiting for dependency {}: {n}/{} pods", d.cluster, d.min);
            }
        }
        if changed || self.damper.deadline().is_none() {
            self.damper.changed(now);
        }
        let wait = self
            .damper
            .deadline()
            .map(|d| d.saturating_duration_since(now))
            .unwrap_or_default();
        let wait = crate::spec::format_duration(Duration::from_millis(wait.as_millis() as u64));
        match &self.failure {
            Some(f) => format!("configuration failed: {f}; retrying in {wait}"),
            None => format!("change pending: configuring {} pods in {wait}", w.live.len()),
        }
    }

    fn done(&mut self) {
        self.damper.clear();
        self.failure = None;
    }

    /// A veto or a failure waits `damper` again.
    fn failed(&mut self, why: String, now: Instant) {
        self.damper.retry(now);
        self.failure = Some(why);
    }
}

/// Reads the cluster, its snapshot and its dependencies.
async fn observe(ctx: &Ctx, client: &Client, evictions: &Evictions) -> Result<World, ZkError> {
    let spec = &ctx.spec;
    let registered = cluster::registered(client, &ctx.paths).await?;
    let limit = spec.settings.evict_after.max(1);
    let live: Pods = registered
        .values()
        .filter(|r| r.pod.state.is_live() && evictions.count(r) < limit)
        .map(|r| (r.pod.uuid.clone(), r.pod.clone()))
        .collect();
    let clusters = if spec.depends_on.iter().any(|d| plan::is_pattern(&d.cluster)) {
        cluster::list_clusters(client).await?
    } else {
        Vec::new()
    };
    let resolved = plan::resolve(&spec.namespace, &ctx.paths.key, &spec.depends_on, &clusters);
    let mut deps = BTreeMap::new();
    for r in &resolved {
        deps.insert(r.name.clone(), cluster::dependency_pods(client, &r.key).await?);
    }
    let snapshot = snapshot::read(client, &ctx.paths.snapshot()).await?;
    let held = cluster::held_seqs(client, &ctx.paths).await?;
    let hash = plan::config_hash(&live, &deps);
    Ok(World {
        registered,
        live,
        deps,
        resolved,
        snapshot,
        held,
        hash,
    })
}

/// Runs `settings.probe` against the last configuration; its stdout's last line is the status.
async fn run_probe(ctx: &Ctx, client: &Client, written: &CommandLine) -> String {
    let last = match snapshot::read(client, &ctx.paths.snapshot()).await {
        Ok(Some((s, _))) if s.pods.contains_key(&ctx.uuid) => s,
        Ok(_) => return "probe: waiting for a configuration with this pod".into(),
        Err(e) => return format!("probe: {e}"),
    };
    let map = ClusterMap {
        generation: last.generation,
        pods: last.pods,
        ..ClusterMap::default()
    };
    let command = match ctx.command(fields::PROBE, written, &map) {
        Ok(c) => c,
        Err(e) => return format!("probe: {e}"),
    };
    match run_local(&command, None, ctx.spec.settings.timeout).await {
        Ok(out) => last_line(&out).unwrap_or_default(),
        Err(e) => format!("probe failed: {e}"),
    }
}
