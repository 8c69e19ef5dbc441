//! The pause of a cluster (SPEC §6): a persistent node `paused` under the cluster's root, holding
//! `{"by": "operator"|"leader", "since": <unix ms>, "reason": "..."}`. While it exists, the
//! cluster's leader configures nothing. Being in ZooKeeper, it outlives any leader.
//!
//! Written by `ochopod ctl pause`/`resume` (an operator's) and by the leader itself when more
//! than `settings.max_lost` pods of the last configuration vanished (the leader's, checked
//! against its election node like the snapshot, so that a deposed leader changes nothing). The
//! leader never deletes an operator's pause.
//!
//! The node is read as untrusted input: its existence is what pauses the cluster, whatever it
//! holds. A node that is not the JSON above reads as an operator's pause (only an operator lifts
//! it), its time from the node's stat; the reason shown is bounded and printable.

use serde::{Deserialize, Serialize};
use zookeeper_client as zkc;

use super::{Acls, Client, ZkError};

/// Who paused a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PausedBy {
    /// `ochopod ctl pause` (or anything else that wrote the node): only `resume` lifts it.
    Operator,
    /// The leader, having lost more than `settings.max_lost` pods: it lifts it itself once they
    /// are back.
    Leader,
}

/// What the `paused` node holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub by: PausedBy,
    /// Milliseconds since the Unix epoch.
    pub since: u64,
    #[serde(default)]
    pub reason: String,
}

/// The longest reason kept from the node, in characters.
pub const MAX_REASON: usize = 300;

impl Pause {
    /// A pause starting now.
    pub fn now(by: PausedBy, reason: &str) -> Pause {
        let since = crate::clock::now_ms();
        Pause {
            by,
            since,
            reason: clean(reason),
        }
    }

    /// `paused by an operator since 2026-12-01T22:40:01Z: maintenance`.
    pub fn describe(&self) -> String {
        let by = match self.by {
            PausedBy::Operator => "an operator",
            PausedBy::Leader => "the leader",
        };
        let mut line = format!("paused by {by} since {}", self.since_rfc3339());
        if !self.reason.is_empty() {
            line.push_str(": ");
            line.push_str(&self.reason);
        }
        line
    }

    /// `since` as `2026-12-01T22:40:01Z` (a time past the year 9999 reads as the epoch).
    pub fn since_rfc3339(&self) -> String {
        const YEAR_10000: u64 = 253_402_300_800_000;
        let ms = if self.since < YEAR_10000 { self.since } else { 0 };
        // Bounded above: the addition cannot overflow.
        crate::clock::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
    }
}

/// Bounded to [`MAX_REASON`] characters, control characters as spaces (one status line).
fn clean(reason: &str) -> String {
    reason
        .trim()
        .chars()
        .take(MAX_REASON)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Reads a `paused` node's data; `mtime` (ms) dates a node that is not a pause's JSON.
pub fn decode(data: &[u8], mtime: i64) -> Pause {
    match serde_json::from_slice::<Pause>(data) {
        Ok(p) => Pause {
            reason: clean(&p.reason),
            ..p
        },
        Err(e) => Pause {
            by: PausedBy::Operator,
            since: u64::try_from(mtime).unwrap_or(0),
            reason: clean(&format!("the paused node is not a pause's JSON ({e})")),
        },
    }
}

/// The pause and the node's version; None when the cluster is not paused.
pub async fn read(client: &Client, path: &str) -> Result<Option<(Pause, i32)>, ZkError> {
    match client.get_data(path).await {
        Ok((data, stat)) => Ok(Some((decode(&data, stat.mtime), stat.version))),
        Err(zkc::Error::NoNode) => Ok(None),
        Err(e) => Err(ZkError::op("reading", path)(e)),
    }
}

fn encode(path: &str, pause: &Pause) -> Result<Vec<u8>, ZkError> {
    serde_json::to_vec(pause).map_err(|e| ZkError::Data {
        path: path.to_string(),
        message: e.to_string(),
    })
}

/// What an operator's `pause` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paused {
    /// The cluster was not paused: it is now.
    Now,
    /// The leader had paused it: the pause is the operator's now (the leader will not lift it).
    TakenOver(Pause),
    /// An operator had paused it already; left as it was.
    Already(Pause),
}

/// An operator's pause (`ochopod ctl pause`). Errors (NoAuth on a secured tree above all) are
/// the caller's to report; nothing retries.
pub async fn pause(client: &Client, acls: Acls, path: &str, reason: &str) -> Result<Paused, ZkError> {
    let pause = Pause::now(PausedBy::Operator, reason);
    let data = encode(path, &pause)?;
    // Twice at most: a pause of the leader's lifted between the create and the read is retried.
    for _ in 0..3 {
        match client.create(path, &data, &acls.persistent()).await {
            Ok(_) => return Ok(Paused::Now),
            Err(zkc::Error::NodeExists) => {}
            Err(e) => return Err(ZkError::op("creating", path)(e)),
        }
        let Some((found, version)) = read(client, path).await? else {
            continue;
        };
        if found.by == PausedBy::Operator {
            return Ok(Paused::Already(found));
        }
        match client.set_data(path, &data, Some(version)).await {
            Ok(_) => return Ok(Paused::TakenOver(found)),
            Err(zkc::Error::NoNode | zkc::Error::BadVersion) => continue,
            Err(e) => return Err(ZkError::op("writing", path)(e)),
        }
    }
    Err(ZkError::Data {
        path: path.to_string(),
        message: "changed by someone else at every attempt; try again".into(),
    })
}

/// An operator's `resume`: the pause that was lifted, None if the cluster was not paused.
pub async fn resume(client: &Client, path: &str) -> Result<Option<Pause>, ZkError> {
    let found = read(client, path).await?;
    match client.delete(path, None).await {
        Ok(()) => Ok(found.map(|(p, _)| p)),
        Err(zkc::Error::NoNode) => Ok(None),
        Err(e) => Err(ZkError::op("deleting", path)(e)),
    }
}

/// The leader pauses its cluster (`settings.max_lost`), as long as `leader_node` is still its
/// election node. An existing pause (an operator's, raced) is left alone: `Ok(false)`.
pub async fn pause_as_leader(
    client: &Client,
    acls: Acls,
    leader_node: &str,
    path: &str,
    reason: &str,
) -> Result<bool, ZkError> {
    let data = encode(path, &Pause::now(PausedBy::Leader, reason))?;
    let bad = |e| ZkError::op("preparing the transaction for", path)(e);
    let mut w = client.new_check_writer(leader_node, None).map_err(bad)?;
    w.add_create(path, &data, &acls.persistent()).map_err(bad)?;
    match w.commit().await {
        Ok(_) => Ok(true),
        Err(zkc::CheckWriteError::CheckFailed { .. }) => Err(ZkError::Deposed {
            path: leader_node.to_string(),
        }),
        Err(zkc::CheckWriteError::OperationFailed {
            source: zkc::Error::NodeExists,
            ..
        }) => Ok(false),
        Err(e) => Err(ZkError::op("creating", path)(e.into())),
    }
}

/// The leader lifts its own pause: deletes the node at the `version` it read, so that a pause an
/// operator wrote meanwhile stays. `Ok(false)` when the node changed or is gone.
pub async fn resume_as_leader(
    client: &Client,
    leader_node: &str,
    path: &str,
    version: i32,
) -> Result<bool, ZkError> {
    let bad = |e| ZkError::op("preparing the transaction for", path)(e);
    let mut w = client.new_check_writer(leader_node, None).map_err(bad)?;
    w.add_delete(path, Some(version)).map_err(bad)?;
    match w.commit().await {
        Ok(_) => Ok(true),
        Err(zkc::CheckWriteError::CheckFailed { .. }) => Err(ZkError::Deposed {
            path: leader_node.to_string(),
        }),
        Err(zkc::CheckWriteError::OperationFailed {
            source: zkc::Error::NoNode | zkc::Error::BadVersion,
            ..
        }) => Ok(false),
        Err(e) => Err(ZkError::op("deleting", path)(e.into())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_reads_back_and_describes_itself() {
        let p = Pause {
            by: PausedBy::Operator,
            since: 1_796_165_201_000,
            reason: "kernel upgrade".into(),
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"by":"operator","since":1796165201000,"reason":"kernel upgrade"}"#
        );
        assert_eq!(decode(json.as_bytes(), 0), p);
        assert_eq!(
            p.describe(),
            "paused by an operator since 2026-12-01T22:46:41Z: kernel upgrade"
        );
        let leader = Pause {
            by: PausedBy::Leader,
            reason: String::new(),
            ..p
        };
        assert_eq!(
            leader.describe(),
            "paused by the leader since 2026-12-01T22:46:41Z"
        );
    }

    #[test]
    fn a_node_that_is_not_a_pause_still_pauses_as_an_operators() {
        let p = decode(b"\xff junk", 1_796_165_201_000);
        assert_eq!(p.by, PausedBy::Operator, "only an operator lifts it");
        assert_eq!(p.since, 1_796_165_201_000);
        assert!(
            p.reason.starts_with("the paused node is not a pause's JSON"),
            "{p:?}"
        );
        // Nothing from the node breaks a status line or runs on for pages; no time overflows.
        let long = format!(
            r#"{{"by":"leader","since":18446744073709551615,"reason":"a\nb{}"}}"#,
            "x".repeat(5000)
        );
        let p = decode(long.as_bytes(), 0);
        assert_eq!(p.reason.chars().count(), MAX_REASON);
        assert!(p.reason.starts_with("a b"));
        assert_eq!(p.since_rfc3339(), "1970-01-01T00:00:00Z");
    }
}
