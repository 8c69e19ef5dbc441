//! The leader loop: watch the cluster and its dependencies, and configure every pod when the
//! configuration changes (SPEC §3 settings, §6, §7).
//!
//! Driven by ZooKeeper watches, never by polling: a persistent recursive watch on the cluster's
//! `pods/` (arrivals, departures, state changes), a persistent one on its `paused` node, and on
//! each dependency's `pods/` and `snapshot`, plus a persistent watch on `/ochopod/clusters` when a
//! wildcard needs the list.
//! Each watch event only wakes the loop, which re-reads everything (events can be lost across a
//! reconnection, ZOOKEEPER-4698, so knowledge is always rebuilt, never patched).
//!
//! A configuration is due when the hash of (live pods, dependencies) differs from the snapshot's;
//! it then waits for `damper` of quiet (at most `damper_max` after the first change). The loop
//! ends when its token is cancelled (session over or shutdown) or when it is deposed.
//!
//! Dependency cycles (SPEC §3: an error): the leader publishes its cluster's `depends_on`
//! (resolved keys) in the snapshot, before the first configuration too (generation 0), follows
//! its dependencies' snapshots transitively (bounded, each watched), and while a path leads back
//! to its own cluster it says so in its status and configures nothing.
//!
//! Pause (SPEC §6 `paused`): while the node exists the leader configures nothing (a
//! configuration under way finishes). With `settings.max_lost`, the leader writes it itself when
//! too many pods of the last configuration are lost, and lifts it when they are back
//! ([`super::lost`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use zookeeper_client as zkc;

use super::calls::last_line;
use super::configure::{configure, evicted, Evictions, Stop};
use super::decide::{resignation, Pending};
use super::delivery::Delivered;
use super::lost::{NetAction, SafetyNet};
use super::plan::{self, Pods, ResolvedDep};
use super::SyncStatus;
use crate::model::ClusterMap;
use crate::render::fields;
use crate::spec::{CommandLine, PodSpec};
use crate::zk::cluster::{self, HeldSeq, Registered, Rejected};
use crate::zk::election::Candidate;
use crate::zk::paths::{is_cluster_key, ClusterPaths, CLUSTERS};
use crate::zk::pause::{self, Pause};
use crate::zk::snapshot::{self, DependencyRecord, Snapshot};
use crate::zk::{Acls, Client, ZkError};

/// What the leader needs from the sync loop.
pub(super) struct Ctx {
    pub spec: Arc<PodSpec>,
    pub uuid: String,
    pub paths: ClusterPaths,
    pub acls: Acls,
    /// Signs the control calls to pods (None: no token set).
    pub signer: Option<crate::auth::Signer>,
    /// The pod as the supervise loop knows it: `apply` and `probe` run through it.
    pub pod: Arc<crate::supervise::PodContext>,
    /// Read by `/info` (through the runtime); the leader writes role, status and generation.
    pub status: watch::Sender<SyncStatus>,
}

impl Ctx {
    /// Runs a command field (`settings.apply` / `settings.probe`) on the leader's own pod, as
    /// hooks run (SPEC §4): rendered for this pod against `map`, with the map in
    /// `$OCHOPOD_CLUSTER_FILE` and the pod in `$OCHOPOD_POD_JSON`. Returns its stdout, or why it
    /// failed.
    pub(super) async fn run(
        &self,
        field: &str,
        written: &CommandLine,
        map: &ClusterMap,
    ) -> Result<String, String> {
        let mine = ClusterMap {
            key: self.uuid.clone(),
            ..map.clone()
        };
        match crate::supervise::run_with_map(&self.pod, field, written, &mine).await {
            Ok(out) if out.success() => Ok(out.stdout),
            Ok(out) => Err(format!(
                "exit {}: {}",
                out.exit.shell_code(),
                last_line(&out.stderr).unwrap_or_default()
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    pub(super) fn say(&self, status: String) {
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
    /// This cluster's dependencies as resolved keys (published in its snapshot).
    pub depends_on: Vec<String>,
    /// A dependency cycle through this cluster, `[own, ..., own]`.
    pub cycle: Option<Vec<String>>,
    /// What each cluster reached from the dependencies depends on, per its snapshot.
    pub graph: BTreeMap<String, Vec<String>>,
    /// Registered, running pods left out as evicted, by seq.
    pub evicted: Vec<String>,
    /// Znodes under `pods/` that are not valid pods: left out, named in the status.
    pub rejected: Vec<Rejected>,
    /// Each dependency (by key) as read: its generation and pods (recorded in the snapshot).
    pub dependencies: BTreeMap<String, DependencyRecord>,
    /// The cluster's pause and the node's version: nothing is configured while there is one.
    pub paused: Option<(Pause, i32)>,
    /// Pods of the last configuration that vanished without leaving, by seq (set from the
    /// leader's [`SafetyNet`] after reading).
    pub lost: Vec<String>,
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
    /// The last attempt to add the dependencies' watches failed: retry.
    failed: bool,
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

/// How a leadership ended without an error.
#[derive(Debug)]
pub(super) enum Ended {
    /// The session or the loop is over.
    Stopped,
    /// This pod is not live (held, failed, leaving, evicted) while another is: that one should
    /// lead, so that `apply` and `probe` run on a pod that takes part in the configuration.
    Resigned(String),
}

/// Leads until `stop` is cancelled; errors when deposed or when the session is lost.
pub(super) async fn lead(
    ctx: &Ctx,
    client: &Client,
    me: &Candidate,
    stop: &CancellationToken,
) -> Result<Ended, ZkError> {
    let settings = &ctx.spec.settings;
    ctx.status.send_modify(|s| s.leader.lead(settings.min_size));
    let (wake_tx, mut wake) = mpsc::channel(1);
    let mut watches = Watches {
        wake: wake_tx,
        tasks: JoinSet::new(),
        paths: BTreeSet::new(),
        reconnected: Arc::new(AtomicBool::new(false)),
        failed: false,
    };
    watches.add(client, &ctx.paths.pods(), true).await?;
    // Persistent, like the others: one path may not hold a one-shot and a persistent watch of
    // the same session (ZOOKEEPER-4466), and the pause is only ever read, never watched once.
    watches.add(client, &ctx.paths.paused(), false).await?;
    if ctx.spec.depends_on.iter().any(|d| plan::is_pattern(&d.cluster)) {
        watches.add(client, CLUSTERS, false).await?;
    }
    let mut pending = Pending::new(settings.damper, settings.damper_max);
    let mut net = SafetyNet::default();
    // Rejected registrations already logged (one line each, not one per round).
    let mut reported: BTreeSet<(String, i64)> = BTreeSet::new();
    let mut evictions = Evictions::default();
    // What each pod holds, to send it deltas (sync::delivery).
    let mut delivered = Delivered::default();
    // Who was seen leaving: their seqs are freed, not reserved (plan::seqs_to_free).
    let mut leavers = plan::Leavers::default();
    // The last generation this leadership committed (see `configure`).
    let mut committed = 0;
    let mut next_probe = settings.probe.as_ref().map(|_| Instant::now());
    loop {
        let read = match watches.renew(client).await {
            Ok(()) => observe(ctx, client, &mut evictions)
                .await
                .inspect(|w| leavers.saw(&w.registered, &w.held)),
            Err(e) => Err(e),
        };
        let (world, act) = match read {
            Ok(mut w) => {
                let (lost, act) = net.look(&w, &leavers, settings.max_lost);
                w.lost = lost;
                (Some(w), act)
            }
            Err(e) if e.is_session_lost() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cluster, retrying");
                ctx.say(format!("leader: cannot read the cluster: {e}"));
                (None, None)
            }
        };
        let mut publish_failed = false;
        // A pause that could not be written holds the configuration back all the same.
        let mut hold = false;
        if let Some(world) = &world {
            report_rejected(ctx, &mut reported, &world.rejected);
            ctx.status
                .send_if_modified(|s| s.leader.observed(world, settings));
            if let Some(why) = resignation(&ctx.uuid, world) {
                return Ok(Ended::Resigned(why));
            }
            if let Some(act) = act {
                match safety_net(ctx, client, me, world, act).await {
                    // Read again: the pause changed (or somebody else's did).
                    Ok(()) => continue,
                    Err(e) if e.is_session_lost() || matches!(e, ZkError::Deposed { .. }) => return Err(e),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot write the pause, retrying");
                        ctx.say(format!("leader: cannot write the pause: {e}"));
                        publish_failed = true;
                        hold = true;
                    }
                }
            }
            let published = world
                .snapshot
                .as_ref()
                .map_or(&[][..], |(s, _)| s.depends_on.as_slice());
            if published != world.depends_on.as_slice() {
                match publish_dependencies(ctx, client, me, world).await {
                    // Read again: the snapshot's version changed.
                    Ok(()) => continue,
                    Err(e) if e.is_session_lost() || matches!(e, ZkError::Deposed { .. }) => return Err(e),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot publish the dependencies, retrying");
                        publish_failed = true;
                    }
                }
            }
            match watch_dependencies(&mut watches, client, world).await {
                Ok(()) if hold => pending.damper.clear(),
                Ok(()) => ctx.say(pending.decide(&ctx.spec, world, Instant::now())),
                Err(e) if e.is_session_lost() => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch a dependency, retrying");
                    ctx.say(format!("leader: cannot watch a dependency: {e}"));
                }
            }
        }
        // After a failed read, the watches wake us on reconnection; this timer only covers an
        // error they will not report.
        let retry_read = (world.is_none() || watches.failed || publish_failed)
            .then(|| Instant::now() + Duration::from_secs(1));
        let deadline = if world.is_some() {
            pending.damper.deadline()
        } else {
            None
        };
        tokio::select! {
            _ = stop.cancelled() => return Ok(Ended::Stopped),
            _ = wake.recv() => {}
            _ = sleep_until(retry_read) => {}
            _ = sleep_until(deadline) => {
                let Some(world) = world else { continue };
                // A pause written since the world was read (its watch may fire at this very
                // moment): after `ctl pause` answers, no configuration starts.
                match pause::read(client, &ctx.paths.paused()).await {
                    Ok(None) => {}
                    Ok(Some(_)) => continue,
                    Err(e) if e.is_session_lost() => return Err(e),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the pause, retrying");
                        continue;
                    }
                }
                ctx.say(format!("configuring {} pods", world.live.len()));
                ctx.status.send_modify(|s| s.leader.started());
                let done = configure(ctx, client, me, &world, &mut evictions, &mut delivered, &leavers, committed).await;
                ctx.status.send_modify(|s| s.leader.finished(done.is_ok()));
                match done {
                    Ok(generation) => {
                        committed = generation;
                        pending.done();
                        ctx.status.send_modify(|s| s.generation = generation);
                        tracing::info!(generation, pods = world.live.len(), "cluster configured");
                    }
                    Err(Stop::Zk(e)) if e.is_session_lost() || matches!(e, ZkError::Deposed { .. }) => return Err(e),
                    Err(why) => {
                        tracing::warn!(reason = %why, "configuration did not complete, retrying after the damper");
                        pending.failed(why.to_string(), why.is_partial(), Instant::now());
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

/// Writes or lifts the leader's own pause (`settings.max_lost`); the next read shows the result.
async fn safety_net(
    ctx: &Ctx,
    client: &Client,
    me: &Candidate,
    w: &World,
    act: NetAction,
) -> Result<(), ZkError> {
    let path = ctx.paths.paused();
    match act {
        NetAction::Pause(reason) => {
            if pause::pause_as_leader(client, ctx.acls, &me.path, &path, &reason).await? {
                let lost = super::lost::names(w, &w.lost);
                tracing::warn!(%lost, max_lost = ?ctx.spec.settings.max_lost, "too many pods lost: the cluster is paused instead of configuring the survivors");
            }
        }
        NetAction::Resume(version) => {
            if pause::resume_as_leader(client, &me.path, &path, version).await? {
                tracing::info!(
                    lost = w.lost.len(),
                    "enough lost pods are back: the leader lifted its pause"
                );
            }
        }
    }
    Ok(())
}

/// Logs each rejected registration once, and publishes how many there are (`/metrics`).
fn report_rejected(ctx: &Ctx, reported: &mut BTreeSet<(String, i64)>, rejected: &[Rejected]) {
    reported.retain(|(name, czxid)| rejected.iter().any(|r| r.name == *name && r.czxid == *czxid));
    for r in rejected {
        if reported.insert((r.name.clone(), r.czxid)) {
            tracing::warn!(znode = ?r.name, reason = %r.reason, "registration rejected: left out of every map");
        }
    }
    ctx.status.send_if_modified(|s| {
        let changed = s.rejected != rejected.len();
        s.rejected = rejected.len();
        changed
    });
}

/// Watches the pods and snapshot of every dependency (once each), and the snapshots of the
/// clusters they depend on in turn (a cycle can close anywhere along the way).
async fn watch_dependencies(watches: &mut Watches, client: &Client, world: &World) -> Result<(), ZkError> {
    watches.failed = true;
    for dep in &world.resolved {
        let p = ClusterPaths::new(&dep.key);
        watches.add(client, &p.pods(), true).await?;
        watches.add(client, &p.snapshot(), false).await?;
    }
    for key in world.graph.keys() {
        watches
            .add(client, &ClusterPaths::new(key).snapshot(), false)
            .await?;
    }
    watches.failed = false;
    Ok(())
}

/// Reads the cluster, its snapshot and its dependencies.
async fn observe(ctx: &Ctx, client: &Client, evictions: &mut Evictions) -> Result<World, ZkError> {
    let spec = &ctx.spec;
    let cluster::Registrations {
        pods: registered,
        rejected,
    } = cluster::registered(client, &ctx.paths).await?;
    let snapshot = snapshot::read(client, &ctx.paths.snapshot()).await?;
    let limit = spec.settings.evict_after.max(1);
    let failed = snapshot.as_ref().map_or(&[][..], |(s, _)| s.failed.as_slice());
    evictions.seed(failed, &registered, limit);
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
    let mut dependencies = BTreeMap::new();
    for r in &resolved {
        let (generation, pods) = cluster::dependency_pods(client, &r.key).await?;
        let uuids = pods.keys().cloned().collect();
        dependencies.insert(
            r.key.clone(),
            DependencyRecord {
                generation,
                pods: uuids,
            },
        );
        deps.insert(r.name.clone(), pods);
    }
    let held = cluster::held_seqs(client, &ctx.paths).await?;
    let paused = pause::read(client, &ctx.paths.paused()).await?;
    let hash = plan::config_hash(&live, &deps);
    let depends_on = plan::dependency_keys(&resolved);
    let graph = dependency_graph(client, &ctx.paths.key, &depends_on).await?;
    let cycle = plan::find_cycle(&ctx.paths.key, &depends_on, &graph);
    let mut world = World {
        depends_on,
        cycle,
        graph,
        registered,
        live,
        deps,
        resolved,
        snapshot,
        held,
        hash,
        evicted: Vec::new(),
        rejected,
        dependencies,
        paused,
        lost: Vec::new(),
    };
    world.evicted = evicted(&world, &world.live, evictions, limit);
    Ok(world)
}

/// At most this many clusters are followed looking for a dependency cycle.
const GRAPH_LIMIT: usize = 64;

/// What the dependencies depend on, transitively, per their snapshots' `depends_on` (bounded by
/// [`GRAPH_LIMIT`]; keys that are not cluster keys, another tool's mistake, are skipped).
async fn dependency_graph(
    client: &Client,
    own: &str,
    deps: &[String],
) -> Result<BTreeMap<String, Vec<String>>, ZkError> {
    let mut graph = BTreeMap::new();
    let mut queue: std::collections::VecDeque<String> = deps.iter().cloned().collect();
    while let Some(key) = queue.pop_front() {
        if key == own || graph.contains_key(&key) || !is_cluster_key(&key) {
            continue;
        }
        if graph.len() >= GRAPH_LIMIT {
            tracing::debug!(limit = GRAPH_LIMIT, "dependency graph truncated");
            break;
        }
        let next = snapshot::read(client, &ClusterPaths::new(&key).snapshot())
            .await?
            .map(|(s, _)| s.depends_on)
            .unwrap_or_default();
        queue.extend(next.iter().cloned());
        graph.insert(key, next);
    }
    Ok(graph)
}

/// Writes this cluster's `depends_on` into its snapshot (a new one of generation 0 before the
/// first configuration), so that other leaders can see a cycle through it.
async fn publish_dependencies(ctx: &Ctx, client: &Client, me: &Candidate, w: &World) -> Result<(), ZkError> {
    let (snap, version) = match &w.snapshot {
        Some((s, v)) => (
            Snapshot {
                depends_on: w.depends_on.clone(),
                ..s.clone()
            },
            Some(*v),
        ),
        None => (
            Snapshot {
                depends_on: w.depends_on.clone(),
                ..Snapshot::default()
            },
            None,
        ),
    };
    let path = ctx.paths.snapshot();
    let commit = snapshot::Commit {
        leader_node: &me.path,
        leader_version: 0,
        path: &path,
        snapshot: &snap,
        snapshot_version: version,
        free_seqs: Vec::new(),
    };
    snapshot::commit(client, ctx.acls, &commit).await?;
    tracing::info!(depends_on = ?w.depends_on, "dependencies published in the snapshot");
    Ok(())
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
    match ctx.run(fields::PROBE, written, &map).await {
        Ok(out) => last_line(&out).unwrap_or_default(),
        Err(e) => format!("probe failed: {e}"),
    }
}
