//! Finding pods: a ZooKeeper session over the layout of SPEC §6, read-only but for `pause` and
//! `resume`.
//!
//! Owns one `zookeeper-client` session for the life of a `ctl` command (dropped with it: ctl
//! creates no ephemeral node, so nothing depends on the session ending cleanly). With
//! `OCHOPOD_ZK_AUTH` (or `_FILE`) it authenticates as the pods do, so that it may write the
//! `paused` node of a secured tree. Receives cluster patterns as the user typed them; emits
//! [`Cluster`]s with their registered pods sorted by seq, the election's current leader, the last
//! snapshot's generation and the pause.
//!
//! It reads only what the contract promises other tools (`pods/<uuid>`, `snapshot`, `leader/`,
//! `paused`), and reads a pod's JSON leniently (only the fields ctl uses), so a ctl of one version
//! can drive pods of another.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use zookeeper_client as zkc;

use super::CtlError;
use crate::glob::matches as glob;
use crate::zk::snapshot::Reservation;

/// Where every cluster lives (SPEC §6).
pub const CLUSTERS: &str = "/ochopod/clusters";

/// A pod as registered (SPEC §6), validated as it is read like everywhere else
/// ([`crate::model`]): ctl never calls or prints an address that is not one.
pub type Registered = crate::model::Pod;

/// One pod to call: its cluster key and its registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `<namespace>.<cluster>`.
    pub cluster: String,
    pub pod: Registered,
}

impl Target {
    /// How people see a pod: `default.zookeeper #2`.
    pub fn name(&self) -> String {
        format!("{} #{}", self.cluster, self.pod.seq)
    }

    /// The control API's `ip:port` (`[ip]:port` for IPv6).
    pub fn address(&self) -> String {
        crate::control::client::address(&self.pod.ip, self.pod.control_port)
    }
}

/// A cluster as ZooKeeper has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub key: String,
    /// Registered pods, sorted by seq.
    pub pods: Vec<Target>,
    /// The uuid the lowest election node holds, when there is an election.
    pub leader: Option<String>,
    /// The last configuration: its generation and the uuids it configured.
    pub snapshot: Option<(u64, BTreeSet<String>)>,
    /// The cluster's pause, if it is paused.
    pub paused: Option<crate::zk::pause::Pause>,
    /// The snapshot's seqs reserved for pods that vanished without leaving, by seq, less those
    /// whose pod is registered again (the next configuration drops them).
    pub reserved: BTreeMap<u32, Reservation>,
}

/// One attempt at a session, giving up after `timeout`. Fails eagerly once every host has been
/// tried (each gets its share of the timeout), so a wrong address is reported at once rather than
/// after retrying the same refusals until the timeout.
async fn open(
    connect: &str,
    timeout: Duration,
    auth: Option<&(String, String)>,
) -> Result<zkc::Client, CtlError> {
    let started = Instant::now();
    let hosts = connect.split('/').next().unwrap_or("").split(',').count().max(1) as u32;
    let mut connector = zkc::Client::connector()
        .with_session_timeout(timeout.max(Duration::from_secs(2)))
        .with_connection_timeout(timeout / hosts)
        .with_fail_eagerly();
    if let Some((user, password)) = auth {
        connector = connector.with_auth("digest", format!("{user}:{password}").as_bytes());
    }
    let unreachable = |reason: String| CtlError::ZkUnreachable {
        connect: connect.to_string(),
        after: started.elapsed(),
        reason,
    };
    let attempt = crate::zk::with_spawner(connector.connect(connect));
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(zkc::Error::NoHosts)) => Err(unreachable(
            "no server gave a session (connection refused, unreachable, or no ZooKeeper answer \
             in time; see --zk-timeout)"
                .into(),
        )),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable("no session established in time".into())),
    }
}

/// A read-only session, renewed by [`Discovery::renew`] when it expires during a long `wait`.
pub struct Discovery {
    connect: String,
    timeout: Duration,
    /// `(user, password)` for the digest scheme, from `OCHOPOD_ZK_AUTH` or `_FILE`.
    auth: Option<(String, String)>,
    /// Cloned for each read (a clone shares the session); replaced by `renew`.
    client: Mutex<zkc::Client>,
}

impl Discovery {
    /// Opens a session, giving up after `timeout`; authenticated with `auth` (digest).
    pub async fn connect(
        connect: &str,
        timeout: Duration,
        auth: Option<(String, String)>,
    ) -> Result<Discovery, CtlError> {
        Ok(Discovery {
            connect: connect.to_string(),
            timeout,
            client: Mutex::new(open(connect, timeout, auth.as_ref()).await?),
            auth,
        })
    }

    /// The ACLs of nodes ctl creates: those of the pods (SPEC §5).
    pub fn acls(&self) -> crate::zk::Acls {
        crate::zk::Acls::new(&crate::zk::ZkConfig {
            auth: self.auth.clone(),
            ..crate::zk::ZkConfig::default()
        })
    }

    /// Replaces the session with a new one (after an expiry: the old one cannot come back).
    pub async fn renew(&self) -> Result<(), CtlError> {
        let fresh = open(&self.connect, self.timeout, self.auth.as_ref()).await?;
        match self.client.lock() {
            Ok(mut c) => *c = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }

    pub(super) fn client(&self) -> zkc::Client {
        match self.client.lock() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The connect string, for messages.
    pub fn connect_string(&self) -> &str {
        &self.connect
    }

    /// Turns a ZooKeeper error into one that says where and what was being done.
    pub(super) fn op(&self, doing: &'static str, path: &str) -> impl FnOnce(zkc::Error) -> CtlError {
        zk_error(&self.connect, doing, path)
    }

    /// Every cluster key registered, sorted.
    pub async fn cluster_keys(&self) -> Result<Vec<String>, CtlError> {
        let mut keys = match self.client().list_children(CLUSTERS).await {
            Ok(k) => k,
            Err(zkc::Error::NoNode) => Vec::new(),
            Err(e) => return Err(self.op("listing", CLUSTERS)(e)),
        };
        keys.retain(|k| k.contains('.'));
        keys.sort();
        Ok(keys)
    }

    /// Reads one cluster ([`read_cluster`]) as the verbs see it: pods sorted by seq, a warning
    /// for each registration that is not a pod.
    pub async fn cluster(&self, key: &str) -> Result<Cluster, CtlError> {
        let read = read_cluster(&self.client(), &self.connect, key).await?;
        for r in &read.rejected {
            // Another tool's (or version's) mistake must not hide the other pods.
            let path = format!("{CLUSTERS}/{key}/pods/{}", r.name);
            eprintln!(
                "ochopod ctl: warning: {path:?} is not a pod ({}), skipped",
                r.reason
            );
        }
        let pods: Vec<Target> = read
            .pods
            .into_iter()
            .map(|pod| Target {
                cluster: key.to_string(),
                pod,
            })
            .collect();
        let (snapshot, mut reserved) = match read.snapshot {
            Some(s) => (Some((s.generation, s.pods.into_keys().collect())), s.reserved),
            None => (None, BTreeMap::new()),
        };
        reserved.retain(|_, r| !pods.iter().any(|t| t.pod.uuid == r.uuid));
        Ok(Cluster {
            key: key.to_string(),
            pods,
            leader: read.leader,
            snapshot,
            paused: read.paused,
            reserved,
        })
    }

    /// The clusters the patterns name (every cluster of `namespace` when there is none). Each
    /// pattern must match something, else [`CtlError::NoMatch`] lists what exists.
    pub async fn resolve(&self, patterns: &[String], namespace: &str) -> Result<Vec<Cluster>, CtlError> {
        let keys = self.cluster_keys().await?;
        let chosen = select(&keys, patterns, namespace).map_err(|Unmatched(pattern)| CtlError::NoMatch {
            pattern,
            connect: self.connect.clone(),
            existing: keys.clone(),
        })?;
        let reads: Vec<_> = chosen.iter().map(|k| self.cluster(k)).collect();
        let mut clusters = Vec::with_capacity(reads.len());
        for read in reads {
            clusters.push(read.await?);
        }
        Ok(clusters)
    }
}

/// One cluster's znodes as ctl reads them, for the verbs ([`Discovery::cluster`]) and for `ctl
/// events` and `ctl ui` (`watch`).
pub(super) struct ClusterRead {
    /// The cluster's znode exists.
    pub exists: bool,
    /// Registrations judged as the leader judges them ([`crate::zk::cluster::judge`]: a valid
    /// pod, under its own uuid, in an ephemeral znode), sorted by seq then uuid: ctl never calls
    /// or shows as a pod what no map would hold.
    pub pods: Vec<Registered>,
    /// The znodes under `pods/` that are not pods, and why.
    pub rejected: Vec<crate::zk::cluster::Rejected>,
    /// The uuid the lowest election node holds.
    pub leader: Option<String>,
    /// The last configuration, as the leader reads it (either form of SPEC §6); None when absent
    /// or unreadable (the leader will write a good one).
    pub snapshot: Option<crate::zk::snapshot::Snapshot>,
    pub paused: Option<crate::zk::pause::Pause>,
}

/// Reads one cluster: after the listing of `pods/`, every read (each pod, the election, the
/// snapshot, the pause) is sent before the first is awaited, so a cluster of 100 costs about two
/// round trips.
pub(super) async fn read_cluster(
    client: &zkc::Client,
    connect: &str,
    key: &str,
) -> Result<ClusterRead, CtlError> {
    let op = |doing, path: &str| zk_error(connect, doing, path);
    let root = format!("{CLUSTERS}/{key}");
    let (dir, leader_dir) = (format!("{root}/pods"), format!("{root}/leader"));
    let (snapshot_path, paused_path) = (format!("{root}/snapshot"), format!("{root}/paused"));
    let names = client.list_children(&dir);
    let leaders = client.list_children(&leader_dir);
    let snapshot = client.get_data(&snapshot_path);
    let paused = client.get_data(&paused_path);
    let exists = client.check_stat(&root);
    let names = match names.await {
        Ok(n) => n,
        Err(zkc::Error::NoNode) => Vec::new(),
        Err(e) => return Err(op("listing", &dir)(e)),
    };
    let paths: Vec<String> = names.iter().map(|n| format!("{dir}/{n}")).collect();
    let reads: Vec<_> = paths.iter().map(|p| client.get_data(p)).collect();
    let (mut pods, mut rejected) = (Vec::new(), Vec::new());
    for ((path, name), read) in paths.iter().zip(&names).zip(reads) {
        match read.await {
            Ok((data, stat)) => match crate::zk::cluster::judge(name, &data, &stat) {
                Ok(r) => pods.push(r.pod),
                Err(r) => rejected.push(r),
            },
            // Gone between the listing and the read: the pod left.
            Err(zkc::Error::NoNode) => {}
            Err(e) => return Err(op("reading", path)(e)),
        }
    }
    pods.sort_by(Registered::by_seq);
    let leader = leader_of(client, connect, &leader_dir, leaders).await?;
    let snapshot = match snapshot.await {
        Ok((data, _)) => crate::zk::snapshot::resolve(client, &snapshot_path, &data)
            .await
            .ok(),
        Err(zkc::Error::NoNode) => None,
        Err(e) => return Err(op("reading", &snapshot_path)(e)),
    };
    let paused = match paused.await {
        // Untrusted like the rest: decode() keeps a printable, bounded reason.
        Ok((data, stat)) => Some(crate::zk::pause::decode(&data, stat.mtime)),
        Err(zkc::Error::NoNode) => None,
        Err(e) => return Err(op("reading", &paused_path)(e)),
    };
    let exists = match exists.await {
        Ok(stat) => stat.is_some(),
        Err(e) => return Err(op("reading", &root)(e)),
    };
    Ok(ClusterRead {
        exists,
        pods,
        rejected,
        leader,
        snapshot,
        paused,
    })
}

/// A ZooKeeper error of the session at `connect`, saying what was being done where.
pub(super) fn zk_error(
    connect: &str,
    doing: &'static str,
    path: &str,
) -> impl FnOnce(zkc::Error) -> CtlError {
    let (connect, path) = (connect.to_string(), path.to_string());
    move |source| CtlError::Zk {
        connect,
        doing,
        path,
        source,
    }
}

/// The uuid held by the lowest election node under `dir` (the leader), from the pending listing
/// of `dir` (listings are pipelined with the other reads) on the session at `connect`.
pub(super) async fn leader_of(
    client: &zkc::Client,
    connect: &str,
    dir: &str,
    names: impl std::future::Future<Output = Result<Vec<String>, zkc::Error>>,
) -> Result<Option<String>, CtlError> {
    let names = match names.await {
        Ok(n) => n,
        Err(zkc::Error::NoNode) => return Ok(None),
        Err(e) => return Err(zk_error(connect, "listing", dir)(e)),
    };
    let Some(name) = lowest_election_node(&names) else {
        return Ok(None);
    };
    let path = format!("{dir}/{name}");
    match client.get_data(&path).await {
        Ok((data, _)) => Ok(String::from_utf8(data).ok().filter(|u| !u.is_empty())),
        Err(zkc::Error::NoNode) => Ok(None),
        Err(e) => Err(zk_error(connect, "reading", &path)(e)),
    }
}

/// The election node with the lowest sequence (names end with a 10-digit counter, whatever the
/// prefix: `n_0000000042`, or Curator's `_c_<uuid>-latch-0000000042`).
pub fn lowest_election_node(names: &[String]) -> Option<&String> {
    names
        .iter()
        .filter_map(|n| {
            // `get`: a name that is not ASCII has no char boundary there (and is no election node).
            let digits = n.len().checked_sub(10).and_then(|i| n.get(i..))?;
            let seq: u64 = digits.parse().ok()?;
            Some((seq, n))
        })
        .min()
        .map(|(_, n)| n)
}

/// What a cluster argument means as a key pattern: `zookeeper` → `<ns>.zookeeper`; a name with a
/// dot (`prod.zookeeper`) or a leading slash (`/prod.zookeeper`, as in `depends_on`) is already
/// a key. Cluster names cannot hold dots, so the dot is unambiguous.
pub fn key_pattern(arg: &str, namespace: &str) -> String {
    if let Some(abs) = arg.strip_prefix('/') {
        abs.to_string()
    } else if arg.contains('.') {
        arg.to_string()
    } else {
        format!("{namespace}.{arg}")
    }
}

/// A cluster argument that matches no cluster (the caller says what exists).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no cluster matches `{0}`")]
pub struct Unmatched(pub String);

/// The keys the patterns select, in key order, each once; no argument selects every cluster of
/// the namespace (possibly none). The error names the first argument that matches nothing.
pub fn select(keys: &[String], args: &[String], namespace: &str) -> Result<Vec<String>, Unmatched> {
    let mut chosen = BTreeSet::new();
    if args.is_empty() {
        let pattern = key_pattern("*", namespace);
        chosen.extend(keys.iter().filter(|k| glob(&pattern, k)).cloned());
    }
    for arg in args {
        let pattern = key_pattern(arg, namespace);
        let matched: Vec<&String> = keys.iter().filter(|k| glob(&pattern, k)).collect();
        if matched.is_empty() {
            return Err(Unmatched(arg.clone()));
        }
        chosen.extend(matched.into_iter().cloned());
    }
    Ok(chosen.into_iter().collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_relative_to_the_namespace_unless_dotted_or_absolute() {
        assert_eq!(key_pattern("zookeeper", "default"), "default.zookeeper");
        assert_eq!(key_pattern("prod.kafka", "default"), "prod.kafka");
        assert_eq!(key_pattern("/prod.kafka", "default"), "prod.kafka");
        assert_eq!(key_pattern("*", "qa"), "qa.*");
    }

    #[test]
    fn select_names_the_argument_that_matches_nothing() {
        let keys: Vec<String> = ["default.kafka", "default.zookeeper", "prod.kafka"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            select(&keys, &[], "default").unwrap(),
            vec!["default.kafka", "default.zookeeper"]
        );
        assert_eq!(
            select(&keys, &["*.kafka".into()], "x").unwrap(),
            vec!["default.kafka", "prod.kafka"]
        );
        assert_eq!(
            select(&keys, &["kafka".into(), "k*".into()], "default").unwrap(),
            vec!["default.kafka"]
        );
        assert_eq!(
            select(&keys, &["redis".into()], "default").unwrap_err(),
            Unmatched("redis".into())
        );
        assert_eq!(select(&[], &[], "default").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn the_lowest_election_node_leads() {
        let names: Vec<String> = ["n_0000000012", "n_0000000003", "junk", "n_0000000007"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(lowest_election_node(&names).unwrap(), "n_0000000003");
        assert_eq!(lowest_election_node(&[]), None);
    }
}
