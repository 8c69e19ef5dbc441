//! The ZooKeeper layout of SPEC §6, as paths. Pure: no I/O.
//!
//! ```text
//! /ochopod/clusters/<namespace>.<cluster>/pods/<uuid>    ephemeral, the pod's JSON
//! /ochopod/clusters/<namespace>.<cluster>/seqs/<n>       persistent, the uuid holding seq n
//! /ochopod/clusters/<namespace>.<cluster>/snapshot       persistent, the last configuration
//! /ochopod/clusters/<namespace>.<cluster>/snapshot-parts/<sha256>-<i>  persistent, a big one's parts
//! /ochopod/clusters/<namespace>.<cluster>/leader/n_      ephemeral-sequential, election
//! /ochopod/clusters/<namespace>.<cluster>/paused         persistent, while the cluster is paused
//! ```

/// Where every cluster lives.
pub const CLUSTERS: &str = "/ochopod/clusters";

/// Prefix of election nodes (the server appends a 10-digit sequence).
pub const LEADER_PREFIX: &str = "n_";

/// The paths of one cluster, keyed `<namespace>.<cluster>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPaths {
    pub key: String,
    pub root: String,
}

impl ClusterPaths {
    pub fn new(key: &str) -> ClusterPaths {
        ClusterPaths {
            key: key.to_string(),
            root: format!("{CLUSTERS}/{key}"),
        }
    }

    pub fn pods(&self) -> String {
        format!("{}/pods", self.root)
    }

    pub fn pod(&self, uuid: &str) -> String {
        format!("{}/pods/{uuid}", self.root)
    }

    pub fn seqs(&self) -> String {
        format!("{}/seqs", self.root)
    }

    pub fn seq(&self, n: u32) -> String {
        format!("{}/seqs/{n}", self.root)
    }

    pub fn snapshot(&self) -> String {
        format!("{}/snapshot", self.root)
    }

    /// The parts of a snapshot too big for one znode ([`super::snapshot::parts`]).
    pub fn snapshot_parts(&self) -> String {
        super::snapshot::parts::dir(&self.snapshot())
    }

    /// Exists while the cluster is paused ([`super::pause`]).
    pub fn paused(&self) -> String {
        format!("{}/paused", self.root)
    }

    pub fn leader(&self) -> String {
        format!("{}/leader", self.root)
    }

    /// The path to create an election node at (sequential: the server appends the number).
    pub fn leader_prefix(&self) -> String {
        format!("{}/leader/{LEADER_PREFIX}", self.root)
    }
}

/// The sequence number of an election node name (`n_0000000042` → 42); None for strangers.
pub fn election_sequence(name: &str) -> Option<i64> {
    let digits = name.strip_prefix(LEADER_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether `name` can be a cluster key: `<namespace>.<cluster>`, no slash.
pub fn is_cluster_key(name: &str) -> bool {
    match name.split_once('.') {
        Some((ns, c)) => !ns.is_empty() && !c.is_empty() && !name.contains('/'),
        None => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_spec_layout() {
        let p = ClusterPaths::new("default.zookeeper");
        assert_eq!(p.root, "/ochopod/clusters/default.zookeeper");
        assert_eq!(p.pod("u1"), "/ochopod/clusters/default.zookeeper/pods/u1");
        assert_eq!(p.seq(3), "/ochopod/clusters/default.zookeeper/seqs/3");
        assert_eq!(p.snapshot(), "/ochopod/clusters/default.zookeeper/snapshot");
        assert_eq!(p.paused(), "/ochopod/clusters/default.zookeeper/paused");
        assert_eq!(
            p.snapshot_parts(),
            "/ochopod/clusters/default.zookeeper/snapshot-parts"
        );
        assert_eq!(p.leader_prefix(), "/ochopod/clusters/default.zookeeper/leader/n_");
    }

    #[test]
    fn parses_election_sequences_and_ignores_strangers() {
        assert_eq!(election_sequence("n_0000000042"), Some(42));
        assert_eq!(election_sequence("n_"), None);
        assert_eq!(election_sequence("lock-0001"), None);
        assert!(is_cluster_key("default.kafka"));
        assert!(!is_cluster_key("kafka"));
    }
}
