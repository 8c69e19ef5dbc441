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
    /// Runs a command field (`settings.apply` / `settings.probe`) on the leader's own pod, as
    /// hooks run (SPEC §4): rendered for this pod against `map` (as written when there is no
    /// renderer), with the map in `$OCHOPOD_CLUSTER_FILE` and the pod in `$OCHOPOD_POD_JSON`.
    /// Returns its stdout, or why it failed.
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
        let command = match &self.renderer {
            Some(r) => {
                let ctx = Context::new(&self.spec, &mine, None, &self.env).map_err(|e| e.to_string())?;
                r.render_command(field, &ctx).map_err(|e| e.to_string())?
            }
            None => written.clone(),
        };
        let file = self
            .state_dir
            .join(format!("{}.cluster.json", field.replace('.', "-")));
        let json = serde_json::to_vec_pretty(&mine).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&self.state_dir)
            .and_then(|()| std::fs::write(&file, json))
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        let pod = mine
            .me()
            .map(|p| serde_json::to_string(p).unwrap_or_default())
            .unwrap_or_default();
        let env = [
            ("OCHOPOD_CLUSTER_FILE", file.display().to_string()),
            ("OCHOPOD_POD_JSON", pod),
        ];
        run_local(&command, &env, self.spec.settings.timeout).await
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
    let (wake_tx, mut wake) = mpsc::channel(1);
    let mut watches = Watches {
        wake: wake_tx,
        tasks: JoinSet::new(),
        paths: BTreeSet::new(),
        reconnected: Arc::new(AtomicBool::new(false)),
        failed: false,
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
            if let Some(why) = resignation(&ctx.uuid, world) {
                return Ok(Ended::Resigned(why));
            }
            match watch_dependencies(&mut watches, client, world).await {
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
        let retry_read = (world.is_none() || watches.failed).then(|| Instant::now() + Duration::from_secs(1));
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

/// Why this pod should hand the leadership over, if it should: it is registered but not in the
/// live set (held, failed, leaving, evicted) while another pod is.
fn resignation(uuid: &str, w: &World) -> Option<String> {
    let mine = w.registered.get(uuid)?;
    if w.live.contains_key(uuid) || w.live.is_empty() {
        return None;
    }
    Some(match mine.pod.state.is_live() {
        true => "this pod was evicted".to_string(),
        false => format!("this pod is {:?}", mine.pod.state).to_lowercase(),
    })
}

/// Watches the pods and snapshot of every dependency (once each).
async fn watch_dependencies(watches: &mut Watches, client: &Client, world: &World) -> Result<(), ZkError> {
    watches.failed = true;
    for dep in &world.resolved {
        let p = ClusterPaths::new(&dep.key);
        watches.add(client, &p.pods(), true).await?;
        watches.add(client, &p.snapshot(), false).await?;
    }
    watches.failed = false;
    Ok(())
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
    /// An attempt failed after pods got its map: reconfigure even if the pods are back to the
    /// snapshot's (they are not configured as it says any more).
    dirty: bool,
}

impl Pending {
    /// Updates the damper from a fresh view of the world; returns the status line.
    fn decide(&mut self, spec: &PodSpec, w: &World, now: Instant) -> String {
        let changed = self.seen.as_deref() != Some(w.hash.as_str());
        self.seen = Some(w.hash.clone());
        let snapshot = w.snapshot.as_ref().map(|(s, _)| s);
        if let Some(s) = snapshot.filter(|s| s.hash == w.hash && !self.dirty) {
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
        self.dirty = false;
    }

    /// A veto or a failure waits `damper` again.
    fn failed(&mut self, why: String, partial: bool, now: Instant) {
        self.damper.retry(now);
        self.failure = Some(why);
        self.dirty |= partial;
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
    match ctx.run(fields::PROBE, written, &map).await {
        Ok(out) => last_line(&out).unwrap_or_default(),
        Err(e) => format!("probe failed: {e}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::model::{Pod, PodState};

    fn spec(yaml: &str) -> PodSpec {
        crate::spec::load_with_env(Path::new("pod.yaml"), yaml, &|_| None).unwrap()
    }

    /// Pod `a` has seq 1, `b` seq 2...
    fn pod(uuid: &str, state: PodState) -> Pod {
        let seq = u32::from(uuid.as_bytes()[0] - b'a') + 1;
        Pod {
            uuid: uuid.to_string(),
            seq,
            state,
            ..Pod::default()
        }
    }

    fn world(pods: &[(&str, PodState)], snapshot: Option<&[&str]>) -> World {
        let registered: BTreeMap<String, Registered> = pods
            .iter()
            .map(|(u, state)| {
                (
                    u.to_string(),
                    Registered {
                        pod: pod(u, *state),
                        czxid: 1,
                    },
                )
            })
            .collect();
        let live: Pods = registered
            .values()
            .filter(|r| r.pod.state.is_live())
            .map(|r| (r.pod.uuid.clone(), r.pod.clone()))
            .collect();
        let deps = BTreeMap::new();
        let hash = plan::config_hash(&live, &deps);
        let snapshot = snapshot.map(|uuids| {
            let pods: Pods = uuids
                .iter()
                .map(|u| (u.to_string(), pod(u, PodState::Running)))
                .collect();
            let hash = plan::config_hash(&pods, &deps);
            (
                Snapshot {
                    generation: 4,
                    hash,
                    pods,
                },
                0,
            )
        });
        World {
            registered,
            live,
            deps,
            resolved: Vec::new(),
            snapshot,
            held: Vec::new(),
            hash,
        }
    }

    fn pending(spec: &PodSpec) -> Pending {
        Pending {
            damper: Damper::new(spec.settings.damper, spec.settings.damper_max),
            ..Pending::default()
        }
    }

    const R: PodState = PodState::Running;

    #[test]
    fn min_size_gates_only_the_first_configuration() {
        let s = spec("cluster: c\nsettings: { min_size: 3, damper: 1s }\nprocess: { command: 'true' }\n");
        let mut p = pending(&s);
        let now = Instant::now();
        let w = world(&[("a", R), ("b", R)], None);
        assert_eq!(p.decide(&s, &w, now), "waiting for min_size: 2/3 pods");
        assert_eq!(p.damper.deadline(), None);
        // Configured once with 3: dropping to 2 is a change like any other.
        let w = world(&[("a", R), ("b", R)], Some(&["a", "b", "c"]));
        assert!(p
            .decide(&s, &w, now)
            .starts_with("change pending: configuring 2 pods in 1s"));
        assert_eq!(p.damper.deadline(), Some(now + Duration::from_secs(1)));
    }

    #[test]
    fn back_to_the_snapshot_cancels_the_pending_change() {
        // A leader's reset: its pod vanishes, then registers again before the damper is over.
        let s = spec("cluster: c\nsettings: { damper: 5s }\nprocess: { command: 'true' }\n");
        let mut p = pending(&s);
        let now = Instant::now();
        let snap = Some(&["a", "b"][..]);
        assert_eq!(
            p.decide(&s, &world(&[("a", R), ("b", R)], snap), now),
            "configured: 2 pods, generation 4"
        );
        p.decide(&s, &world(&[("b", R)], snap), now);
        assert!(p.damper.deadline().is_some());
        let later = now + Duration::from_secs(1);
        assert_eq!(
            p.decide(&s, &world(&[("a", R), ("b", R)], snap), later),
            "configured: 2 pods, generation 4"
        );
        assert_eq!(p.damper.deadline(), None, "no reconfiguration");
    }

    #[test]
    fn a_partial_failure_forces_the_next_attempt_even_back_at_the_snapshot() {
        let s = spec("cluster: c\nsettings: { damper: 1s }\nprocess: { command: 'true' }\n");
        let mut p = pending(&s);
        let now = Instant::now();
        let w = world(&[("a", R), ("b", R)], Some(&["a", "b"]));
        p.failed("c failed on".into(), true, now);
        assert!(p
            .decide(&s, &w, now)
            .starts_with("configuration failed: c failed on; retrying in 1s"));
        assert!(p.damper.deadline().is_some());
        p.done();
        assert_eq!(p.decide(&s, &w, now), "configured: 2 pods, generation 4");
        // A veto (nothing applied) does not.
        p.failed("vetoed".into(), false, now);
        assert_eq!(p.decide(&s, &w, now), "configured: 2 pods, generation 4");
    }

    #[test]
    fn a_leader_that_is_not_live_hands_over_to_a_live_pod() {
        let w = world(&[("a", PodState::Held), ("b", R)], None);
        assert_eq!(resignation("a", &w).as_deref(), Some("this pod is held"));
        assert_eq!(resignation("b", &w), None);
        let alone = world(&[("a", PodState::Leaving)], None);
        assert_eq!(resignation("a", &alone), None, "nobody else could lead");
    }
}
