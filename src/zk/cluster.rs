//! Reading a cluster as the leader and dependents see it: registered pods, held seqs, and the
//! list of clusters (for wildcard dependencies).
//!
//! Reads are pipelined: `zookeeper-client` sends a request when the method is called, so issuing
//! every `get_data` first and awaiting them after costs one round trip, not one per pod.

use std::collections::BTreeMap;

use zookeeper_client as zkc;

use super::paths::{is_cluster_key, ClusterPaths, CLUSTERS};
use super::{Client, ZkError};
use crate::model::Pod;

/// A pod as registered: its JSON and the zxid that created its znode (a new registration of the
/// same uuid has a new one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub pod: Pod,
    pub czxid: i64,
}

/// A znode under `pods/` that is not a valid pod (SPEC §6): left out of every map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The znode's name (a uuid, if whoever wrote it followed the layout).
    pub name: String,
    /// The zxid that created it: a new registration under the same name is judged anew.
    pub czxid: i64,
    pub reason: String,
}

/// A cluster's registrations: the valid pods by uuid, and the znodes refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registrations {
    pub pods: BTreeMap<String, Registered>,
    pub rejected: Vec<Rejected>,
}

/// Every registered pod of a cluster. A cluster never seen has none. A znode that is not a valid
/// pod's JSON (see [`crate::model`]) or is not filed under its own uuid is rejected: anybody who
/// can write to ZooKeeper could have written it, and the other pods must go on being configured.
pub async fn registered(client: &Client, paths: &ClusterPaths) -> Result<Registrations, ZkError> {
    let dir = paths.pods();
    let names = match client.list_children(&dir).await {
        Ok(n) => n,
        Err(zkc::Error::NoNode) => return Ok(Registrations::default()),
        Err(e) => return Err(ZkError::op("listing", &dir)(e)),
    };
    let paths: Vec<(String, String)> = names.into_iter().map(|n| (paths.pod(&n), n)).collect();
    let reads: Vec<_> = paths.iter().map(|(p, _)| client.get_data(p)).collect();
    let mut out = Registrations::default();
    for ((path, name), read) in paths.iter().zip(reads) {
        let (data, stat) = match read.await {
            Ok(read) => read,
            // Gone between the listing and the read: a departure, the watch tells us again.
            Err(zkc::Error::NoNode) => continue,
            Err(e) => return Err(ZkError::op("reading", path)(e)),
        };
        match judge(name, &data, &stat) {
            Ok(r) => {
                out.pods.insert(name.clone(), r);
            }
            Err(r) => out.rejected.push(r),
        }
    }
    Ok(out)
}

/// One znode under `pods/` as read: a valid pod filed under its own uuid, or why it is refused
/// (see [`registered`]). The leader's cache ([`super::mirror`]) judges each znode it reads the same way.
pub fn judge(name: &str, data: &[u8], stat: &zkc::Stat) -> Result<Registered, Rejected> {
    // The reason may quote the znode's text: escaped, it cannot forge lines or terminal codes.
    let reject = |reason: String| Rejected {
        name: name.chars().take(80).collect(),
        czxid: stat.czxid,
        reason: reason.chars().take(200).flat_map(char::escape_debug).collect(),
    };
    if stat.ephemeral_owner == 0 {
        // ochopod registers with ephemeral znodes: a persistent one would outlive any session
        // (planted before ACLs were set, it would survive their repair).
        return Err(reject("not ephemeral: no ochopod registered it".into()));
    }
    match serde_json::from_slice::<Pod>(data) {
        Ok(pod) if pod.uuid == name => Ok(Registered {
            pod,
            czxid: stat.czxid,
        }),
        Ok(pod) => Err(reject(format!("holds the pod {}", pod.uuid))),
        Err(e) => Err(reject(e.to_string())),
    }
}

/// A held seq: `seqs/<n>`, its owner and the version read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldSeq {
    pub seq: u32,
    pub uuid: String,
    pub version: i32,
}

/// Every `seqs/<n>` with its holder (claim tickets, `seqs/claim-<n>`, are not seqs).
pub async fn held_seqs(client: &Client, paths: &ClusterPaths) -> Result<Vec<HeldSeq>, ZkError> {
    let dir = paths.seqs();
    let names = match client.list_children(&dir).await {
        Ok(n) => n,
        Err(zkc::Error::NoNode) => return Ok(Vec::new()),
        Err(e) => return Err(ZkError::op("listing", &dir)(e)),
    };
    let seqs: Vec<(u32, String)> = names
        .iter()
        .filter_map(|n| super::register::seq_of(n))
        .map(|n| (n, paths.seq(n)))
        .collect();
    let reads: Vec<_> = seqs.iter().map(|(_, p)| client.get_data(p)).collect();
    let mut out = Vec::new();
    for ((seq, path), read) in seqs.iter().zip(reads) {
        match read.await {
            Ok((data, stat)) => out.push(HeldSeq {
                seq: *seq,
                uuid: String::from_utf8_lossy(&data).into_owned(),
                version: stat.version,
            }),
            Err(zkc::Error::NoNode) => {}
            Err(e) => return Err(ZkError::op("reading", path)(e)),
        }
    }
    Ok(out)
}

/// Every cluster key under `/ochopod/clusters`.
pub async fn list_clusters(client: &Client) -> Result<Vec<String>, ZkError> {
    match client.list_children(CLUSTERS).await {
        Ok(mut names) => {
            names.retain(|n| is_cluster_key(n));
            names.sort();
            Ok(names)
        }
        Err(zkc::Error::NoNode) => Ok(Vec::new()),
        Err(e) => Err(ZkError::op("listing", CLUSTERS)(e)),
    }
}

/// A dependency's pods as its dependents see them (SPEC §6): the pods of its snapshot still
/// registered and running, with their registered JSON; and that snapshot's generation.
pub async fn dependency_pods(client: &Client, key: &str) -> Result<(u64, BTreeMap<String, Pod>), ZkError> {
    let paths = ClusterPaths::new(key);
    let Some((snapshot, _)) = super::snapshot::read(client, &paths.snapshot()).await? else {
        return Ok((0, BTreeMap::new()));
    };
    let registered = registered(client, &paths).await?.pods;
    let pods = snapshot
        .pods
        .keys()
        .filter_map(|uuid| registered.get(uuid))
        .filter(|r| r.pod.state.is_live())
        .map(|r| (r.pod.uuid.clone(), r.pod.clone()))
        .collect();
    Ok((snapshot.generation, pods))
}
