//! Reading the clusters a batch of notifications made stale ([`Dirty`]) into a new [`Model`]:
//! one cluster's pods, leader, snapshot and pause with every read sent before the first is
//! awaited (about one round trip), all dirty clusters at once.

use std::collections::BTreeSet;

use zookeeper_client as zkc;

use super::model::{ClusterView, Model, Rejected, SnapshotView};
use crate::ctl::discover::{leader_of, Discovery, CLUSTERS};
use crate::ctl::CtlError;

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
        Err(e) => return Err(zk.op("listing", &dir)(e)),
    };
    let paths: Vec<(String, String)> = names.into_iter().map(|n| (format!("{dir}/{n}"), n)).collect();
    let reads: Vec<_> = paths.iter().map(|(p, _)| client.get_data(p)).collect();
    let mut view = ClusterView {
        key: key.to_string(),
        ..ClusterView::default()
    };
    for ((path, name), read) in paths.iter().zip(reads) {
        match read.await {
            // Judged as the leader judges it (zk::cluster::judge: a valid pod, filed under its own
            // uuid, in an ephemeral znode): nothing past here sees a hostile value.
            Ok((data, stat)) => match crate::zk::cluster::judge(name, &data, &stat) {
                Ok(r) => {
                    view.pods.insert(r.pod.uuid.clone(), r.pod);
                }
                Err(r) => view.rejected.push(Rejected {
                    znode: r.name,
                    reason: r.reason,
                }),
            },
            // Gone between the listing and the read: the pod left.
            Err(zkc::Error::NoNode) => {}
            Err(e) => return Err(zk.op("reading", path)(e)),
        }
    }
    view.leader = leader_of(client, zk.connect_string(), &leader_dir, leaders).await?;
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
        Err(e) => return Err(zk.op("reading", &snapshot_path)(e)),
    };
    view.paused = match paused.await {
        // Untrusted like the rest: decode() keeps a printable, bounded reason.
        Ok((data, stat)) => Some(crate::zk::pause::decode(&data, stat.mtime)),
        Err(zkc::Error::NoNode) => None,
        Err(e) => return Err(zk.op("reading", &paused_path)(e)),
    };
    match exists.await {
        Ok(Some(_)) => Ok(Some(view)),
        Ok(None) if view.pods.is_empty() && view.snapshot.is_none() => Ok(None),
        Ok(None) => Ok(Some(view)),
        Err(e) => Err(zk.op("reading", &root)(e)),
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
        Err(e) => Err(zk.op("listing", CLUSTERS)(e)),
    }
}

/// Which clusters need reading again.
#[derive(Debug, Default)]
pub(super) struct Dirty {
    /// Everything (the start, a reconnection, `/ochopod/clusters` itself changed).
    pub(super) all: bool,
    pub(super) keys: BTreeSet<String>,
    /// Pods whose znode was notified as changed (see [`diff`](super::diff)).
    pub(super) touched: BTreeSet<String>,
}

impl Dirty {
    pub(super) fn is_empty(&self) -> bool {
        !self.all && self.keys.is_empty()
    }

    /// Marks what a notification on `path` makes stale.
    pub(super) fn note(&mut self, path: &str, kind: zkc::EventType) {
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
pub(super) async fn refresh(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
