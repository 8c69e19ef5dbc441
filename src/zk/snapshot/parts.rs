//! A snapshot too big for one znode, stored in parts (SPEC §6).
//!
//! ZooKeeper refuses any request over its `jute.maxbuffer` (1 MB by default), a multi transaction
//! included: it closes the connection, and the client sees a connection loss. A snapshot of a few
//! thousand pods is over it. So a snapshot whose JSON is over [`INLINE_MAX`] is written as:
//!
//! - **parts**: the JSON cut into pieces of [`PART_BYTES`], in `<snapshot>-parts/<sha256>-<i>`
//!   (the sibling `snapshot-parts` node; `<sha256>`: hex of the whole JSON), created before the
//!   transaction. Immutable and named by their content: the same JSON always gives the same
//!   parts, so writing them again is harmless.
//! - **a manifest** in `snapshot`, committed in the leader's one checked transaction (which also
//!   checks that every part it names still exists): `{generation, hash, depends_on, bytes,
//!   sha256, parts: [name]}`. `generation` and `depends_on` are there so that what only needs
//!   them does not read the parts.
//! - then the parts no manifest names any more are deleted, each in a transaction that checks the
//!   leader's election node (a deposed leader must not delete what its successor just wrote).
//!   Best effort: what a failed commit left behind goes at the next commit.
//!
//! Why a sibling and not children of `snapshot`: the parts must exist before the transaction that
//! creates the first snapshot, and `snapshot` stays a leaf that tools can delete and watch as
//! before.
//!
//! A reader gets the manifest, then the parts (eight requests at a time), checks the
//! size and the digest, and decodes the JSON as a snapshot of one znode. A part that vanished
//! means a newer commit replaced it: the caller reads the manifest again. Everything is
//! untrusted: the part count and the total size are capped ([`MAX_PARTS`], [`MAX_BYTES`]) before
//! anything is fetched, the names must be the ones the digest gives, and the manifest must agree
//! with the JSON it describes.

use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use zookeeper_client as zkc;

use super::{Client, Commit, SnapshotError, ZkError};
use crate::zk::Acls;

/// Up to this size the snapshot is one znode, as ochopod always wrote it. Half of ZooKeeper's
/// default `jute.maxbuffer`: the transaction also carries the seqs it frees.
pub const INLINE_MAX: usize = 512 * 1024;

/// The size of each part (the last one is shorter).
pub const PART_BYTES: usize = 512 * 1024;

/// The most parts a reader accepts: [`MAX_BYTES`] in [`PART_BYTES`] pieces.
pub const MAX_PARTS: usize = 64;

/// The largest snapshot a reader accepts, 32 MiB (a cluster of about 70,000 pods).
pub const MAX_BYTES: u64 = (MAX_PARTS * PART_BYTES) as u64;

/// Parts requested at once: enough for one round trip up to 4 MiB, without a hostile manifest
/// making a reader hold much more than it accepts.
const IN_FLIGHT: usize = 8;

/// What `snapshot` holds when the snapshot is in parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Manifest {
    pub generation: u64,
    pub hash: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// The size of the whole JSON.
    pub bytes: u64,
    /// Hex of the SHA-256 of the whole JSON.
    pub sha256: String,
    /// The parts' names in order, each `<sha256>-<index>`.
    pub parts: Vec<String>,
}

/// Only whether `parts` is there: a snapshot of one znode never has it.
#[derive(Deserialize)]
struct Form {
    #[serde(default)]
    parts: Option<serde::de::IgnoredAny>,
}

/// The manifest, when `data` is one; None when it is a snapshot of one znode (or not JSON, which
/// decoding it as a snapshot then reports).
pub(super) fn manifest(path: &str, data: &[u8]) -> Result<Option<Manifest>, ZkError> {
    match serde_json::from_slice::<Form>(data) {
        Ok(Form { parts: Some(_) }) => serde_json::from_slice(data)
            .map(Some)
            .map_err(|e| error(path, SnapshotError::Manifest(e))),
        _ => Ok(None),
    }
}

fn error(path: &str, source: SnapshotError) -> ZkError {
    ZkError::Snapshot {
        path: path.to_string(),
        source,
    }
}

/// `<snapshot>-parts`: where the parts of the snapshot at `path` live.
pub fn dir(path: &str) -> String {
    format!("{path}-parts")
}

fn part_name(sha256: &str, index: usize) -> String {
    format!("{sha256}-{index}")
}

/// The checks that need no read: how many parts, how big, named as the digest says.
fn validate(m: &Manifest) -> Result<(), SnapshotError> {
    if m.parts.is_empty() || m.parts.len() > MAX_PARTS {
        return Err(SnapshotError::PartCount { count: m.parts.len() });
    }
    if m.bytes == 0 || m.bytes > MAX_BYTES {
        return Err(SnapshotError::TooLarge { bytes: m.bytes });
    }
    if m.sha256.len() != 64
        || !m
            .sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(SnapshotError::BadDigest);
    }
    for (index, name) in m.parts.iter().enumerate() {
        if *name != part_name(&m.sha256, index) {
            return Err(SnapshotError::PartName {
                index,
                name: name.chars().take(80).flat_map(char::escape_debug).collect(),
            });
        }
    }
    Ok(())
}

/// The whole JSON the manifest describes; None when a part is gone (a newer commit replaced it).
pub(super) async fn assemble(client: &Client, path: &str, m: &Manifest) -> Result<Option<Vec<u8>>, ZkError> {
    validate(m).map_err(|e| error(path, e))?;
    let dir = dir(path);
    let paths: Vec<String> = m.parts.iter().map(|n| format!("{dir}/{n}")).collect();
    let mut json = Vec::new();
    for window in paths.chunks(IN_FLIGHT) {
        // Pipelined: zookeeper-client sends each request when it is called.
        let reads: Vec<_> = window.iter().map(|p| client.get_data(p)).collect();
        for (part, read) in window.iter().zip(reads) {
            let data = match read.await {
                Ok((data, _)) => data,
                Err(zkc::Error::NoNode) => return Ok(None),
                Err(e) => return Err(ZkError::op("reading", part)(e)),
            };
            // Checked as it grows: never more than the manifest announced (itself capped).
            let total = json.len().checked_add(data.len()).map(|n| n as u64);
            if total.is_none_or(|n| n > m.bytes) {
                return Err(error(path, SnapshotError::Size { expected: m.bytes }));
            }
            json.extend_from_slice(&data);
        }
    }
    if json.len() as u64 != m.bytes {
        return Err(error(path, SnapshotError::Size { expected: m.bytes }));
    }
    if hex::encode(sha2::Sha256::digest(&json)) != m.sha256 {
        return Err(error(path, SnapshotError::Digest));
    }
    Ok(Some(json))
}

/// Writes the parts of `json` (creating the parts' node if needed) and returns the manifest to
/// commit. A part already there with other bytes (written by someone else) is overwritten.
pub(super) async fn write(
    client: &Client,
    acls: Acls,
    c: &Commit<'_>,
    json: &[u8],
) -> Result<(Manifest, Vec<String>), ZkError> {
    let dir = dir(c.path);
    match client.create(&dir, &[], &acls.persistent()).await {
        Ok(_) | Err(zkc::Error::NodeExists) => {}
        Err(e) => return Err(ZkError::op("creating", &dir)(e)),
    }
    let sha256 = hex::encode(sha2::Sha256::digest(json));
    let chunks: Vec<&[u8]> = json.chunks(PART_BYTES).collect();
    let names: Vec<String> = (0..chunks.len()).map(|i| part_name(&sha256, i)).collect();
    let paths: Vec<String> = names.iter().map(|n| format!("{dir}/{n}")).collect();
    let jobs: Vec<(&String, &[u8])> = paths.iter().zip(chunks).collect();
    let options = acls.persistent();
    for window in jobs.chunks(IN_FLIGHT) {
        let creates: Vec<_> = window
            .iter()
            .map(|(p, data)| client.create(p, data, &options))
            .collect();
        for ((part, data), create) in window.iter().zip(creates) {
            match create.await {
                Ok(_) => {}
                Err(zkc::Error::NodeExists) => keep_or_fix(client, part, data).await?,
                Err(e) => return Err(ZkError::op("creating", part)(e)),
            }
        }
    }
    let s = c.snapshot;
    let manifest = Manifest {
        generation: s.generation,
        hash: s.hash.clone(),
        depends_on: s.depends_on.clone(),
        bytes: json.len() as u64,
        sha256,
        parts: names,
    };
    Ok((manifest, paths))
}

/// A part that exists already: the same bytes (the same JSON written again), or fixed.
async fn keep_or_fix(client: &Client, part: &str, data: &[u8]) -> Result<(), ZkError> {
    match client.get_data(part).await {
        Ok((found, _)) if found == data => return Ok(()),
        Ok(_) => tracing::warn!(part, "a snapshot part did not hold what its name says, rewritten"),
        Err(zkc::Error::NoNode) => {}
        Err(e) => return Err(ZkError::op("reading", part)(e)),
    }
    client
        .set_data(part, data, None)
        .await
        .map(drop)
        .map_err(ZkError::op("writing", part))
}

/// Deletes the parts that `keep` does not name, each delete checked against the leader's
/// election node. Best effort: a failure is logged, the next commit tries again.
pub(super) async fn sweep(client: &Client, c: &Commit<'_>, keep: &[String]) {
    let dir = dir(c.path);
    let names = match client.list_children(&dir).await {
        Ok(names) => names,
        Err(zkc::Error::NoNode) => return,
        Err(error) => {
            tracing::debug!(%error, dir, "cannot list the snapshot's parts; swept at the next commit");
            return;
        }
    };
    let stale: Vec<String> = names
        .into_iter()
        .map(|n| format!("{dir}/{n}"))
        .filter(|p| !keep.contains(p))
        .collect();
    for window in stale.chunks(IN_FLIGHT) {
        let mut deletes = Vec::new();
        for part in window {
            let Ok(mut w) = client.new_check_writer(c.leader_node, Some(c.leader_version)) else {
                return;
            };
            if w.add_delete(part, None).is_ok() {
                deletes.push((part, w.commit()));
            }
        }
        for (part, delete) in deletes {
            match delete.await {
                Ok(_) => tracing::debug!(part, "deleted a snapshot part no manifest names"),
                Err(error) => tracing::debug!(%error, part, "cannot delete a stale snapshot part"),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn manifest_of(json: &[u8]) -> Manifest {
        let sha256 = hex::encode(sha2::Sha256::digest(json));
        Manifest {
            generation: 1,
            hash: "h".into(),
            depends_on: Vec::new(),
            bytes: json.len() as u64,
            parts: (0..json.len().div_ceil(PART_BYTES))
                .map(|i| part_name(&sha256, i))
                .collect(),
            sha256,
        }
    }

    #[test]
    fn a_manifest_is_told_from_a_snapshot_of_one_znode() {
        let m = manifest_of(b"{}");
        let text = serde_json::to_vec(&m).unwrap();
        assert_eq!(manifest("/s", &text).unwrap(), Some(m));
        let one = br#"{"generation": 1, "hash": "h", "pods": {}}"#;
        assert_eq!(manifest("/s", one).unwrap(), None);
        assert_eq!(manifest("/s", b"not json").unwrap(), None);
        let e = manifest("/s", br#"{"parts": 3}"#).unwrap_err();
        assert!(
            matches!(
                e,
                ZkError::Snapshot {
                    source: SnapshotError::Manifest(_),
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn hostile_manifests_are_refused_before_any_read() {
        let good = manifest_of(&vec![b' '; PART_BYTES + 1]);
        assert_eq!(good.parts.len(), 2);
        validate(&good).unwrap();
        let with = |f: &dyn Fn(&mut Manifest)| {
            let mut m = good.clone();
            f(&mut m);
            validate(&m).unwrap_err()
        };
        let many = with(&|m| m.parts = (0..10_000).map(|i| part_name(&good.sha256, i)).collect());
        assert!(
            matches!(many, SnapshotError::PartCount { count: 10_000 }),
            "{many}"
        );
        assert!(matches!(
            with(&|m| m.parts.clear()),
            SnapshotError::PartCount { count: 0 }
        ));
        let huge = with(&|m| m.bytes = u64::MAX);
        assert!(matches!(huge, SnapshotError::TooLarge { .. }), "{huge}");
        assert!(matches!(with(&|m| m.bytes = 0), SnapshotError::TooLarge { .. }));
        for bad in ["../../etc", "x", &"A".repeat(64)] {
            let bad = bad.to_string();
            assert!(matches!(
                with(&|m| m.sha256 = bad.clone()),
                SnapshotError::BadDigest
            ));
        }
        for bad in ["../pods/x", "a/b", "", "\u{1b}[31m"] {
            let bad = bad.to_string();
            let e = with(&|m| m.parts[1] = bad.clone());
            assert!(matches!(e, SnapshotError::PartName { index: 1, .. }), "{e}");
            assert!(!e.to_string().contains('\u{1b}'), "escaped: {e}");
        }
        // Another snapshot's part, or the right parts out of order.
        let e = with(&|m| m.parts.swap(0, 1));
        assert!(matches!(e, SnapshotError::PartName { index: 0, .. }), "{e}");
    }
}
