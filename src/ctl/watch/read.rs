//! Reading the clusters a batch of notifications made stale ([`Dirty`]) into a new [`Model`]:
//! one cluster's pods, leader, snapshot and pause with every read sent before the first is
//! awaited (about one round trip), all dirty clusters at once.

use std::collections::BTreeSet;

use zookeeper_client as zkc;

use super::model::{ClusterView, Model, Rejected, SnapshotView};
use crate::ctl::discover::{Discovery, CLUSTERS};
use crate::ctl::CtlError;

/// Reads one cluster ([`read_cluster`](crate::ctl::discover::read_cluster)) into its view; None
/// when its znode is gone and nothing of it is left.
async fn read_cluster(
    zk: &Discovery,
    client: &zkc::Client,
    key: &str,
) -> Result<Option<ClusterView>, CtlError> {
    let read = crate::ctl::discover::read_cluster(client, zk.connect_string(), key).await?;
    let view = ClusterView {
        key: key.to_string(),
        pods: read.pods.into_iter().map(|p| (p.uuid.clone(), p)).collect(),
        rejected: read
            .rejected
            .into_iter()
            .map(|r| Rejected {
                znode: r.name,
                reason: r.reason,
            })
            .collect(),
        leader: read.leader,
        snapshot: read.snapshot.map(|s| SnapshotView {
            generation: s.generation,
            pods: s.pods.into_iter().map(|(u, p)| (u, p.seq)).collect(),
            depends_on: s.depends_on,
            failed: s.failed,
        }),
        paused: read.paused,
    };
    let empty = view.pods.is_empty() && view.snapshot.is_none();
    Ok((read.exists || !empty).then_some(view))
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
