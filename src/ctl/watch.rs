//! The live view of every cluster, shared by `ctl events` and `ctl ui`: one ZooKeeper session,
//! one persistent recursive watch on `/ochopod/clusters`, an in-memory [`Model`] of what the
//! layout of SPEC §6 holds, and the [`Event`]s between two successive models.
//!
//! ```text
//!  ZooKeeper ──(AddWatch PERSISTENT_RECURSIVE /ochopod/clusters)──▶ watch task ──▶ batch of paths
//!                                                                                   │ dirty clusters
//!                                                                                   ▼
//!              Update { model, events } ◀── diff(old, new) ◀── re-read the dirty clusters (pipelined)
//! ```
//!
//! Owns its session (a `Discovery`, renewed after an expiry) and the task that forwards the
//! watch's notifications. Emits [`Update`]s over a bounded channel to ONE consumer (the events
//! printer, or the UI's state actor that fans out to viewers); a slow consumer slows the watcher
//! down instead of losing events. Stops when that consumer drops its receiver.
//!
//! Why a re-read of the whole cluster and not of the one znode: a notification says only that a
//! path changed, and the data may have changed again since; reading the cluster (about one round
//! trip: every read is sent before the first is awaited) gives a consistent enough picture, and
//! notifications coming in meanwhile mark it dirty again.
//!
//! ZooKeeper 3.8 has AddWatch; ZOOKEEPER-4466: one session should not hold a one-shot and a
//! persistent watch on the same path, so this session only ever holds the one persistent watch
//! (its reads do not watch). zookeeper-client 0.11.2 does not re-add persistent watches after a
//! reconnection within the same session, so on `SyncConnected` the watch is added again and
//! everything re-read (changes while disconnected were not notified).
//!
//! What ZooKeeper cannot tell, and so no event says: when a configuration *started* and how long
//! it took (the leader writes the snapshot once, when it is done); pauses (not in this layout).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::mpsc;
use zookeeper_client as zkc;

use super::discover::{leader_of, Discovery, CLUSTERS};
use super::CtlError;
use crate::model::{Pod, PodState};
use crate::zk::pause::{Pause, PausedBy};

/// A cluster as ZooKeeper has it, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterView {
    /// `<namespace>.<cluster>`.
    pub key: String,
    /// Registered pods by uuid (each valid, SPEC §6, and under its own uuid).
    pub pods: BTreeMap<String, Pod>,
    /// Registrations that are not valid pods: left out of `pods`, named here.
    pub rejected: Vec<Rejected>,
    /// The uuid the lowest election node holds.
    pub leader: Option<String>,
    /// The last configuration, when the cluster has a leader that wrote one.
    pub snapshot: Option<SnapshotView>,
    /// The cluster's pause (`ctl pause`, or its leader for `settings.max_lost`), if paused.
    pub paused: Option<Pause>,
}

/// A registration that is not a valid pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Rejected {
    /// The znode's name under `pods/`.
    pub znode: String,
    pub reason: String,
}

/// What the UI and events need of a snapshot (read leniently: only these fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SnapshotView {
    /// 0: dependencies published, not configured yet.
    pub generation: u64,
    /// The uuids configured, with their seq as the snapshot has it (0 when it has none).
    pub pods: BTreeMap<String, u32>,
    pub depends_on: Vec<String>,
    /// Uuids evicted by the leader.
    pub failed: Vec<String>,
}

impl ClusterView {
    /// The pods dependents count (SPEC §6): in the snapshot, still registered, and running.
    pub fn live(&self) -> usize {
        let Some(s) = &self.snapshot else { return 0 };
        s.pods
            .keys()
            .filter(|u| self.pods.get(*u).is_some_and(|p| p.state.is_live()))
            .count()
    }

    /// A pod's seq: registered, else as the snapshot has it.
    fn seq_of(&self, uuid: &str) -> Option<u32> {
        self.pods
            .get(uuid)
            .map(|p| p.seq)
            .or_else(|| self.snapshot.as_ref()?.pods.get(uuid).copied().filter(|s| *s > 0))
    }
}

/// Every cluster under `/ochopod/clusters`, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Model {
    pub clusters: BTreeMap<String, ClusterView>,
}

/// What changed, in one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A pod znode appeared (or came back with a new run of ochopod).
    Registered {
        seq: u32,
        uuid: String,
        ip: String,
        state: PodState,
    },
    /// A pod znode went away after its pod said it was leaving (SIGTERM, `kill`).
    Left { seq: u32, uuid: String, ip: String },
    /// A pod znode went away without a goodbye: its session expired (a killed container).
    Expired { seq: u32, uuid: String, ip: String },
    /// The pod's state became `held` (an operator `off`).
    Held {
        seq: u32,
        uuid: String,
        ip: String,
        was: PodState,
    },
    /// The pod's state became `failed`.
    Failed {
        seq: u32,
        uuid: String,
        ip: String,
        was: PodState,
    },
    /// The pod's state became `leaving`.
    Leaving {
        seq: u32,
        uuid: String,
        ip: String,
        was: PodState,
    },
    /// The pod's state became `running` again (after an `on`).
    Running {
        seq: u32,
        uuid: String,
        ip: String,
        was: PodState,
    },
    /// The leader wrote a new configuration.
    Configured { generation: u64, seqs: Vec<u32> },
    /// Another pod leads (uuid None: no election node is left).
    Leader {
        seq: Option<u32>,
        uuid: Option<String>,
        ip: Option<String>,
    },
    /// The leader evicted a pod (its snapshot's `failed` grew).
    Evicted { seq: Option<u32>, uuid: String },
    /// The cluster's dependencies as its leader resolved them.
    DependsOn {
        depends_on: Vec<String>,
        added: Vec<String>,
        removed: Vec<String>,
    },
    /// A registration that is not a valid pod (left out of every map).
    Rejected { znode: String, reason: String },
    /// The cluster was paused (or its pause changed hands): its leader configures nothing.
    Paused { by: PausedBy, reason: String },
    /// The pause was lifted.
    Resumed,
}

/// One change, when the watcher saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// RFC 3339, UTC, seconds.
    pub time: String,
    pub cluster: String,
    #[serde(flatten)]
    pub change: Change,
}

/// A new model and how it differs from the last one sent.
#[derive(Debug, Clone)]
pub struct Update {
    pub model: Arc<Model>,
    pub events: Vec<Event>,
}

/// The events that take `old` to `new`. `touched`: uuids whose znode was notified as changed
/// since `old` was read: a pod deleted right after such a change (its `leaving` not seen in
/// between) left, rather than expired.
pub fn diff(old: &Model, new: &Model, touched: &BTreeSet<String>, time: &str) -> Vec<Event> {
    let empty = ClusterView::default();
    let keys: BTreeSet<&String> = old.clusters.keys().chain(new.clusters.keys()).collect();
    let mut events = Vec::new();
    for key in keys {
        let o = old.clusters.get(key).unwrap_or(&empty);
        let n = new.clusters.get(key).unwrap_or(&empty);
        let mut push = |change| {
            events.push(Event {
                time: time.to_string(),
                cluster: key.clone(),
                change,
            })
        };
        // Pods: gone, new, changed; in seq order within each kind.
        let mut gone: Vec<&Pod> = o
            .pods
            .values()
            .filter(|p| !n.pods.contains_key(&p.uuid))
            .collect();
        gone.sort_by_key(|p| (p.seq, p.uuid.clone()));
        for p in gone {
            let (seq, uuid, ip) = (p.seq, p.uuid.clone(), p.ip.clone());
            push(if p.state == PodState::Leaving || touched.contains(&p.uuid) {
                Change::Left { seq, uuid, ip }
            } else {
                Change::Expired { seq, uuid, ip }
            });
        }
        let mut pods: Vec<&Pod> = n.pods.values().collect();
        pods.sort_by_key(|p| (p.seq, p.uuid.clone()));
        for p in pods {
            let (seq, uuid, ip) = (p.seq, p.uuid.clone(), p.ip.clone());
            match o.pods.get(&p.uuid) {
                // A new run under the same uuid (a container restarted on its volume).
                Some(before) if before.started == p.started || p.started == 0 => {
                    if before.state != p.state {
                        let was = before.state;
                        push(match p.state {
                            PodState::Held => Change::Held { seq, uuid, ip, was },
                            PodState::Failed => Change::Failed { seq, uuid, ip, was },
                            PodState::Leaving => Change::Leaving { seq, uuid, ip, was },
                            PodState::Running => Change::Running { seq, uuid, ip, was },
                        });
                    }
                }
                _ => push(Change::Registered {
                    seq,
                    uuid,
                    ip,
                    state: p.state,
                }),
            }
        }
        for r in n.rejected.iter().filter(|r| !o.rejected.contains(r)) {
            push(Change::Rejected {
                znode: r.znode.clone(),
                reason: r.reason.clone(),
            });
        }
        match (&o.paused, &n.paused) {
            (None, Some(p)) => push(Change::Paused {
                by: p.by,
                reason: p.reason.clone(),
            }),
            (Some(was), Some(p)) if was.by != p.by || was.since != p.since => push(Change::Paused {
                by: p.by,
                reason: p.reason.clone(),
            }),
            (Some(_), None) => push(Change::Resumed),
            _ => {}
        }
        if o.leader != n.leader {
            let pod = n.leader.as_ref().and_then(|u| n.pods.get(u));
            push(Change::Leader {
                seq: pod.map(|p| p.seq),
                uuid: n.leader.clone(),
                ip: pod.map(|p| p.ip.clone()),
            });
        }
        let (os, ns) = (
            o.snapshot.clone().unwrap_or_default(),
            n.snapshot.clone().unwrap_or_default(),
        );
        if ns.generation != os.generation && ns.generation > 0 {
            let mut seqs: Vec<u32> = ns.pods.keys().filter_map(|u| n.seq_of(u)).collect();
            seqs.sort_unstable();
            push(Change::Configured {
                generation: ns.generation,
                seqs,
            });
        }
        for uuid in ns.failed.iter().filter(|u| !os.failed.contains(u)) {
            push(Change::Evicted {
                seq: n.seq_of(uuid).or_else(|| o.seq_of(uuid)),
                uuid: uuid.clone(),
            });
        }
        if ns.depends_on != os.depends_on {
            push(Change::DependsOn {
                depends_on: ns.depends_on.clone(),
                added: ns
                    .depends_on
                    .iter()
                    .filter(|d| !os.depends_on.contains(d))
                    .cloned()
                    .collect(),
                removed: os
                    .depends_on
                    .iter()
                    .filter(|d| !ns.depends_on.contains(d))
                    .cloned()
                    .collect(),
            });
        }
    }
    events
}

fn zk_error(zk: &Discovery, doing: &'static str, path: &str) -> impl FnOnce(zkc::Error) -> CtlError {
    let (connect, path) = (zk.connect_string().to_string(), path.to_string());
    move |source| CtlError::Zk {
        connect,
        doing,
        path,
        source,
    }
}

/// Reads one cluster (None when its znode is gone): pods, leader and snapshot, every read sent
/// before the first is awaited.
async fn read_cluster(
    zk: &Discovery,
    client: &zkc::Client,
    key: &str,
) -> Result<Option<ClusterView>, CtlError> {
    let root = format!("{CLUSTERS}/{key}");
    let dir = format!("{root}/pods");
    let leader_dir = format!("{root}/leader");
    let snapshot_path = format!("{root}/snapshot");
    let names = client.list_children(&dir);
    let leaders = client.list_children(&leader_dir);
    let snapshot = client.get_data(&snapshot_path);
    let paused_path = format!("{root}/paused");
    let paused = client.get_data(&paused_path);
    let exists = client.check_stat(&root);
    let names = match names.await {
        Ok(n) => n,
        Err(zkc::Error::NoNode) => Vec::new(),
        Err(e) => return Err(zk_error(zk, "listing", &dir)(e)),
    };
    let paths: Vec<(String, String)> = names.into_iter().map(|n| (format!("{dir}/{n}"), n)).collect();
    let reads: Vec<_> = paths.iter().map(|(p, _)| client.get_data(p)).collect();
    let mut view = ClusterView {
        key: key.to_string(),
        ..ClusterView::default()
    };
    for ((path, name), read) in paths.iter().zip(reads) {
        match read.await {
            // Validated as it is read (crate::model): nothing past here sees a hostile value.
            Ok((data, _)) => match serde_json::from_slice::<Pod>(&data) {
                Ok(pod) if pod.uuid == *name => {
                    view.pods.insert(pod.uuid.clone(), pod);
                }
                Ok(pod) => view.rejected.push(Rejected {
                    znode: name.clone(),
                    reason: format!("holds the pod {}", pod.uuid),
                }),
                Err(e) => view.rejected.push(Rejected {
                    znode: name.clone(),
                    reason: e.to_string(),
                }),
            },
            // Gone between the listing and the read: the pod left.
            Err(zkc::Error::NoNode) => {}
            Err(e) => return Err(zk_error(zk, "reading", path)(e)),
        }
    }
    view.leader = leader_of(client, &leader_dir, leaders)
        .await
        .map_err(|(doing, path, e)| zk_error(zk, doing, &path)(e))?;
    view.snapshot = match snapshot.await {
        // A snapshot that does not parse is shown as none: the leader will write a good one.
        // The snapshot as the leader reads it (crate::zk::snapshot): invalid pods dropped.
        // Either form of SPEC §6 (one znode, or a manifest and its parts).
        Ok((data, _)) => crate::zk::snapshot::resolve(client, &snapshot_path, &data)
            .await
            .ok()
            .map(|s| SnapshotView {
                generation: s.generation,
                pods: s.pods.into_iter().map(|(u, p)| (u, p.seq)).collect(),
                depends_on: s.depends_on,
                failed: s.failed,
            }),
        Err(zkc::Error::NoNode) => None,
        Err(e) => return Err(zk_error(zk, "reading", &snapshot_path)(e)),
    };
    view.paused = match paused.await {
        // Untrusted like the rest: decode() keeps a printable, bounded reason.
        Ok((data, stat)) => Some(crate::zk::pause::decode(&data, stat.mtime)),
        Err(zkc::Error::NoNode) => None,
        Err(e) => return Err(zk_error(zk, "reading", &paused_path)(e)),
    };
    match exists.await {
        Ok(Some(_)) => Ok(Some(view)),
        Ok(None) if view.pods.is_empty() && view.snapshot.is_none() => Ok(None),
        Ok(None) => Ok(Some(view)),
        Err(e) => Err(zk_error(zk, "reading", &root)(e)),
    }
}

/// Reads every cluster key (names with a dot, SPEC §6).
async fn read_keys(zk: &Discovery, client: &zkc::Client) -> Result<BTreeSet<String>, CtlError> {
    match client.list_children(CLUSTERS).await {
        Ok(keys) => Ok(keys
            .into_iter()
            .filter(|k| crate::zk::paths::is_cluster_key(k))
            .collect()),
        Err(zkc::Error::NoNode) => Ok(BTreeSet::new()),
        Err(e) => Err(zk_error(zk, "listing", CLUSTERS)(e)),
    }
}

/// Which clusters need reading again.
#[derive(Debug, Default)]
struct Dirty {
    /// Everything (the start, a reconnection, `/ochopod/clusters` itself changed).
    all: bool,
    keys: BTreeSet<String>,
    /// Pods whose znode was notified as changed (see [`diff`]).
    touched: BTreeSet<String>,
}

impl Dirty {
    fn is_empty(&self) -> bool {
        !self.all && self.keys.is_empty()
    }

    /// Marks what a notification on `path` makes stale.
    fn note(&mut self, path: &str, kind: zkc::EventType) {
        let Some(rest) = path.strip_prefix(CLUSTERS) else {
            return;
        };
        let mut parts = rest.trim_start_matches('/').splitn(3, '/');
        let key = parts.next().unwrap_or("");
        if key.is_empty() {
            self.all = true;
            return;
        }
        match (parts.next(), parts.next()) {
            // Seqs change with registrations, which are notified on their own.
            (Some("seqs"), _) => {}
            (Some("pods"), Some(uuid)) => {
                if kind == zkc::EventType::NodeDataChanged {
                    self.touched.insert(uuid.to_string());
                }
                self.keys.insert(key.to_string());
            }
            _ => {
                self.keys.insert(key.to_string());
            }
        }
    }
}

/// Reads what `dirty` names into a copy of `model`.
async fn refresh(
    zk: &Discovery,
    client: &zkc::Client,
    model: &Model,
    dirty: &Dirty,
) -> Result<Model, CtlError> {
    let mut next = model.clone();
    let keys: BTreeSet<String> = if dirty.all {
        let keys = read_keys(zk, client).await?;
        next.clusters.retain(|k, _| keys.contains(k));
        keys
    } else {
        dirty.keys.clone()
    };
    let reads = keys.iter().map(|k| read_cluster(zk, client, k));
    let views = futures_util::future::join_all(reads).await;
    for (key, view) in keys.iter().zip(views) {
        match view? {
            Some(v) => next.clusters.insert(key.clone(), v),
            None => next.clusters.remove(key),
        };
    }
    Ok(next)
}

/// Reads every cluster once (no watch): the model now, for `ctl events` without `--follow`.
pub async fn read_model(zk: &Discovery) -> Result<Model, CtlError> {
    let dirty = Dirty {
        all: true,
        ..Dirty::default()
    };
    refresh(zk, &zk.client(), &Model::default(), &dirty).await
}

/// Starts the watcher; its first [`Update`] holds the whole model and, as events, the current
/// state (every pod registered, the leaders, the last configurations).
pub fn spawn(zk: Discovery) -> mpsc::Receiver<Update> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(run(zk, tx));
    rx
}

/// How one session ended.
enum End {
    /// The consumer is gone: stop.
    Closed,
    /// The session is over (expired, closed): open another.
    Lost(String),
}

async fn run(zk: Discovery, tx: mpsc::Sender<Update>) {
    let mut model = Model::default();
    let mut sent = false;
    loop {
        match session(&zk, &mut model, &mut sent, &tx).await {
            End::Closed => return,
            End::Lost(why) => {
                eprintln!("ochopod ctl: ZooKeeper session lost ({why}); opening a new one");
                let mut wait = Duration::from_millis(500);
                loop {
                    tokio::select! {
                        _ = tx.closed() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    match zk.renew().await {
                        Ok(()) => break,
                        Err(e) => eprintln!("ochopod ctl: {e}; retrying"),
                    }
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

/// Adds the one persistent recursive watch; its notifications go to `events`, until the
/// session ends or the returned task is aborted.
async fn add_watch(
    zk: &Discovery,
    client: &zkc::Client,
    events: mpsc::UnboundedSender<zkc::WatchedEvent>,
) -> Result<tokio::task::JoinHandle<()>, CtlError> {
    let mut watcher = client
        .watch(CLUSTERS, zkc::AddWatchMode::PersistentRecursive)
        .await
        .map_err(zk_error(zk, "watching", CLUSTERS))?;
    Ok(tokio::spawn(async move {
        loop {
            let event = watcher.changed().await;
            // A persistent watcher panics if asked again after a terminal session event.
            let last = event.event_type == zkc::EventType::Session && event.session_state.is_terminated();
            if events.send(event).is_err() || last {
                return;
            }
        }
    }))
}

fn is_session_lost(e: &CtlError) -> bool {
    matches!(e, CtlError::Zk { source, .. } if crate::zk::is_final(source))
}

/// Serves one session: watch, read, diff, send, until the session or the consumer ends.
/// `sent`: whether the first update went out (it goes even when there is nothing at all).
async fn session(zk: &Discovery, model: &mut Model, sent: &mut bool, tx: &mpsc::Sender<Update>) -> End {
    let client = zk.client();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut dirty = Dirty {
        all: true,
        ..Dirty::default()
    };
    // Added before the first read, so that nothing changes unseen between the two.
    let mut task: Option<tokio::task::JoinHandle<()>> = None;
    let mut retry_at: Option<tokio::time::Instant> = None;
    let result = loop {
        if task.is_none() {
            match add_watch(zk, &client, events_tx.clone()).await {
                Ok(t) => task = Some(t),
                Err(e) if is_session_lost(&e) => break End::Lost(e.to_string()),
                Err(e) => {
                    eprintln!("ochopod ctl: {e}; retrying");
                    retry_at = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                }
            }
        }
        if task.is_some() && !dirty.is_empty() && retry_at.is_none() {
            match refresh(zk, &client, model, &dirty).await {
                Ok(next) => {
                    let changes = diff(
                        model,
                        &next,
                        &dirty.touched,
                        &crate::clock::rfc3339(SystemTime::now()),
                    );
                    let changed = next != *model;
                    *model = next;
                    dirty = Dirty::default();
                    if (!*sent || changed)
                        && tx
                            .send(Update {
                                model: Arc::new(model.clone()),
                                events: changes,
                            })
                            .await
                            .is_err()
                    {
                        break End::Closed;
                    }
                    *sent = true;
                }
                Err(e) if is_session_lost(&e) => break End::Lost(e.to_string()),
                // Connection loss: the reconnection is notified (SyncConnected) and re-reads
                // everything; the timer covers an error that will not be.
                Err(e) => {
                    eprintln!("ochopod ctl: {e}; retrying");
                    retry_at = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                }
            }
        }
        let first = tokio::select! {
            _ = tx.closed() => break End::Closed,
            e = events.recv() => e,
            _ = sleep_until(retry_at) => { retry_at = None; continue; }
        };
        // Coalesce: everything already notified goes into one read.
        let mut batch: Vec<zkc::WatchedEvent> = first.into_iter().collect();
        while let Ok(e) = events.try_recv() {
            batch.push(e);
        }
        let mut lost = None;
        for e in batch {
            if e.event_type == zkc::EventType::Session {
                match e.session_state {
                    zkc::SessionState::SyncConnected | zkc::SessionState::ConnectedReadOnly => {
                        // The server forgot the watch (see the module doc): add it, read all.
                        if let Some(t) = task.take() {
                            t.abort();
                        }
                        dirty.all = true;
                        retry_at = None;
                    }
                    s if s.is_terminated() => lost = Some(format!("{s:?}")),
                    _ => {}
                }
            } else {
                dirty.note(&e.path, e.event_type);
            }
        }
        if let Some(why) = lost {
            break End::Lost(why);
        }
    };
    if let Some(t) = task {
        t.abort();
    }
    result
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Whether a cluster key is selected by the command line's patterns (none: the namespace).
pub fn selected(key: &str, patterns: &[String], namespace: &str) -> bool {
    if patterns.is_empty() {
        return super::glob(&super::key_pattern("*", namespace), key);
    }
    patterns
        .iter()
        .any(|p| super::glob(&super::key_pattern(p, namespace), key))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pod(uuid: &str, seq: u32, state: PodState) -> Pod {
        Pod {
            uuid: uuid.into(),
            seq,
            cluster: "zk".into(),
            namespace: "default".into(),
            ip: format!("127.0.0.{}", seq + 1),
            host: "h".into(),
            public: "127.0.0.1".into(),
            control_port: 8080,
            state,
            started: 1,
            ..Pod::default()
        }
    }

    fn model(pods: &[Pod], leader: Option<&str>, snapshot: Option<SnapshotView>) -> Model {
        let view = ClusterView {
            key: "default.zk".into(),
            pods: pods.iter().map(|p| (p.uuid.clone(), p.clone())).collect(),
            rejected: Vec::new(),
            leader: leader.map(str::to_string),
            snapshot,
            paused: None,
        };
        Model {
            clusters: BTreeMap::from([("default.zk".to_string(), view)]),
        }
    }

    fn kinds(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| {
                serde_json::to_value(e).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn the_current_state_reads_as_events() {
        let snap = SnapshotView {
            generation: 3,
            pods: BTreeMap::from([("a".into(), 1), ("b".into(), 2)]),
            depends_on: vec!["default.db".into()],
            failed: vec![],
        };
        let now = model(
            &[pod("b", 2, PodState::Held), pod("a", 1, PodState::Running)],
            Some("a"),
            Some(snap),
        );
        let events = diff(&Model::default(), &now, &BTreeSet::new(), "T");
        assert_eq!(
            kinds(&events),
            ["registered", "registered", "leader", "configured", "depends_on"]
        );
        let json = serde_json::to_value(&events[1]).unwrap();
        assert_eq!(json["seq"], 2);
        assert_eq!(json["state"], "held");
        assert_eq!(json["cluster"], "default.zk");
        assert_eq!(json["time"], "T");
        assert_eq!(
            events[3].change,
            Change::Configured {
                generation: 3,
                seqs: vec![1, 2]
            }
        );
        assert!(diff(&now, &now, &BTreeSet::new(), "T").is_empty());
    }

    #[test]
    fn a_pod_that_said_it_was_leaving_left_others_expired() {
        let before = model(
            &[
                pod("a", 1, PodState::Running),
                pod("b", 2, PodState::Leaving),
                pod("c", 3, PodState::Running),
            ],
            None,
            None,
        );
        let after = model(&[], None, None);
        let events = diff(&before, &after, &BTreeSet::from(["c".to_string()]), "T");
        // b said so; c's znode changed just before it went (its `leaving` was not read in time).
        assert_eq!(kinds(&events), ["expired", "left", "left"]);
    }

    #[test]
    fn state_changes_leaders_evictions_and_dependencies() {
        let s1 = SnapshotView {
            generation: 1,
            pods: BTreeMap::from([("a".into(), 1), ("b".into(), 2)]),
            depends_on: vec!["default.db".into()],
            failed: vec![],
        };
        let s2 = SnapshotView {
            generation: 2,
            pods: BTreeMap::from([("a".into(), 1)]),
            depends_on: vec!["default.kafka".into()],
            failed: vec!["b".into()],
        };
        let before = model(
            &[pod("a", 1, PodState::Running), pod("b", 2, PodState::Running)],
            Some("a"),
            Some(s1),
        );
        let after = model(
            &[pod("a", 1, PodState::Held), pod("b", 2, PodState::Failed)],
            Some("b"),
            Some(s2),
        );
        let events = diff(&before, &after, &BTreeSet::new(), "T");
        assert_eq!(
            kinds(&events),
            ["held", "failed", "leader", "configured", "evicted", "depends_on"]
        );
        assert_eq!(
            events[4].change,
            Change::Evicted {
                seq: Some(2),
                uuid: "b".into()
            }
        );
        assert_eq!(
            events[5].change,
            Change::DependsOn {
                depends_on: vec!["default.kafka".into()],
                added: vec!["default.kafka".into()],
                removed: vec!["default.db".into()],
            }
        );
        // A leader gone, and a generation-0 snapshot (dependencies only) configures nothing.
        let s0 = SnapshotView {
            generation: 0,
            depends_on: vec!["default.kafka".into()],
            ..SnapshotView::default()
        };
        let bare = model(&[pod("a", 1, PodState::Held)], None, Some(s0));
        let events = diff(
            &model(&[pod("a", 1, PodState::Held)], Some("a"), None),
            &bare,
            &BTreeSet::new(),
            "T",
        );
        assert_eq!(kinds(&events), ["leader", "depends_on"]);
        assert_eq!(
            events[0].change,
            Change::Leader {
                seq: None,
                uuid: None,
                ip: None
            }
        );
    }

    #[test]
    fn a_pause_and_its_lifting_are_events() {
        let calm = model(&[], None, None);
        let mut paused = calm.clone();
        let pause = Pause {
            by: PausedBy::Operator,
            since: 1,
            reason: "kernel upgrade".into(),
        };
        if let Some(c) = paused.clusters.get_mut("default.zk") {
            c.paused = Some(pause);
        }
        let on = diff(&calm, &paused, &BTreeSet::new(), "t");
        assert_eq!(kinds(&on), ["paused"]);
        let line = super::super::events::human(&on[0]);
        assert!(line.ends_with("paused by an operator: kernel upgrade"), "{line}");
        assert_eq!(
            kinds(&diff(&paused, &paused, &BTreeSet::new(), "t")),
            Vec::<String>::new()
        );
        assert_eq!(kinds(&diff(&paused, &calm, &BTreeSet::new(), "t")), ["resumed"]);
    }

    #[test]
    fn a_new_run_under_the_same_uuid_registers_again() {
        let mut again = pod("a", 1, PodState::Running);
        again.started = 2;
        let events = diff(
            &model(&[pod("a", 1, PodState::Running)], None, None),
            &model(&[again], None, None),
            &BTreeSet::new(),
            "T",
        );
        assert_eq!(kinds(&events), ["registered"]);
    }

    #[test]
    fn notifications_mark_their_cluster() {
        let mut d = Dirty::default();
        d.note("/ochopod/clusters/default.zk/seqs/1", zkc::EventType::NodeCreated);
        assert!(d.is_empty());
        d.note(
            "/ochopod/clusters/default.zk/pods/u1",
            zkc::EventType::NodeDataChanged,
        );
        d.note(
            "/ochopod/clusters/default.kafka/snapshot",
            zkc::EventType::NodeDataChanged,
        );
        d.note("/elsewhere", zkc::EventType::NodeCreated);
        assert_eq!(d.keys.iter().collect::<Vec<_>>(), ["default.kafka", "default.zk"]);
        assert_eq!(d.touched.iter().collect::<Vec<_>>(), ["u1"]);
        assert!(!d.all);
        d.note("/ochopod/clusters", zkc::EventType::NodeCreated);
        assert!(d.all);
    }

    #[test]
    fn selection_follows_ctl_patterns() {
        assert!(selected("default.zk", &[], "default"));
        assert!(!selected("prod.zk", &[], "default"));
        assert!(selected("prod.zk", &["prod.*".into()], "default"));
        assert!(selected("default.kafka", &["k*".into()], "default"));
    }
}
