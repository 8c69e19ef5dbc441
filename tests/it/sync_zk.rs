//! The sync loop against a real ZooKeeper, short of configuring pods (that needs real pods: see
//! the cluster tests): registration, election, `min_size`, pod state in the znode, leaving,
//! reset, session expiry, ZooKeeper down at start and short outages. The helpers here also serve
//! `zk_layer`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ochopod::model::{Pod, PodState};
use ochopod::spec::PodSpec;
use ochopod::sync::{self, Role, SyncConfig, SyncStatus};
use ochopod::zk::paths::ClusterPaths;
use ochopod::zk::{snapshot, ZkConfig};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zookeeper_client as zkc;

use crate::harness::eventually;
use crate::harness::zk::ZkServer;

pub(crate) const T: Duration = Duration::from_secs(20);

pub(crate) fn zk_config(zk: &ZkServer) -> ZkConfig {
    ZkConfig {
        connect: zk.connect_string(),
        session_timeout: Duration::from_secs(2),
        auth: None,
    }
}

/// What the sync loop runs `apply` and `probe` through (the supervise loop's view of the pod).
fn pod_context(spec: &Arc<PodSpec>, uuid: &str, state_dir: &Path) -> Arc<ochopod::supervise::PodContext> {
    Arc::new(ochopod::supervise::PodContext {
        spec: spec.clone(),
        renderer: ochopod::render::Renderer::new(spec).expect("templates compile"),
        me: pod(spec, uuid, 0),
        env: BTreeMap::new(),
        state_dir: state_dir.to_path_buf(),
        ring: Default::default(),
        hook_slots: tokio::sync::Semaphore::new(ochopod::supervise::HOOKS_IN_FLIGHT),
    })
}

pub(crate) async fn client(zk: &ZkServer) -> zkc::Client {
    ochopod::zk::connect(&zk_config(zk)).await.expect("connect")
}

pub(crate) fn spec(yaml: &str) -> Arc<PodSpec> {
    Arc::new(ochopod::spec::load_with_env(Path::new("pod.yaml"), yaml, &|_| None).expect("valid pod.yaml"))
}

pub(crate) fn pod(spec: &PodSpec, uuid: &str, seq: u32) -> Pod {
    Pod {
        uuid: uuid.into(),
        seq,
        cluster: spec.cluster.clone(),
        namespace: spec.namespace.clone(),
        ip: "127.0.0.1".into(),
        host: "127.0.0.1".into(),
        public: "127.0.0.1".into(),
        node: String::new(),
        task: String::new(),
        ports: BTreeMap::new(),
        // Nothing listens there: these tests never let a configuration start.
        control_port: 9,
        binding: "explicit".into(),
        version: "test".into(),
        state: PodState::Running,
        started: 0,
    }
}

/// A running sync loop and what the test holds of it.
struct Member {
    handle: sync::Handle,
    status: watch::Receiver<SyncStatus>,
    state: watch::Sender<PodState>,
    shutdown: CancellationToken,
    uuid: String,
    _dir: tempfile::TempDir,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn member(zk: &ZkServer, spec: &Arc<PodSpec>, uuid: &str) -> Member {
    let dir = tempfile::tempdir().expect("state dir");
    let (state, state_rx) = watch::channel(PodState::Running);
    let shutdown = CancellationToken::new();
    let cfg = SyncConfig {
        spec: spec.clone(),
        me: pod(spec, uuid, 0),
        state_dir: dir.path().to_path_buf(),
        new_uuid: true,
        pod: pod_context(spec, uuid, dir.path()),
        zk: zk_config(zk),
        signer: None,
    };
    let (handle, status) = sync::spawn(cfg, state_rx, shutdown.clone());
    Member {
        handle,
        status,
        state,
        shutdown,
        uuid: uuid.into(),
        _dir: dir,
    }
}

impl Member {
    async fn wait(&self, what: &str, pred: impl Fn(&SyncStatus) -> bool) -> SyncStatus {
        let mut rx = self.status.clone();
        let found = match tokio::time::timeout(T, rx.wait_for(|s| pred(s))).await {
            Ok(Ok(s)) => Some(s.clone()),
            _ => None,
        };
        found.unwrap_or_else(|| {
            panic!(
                "timed out waiting for {what}; status: {:?}",
                *self.status.borrow()
            )
        })
    }
}

/// The registered pod and the session owning its znode.
pub(crate) async fn registered(c: &zkc::Client, paths: &ClusterPaths, uuid: &str) -> Option<(Pod, i64)> {
    let (data, stat) = c.get_data(&paths.pod(uuid)).await.ok()?;
    Some((serde_json::from_slice(&data).ok()?, stat.ephemeral_owner))
}

#[tokio::test]
async fn the_sync_loop_registers_elects_and_waits_for_min_size() {
    let zk = ZkServer::start();
    let s = spec("cluster: gate\nnamespace: t5\nsettings: { min_size: 3, damper: 100ms }\nprocess: { command: 'true' }\n");
    let paths = ClusterPaths::new(&s.key());
    let a = member(&zk, &s, "a");
    a.wait("a to lead", |st| st.role == Role::Leader && st.seq == 1)
        .await;
    let b = member(&zk, &s, "b");
    let st = b.wait("b to follow", |st| st.role == Role::Follower).await;
    assert_eq!(st.seq, 2);
    assert!(st.connected);
    a.wait("the leader to count 2 pods", |st| {
        st.status == "waiting for min_size: 2/3 pods"
    })
    .await;
    // b is held by an operator: the leader no longer counts it.
    b.state.send(PodState::Held).unwrap();
    a.wait("the leader to drop held b", |st| {
        st.status == "waiting for min_size: 1/3 pods"
    })
    .await;
    let obs = client(&zk).await;
    let (pb, _) = registered(&obs, &paths, "b").await.unwrap();
    assert_eq!(pb.state, PodState::Held);
    assert_eq!(pb.seq, 2);
    // a leaves ZooKeeper: b takes over, and no snapshot was ever written.
    a.handle.deregister().await;
    assert!(registered(&obs, &paths, "a").await.is_none());
    b.wait("b to lead", |st| st.role == Role::Leader).await;
    assert!(snapshot::read(&obs, &paths.snapshot()).await.unwrap().is_none());
}

#[tokio::test]
async fn reset_and_session_expiry_register_the_same_pod_again() {
    let mut zk = ZkServer::start();
    let s = spec("cluster: again\nnamespace: t6\nsettings: { min_size: 9 }\nprocess: { command: 'true' }\n");
    let paths = ClusterPaths::new(&s.key());
    let other = member(&zk, &s, "other");
    other
        .wait("other registered", |st| {
            st.seq == 1 && st.role != Role::Connecting
        })
        .await;
    let m = member(&zk, &s, "me");
    m.wait("me registered", |st| st.seq == 2 && st.role == Role::Follower)
        .await;
    let obs = client(&zk).await;
    let (_, first) = registered(&obs, &paths, "me").await.unwrap();

    m.handle.reset().await;
    // A reset is a new session for sure (it is never resumed).
    eventually(T, "a new session after reset", || async {
        let (p, owner) = registered(&obs, &paths, "me").await?;
        (owner != first && p.seq == 2).then_some(())
    })
    .await;

    // Freeze the server past the session timeout: its sessions expire as it resumes, unless the
    // pod's attempt to resume its own (queued while the server was frozen) reaches it first.
    // Either way the pod is registered as itself. (Expiry for sure: cluster_faults, a frozen pod.)
    zk.pause();
    tokio::time::sleep(Duration::from_secs(5)).await;
    zk.resume();
    let obs = eventually(T, "a new observer session", || async {
        ochopod::zk::connect(&zk_config(&zk)).await.ok()
    })
    .await;
    m.wait("me connected again", |st| {
        st.connected && st.role != Role::Connecting
    })
    .await;
    eventually(T, "me registered after the freeze, same uuid and seq", || async {
        let (p, _) = registered(&obs, &paths, "me").await?;
        (p.seq == 2 && p.uuid == "me").then_some(())
    })
    .await;
    // Either pod may lead now.
    m.wait("me back in the election", |st| {
        st.role != Role::Connecting && st.connected && st.seq == 2
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(m._dir.path().join("seq")).unwrap().trim(),
        "2"
    );

    // ZooKeeper down: the loop says so, and comes back when it does.
    zk.stop();
    m.wait("the loop to notice", |st| !st.connected).await;
    zk.restart();
    m.wait("me registered after the restart", |st| {
        st.connected && st.seq == 2 && st.role != Role::Connecting
    })
    .await;
    let _ = &other.uuid;
}

#[tokio::test]
async fn leave_marks_the_pod_leaving_and_deregister_removes_it() {
    let zk = ZkServer::start();
    let s = spec("cluster: bye\nnamespace: t7\nsettings: { min_size: 9 }\nprocess: { command: 'true' }\n");
    let paths = ClusterPaths::new(&s.key());
    let m = member(&zk, &s, "m");
    m.wait("registered", |st| st.role == Role::Leader).await;
    // No snapshot lists the pod: nothing to drain, leave returns at once.
    tokio::time::timeout(T, m.handle.leave(Duration::from_secs(30)))
        .await
        .expect("leave returns");
    let obs = client(&zk).await;
    let (p, _) = registered(&obs, &paths, &m.uuid).await.unwrap();
    assert_eq!(p.state, PodState::Leaving);
    m.handle.deregister().await;
    assert!(registered(&obs, &paths, &m.uuid).await.is_none());
    assert_eq!(m.status.borrow().status, "deregistered");
}

#[tokio::test]
async fn zookeeper_down_at_start_is_retried_and_a_short_outage_keeps_the_session() {
    let mut zk = ZkServer::start();
    zk.stop();
    let s = spec("cluster: late\nnamespace: t9\nsettings: { min_size: 9 }\nprocess: { command: 'true' }\n");
    let dir = tempfile::tempdir().unwrap();
    let (_state, state_rx) = watch::channel(PodState::Running);
    let shutdown = CancellationToken::new();
    let cfg = SyncConfig {
        spec: s.clone(),
        me: pod(&s, "late", 0),
        state_dir: dir.path().to_path_buf(),
        new_uuid: true,
        pod: pod_context(&s, "late", dir.path()),
        // Long enough that the outage below stays a connection loss, not an expiry.
        zk: ZkConfig {
            connect: zk.connect_string(),
            session_timeout: Duration::from_secs(8),
            auth: None,
        },
        signer: None,
    };
    let (_handle, mut status) = sync::spawn(cfg, state_rx, shutdown.clone());
    let down = tokio::time::timeout(T, status.wait_for(|s| s.status.contains("retrying in"))).await;
    let down = down
        .expect("the status says ZooKeeper is unreachable")
        .unwrap()
        .clone();
    assert_eq!(down.role, Role::Connecting);
    assert!(!down.connected);
    zk.restart();
    tokio::time::timeout(
        Duration::from_secs(40),
        status.wait_for(|s| s.role == Role::Leader && s.connected),
    )
    .await
    .expect("registered once ZooKeeper is up")
    .unwrap();
    let paths = ClusterPaths::new(&s.key());
    let obs = client(&zk).await;
    let (_, owner) = registered(&obs, &paths, "late").await.unwrap();
    drop(obs);

    // A pause shorter than the session timeout: the connection drops, the session survives.
    zk.pause();
    tokio::time::timeout(T, status.wait_for(|s| !s.connected))
        .await
        .expect("the loss is noticed")
        .unwrap();
    zk.resume();
    tokio::time::timeout(T, status.wait_for(|s| s.connected))
        .await
        .expect("reconnected")
        .unwrap();
    let obs = client(&zk).await;
    let (_, again) = registered(&obs, &paths, "late").await.unwrap();
    assert_eq!(again, owner, "same session, same ephemeral znode");
    shutdown.cancel();
}
