//! Registration: the pod's seq and its ephemeral znode (SPEC §4, §6).
//!
//! A seq is a persistent `seqs/<n>` node holding the owner's uuid: creating it is the atomic
//! claim (NodeExists → somebody else has it, try the next). Only the leader frees one, in its
//! snapshot transaction, once a configuration no longer has the pod (for a pod that vanished
//! without leaving, only after `settings.seq_hold`: the node stays, so newcomers skip it). A pod
//! coming back as itself (state dir, StatefulSet ordinal) asks for its previous seq first.

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

/// Claims a seq for `uuid`: `preferred` (> 0) first, else the smallest free one.
///
/// `preferred` is taken back when `seqs/<preferred>` is free, holds this uuid already, or holds a
/// uuid that is not registered (a previous incarnation of this pod whose state was lost, e.g. a
/// StatefulSet pod on a new volume). A seq held by a registered pod is never taken.
pub async fn claim_seq(
    client: &Client,
    paths: &ClusterPaths,
    acls: Acls,
    uuid: &str,
    preferred: u32,
) -> Result<u32, ZkError> {
    if preferred > 0 && try_preferred(client, paths, acls, uuid, preferred).await? {
        return Ok(preferred);
    }
    let dir = paths.seqs();
    let names = client
        .list_children(&dir)
        .await
        .map_err(ZkError::op("listing", &dir))?;
    let mut taken: Vec<u32> = names.iter().filter_map(|n| n.parse().ok()).collect();
    taken.sort_unstable();
    // The state dir may have lost the seq file while this uuid still holds one: reuse it rather
    // than hold two.
    // The reads are pipelined (each call sends at once): one round trip, not one per seq, which
    // matters when hundreds of pods start together.
    let reads: Vec<_> = taken
        .iter()
        .map(|&n| (n, paths.seq(n)))
        .map(|(n, p)| (n, client.get_data(&p), p))
        .collect();
    for (n, read, path) in reads {
        match read.await {
            Ok((data, stat)) if data == uuid.as_bytes() => {
                touch(client, &path, uuid, stat.version).await?;
                return Ok(n);
            }
            Ok(_) | Err(zkc::Error::NoNode) => {}
            Err(e) => return Err(ZkError::op("reading", &path)(e)),
        }
    }
    let mut n = 1u32;
    loop {
        if taken.binary_search(&n).is_err() {
            let path = paths.seq(n);
            match client.create(&path, uuid.as_bytes(), &acls.persistent()).await {
                Ok(_) => return Ok(n),
                Err(zkc::Error::NodeExists) => {
                    // Others are claiming too (pods started together): learn all their claims
                    // in one listing rather than bumping into them one create at a time.
                    let names = client
                        .list_children(&dir)
                        .await
                        .map_err(ZkError::op("listing", &dir))?;
                    taken = names.iter().filter_map(|n| n.parse().ok()).collect();
                    taken.sort_unstable();
                    n = 1;
                    continue;
                }
                Err(e) => return Err(ZkError::op("claiming", &path)(e)),
            }
        }
        n = n.checked_add(1).ok_or_else(|| ZkError::Data {
            path: dir.clone(),
            message: "no free seq".into(),
        })?;
    }
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
