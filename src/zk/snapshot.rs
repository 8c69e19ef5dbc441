//! The snapshot: `{generation, hash, pods}` of a cluster's last configuration (SPEC §6), plus
//! `depends_on`, the cluster's dependencies as resolved keys, which other leaders follow to find
//! a dependency cycle (SPEC §3). A leader publishes `depends_on` before its first configuration
//! too, as a snapshot of generation 0 without pods (which configures nothing). And `failed`, the
//! pods evicted, which a new leader keeps out. And `reserved`, the seqs kept for pods that
//! vanished without leaving (session expired), until when, which a new leader honours (SPEC §4).
//!
//! Written only by the leader, in ONE transaction that first checks the leader's election node
//! (so a deposed leader can change nothing), and that frees the seqs of pods the configuration
//! dropped, less the reserved ones (each delete checks the version read when planning, so a pod re-claiming its seq
//! meanwhile makes the whole transaction fail and the leader plan again).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zookeeper_client as zkc;

use super::{Acls, Client, ZkError};
use crate::model::Pod;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub generation: u64,
    pub hash: String,
    /// A pod that is not valid (see [`crate::model`]) is dropped as the snapshot is read: it
    /// was never written by a leader, which only writes pods it validated.
    #[serde(deserialize_with = "valid_pods")]
    pub pods: BTreeMap<String, Pod>,
    /// `<namespace>.<cluster>` of each dependency, sorted; absent when none (and in snapshots
    /// written by older versions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Uuids of the registered pods this configuration left out as evicted (failing `on`
    /// `evict_after` times, or gone), so that the next leader leaves them out too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
    /// What this configuration was made from, per dependency (`<namespace>.<cluster>`): the
    /// dependency's snapshot generation and the pods used. A pod leaving a dependency waits until
    /// every dependent's snapshot no longer lists it (SPEC §8).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dependencies: BTreeMap<String, DependencyRecord>,
    /// Seqs kept for the pods that vanished without leaving (`settings.seq_hold`), by seq: a
    /// newcomer does not get them, the pod back under its uuid does. An entry that is not valid
    /// is dropped as the snapshot is read.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "valid_reservations"
    )]
    pub reserved: BTreeMap<u32, Reservation>,
}

/// A dependency as a configuration used it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DependencyRecord {
    pub generation: u64,
    /// The uuids of its pods in the map.
    pub pods: Vec<String>,
}

/// A seq kept for `uuid` until `until` (unix ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub uuid: String,
    pub until: u64,
}

/// Like [`valid_pods`]: whoever can write the snapshot could have written anything here, and one
/// bad entry must not make the whole snapshot unreadable (the leader would stop configuring).
pub(crate) fn valid_reservations<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<u32, Reservation>, D::Error> {
    let raw = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    let mut out = BTreeMap::new();
    for (key, value) in raw {
        let seq = key
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=crate::model::MAX_SEQ).contains(n));
        match (seq, serde_json::from_value::<Reservation>(value)) {
            (Some(seq), Ok(r)) if crate::model::is_uuid(&r.uuid) => {
                out.insert(seq, r);
            }
            _ => tracing::warn!(seq = ?key, "a snapshot reservation is not valid, dropped"),
        }
    }
    Ok(out)
}

fn valid_pods<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Pod>, D::Error> {
    let raw = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    let mut pods = BTreeMap::new();
    for (uuid, value) in raw {
        match serde_json::from_value::<Pod>(value) {
            Ok(pod) if pod.uuid == uuid => {
                pods.insert(uuid, pod);
            }
            Ok(_) => tracing::warn!(uuid = ?uuid, "a snapshot entry holds another pod, dropped"),
            Err(error) => {
                tracing::warn!(uuid = ?uuid, %error, "a snapshot entry is not a valid pod, dropped")
            }
        }
    }
    Ok(pods)
}

impl Snapshot {
    /// Whether this records a configuration (generation 0 only publishes `depends_on`).
    pub fn is_configured(&self) -> bool {
        self.generation > 0
    }
}

/// Reads a snapshot and its version; None when the cluster was never configured.
pub async fn read(client: &Client, path: &str) -> Result<Option<(Snapshot, i32)>, ZkError> {
    match client.get_data(path).await {
        Ok((data, stat)) => Ok(Some((decode(path, &data)?, stat.version))),
        Err(zkc::Error::NoNode) => Ok(None),
        Err(e) => Err(ZkError::op("reading", path)(e)),
    }
}

pub fn decode(path: &str, data: &[u8]) -> Result<Snapshot, ZkError> {
    serde_json::from_slice(data).map_err(|e| ZkError::Data {
        path: path.to_string(),
        message: e.to_string(),
    })
}

/// What one snapshot transaction does.
#[derive(Debug, Clone)]
pub struct Commit<'a> {
    /// The leader's election node, which must still exist at `leader_version`.
    pub leader_node: &'a str,
    pub leader_version: i32,
    pub path: &'a str,
    pub snapshot: &'a Snapshot,
    /// The version read when planning; None: the snapshot does not exist yet.
    pub snapshot_version: Option<i32>,
    /// `seqs/<n>` paths to free, with the versions read when planning.
    pub free_seqs: Vec<(String, i32)>,
}

pub async fn commit(client: &Client, acls: Acls, c: &Commit<'_>) -> Result<(), ZkError> {
    let data = serde_json::to_vec(c.snapshot).map_err(|e| ZkError::Data {
        path: c.path.to_string(),
        message: e.to_string(),
    })?;
    let bad = |e| ZkError::op("preparing the transaction for", c.path)(e);
    let mut w = client
        .new_check_writer(c.leader_node, Some(c.leader_version))
        .map_err(bad)?;
    match c.snapshot_version {
        Some(v) => w.add_set_data(c.path, &data, Some(v)).map_err(bad)?,
        None => w.add_create(c.path, &data, &acls.persistent()).map_err(bad)?,
    }
    for (seq, version) in &c.free_seqs {
        w.add_delete(seq, Some(*version)).map_err(bad)?;
    }
    match w.commit().await {
        Ok(_) => Ok(()),
        Err(zkc::CheckWriteError::CheckFailed {
            source: zkc::Error::NoNode | zkc::Error::BadVersion,
        }) => Err(ZkError::Deposed {
            path: c.leader_node.to_string(),
        }),
        Err(e) => Err(ZkError::op("writing", c.path)(e.into())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reservations_round_trip_and_bad_entries_are_dropped_not_fatal() {
        let snap = Snapshot {
            generation: 2,
            reserved: BTreeMap::from([(
                1,
                Reservation {
                    uuid: "a-1".into(),
                    until: 1_700_000_000_000,
                },
            )]),
            ..Snapshot::default()
        };
        let text = serde_json::to_string(&snap).unwrap();
        assert!(
            text.contains(r#""reserved":{"1":{"uuid":"a-1","until":1700000000000}}"#),
            "{text}"
        );
        assert_eq!(decode("/s", text.as_bytes()).unwrap(), snap);
        // Nothing reserved: the field is left out, as in snapshots of older versions.
        let none = serde_json::to_string(&Snapshot::default()).unwrap();
        assert!(!none.contains("reserved"), "{none}");
        let hostile = r#"{"generation": 3, "hash": "", "pods": {}, "reserved": {
            "1": {"uuid": "a-1", "until": 5}, "x": {"uuid": "b", "until": 5}, "0": {"uuid": "c", "until": 5},
            "2": {"uuid": "../etc", "until": 5}, "3": {"uuid": "d"}, "4": 7 }}"#;
        let read = decode("/s", hostile.as_bytes()).unwrap();
        assert_eq!(read.generation, 3);
        assert_eq!(read.reserved.keys().collect::<Vec<_>>(), [&1]);
    }
}
