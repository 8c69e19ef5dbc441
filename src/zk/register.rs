//! Registration: the pod's seq and its ephemeral znode (SPEC §4, §6).
//!
//! A seq is a persistent `seqs/<n>` node holding the owner's uuid: creating it is the atomic
//! claim (NodeExists → somebody else has it). Only the leader frees one, in its snapshot
//! transaction, once a configuration no longer has the pod (for a pod that vanished without
//! leaving, only after `settings.seq_hold`: the node stays, so newcomers skip it). A pod coming
//! back as itself (state dir, StatefulSet ordinal) asks for its previous seq first.
//!
//! **Claims queue up.** Pods started together all want the smallest free seq: racing for it, each
//! lost race costs a create and a new listing, O(N²) requests for N pods (40,000 to form 200).
//! Instead each claim takes a ticket, an ephemeral sequential `seqs/claim-<n>`, lists `seqs/`
//! once, and with `r` tickets ahead of its own takes the `r`-th free seq ([`in_turn`]): the
//! claims ahead take the `r` before it. The seq is created and the ticket deleted in one
//! transaction, so a listing never shows both (which would make the claims behind skip a seq) nor
//! neither. Claims started together thus get 1..N, dense, in about 3 requests each whatever N.
//! A race is still possible (a preferred seq, an older ochopod claiming without a ticket, a claim
//! abandoned with its session still alive): NodeExists, and the claim lists again and recomputes;
//! the create stays what makes a claim atomic. A ticket abandoned mid-claim goes with its session;
//! until then the claims behind it skip one seq, which the next claim takes.
//!
//! Tickets are named so that no reader of `seqs/` takes them for seqs ([`seq_of`]): the leader's
//! mirror skips them without a read, ACL checks leave the children of `seqs/` alone.

use std::path::Path;

use zookeeper_client as zkc;

use super::paths::ClusterPaths;
use super::{Acls, Client, ZkError};
use crate::model::Pod;

/// Creates the cluster's folders (pods, seqs, leader) if missing, and the chroot of the connect
/// string (`host:port/chroot`) first: ZooKeeper does not create it, and nothing works under a
/// missing one.
pub async fn ensure_layout(client: &Client, paths: &ClusterPaths, acls: Acls) -> Result<(), ZkError> {
    let chroot = client.path().to_string();
    if chroot != "/" {
        let root = client.clone().chroot("/").map_err(|_| ZkError::Data {
            path: chroot.clone(),
            message: "cannot leave the chroot".into(),
        })?;
        root.mkdir(&chroot, &acls.persistent())
            .await
            .map_err(ZkError::op("creating the chroot", &chroot))?;
    }
    for dir in [paths.pods(), paths.seqs(), paths.leader()] {
        client
            .mkdir(&dir, &acls.persistent())
            .await
            .map_err(ZkError::op("creating", &dir))?;
    }
    Ok(())
}

/// The prefix of a claim ticket, `seqs/claim-<sequence>` (see the module header).
pub const TICKET: &str = "claim-";

/// How many times one claim lists `seqs/` again after losing a race for a seq (each lost race
/// means somebody else took one meanwhile); past that the registration fails and is retried.
const ATTEMPTS: usize = 64;

/// Claims a seq for `uuid`: `preferred` (> 0) first, else the one its place in the queue of
/// claims gives (the smallest free one when nobody else is claiming).
///
/// `preferred` is taken back when `seqs/<preferred>` is free, holds this uuid already, or holds a
/// uuid that is not registered (a previous incarnation of this pod whose state was lost, e.g. a
/// StatefulSet pod on a new volume). A seq held by a registered pod is never taken.
///
/// `fresh`: the uuid was made by this run and never claimed with, so it cannot hold a seq; else
/// (read from the state dir, or a claim of this run may have succeeded unseen) every taken seq is
/// read first, and one this uuid holds is reused rather than holding two.
pub async fn claim_seq(
    client: &Client,
    paths: &ClusterPaths,
    acls: Acls,
    uuid: &str,
    preferred: u32,
    fresh: bool,
) -> Result<u32, ZkError> {
    if preferred > 0 && try_preferred(client, paths, acls, uuid, preferred).await? {
        return Ok(preferred);
    }
    if !fresh {
        if let Some(n) = held_by(client, paths, uuid).await? {
            return Ok(n);
        }
    }
    let prefix = format!("{}/{TICKET}", paths.seqs());
    let (_, number) = client
        .create(&prefix, uuid.as_bytes(), &acls.ephemeral_sequential())
        .await
        .map_err(ZkError::op("queueing a seq claim at", &prefix))?;
    let ticket = format!("{prefix}{number}");
    let claimed = take_in_turn(client, paths, acls, uuid, &ticket, number.into_i64()).await;
    if claimed.is_err() {
        // Best effort: the ticket is ephemeral and goes with the session anyway; meanwhile it
        // would make the claims behind it skip a seq.
        let _ = client.delete(&ticket, None).await;
    }
    claimed
}

/// Lists `seqs/`, creates the seq this ticket's place gives and deletes the ticket in one
/// transaction (so that nobody ever sees both, or neither); lost races list again.
async fn take_in_turn(
    client: &Client,
    paths: &ClusterPaths,
    acls: Acls,
    uuid: &str,
    ticket: &str,
    mine: i64,
) -> Result<u32, ZkError> {
    let dir = paths.seqs();
    for _ in 0..ATTEMPTS {
        let names = client
            .list_children(&dir)
            .await
            .map_err(ZkError::op("listing", &dir))?;
        let n = in_turn(&names, mine).ok_or_else(|| ZkError::Data {
            path: dir.clone(),
            message: format!("no free seq up to {}", crate::model::MAX_SEQ),
        })?;
        let path = paths.seq(n);
        let bad = |e| ZkError::op("preparing the claim of", &path)(e);
        let mut w = client.new_multi_writer();
        w.add_create(&path, uuid.as_bytes(), &acls.persistent())
            .map_err(bad)?;
        w.add_delete(ticket, None).map_err(bad)?;
        match w.commit().await {
            Ok(_) => return Ok(n),
            // Taken since the listing: by a claim that asked for it (a preferred seq), or by an
            // older ochopod that claims without a ticket.
            Err(zkc::MultiWriteError::OperationFailed {
                index: 0,
                source: zkc::Error::NodeExists,
            }) => tracing::debug!(seq = n, "seq taken meanwhile, listing again"),
            Err(e) => return Err(ZkError::op("claiming", &path)(e.into())),
        }
    }
    Err(ZkError::Data {
        path: dir,
        message: format!("lost the race for a seq {ATTEMPTS} times in a row"),
    })
}

/// The seq for the ticket numbered `mine`, from a listing of `seqs/`: with `r` tickets ahead of
/// it, the `r`-th free seq (from 0), as the claims ahead will take the `r` before it. None past
/// [`crate::model::MAX_SEQ`]. Names that are neither a seq nor a ticket are ignored.
pub fn in_turn(names: &[String], mine: i64) -> Option<u32> {
    let mut taken: Vec<u32> = names.iter().filter_map(|n| seq_of(n)).collect();
    taken.sort_unstable();
    let ahead = names
        .iter()
        .filter_map(|n| ticket_of(n))
        .filter(|&t| t < mine)
        .count();
    let mut taken = taken.into_iter().peekable();
    let mut skip = ahead;
    for n in 1..=crate::model::MAX_SEQ {
        while taken.next_if(|&t| t < n).is_some() {}
        if taken.next_if_eq(&n).is_some() {
            continue;
        }
        match skip.checked_sub(1) {
            None => return Some(n),
            Some(left) => skip = left,
        }
    }
    None
}

/// `seqs/<n>`'s seq, when the name is one (every reader of `seqs/` uses this).
pub fn seq_of(name: &str) -> Option<u32> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok().filter(|&n| n > 0)
}

/// A claim ticket's sequence number, when the name is one.
fn ticket_of(name: &str) -> Option<i64> {
    name.strip_prefix(TICKET)?.parse().ok()
}

/// The seq `uuid` holds already, if any, re-claimed ([`touch`]). The reads are pipelined (each
/// call sends at once): one round trip, not one per seq.
async fn held_by(client: &Client, paths: &ClusterPaths, uuid: &str) -> Result<Option<u32>, ZkError> {
    let dir = paths.seqs();
    let names = client
        .list_children(&dir)
        .await
        .map_err(ZkError::op("listing", &dir))?;
    let reads: Vec<_> = names
        .iter()
        .filter_map(|n| seq_of(n))
        .map(|n| (n, paths.seq(n)))
        .map(|(n, p)| (n, client.get_data(&p), p))
        .collect();
    for (n, read, path) in reads {
        match read.await {
            Ok((data, stat)) if data == uuid.as_bytes() => {
                touch(client, &path, uuid, stat.version).await?;
                return Ok(Some(n));
            }
            Ok(_) | Err(zkc::Error::NoNode) => {}
            Err(e) => return Err(ZkError::op("reading", &path)(e)),
        }
    }
    Ok(None)
}

async fn try_preferred(
    client: &Client,
    paths: &ClusterPaths,
    acls: Acls,
    uuid: &str,
    n: u32,
) -> Result<bool, ZkError> {
    let path = paths.seq(n);
    match client.create(&path, uuid.as_bytes(), &acls.persistent()).await {
        Ok(_) => return Ok(true),
        Err(zkc::Error::NodeExists) => {}
        Err(e) => return Err(ZkError::op("claiming", &path)(e)),
    }
    let (data, stat) = match client.get_data(&path).await {
        Ok(r) => r,
        // Freed between our create and read: try once more from scratch next time.
        Err(zkc::Error::NoNode) => return Ok(false),
        Err(e) => return Err(ZkError::op("reading", &path)(e)),
    };
    let holder = String::from_utf8_lossy(&data).into_owned();
    if holder != uuid {
        let holder_pod = paths.pod(&holder);
        let registered = client
            .check_stat(&holder_pod)
            .await
            .map_err(ZkError::op("reading", &holder_pod))?
            .is_some();
        if registered {
            tracing::warn!(
                seq = n,
                holder,
                "previous seq is held by another registered pod, claiming a new one"
            );
            return Ok(false);
        }
        tracing::info!(
            seq = n,
            holder,
            "taking back previous seq from an unregistered holder"
        );
    }
    touch(client, &path, uuid, stat.version).await?;
    Ok(true)
}

/// Rewrites `seqs/<n>` (bumping its version) so that a leader's transaction planned before this
/// re-claim cannot free the seq under our feet: its version check fails and it plans again.
async fn touch(client: &Client, path: &str, uuid: &str, version: i32) -> Result<(), ZkError> {
    client
        .set_data(path, uuid.as_bytes(), Some(version))
        .await
        .map_err(ZkError::op("re-claiming", path))?;
    Ok(())
}

/// Creates the pod's ephemeral znode, replacing one left by an older session of the same pod
/// (a restart faster than the session timeout, a `/reset`).
pub async fn publish(client: &Client, paths: &ClusterPaths, acls: Acls, pod: &Pod) -> Result<(), ZkError> {
    let path = paths.pod(&pod.uuid);
    let data = pod_json(&path, pod)?;
    for _ in 0..5 {
        match client.create(&path, &data, &acls.ephemeral()).await {
            Ok(_) => return Ok(()),
            Err(zkc::Error::NodeExists) => {}
            Err(e) => return Err(ZkError::op("registering", &path)(e)),
        }
        match client
            .check_stat(&path)
            .await
            .map_err(ZkError::op("reading", &path))?
        {
            Some(stat) if stat.ephemeral_owner == client.session_id().0 => {
                return update(client, paths, pod).await;
            }
            Some(stat) => match client.delete(&path, Some(stat.version)).await {
                Ok(()) | Err(zkc::Error::NoNode) | Err(zkc::Error::BadVersion) => {}
                Err(e) => return Err(ZkError::op("removing stale", &path)(e)),
            },
            None => {}
        }
    }
    Err(ZkError::Data {
        path,
        message: "another session keeps re-creating this pod's znode".into(),
    })
}

/// Rewrites the pod's znode (a state change).
pub async fn update(client: &Client, paths: &ClusterPaths, pod: &Pod) -> Result<(), ZkError> {
    let path = paths.pod(&pod.uuid);
    let data = pod_json(&path, pod)?;
    client
        .set_data(&path, &data, None)
        .await
        .map_err(ZkError::op("updating", &path))?;
    Ok(())
}

/// Deletes the pod's znode; gone already is fine.
pub async fn withdraw(client: &Client, paths: &ClusterPaths, uuid: &str) -> Result<(), ZkError> {
    let path = paths.pod(uuid);
    match client.delete(&path, None).await {
        Ok(()) | Err(zkc::Error::NoNode) => Ok(()),
        Err(e) => Err(ZkError::op("deregistering", &path)(e)),
    }
}

fn pod_json(path: &str, pod: &Pod) -> Result<Vec<u8>, ZkError> {
    serde_json::to_vec(pod).map_err(|e| ZkError::Data {
        path: path.to_string(),
        message: e.to_string(),
    })
}

/// Keeps the claimed seq in `<state_dir>/seq`, written atomically, so a restart comes back as
/// the same pod.
pub fn persist_seq(state_dir: &Path, seq: u32) -> Result<(), crate::fsutil::WriteError> {
    crate::fsutil::write_atomic(&state_dir.join("seq"), format!("{seq}\n").as_bytes(), 0o644)
}

/// The seq kept by [`persist_seq`], if any.
pub fn read_seq(state_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(state_dir.join("seq"))
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_claim_takes_the_free_seq_its_place_in_the_queue_gives() {
        // Nobody ahead: the smallest free one.
        let n = names(&["1", "2", "4", "claim-0000000007"]);
        assert_eq!(in_turn(&n, 7), Some(3));
        // Two tickets ahead take 2 and 4; this one 5. The one behind does not count.
        let n = names(&[
            "1",
            "3",
            "claim-0000000003",
            "claim-0000000005",
            "claim-0000000009",
        ]);
        assert_eq!(in_turn(&n, 3), Some(2));
        assert_eq!(in_turn(&n, 5), Some(4));
        assert_eq!(in_turn(&n, 9), Some(5));
        // A claim done (its seq created, its ticket gone in the same transaction) changes nothing
        // for those behind: 2 taken, one ticket fewer ahead.
        let n = names(&["1", "2", "3", "claim-0000000005", "claim-0000000009"]);
        assert_eq!(in_turn(&n, 9), Some(5));
    }

    #[test]
    fn names_that_are_neither_seqs_nor_tickets_are_ignored() {
        let n = names(&["0", "+2", "x", "claim-", "claim-x", "1 ", "-1", "1"]);
        assert_eq!(in_turn(&n, 1), Some(2));
        assert_eq!(seq_of("12"), Some(12));
        for bad in ["0", "+2", "", "claim-0000000001", "99999999999", "1a"] {
            assert_eq!(seq_of(bad), None, "{bad:?}");
        }
        // Sequence numbers past i32 (ZOOKEEPER-4706) print with 19 digits; still ordered.
        assert_eq!(ticket_of("claim-0000000000002147483648"), Some(2_147_483_648));
        assert_eq!(ticket_of("claim-0000000001"), Some(1));
    }

    #[test]
    fn no_seq_past_the_largest_peers_accept() {
        let max = crate::model::MAX_SEQ;
        let n: Vec<String> = (1..max).map(|s| s.to_string()).collect();
        assert_eq!(in_turn(&n, 1), Some(max));
        let mut n = n;
        n.push("claim-0000000000".into());
        assert_eq!(in_turn(&n, 1), None);
    }
}
