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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use zookeeper_client as zkc;

use super::configure::{last_line, run_local, Answer, Caller};
use super::plan::{self, Damper, Pods, ResolvedDep};
use super::SyncStatus;
use crate::model::{ClusterMap, Pod};
use crate::spec::PodSpec;
use crate::zk::cluster::{self, HeldSeq, Registered};
use crate::zk::election::Candidate;
use crate::zk::paths::{ClusterPaths, CLUSTERS};
use crate::zk::snapshot::{self, Commit, Snapshot};
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
}

impl Ctx {
    fn say(&self, status: String) {
        self.status.send_if_modified(|s| {
            let changed = s.status != status;
            s.status = status;
            changed
        });
    }
}

/// Everything the decision depends on, read afresh after every wake-up.
struct World {
    registered: BTreeMap<String, Registered>,
    live: Pods,
    deps: BTreeMap<String, Pods>,
    resolved: Vec<ResolvedDep>,
    snapshot: Option<(Snapshot, i32)>,
    held: Vec<HeldSeq>,
    hash: String,
}

/// Pods left out: gone (410) or failing `on` `evict_after` times, for as long as they keep the
/// same registration (a new znode, i.e. a new czxid, gives them another chance).
#[derive(Default)]
struct Evictions {
    failures: HashMap<String, (i64, u32)>,
}

impl Evictions {
    fn count(&self, r: &Registered) -> u32 {
        match self.failures.get(&r.pod.uuid) {
            Some((czxid, n)) if *czxid == r.czxid => *n,
            _ => 0,
        }
    }

    fn fail(&mut self, r: &Registered, by: u32) -> u32 {
        let n = self.count(r).saturating_add(by);
        self.failures.insert(r.pod.uuid.clone(), (r.czxid, n));
        n
    }

    fn succeed(&mut self, uuid: &str) {
        self.failures.remove(uuid);
    }
}

/// Forwards watch events into one wake-up channel; the watches go away with it.
struct Watches {
    wake: mpsc::Sender<()>,
    tasks: JoinSet<()>,
    paths: BTreeSet<(String, bool)>,
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
        self.tasks.spawn(async move {
            loop {
                let event = w.changed().await;
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
}

/// Why a configuration attempt stopped short.
#[derive(Debug, thiserror::Error)]
enum Stop {
    #[error("vetoed by {0}")]
    Veto(String),
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Zk(#[from] ZkError),
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
        let world = match observe(ctx, client, &evictions).await {
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
                    pending.probe = match run_local(&probe.command, None, settings.timeout).await {
                        Ok(out) => last_line(&out),
                        Err(e) => Some(format!("probe failed: {e}")),
                    };
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

/// One configuration: check, (off), on, ok, apply, then the snapshot transaction.
async fn configure(
    ctx: &Ctx,
    client: &Client,
    me: &Candidate,
    w: &World,
    evictions: &mut Evictions,
) -> Result<u64, Stop> {
    let settings = &ctx.spec.settings;
    let (prev, prev_generation, version) = match &w.snapshot {
        Some((s, v)) => (s.pods.clone(), s.generation, Some(*v)),
        None => (Pods::new(), 0, None),
    };
    let generation = prev_generation + 1;
    let caller = Caller::new(
        ctx.token.clone(),
        settings.timeout,
        settings.parallelism,
        &ctx.uuid,
    );
    let mut pods = w.live.clone();

    let map = plan::cluster_map(generation, &prev, &pods, &w.deps);
    let answers = caller.fan_out(&list(&pods), "/control/check", Some(&map)).await;
    let mut vetoes = Vec::new();
    let mut failures = Vec::new();
    for (uuid, answer) in answers {
        match answer {
            Answer::Ok => {}
            Answer::Veto => vetoes.push(name(&pods, &uuid)),
            Answer::Gone => {
                tracing::info!(uuid, "pod is gone (410), dropped");
                if let Some(r) = w.registered.get(&uuid) {
                    evictions.fail(r, u32::MAX);
                }
                pods.remove(&uuid);
            }
            Answer::Failed(e) => failures.push((uuid, e)),
        }
    }
    if !vetoes.is_empty() {
        return Err(Stop::Veto(vetoes.join(", ")));
    }
    if !failures.is_empty() {
        return Err(Stop::Failed(count_failures(
            w,
            evictions,
            settings.evict_after,
            "check",
            failures,
        )));
    }
    let map = plan::cluster_map(generation, &prev, &pods, &w.deps);

    if settings.full_shutdown {
        for (uuid, answer) in caller.fan_out(&list(&pods), "/control/off", None).await {
            if let Answer::Failed(e) = answer {
                tracing::warn!(uuid, error = %e, "off failed, going on");
            }
        }
    }

    let mut failures = Vec::new();
    if settings.sequential {
        for uuid in plan::call_order(&pods, &map.added, settings.order) {
            let Some(pod) = pods.get(&uuid) else { continue };
            let body = ClusterMap {
                key: uuid.clone(),
                ..map.clone()
            };
            match caller.post(pod, "/control/on", Some(&body)).await {
                Answer::Ok => evictions.succeed(&uuid),
                Answer::Veto => failures.push((uuid, "vetoed `on` (406)".to_string())),
                Answer::Gone => failures.push((uuid, "gone (410)".to_string())),
                Answer::Failed(e) => failures.push((uuid, e)),
            }
            // One by one means each waits for the previous to be ready: stop at the first failure.
            if !failures.is_empty() {
                break;
            }
        }
    } else {
        for (uuid, answer) in caller.fan_out(&list(&pods), "/control/on", Some(&map)).await {
            match answer {
                Answer::Ok => evictions.succeed(&uuid),
                Answer::Veto => failures.push((uuid, "vetoed `on` (406)".to_string())),
                Answer::Gone => failures.push((uuid, "gone (410)".to_string())),
                Answer::Failed(e) => failures.push((uuid, e)),
            }
        }
    }
    if !failures.is_empty() {
        return Err(Stop::Failed(count_failures(
            w,
            evictions,
            settings.evict_after,
            "on",
            failures,
        )));
    }

    for (uuid, answer) in caller.fan_out(&list(&pods), "/control/ok", Some(&map)).await {
        if let Answer::Failed(e) = answer {
            tracing::warn!(uuid, error = %e, "ok failed, going on");
        }
    }

    if let Some(apply) = &settings.apply {
        // TODO: render `apply.command` as a template once the renderer lands (SPEC §3).
        let file = ctx.state_dir.join("apply-cluster.json");
        let body = ClusterMap {
            key: ctx.uuid.clone(),
            ..map.clone()
        };
        let json = serde_json::to_vec_pretty(&body).map_err(|e| Stop::Failed(format!("apply: {e}")))?;
        std::fs::create_dir_all(&ctx.state_dir)
            .and_then(|()| std::fs::write(&file, json))
            .map_err(|e| Stop::Failed(format!("apply: cannot write {}: {e}", file.display())))?;
        run_local(apply, Some(&file), settings.timeout)
            .await
            .map_err(|e| Stop::Failed(format!("apply: {e}")))?;
    }

    let registered: BTreeSet<String> = w.registered.keys().cloned().collect();
    let free: Vec<(String, i32)> = plan::seqs_to_free(&w.held, &pods, &registered)
        .into_iter()
        .map(|h| (ctx.paths.seq(h.seq), h.version))
        .collect();
    let snap = Snapshot {
        generation,
        hash: plan::config_hash(&pods, &w.deps),
        pods,
    };
    let path = ctx.paths.snapshot();
    let commit = Commit {
        leader_node: &me.path,
        leader_version: 0,
        path: &path,
        snapshot: &snap,
        snapshot_version: version,
        free_seqs: free,
    };
    snapshot::commit(client, ctx.acls, &commit).await?;
    Ok(generation)
}

fn list(pods: &Pods) -> Vec<Pod> {
    pods.values().cloned().collect()
}

fn name(pods: &Pods, uuid: &str) -> String {
    pods.get(uuid)
        .map_or_else(|| uuid.to_string(), |p| format!("seq {} ({uuid})", p.seq))
}

/// Counts one failure for each pod and says which ones are now evicted.
fn count_failures(
    w: &World,
    evictions: &mut Evictions,
    evict_after: u32,
    phase: &str,
    failures: Vec<(String, String)>,
) -> String {
    let mut words = Vec::new();
    for (uuid, e) in failures {
        let n = w.registered.get(&uuid).map_or(0, |r| evictions.fail(r, 1));
        if n >= evict_after.max(1) {
            tracing::warn!(uuid, failures = n, "pod evicted: left out of the configuration");
            words.push(format!(
                "{} failed {phase} {n} times, evicted ({e})",
                name(&w.live, &uuid)
            ));
        } else {
            words.push(format!(
                "{} failed {phase} ({n}/{evict_after}): {e}",
                name(&w.live, &uuid)
            ));
        }
    }
    words.join("; ")
}
