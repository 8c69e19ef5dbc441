//! The leader's cache of what it follows in ZooKeeper, kept from watch events so that a change
//! costs the leader O(1) requests, not O(pods) (issue 10): its cluster's pods and seqs
//! ([`Mirror`]s of `pods/` and `seqs/`), its own snapshot, its pause, the list of clusters (for
//! wildcard dependencies), each dependency's pods, and the snapshots of the clusters it depends
//! on (directly or not: a dependency cycle can close anywhere).
//!
//! Each part is read whole only when it is stale: new (its watch was just added, or this is a
//! new leadership), after a reconnection, after a failed read. Otherwise an event names the znode
//! that changed and only that one is read again (a pod's znode deleted: dropped without a read).
//! The own snapshot is not watched (a one-shot watch of the drain shares the path,
//! ZOOKEEPER-4466): the leader is its only writer, and reads it again after each of its writes
//! ([`Cache::snapshot_written`]). Validation is where it always was: each znode is judged as it is
//! read ([`cluster::judge`], [`snapshot::read`], [`pause::read`]).

use std::collections::{BTreeMap, VecDeque};

use super::evictions::{evicted, Evictions};
use super::plan::{self, Pods};
use super::watches::{Event, Watches};
use super::world::{Ctx, World};
use crate::zk::cluster::{self, HeldSeq, Registered, Rejected};
use crate::zk::mirror::Mirror;
use crate::zk::paths::{is_cluster_key, ClusterPaths, CLUSTERS};
use crate::zk::pause::{self, Pause};
use crate::zk::snapshot::{self, DependencyRecord, Snapshot};
use crate::zk::{register, Client, ZkError};

/// At most this many clusters are followed looking for a dependency cycle.
const GRAPH_LIMIT: usize = 64;

type Judged = Result<Registered, Rejected>;

/// One value read whole, and whether it must be read again.
struct Slot<T> {
    value: T,
    stale: bool,
}

impl<T: Default> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            value: T::default(),
            stale: true,
        }
    }
}

type SnapshotSlot = Slot<Option<(Snapshot, i32)>>;

fn judged(name: &str, data: &[u8], stat: &zookeeper_client::Stat) -> Option<Judged> {
    Some(cluster::judge(name, data, stat))
}

fn held(name: &str, data: &[u8], stat: &zookeeper_client::Stat) -> Option<HeldSeq> {
    Some(HeldSeq {
        seq: register::seq_of(name)?,
        uuid: String::from_utf8_lossy(data).into_owned(),
        version: stat.version,
    })
}

pub(super) struct Cache {
    paths: ClusterPaths,
    /// Whether a dependency is a pattern (the cluster list is then followed).
    wildcard: bool,
    pods: Mirror<Judged>,
    seqs: Mirror<HeldSeq>,
    snapshot: SnapshotSlot,
    paused: Slot<Option<(Pause, i32)>>,
    clusters: Slot<Vec<String>>,
    /// Each dependency's `pods/`, by cluster key.
    dep_pods: BTreeMap<String, Mirror<Judged>>,
    /// The snapshots of the dependencies and of the clusters they depend on, by cluster key.
    snapshots: BTreeMap<String, SnapshotSlot>,
    /// Requests made since [`Cache::take_reads`].
    reads: u64,
}

impl Cache {
    /// Empty and stale: the first [`Cache::observe`] reads everything.
    pub(super) fn new(ctx: &Ctx) -> Cache {
        let paths = ctx.paths.clone();
        Cache {
            wildcard: ctx.spec.depends_on.iter().any(|d| plan::is_pattern(&d.cluster)),
            pods: Mirror::new(paths.pods(), judged),
            // Claim tickets come and go with each registration: not a read each.
            seqs: Mirror::new(paths.seqs(), held).only(|name| register::seq_of(name).is_some()),
            snapshot: Slot::default(),
            paused: Slot::default(),
            clusters: Slot::default(),
            dep_pods: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            reads: 0,
            paths,
        }
    }

    /// Everything is read again at the next observation (a reconnection: events may be lost).
    pub(super) fn invalidate(&mut self) {
        self.pods.invalidate();
        self.seqs.invalidate();
        self.snapshot.stale = true;
        self.paused.stale = true;
        self.clusters.stale = true;
        self.dep_pods.values_mut().for_each(Mirror::invalidate);
        self.snapshots.values_mut().for_each(|s| s.stale = true);
    }

    /// The leader wrote its snapshot (or tried: it may have changed anyway).
    pub(super) fn snapshot_written(&mut self) {
        self.snapshot.stale = true;
    }

    /// The leader wrote the pause: read it again (before its event comes).
    pub(super) fn pause_written(&mut self) {
        self.paused.stale = true;
    }

    /// Requests made since the last call.
    pub(super) fn take_reads(&mut self) -> u64 {
        std::mem::take(&mut self.reads)
    }

    /// The pause was read outside the cache (1 request).
    pub(super) fn count_read(&mut self) {
        self.reads = self.reads.saturating_add(1);
    }

    /// Takes one watch event into account.
    pub(super) fn event(&mut self, event: Event) {
        let (kind, path) = match event {
            Event::Reconnected => return self.invalidate(),
            Event::Node(kind, path) => (kind, path),
        };
        if self.pods.event(kind, &path) || self.seqs.event(kind, &path) {
            return;
        }
        if path == self.paths.paused() {
            self.paused.stale = true;
            return;
        }
        if path == CLUSTERS {
            self.clusters.stale = true;
            return;
        }
        for m in self.dep_pods.values_mut() {
            if m.event(kind, &path) {
                return;
            }
        }
        for (key, slot) in &mut self.snapshots {
            let snap = ClusterPaths::new(key).snapshot();
            if path == snap || path.strip_prefix(&snap).is_some_and(|r| r.starts_with('/')) {
                slot.stale = true;
            }
        }
    }

    /// Brings the cache up to date (watching what it must first), and builds the world from it.
    pub(super) async fn observe(
        &mut self,
        ctx: &Ctx,
        client: &Client,
        watches: &mut Watches,
        evictions: &mut Evictions,
    ) -> Result<World, ZkError> {
        // Watch first, then read: a change after the watch is an event, one before is in the read.
        if watches.add(client, &self.paths.pods(), true).await? {
            self.pods.invalidate();
        }
        if watches.add(client, &self.paths.seqs(), true).await? {
            self.seqs.invalidate();
        }
        // Persistent, like the others: one path may not hold a one-shot and a persistent watch
        // of the same session (ZOOKEEPER-4466), and the pause is only ever read, never watched once.
        if watches.add(client, &self.paths.paused(), false).await? {
            self.paused.stale = true;
        }
        if self.wildcard && watches.add(client, CLUSTERS, false).await? {
            self.clusters.stale = true;
        }
        let reads = self.pods.refresh(client).await?;
        self.count(reads);
        let reads = self.seqs.refresh(client).await?;
        self.count(reads);
        if self.snapshot.stale {
            self.count(1);
            self.snapshot.value = snapshot::read(client, &self.paths.snapshot()).await?;
            self.snapshot.stale = false;
        }
        if self.paused.stale {
            self.count(1);
            self.paused.value = pause::read(client, &self.paths.paused()).await?;
            self.paused.stale = false;
        }
        if self.wildcard && self.clusters.stale {
            self.count(1);
            self.clusters.value = cluster::list_clusters(client).await?;
            self.clusters.stale = false;
        }
        let resolved = plan::resolve(
            &ctx.spec.namespace,
            &self.paths.key,
            &ctx.spec.depends_on,
            &self.clusters.value,
        );
        let depends_on = plan::dependency_keys(&resolved);
        // The dependencies' pods and snapshots, then the graph, a level at a time: a snapshot
        // read names the clusters to follow next.
        let mut passes = 0;
        let graph = loop {
            for key in &depends_on {
                self.follow_pods(client, watches, key).await?;
            }
            let (graph, missing) = self.graph(&depends_on);
            passes += 1;
            if missing.is_empty() || passes > GRAPH_LIMIT {
                break graph;
            }
            for key in missing {
                self.snapshots.entry(key).or_default();
            }
            self.refresh_snapshots(client, watches).await?;
        };
        // What is no longer followed is forgotten (its watch stays until the leadership ends).
        self.dep_pods.retain(|k, _| depends_on.contains(k));
        self.snapshots
            .retain(|k, _| depends_on.contains(k) || graph.contains_key(k));
        let cycle = plan::find_cycle(&self.paths.key, &depends_on, &graph);
        Ok(self.world(ctx, evictions, resolved, depends_on, cycle))
    }

    fn count(&mut self, n: u64) {
        self.reads = self.reads.saturating_add(n);
    }

    /// Watches and reads a dependency's pods and snapshot.
    async fn follow_pods(
        &mut self,
        client: &Client,
        watches: &mut Watches,
        key: &str,
    ) -> Result<(), ZkError> {
        let p = ClusterPaths::new(key);
        let mirror = self
            .dep_pods
            .entry(key.to_string())
            .or_insert_with(|| Mirror::new(p.pods(), judged));
        if watches.add(client, &p.pods(), true).await? {
            mirror.invalidate();
        }
        let reads = mirror.refresh(client).await?;
        self.count(reads);
        self.snapshots.entry(key.to_string()).or_default();
        self.refresh_snapshots(client, watches).await
    }

    /// Watches and reads every snapshot that is stale.
    async fn refresh_snapshots(&mut self, client: &Client, watches: &mut Watches) -> Result<(), ZkError> {
        let mut reads = 0;
        for (key, slot) in &mut self.snapshots {
            let path = ClusterPaths::new(key).snapshot();
            if watches.add(client, &path, false).await? {
                slot.stale = true;
            }
            if slot.stale {
                reads += 1;
                slot.value = snapshot::read(client, &path).await?;
                slot.stale = false;
            }
        }
        self.count(reads);
        Ok(())
    }

    /// What the dependencies depend on, transitively, per their snapshots' `depends_on` (bounded
    /// by [`GRAPH_LIMIT`]; keys that are not cluster keys, another tool's mistake, are skipped);
    /// and the clusters reached whose snapshot is not cached yet.
    fn graph(&self, deps: &[String]) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
        let mut graph = BTreeMap::new();
        let mut missing = Vec::new();
        let mut queue: VecDeque<String> = deps.iter().cloned().collect();
        while let Some(key) = queue.pop_front() {
            if key == self.paths.key || graph.contains_key(&key) || !is_cluster_key(&key) {
                continue;
            }
            if graph.len() >= GRAPH_LIMIT {
                tracing::debug!(limit = GRAPH_LIMIT, "dependency graph truncated");
                break;
            }
            let Some(slot) = self.snapshots.get(&key) else {
                if !missing.contains(&key) {
                    missing.push(key);
                }
                continue;
            };
            let next = slot
                .value
                .as_ref()
                .map(|(s, _)| s.depends_on.clone())
                .unwrap_or_default();
            queue.extend(next.iter().cloned());
            graph.insert(key, next);
        }
        (graph, missing)
    }

    fn world(
        &self,
        ctx: &Ctx,
        evictions: &mut Evictions,
        resolved: Vec<plan::ResolvedDep>,
        depends_on: Vec<String>,
        cycle: Option<Vec<String>>,
    ) -> World {
        let (registered, rejected) = split(&self.pods);
        let snapshot = self.snapshot.value.clone();
        let limit = ctx.spec.settings.evict_after.max(1);
        let failed = snapshot.as_ref().map_or(&[][..], |(s, _)| s.failed.as_slice());
        evictions.seed(failed, &registered, limit);
        let live: Pods = registered
            .values()
            .filter(|r| r.pod.state.is_live() && evictions.count(r) < limit)
            .map(|r| (r.pod.uuid.clone(), r.pod.clone()))
            .collect();
        let mut deps = BTreeMap::new();
        let mut dependencies = BTreeMap::new();
        for r in &resolved {
            let (generation, pods) = self.dependency_pods(&r.key);
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
        let mut held: Vec<HeldSeq> = self.seqs.entries().values().cloned().collect();
        held.sort_by_key(|h| h.seq);
        let hash = plan::config_hash(&live, &deps);
        let mut world = World {
            depends_on,
            cycle,
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
            paused: self.paused.value.clone(),
            lost: Vec::new(),
        };
        world.evicted = evicted(&world, &world.live, evictions, limit);
        world
    }

    /// A dependency's pods as its dependents see them (SPEC §6): the pods of its snapshot still
    /// registered and running, with their registered JSON; and that snapshot's generation.
    fn dependency_pods(&self, key: &str) -> (u64, Pods) {
        let Some((snapshot, _)) = self.snapshots.get(key).and_then(|s| s.value.as_ref()) else {
            return (0, Pods::new());
        };
        let Some(mirror) = self.dep_pods.get(key) else {
            return (snapshot.generation, Pods::new());
        };
        let pods = snapshot
            .pods
            .keys()
            .filter_map(|uuid| mirror.entries().get(uuid))
            .filter_map(|j| j.as_ref().ok())
            .filter(|r| r.pod.state.is_live())
            .map(|r| (r.pod.uuid.clone(), r.pod.clone()))
            .collect();
        (snapshot.generation, pods)
    }
}

/// The valid registrations by uuid, and the refused ones.
fn split(m: &Mirror<Judged>) -> (BTreeMap<String, Registered>, Vec<Rejected>) {
    let mut pods = BTreeMap::new();
    let mut rejected = Vec::new();
    for (name, j) in m.entries() {
        match j {
            Ok(r) => {
                pods.insert(name.clone(), r.clone());
            }
            Err(r) => rejected.push(r.clone()),
        }
    }
    (pods, rejected)
}
