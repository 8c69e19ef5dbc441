//! The snapshot: `{generation, hash, pods}` of a cluster's last configuration (SPEC §6), plus
//! `depends_on`, the cluster's dependencies as resolved keys, which other leaders follow to find
//! a dependency cycle (SPEC §3). A leader publishes `depends_on` before its first configuration
//! too, as a snapshot of generation 0 without pods (which configures nothing). And `failed`, the
//! pods evicted, which a new leader keeps out. And `reserved`, the seqs kept for pods that
//! vanished without leaving (session expired), until when, which a new leader honours (SPEC §4).
//!
//! Written only by the leader, in ONE transaction that first checks the leader's election node
//! (so a deposed leader can change nothing), and that frees the seqs of pods the configuration
//! dropped, less the reserved ones (each delete checks the version read when planning, so a pod
//! re-claiming its seq meanwhile makes the whole transaction fail and the leader plan again).
//!
//! Up to [`parts::INLINE_MAX`] of JSON the snapshot is the `snapshot` znode itself, as it always
//! was; beyond, `snapshot` holds a manifest and the JSON is in parts ([`parts`]): ZooKeeper
//! refuses a znode or a transaction over its `jute.maxbuffer`. [`read`] and [`resolve`] read both
//! forms; [`decode`] only the first; [`generation`] the generation of either.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zookeeper_client as zkc;

use super::{Acls, Client, ZkError};
use crate::model::Pod;

pub mod parts;

/// How often [`read`] starts again from the manifest when a part vanished under it (each time a
/// newer commit replaced the parts).
const ATTEMPTS: usize = 5;

/// Why a snapshot cannot be read. The leader retries (a newer commit may fix it); `ctl` shows no
/// snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a snapshot: {0}")]
    Json(#[source] serde_json::Error),
    #[error("stored in parts: read it with its parts (zk::snapshot::read)")]
    InParts,
    #[error("not a snapshot manifest: {0}")]
    Manifest(#[source] serde_json::Error),
    #[error("the manifest names {count} parts (1 to {} accepted)", parts::MAX_PARTS)]
    PartCount { count: usize },
    #[error("the manifest announces {bytes} bytes (1 to {} accepted)", parts::MAX_BYTES)]
    TooLarge { bytes: u64 },
    #[error("the manifest's sha256 is not 64 lowercase hex digits")]
    BadDigest,
    #[error("the manifest's part {index} is named {name:?}, not <sha256>-{index}")]
    PartName { index: usize, name: String },
    #[error("the parts do not hold the {expected} bytes the manifest announces")]
    Size { expected: u64 },
    #[error("the parts do not match the manifest's sha256")]
    Digest,
    #[error("the manifest does not agree with the snapshot in its parts ({field})")]
    Disagrees { field: &'static str },
    #[error("its parts vanished {ATTEMPTS} times in a row while being read")]
    Vanishing,
}

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

/// Reads a snapshot (either form) and its version (the `snapshot` znode's); None when the cluster
/// was never configured.
pub async fn read(client: &Client, path: &str) -> Result<Option<(Snapshot, i32)>, ZkError> {
    for _ in 0..ATTEMPTS {
        let (data, stat) = match client.get_data(path).await {
            Ok(read) => read,
            Err(zkc::Error::NoNode) => return Ok(None),
            Err(e) => return Err(ZkError::op("reading", path)(e)),
        };
        if let Some(snapshot) = resolve_once(client, path, &data).await? {
            return Ok(Some((snapshot, stat.version)));
        }
    }
    Err(snapshot_error(path, SnapshotError::Vanishing))
}

/// Only the generation of the snapshot at `path` (0: never configured), read from the `snapshot`
/// znode alone: both forms carry it at the top (SPEC §6), so neither the parts of a manifest nor
/// the pods are read or validated. For what only shows it (a registering pod's status).
pub async fn generation(client: &Client, path: &str) -> Result<u64, ZkError> {
    #[derive(Deserialize)]
    struct Head {
        generation: u64,
    }
    let data = match client.get_data(path).await {
        Ok((data, _)) => data,
        Err(zkc::Error::NoNode) => return Ok(0),
        Err(e) => return Err(ZkError::op("reading", path)(e)),
    };
    serde_json::from_slice::<Head>(&data)
        .map(|h| h.generation)
        .map_err(|e| snapshot_error(path, SnapshotError::Json(e)))
}

/// The snapshot `data` (read from `path` by the caller, for instance with a watch) holds: itself,
/// or the one its manifest describes. When a part vanished (a newer commit), the current snapshot,
/// read again from `path`; `SnapshotError::Vanishing` if it is gone meanwhile.
pub async fn resolve(client: &Client, path: &str, data: &[u8]) -> Result<Snapshot, ZkError> {
    if let Some(snapshot) = resolve_once(client, path, data).await? {
        return Ok(snapshot);
    }
    match read(client, path).await? {
        Some((snapshot, _)) => Ok(snapshot),
        None => Err(snapshot_error(path, SnapshotError::Vanishing)),
    }
}

/// None: a part vanished.
async fn resolve_once(client: &Client, path: &str, data: &[u8]) -> Result<Option<Snapshot>, ZkError> {
    let Some(manifest) = parts::manifest(path, data)? else {
        return decode(path, data).map(Some);
    };
    let Some(json) = parts::assemble(client, path, &manifest).await? else {
        return Ok(None);
    };
    let snapshot: Snapshot =
        serde_json::from_slice(&json).map_err(|e| snapshot_error(path, SnapshotError::Json(e)))?;
    let disagrees = if snapshot.generation != manifest.generation {
        Some("generation")
    } else if snapshot.hash != manifest.hash {
        Some("hash")
    } else if snapshot.depends_on != manifest.depends_on {
        Some("depends_on")
    } else {
        None
    };
    match disagrees {
        Some(field) => Err(snapshot_error(path, SnapshotError::Disagrees { field })),
        None => Ok(Some(snapshot)),
    }
}

/// A snapshot of one znode. A manifest is refused ([`SnapshotError::InParts`]): its pods are in
/// the parts, which [`read`] and [`resolve`] fetch.
pub fn decode(path: &str, data: &[u8]) -> Result<Snapshot, ZkError> {
    if parts::manifest(path, data)?.is_some() {
        return Err(snapshot_error(path, SnapshotError::InParts));
    }
    serde_json::from_slice(data).map_err(|e| snapshot_error(path, SnapshotError::Json(e)))
}

fn snapshot_error(path: &str, source: SnapshotError) -> ZkError {
    ZkError::Snapshot {
        path: path.to_string(),
        source,
    }
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

/// Writes the snapshot: one znode up to [`parts::INLINE_MAX`] of JSON, else its parts first and
/// a manifest in the transaction (which then also checks that each part exists). Then deletes the
/// parts no longer named (best effort).
pub async fn commit(client: &Client, acls: Acls, c: &Commit<'_>) -> Result<(), ZkError> {
    let json = serde_json::to_vec(c.snapshot).map_err(|e| ZkError::Data {
        path: c.path.to_string(),
        message: e.to_string(),
    })?;
    if json.len() <= parts::INLINE_MAX {
        transaction(client, acls, c, &json, &[]).await?;
        parts::sweep(client, c, &[]).await;
        return Ok(());
    }
    let (manifest, part_paths) = parts::write(client, acls, c, &json).await?;
    let data = serde_json::to_vec(&manifest).map_err(|e| ZkError::Data {
        path: c.path.to_string(),
        message: e.to_string(),
    })?;
    tracing::debug!(
        bytes = json.len(),
        parts = part_paths.len(),
        generation = c.snapshot.generation,
        "snapshot written in parts"
    );
    transaction(client, acls, c, &data, &part_paths).await?;
    parts::sweep(client, c, &part_paths).await;
    Ok(())
}

/// The one checked transaction: the leader's node, the snapshot (or manifest), the parts it names
/// still there, the seqs freed.
async fn transaction(
    client: &Client,
    acls: Acls,
    c: &Commit<'_>,
    data: &[u8],
    part_paths: &[String],
) -> Result<(), ZkError> {
    let bad = |e| ZkError::op("preparing the transaction for", c.path)(e);
    let mut w = client
        .new_check_writer(c.leader_node, Some(c.leader_version))
        .map_err(bad)?;
    match c.snapshot_version {
        Some(v) => w.add_set_data(c.path, data, Some(v)).map_err(bad)?,
        None => w.add_create(c.path, data, &acls.persistent()).map_err(bad)?,
    }
    // A part deleted since it was written (by a deposed leader's sweep) fails the transaction:
    // the manifest never names a part that is not there.
    for part in part_paths {
        w.add_check_version(part, -1).map_err(bad)?;
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
