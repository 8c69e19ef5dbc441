//! One simulated pod: its identity, its ZooKeeper session and registration (the crate's own
//! `zk::register`, `zk::acl::secure`, `zk::snapshot::read` and `zk::election`, in the order the
//! sync loop runs them), its control listener on its own 127.88.x.y, and what it applied.
//!
//! It supervises no process: `on` records the map, nothing runs. It owns its session (dropping
//! the last handle sends ZooKeeper's CloseSession, so [`SimPod::lose`] makes it vanish without
//! leaving, as a crashed pod whose session ended) and the listener (stopped by its token).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ochopod::model::held::Known;
use ochopod::model::{Pod, PodState};
use ochopod::zk::paths::ClusterPaths;
use ochopod::zk::{self, Acls, Client, ZkConfig, ZkError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::decode::Maps;
use crate::tracker::{Tracker, Traffic};

/// The control port of every simulated pod (each has its own address).
pub const PORT: u16 = 8080;

/// What every pod shares: the cluster, ZooKeeper, the store of maps and the counters.
pub struct Shared {
    pub zk: ZkConfig,
    pub acls: Acls,
    pub paths: ClusterPaths,
    pub cluster: String,
    pub namespace: String,
    pub maps: Maps,
    pub tracker: Tracker,
    pub traffic: Traffic,
}

/// What a pod applied, as the supervise actor of a real pod keeps it.
#[derive(Default)]
pub struct Applied {
    /// (epoch, generation) of the last map applied by `on`; (0, 0) before.
    pub version: (u64, u64),
    /// The last map applied (interned: see [`Maps`]).
    pub last: Option<Known>,
    /// The map of the last `check` accepted (interned), a base for deltas as a real pod's
    /// (`control::Checked`).
    pub checked: Option<Known>,
    /// An operator's `off` (an empty body) holds the pod until an `on`.
    pub held: bool,
}

pub struct SimPod {
    pub idx: usize,
    pub me: Pod,
    pub applied: Mutex<Applied>,
    session: Mutex<Option<Client>>,
    /// Stops the listener and the election watch.
    stop: CancellationToken,
    election: Mutex<Option<JoinHandle<()>>>,
}

/// Why a pod could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("pod {idx}: ZooKeeper")]
    Zk {
        idx: usize,
        #[source]
        source: ZkError,
    },
}

/// The address of pod `idx`: 127.88.1.1, 127.88.1.2, ... 127.88.1.250, 127.88.2.1, ... (the
/// leader is 127.88.0.1). Up to 250 x 254 pods.
pub fn address(idx: usize) -> Option<Ipv4Addr> {
    let (hi, lo) = (idx / 250 + 1, idx % 250 + 1);
    Some(Ipv4Addr::new(
        127,
        88,
        u8::try_from(hi).ok().filter(|&h| h < 255)?,
        u8::try_from(lo).ok()?,
    ))
}

impl SimPod {
    /// A pod of the cluster at `ip`, seq asked for: `seq` (as a StatefulSet ordinal would: one
    /// create, no contention with the pods starting at the same time).
    pub fn new(idx: usize, ip: Ipv4Addr, seq: u32, shared: &Shared) -> SimPod {
        let ip = ip.to_string();
        let me = Pod {
            uuid: uuid::Uuid::new_v4().to_string(),
            seq,
            cluster: shared.cluster.clone(),
            namespace: shared.namespace.clone(),
            ip: ip.clone(),
            host: ip.clone(),
            public: ip,
            node: String::new(),
            task: String::new(),
            ports: [("9000".to_string(), 9000), (PORT.to_string(), PORT)].into(),
            control_port: PORT,
            binding: "explicit".into(),
            version: ochopod::VERSION.into(),
            state: PodState::Running,
            started: ochopod::clock::now_ms(),
        };
        SimPod {
            idx,
            me,
            applied: Mutex::new(Applied::default()),
            session: Mutex::new(None),
            stop: CancellationToken::new(),
            election: Mutex::new(None),
        }
    }

    pub fn applied(&self) -> std::sync::MutexGuard<'_, Applied> {
        // Plain values: a panic elsewhere leaves them consistent.
        self.applied.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Listens, opens a session and registers as a real pod does; returns when the pod's znode
    /// exists (the "registration" instant).
    pub async fn start(self: &Arc<Self>, shared: &Arc<Shared>) -> Result<Instant, StartError> {
        let addr = SocketAddr::new(
            self.me.ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            PORT,
        );
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        crate::control::serve(listener, self.clone(), shared.clone(), self.stop.clone());
        let zk = |source| StartError::Zk {
            idx: self.idx,
            source,
        };
        let client = zk::connect(&shared.zk).await.map_err(zk)?;
        let registered = self.register(&client, shared).await.map_err(zk)?;
        let (me, paths, acls, stop) = (self.clone(), shared.paths.clone(), shared.acls, self.stop.clone());
        let session = client.clone();
        *self.session.lock().unwrap_or_else(|e| e.into_inner()) = Some(client);
        let election = tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                r = me.elect(&session, &paths, acls) => if let Err(e) = r {
                    tracing::warn!(pod = me.idx, error = %e, "election");
                },
            }
        });
        *self.election.lock().unwrap_or_else(|e| e.into_inner()) = Some(election);
        Ok(registered)
    }

    /// What `Sync::register` does: layout, ACL check, seq, pod znode, the snapshot's generation.
    async fn register(&self, client: &Client, shared: &Shared) -> Result<Instant, ZkError> {
        zk::register::ensure_layout(client, &shared.paths, shared.acls).await?;
        zk::acl::secure(client, &shared.paths, &shared.zk).await?;
        // The uuid was made by this run and `start` runs once: it holds no seq yet.
        let seq = zk::register::claim_seq(
            client,
            &shared.paths,
            shared.acls,
            &self.me.uuid,
            self.me.seq,
            true,
        )
        .await?;
        let me = Pod {
            seq,
            ..self.me.clone()
        };
        zk::register::publish(client, &shared.paths, shared.acls, &me).await?;
        let at = Instant::now();
        zk::snapshot::generation(client, &shared.paths.snapshot()).await?;
        Ok(at)
    }

    /// A follower's part of the election: its node, and a watch on its predecessor. Should it
    /// ever lead (the real leader died), it says so and leads nothing.
    ///
    /// The session is new (`start` runs once), so it left no election node behind: like a real
    /// pod's first attempt (`sync::member`), no `leave_stale`, which reads every candidate's node.
    async fn elect(&self, client: &Client, paths: &ClusterPaths, acls: Acls) -> Result<(), ZkError> {
        let me = zk::election::enter(client, paths, acls, &self.me.uuid).await?;
        zk::election::wait_until_leader(client, paths, &me).await?;
        tracing::warn!(
            pod = self.idx,
            "a simulated pod won the election: the leader is gone"
        );
        Ok(())
    }

    /// Vanishes without leaving: the listener stops and the session is closed, so ZooKeeper
    /// deletes the pod's znode and election node at once (no `leaving` state first).
    pub async fn lose(&self) {
        self.stop.cancel();
        let election = self.election.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = election {
            // It holds a handle on the session: the session closes with the last one.
            let _ = task.await;
        }
        drop(self.session.lock().unwrap_or_else(|e| e.into_inner()).take());
    }
}
