//! Leader election per cluster: ephemeral-sequential nodes under `leader/`; the smallest leads.
//!
//! Each candidate watches only its predecessor (no herd effect: one leaving candidate wakes one
//! other). The leader's own node is what its snapshot transaction checks, so a deposed leader
//! (session gone, node deleted) can change nothing.

use zookeeper_client as zkc;

use super::paths::{election_sequence, ClusterPaths};
use super::{Acls, Client, ZkError};

/// This session's election node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Full path of the node.
    pub path: String,
    /// Its name under `leader/`.
    pub name: String,
    pub sequence: i64,
    /// The zxid that created the node: the leader's epoch in the maps it sends (SPEC §6). zxids
    /// only grow, and a candidate leads only once every earlier node is gone, so each leader's
    /// epoch is larger than its predecessor's.
    pub epoch: u64,
}

/// Joins the election: creates `leader/n_<seq>` holding the pod's uuid.
pub async fn enter(
    client: &Client,
    paths: &ClusterPaths,
    acls: Acls,
    uuid: &str,
) -> Result<Candidate, ZkError> {
    let prefix = paths.leader_prefix();
    let (stat, seq) = client
        .create(&prefix, uuid.as_bytes(), &acls.ephemeral_sequential())
        .await
        .map_err(ZkError::op("joining the election at", &prefix))?;
    let name = format!("{}{seq}", super::paths::LEADER_PREFIX);
    Ok(Candidate {
        path: format!("{}/{name}", paths.leader()),
        name,
        sequence: seq.into_i64(),
        epoch: u64::try_from(stat.czxid).unwrap_or(0),
    })
}

/// Whether `me` still leads: its node exists and belongs to this session. The leader asks before
/// every phase of a configuration (check, off, on, ok, apply), so that a leader deposed while it
/// was configuring stops at the next phase; the snapshot transaction checks the node itself.
pub async fn still_leads(client: &Client, me: &Candidate) -> Result<(), ZkError> {
    match client.check_stat(&me.path).await {
        Ok(Some(stat)) if stat.ephemeral_owner == client.session_id().0 => Ok(()),
        Ok(_) => Err(ZkError::Deposed {
            path: me.path.clone(),
        }),
        Err(e) => Err(ZkError::op("checking the leadership at", &me.path)(e)),
    }
}

/// Deletes election nodes this session created earlier for `uuid`: a create whose answer was
/// lost to a connection loss leaves one behind, and it would sit in the queue forever.
pub async fn leave_stale(client: &Client, paths: &ClusterPaths, uuid: &str) -> Result<(), ZkError> {
    let dir = paths.leader();
    let names = client
        .list_children(&dir)
        .await
        .map_err(ZkError::op("listing", &dir))?;
    for name in names {
        let path = format!("{dir}/{name}");
        match client.get_data(&path).await {
            Ok((data, stat)) if data == uuid.as_bytes() && stat.ephemeral_owner == client.session_id().0 => {
                match client.delete(&path, None).await {
                    Ok(()) | Err(zkc::Error::NoNode) => {}
                    Err(e) => return Err(ZkError::op("deleting", &path)(e)),
                }
            }
            Ok(_) | Err(zkc::Error::NoNode) => {}
            Err(e) => return Err(ZkError::op("reading", &path)(e)),
        }
    }
    Ok(())
}

/// The candidate right before `me` in the queue, or None when `me` leads.
pub fn predecessor(names: &[String], me: i64) -> Option<&str> {
    names
        .iter()
        .filter_map(|n| election_sequence(n).map(|s| (s, n.as_str())))
        .filter(|(s, _)| *s < me)
        .max_by_key(|(s, _)| *s)
        .map(|(_, n)| n)
}

/// Returns once `me` is the smallest candidate. Errors when the session ends (the watch reports
/// it) or when `me`'s node vanished (it cannot come back on this session).
pub async fn wait_until_leader(client: &Client, paths: &ClusterPaths, me: &Candidate) -> Result<(), ZkError> {
    let dir = paths.leader();
    loop {
        let names = client
            .list_children(&dir)
            .await
            .map_err(ZkError::op("listing", &dir))?;
        if !names.iter().any(|n| n == &me.name) {
            return Err(ZkError::Data {
                path: me.path.clone(),
                message: "election node vanished".into(),
            });
        }
        let Some(pred) = predecessor(&names, me.sequence) else {
            return Ok(());
        };
        let pred_path = format!("{dir}/{pred}");
        tracing::debug!(predecessor = pred, "waiting for the candidate before us");
        let (stat, watcher) = client
            .check_and_watch_stat(&pred_path)
            .await
            .map_err(ZkError::op("watching", &pred_path))?;
        let Some(stat) = stat else {
            continue;
        };
        if stat.ephemeral_owner == 0 {
            // Not a candidate: planted (ochopod's are ephemeral), it would block us forever.
            super::acl::clear_persistent(client, &pred_path, &stat).await?;
            continue;
        }
        let event = watcher.changed().await;
        if event.event_type == zkc::EventType::Session && event.session_state.is_terminated() {
            let source = match event.session_state {
                zkc::SessionState::AuthFailed => zkc::Error::AuthFailed,
                zkc::SessionState::Closed => zkc::Error::ClientClosed,
                _ => zkc::Error::SessionExpired,
            };
            return Err(ZkError::Op {
                doing: "watching",
                path: pred_path,
                source,
            });
        }
    }
}

/// The uuid of the current leader, if any (for `ctl` and tests).
pub async fn current_leader(client: &Client, paths: &ClusterPaths) -> Result<Option<String>, ZkError> {
    let dir = paths.leader();
    let names = match client.list_children(&dir).await {
        Ok(n) => n,
        Err(zkc::Error::NoNode) => return Ok(None),
        Err(e) => return Err(ZkError::op("listing", &dir)(e)),
    };
    let Some((_, first)) = names
        .iter()
        .filter_map(|n| election_sequence(n).map(|s| (s, n)))
        .min()
    else {
        return Ok(None);
    };
    let path = format!("{dir}/{first}");
    match client.get_data(&path).await {
        Ok((data, _)) => Ok(Some(String::from_utf8_lossy(&data).into_owned())),
        Err(zkc::Error::NoNode) => Ok(None),
        Err(e) => Err(ZkError::op("reading", &path)(e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn each_candidate_watches_only_its_predecessor() {
        let names: Vec<String> = ["n_0000000007", "n_0000000003", "n_0000000012", "junk"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(predecessor(&names, 3), None);
        assert_eq!(predecessor(&names, 7), Some("n_0000000003"));
        assert_eq!(predecessor(&names, 12), Some("n_0000000007"));
    }
}
