//! The ZooKeeper layer against a real server: seq claims, registration across session loss,
//! election, the leader's snapshot transaction, dependency resolution, and the sync loop's own
//! behaviour short of configuring pods (that needs real pods: see the cluster tests).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ochopod::model::{Pod, PodState};
use ochopod::spec::PodSpec;
use ochopod::sync::{self, plan, Role, SyncConfig, SyncStatus};
use ochopod::zk::paths::ClusterPaths;
use ochopod::zk::snapshot::{Commit, Snapshot};
use ochopod::zk::{cluster, election, register, snapshot, Acls, ZkConfig, ZkError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zookeeper_client as zkc;

use crate::harness::eventually;
use crate::harness::zk::ZkServer;

const T: Duration = Duration::from_secs(20);

fn zk_config(zk: &ZkServer) -> ZkConfig {
    ZkConfig {
        connect: zk.connect_string(),
        session_timeout: Duration::from_secs(2),
        auth: None,
    }
}

async fn client(zk: &ZkServer) -> zkc::Client {
    ochopod::zk::connect(&zk_config(zk)).await.expect("connect")
}

fn spec(yaml: &str) -> Arc<PodSpec> {
    Arc::new(ochopod::spec::load_with_env(Path::new("pod.yaml"), yaml, &|_| None).expect("valid pod.yaml"))
}

fn pod(spec: &PodSpec, uuid: &str, seq: u32) -> Pod {
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
        zk: zk_config(zk),
        token: None,
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
async fn registered(c: &zkc::Client, paths: &ClusterPaths, uuid: &str) -> Option<(Pod, i64)> {
    let (data, stat) = c.get_data(&paths.pod(uuid)).await.ok()?;
    Some((serde_json::from_slice(&data).ok()?, stat.ephemeral_owner))
}

#[tokio::test]
async fn seqs_are_claimed_smallest_first_and_freed_only_by_a_configuration() {
    let zk = ZkServer::start();
    let s = spec("cluster: seqs\nnamespace: t1\nprocess: { command: 'true' }\n");
    let paths = ClusterPaths::new(&s.key());
    let acls = Acls::new(&zk_config(&zk));
    let mut clients = Vec::new();
    for (i, uuid) in ["u1", "u2", "u3"].iter().enumerate() {
        let c = client(&zk).await;
        register::ensure_layout(&c, &paths, acls).await.unwrap();
        let seq = register::claim_seq(&c, &paths, acls, uuid, 0).await.unwrap();
        assert_eq!(seq as usize, i + 1, "{uuid}");
        register::publish(&c, &paths, acls, &pod(&s, uuid, seq))
            .await
            .unwrap();
        clients.push(c);
    }
    // u2 goes away: its seq stays taken until a configuration without it.
    drop(clients.remove(1));
    let c4 = client(&zk).await;
    assert_eq!(register::claim_seq(&c4, &paths, acls, "u4", 0).await.unwrap(), 4);
    register::publish(&c4, &paths, acls, &pod(&s, "u4", 4))
        .await
        .unwrap();
    // A pod coming back with its seq gets it again.
    assert_eq!(register::claim_seq(&c4, &paths, acls, "u3", 3).await.unwrap(), 3);

    // A configuration of u1, u3, u4 (as the leader writes it) frees seq 2.
    let leader = &clients[0];
    let me = election::enter(leader, &paths, acls, "u1").await.unwrap();
    election::wait_until_leader(leader, &paths, &me).await.unwrap();
    let reg = eventually(T, "u2's znode to go", || async {
        let r = cluster::registered(leader, &paths).await.unwrap();
        (!r.contains_key("u2")).then_some(r)
    })
    .await;
    let pods: plan::Pods = reg
        .values()
        .map(|r| (r.pod.uuid.clone(), r.pod.clone()))
        .collect();
    let held = cluster::held_seqs(leader, &paths).await.unwrap();
    let names: BTreeSet<String> = reg.keys().cloned().collect();
    let free: Vec<(String, i32)> = plan::seqs_to_free(&held, &pods, &names)
        .into_iter()
        .map(|h| (paths.seq(h.seq), h.version))
        .collect();
    assert_eq!(free.len(), 1, "{free:?}");
    let snap = Snapshot {
        generation: 1,
        hash: plan::config_hash(&pods, &BTreeMap::new()),
        pods,
    };
    let path = paths.snapshot();
    let commit = Commit {
        leader_node: &me.path,
        leader_version: 0,
        path: &path,
        snapshot: &snap,
        snapshot_version: None,
        free_seqs: free,
    };
    snapshot::commit(leader, acls, &commit).await.unwrap();
    let c5 = client(&zk).await;
    assert_eq!(register::claim_seq(&c5, &paths, acls, "u5", 0).await.unwrap(), 2);
    let (read, _) = snapshot::read(&c5, &path)
        .await
        .unwrap()
        .expect("snapshot written");
    assert_eq!(read.generation, 1);
    assert_eq!(read.pods.keys().collect::<Vec<_>>(), ["u1", "u3", "u4"]);
}

#[tokio::test]
async fn election_moves_to_the_next_candidate_when_the_leaders_session_closes() {
    let zk = ZkServer::start();
    let paths = ClusterPaths::new("t2.elect");
    let acls = Acls::new(&zk_config(&zk));
    let (a, b, c) = (client(&zk).await, client(&zk).await, client(&zk).await);
    register::ensure_layout(&a, &paths, acls).await.unwrap();
    let ca = election::enter(&a, &paths, acls, "a").await.unwrap();
    let cb = election::enter(&b, &paths, acls, "b").await.unwrap();
    let cc = election::enter(&c, &paths, acls, "c").await.unwrap();
    election::wait_until_leader(&a, &paths, &ca).await.unwrap();
    assert_eq!(
        election::current_leader(&c, &paths).await.unwrap().as_deref(),
        Some("a")
    );
    let b_leads = tokio::spawn({
        let (b, paths) = (b.clone(), paths.clone());
        async move { election::wait_until_leader(&b, &paths, &cb).await }
    });
    let c_leads = tokio::spawn({
        let (c, paths) = (c.clone(), paths.clone());
        async move { election::wait_until_leader(&c, &paths, &cc).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !b_leads.is_finished() && !c_leads.is_finished(),
        "nobody else leads while a does"
    );
    drop(a);
    tokio::time::timeout(T, b_leads)
        .await
        .expect("b leads in time")
        .unwrap()
        .unwrap();
    assert!(!c_leads.is_finished(), "c waits for b, not for a (no herd)");
    assert_eq!(
        election::current_leader(&c, &paths).await.unwrap().as_deref(),
        Some("b")
    );
    drop(b);
    tokio::time::timeout(T, c_leads)
        .await
        .expect("c leads in time")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_deposed_leader_cannot_write_the_snapshot() {
    let zk = ZkServer::start();
    let paths = ClusterPaths::new("t3.deposed");
    let acls = Acls::new(&zk_config(&zk));
    let (a, b) = (client(&zk).await, client(&zk).await);
    register::ensure_layout(&a, &paths, acls).await.unwrap();
    let ca = election::enter(&a, &paths, acls, "a").await.unwrap();
    let cb = election::enter(&b, &paths, acls, "b").await.unwrap();
    election::wait_until_leader(&a, &paths, &ca).await.unwrap();
    let path = paths.snapshot();
    let first = Snapshot {
        generation: 1,
        hash: "h1".into(),
        pods: BTreeMap::new(),
    };
    snapshot::commit(&a, acls, &write(&path, &ca.path, &first, None))
        .await
        .unwrap();
    // Someone (an operator, a partition healing) removes a's election node: b leads now.
    b.delete(&ca.path, None).await.unwrap();
    election::wait_until_leader(&b, &paths, &cb).await.unwrap();
    let stale = Snapshot {
        generation: 2,
        hash: "from-a".into(),
        pods: BTreeMap::new(),
    };
    let err = snapshot::commit(&a, acls, &write(&path, &ca.path, &stale, Some(0)))
        .await
        .unwrap_err();
    assert!(matches!(err, ZkError::Deposed { .. }), "{err}");
    let (read, version) = snapshot::read(&b, &path).await.unwrap().unwrap();
    assert_eq!(read, first, "the deposed leader changed nothing");
    let next = Snapshot {
        generation: 2,
        hash: "from-b".into(),
        pods: BTreeMap::new(),
    };
    snapshot::commit(&b, acls, &write(&path, &cb.path, &next, Some(version)))
        .await
        .unwrap();
    assert_eq!(snapshot::read(&a, &path).await.unwrap().unwrap().0.hash, "from-b");
}

fn write<'a>(path: &'a str, leader: &'a str, snap: &'a Snapshot, version: Option<i32>) -> Commit<'a> {
    Commit {
        leader_node: leader,
        leader_version: 0,
        path,
        snapshot: snap,
        snapshot_version: version,
        free_seqs: Vec::new(),
    }
}

#[tokio::test]
async fn dependencies_resolve_relative_absolute_and_wildcards_to_live_configured_pods() {
    let zk = ZkServer::start();
    let acls = Acls::new(&zk_config(&zk));
    let c = client(&zk).await;
    // default.zookeeper: a1..a3 configured; a2 held since; a4 registered but never configured;
    // a5 configured but gone.
    let zks = spec("cluster: zookeeper\nprocess: { command: 'true' }\n");
    let zkp = ClusterPaths::new("default.zookeeper");
    register::ensure_layout(&c, &zkp, acls).await.unwrap();
    let mut configured = BTreeMap::new();
    for (i, uuid) in ["a1", "a2", "a3", "a4", "a5"].iter().enumerate() {
        let mut p = pod(&zks, uuid, i as u32 + 1);
        if *uuid != "a4" {
            configured.insert(uuid.to_string(), p.clone());
        }
        if *uuid == "a2" {
            p.state = PodState::Held;
        }
        if *uuid != "a5" {
            register::publish(&c, &zkp, acls, &p).await.unwrap();
        }
    }
    c.create(
        &zkp.snapshot(),
        &serde_json::to_vec(&Snapshot {
            generation: 3,
            hash: "x".into(),
            pods: configured,
        })
        .unwrap(),
        &acls.persistent(),
    )
    .await
    .unwrap();
    let pods = cluster::dependency_pods(&c, "default.zookeeper").await.unwrap();
    assert_eq!(pods.keys().collect::<Vec<_>>(), ["a1", "a3"]);
    // Other clusters, for the absolute and wildcard forms.
    for key in ["prod.db", "default.kafka-a", "default.kafka-b", "default.web"] {
        register::ensure_layout(&c, &ClusterPaths::new(key), acls)
            .await
            .unwrap();
    }
    let web = spec(
        "cluster: web\ndepends_on: [{cluster: zookeeper, min: 2}, {cluster: /prod.db}, {cluster: 'kafka-*'}]\n\
         process: { command: 'true' }\n",
    );
    let clusters = cluster::list_clusters(&c).await.unwrap();
    let resolved = plan::resolve(&web.namespace, &web.key(), &web.depends_on, &clusters);
    let got: Vec<(&str, &str)> = resolved
        .iter()
        .map(|r| (r.name.as_str(), r.key.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("zookeeper", "default.zookeeper"),
            ("/prod.db", "prod.db"),
            ("default.kafka-a", "default.kafka-a"),
            ("default.kafka-b", "default.kafka-b")
        ]
    );
    let mut found = BTreeMap::new();
    for r in &resolved {
        found.insert(
            r.name.clone(),
            cluster::dependency_pods(&c, &r.key).await.unwrap(),
        );
    }
    assert!(
        plan::unmet_min(&web.depends_on, &resolved, &found).is_none(),
        "2 live zookeeper pods meet min: 2"
    );
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
    let second = eventually(T, "a new session after reset", || async {
        let (p, owner) = registered(&obs, &paths, "me").await?;
        (owner != first && p.seq == 2).then_some(owner)
    })
    .await;

    // Freeze the server past the session timeout: every session expires when it resumes.
    zk.pause();
    tokio::time::sleep(Duration::from_secs(5)).await;
    zk.resume();
    let obs = eventually(T, "a new observer session", || async {
        ochopod::zk::connect(&zk_config(&zk)).await.ok()
    })
    .await;
    eventually(
        T,
        "me registered again after expiry, same uuid and seq",
        || async {
            let (p, owner) = registered(&obs, &paths, "me").await?;
            (owner != second && p.seq == 2 && p.uuid == "me").then_some(())
        },
    )
    .await;
    // Both sessions expired: either pod may lead now.
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
async fn with_auth_and_a_chroot_the_layout_is_readable_by_anyone_and_writable_by_its_owners() {
    let zk = ZkServer::start();
    let s = spec("cluster: locked\nnamespace: t8\nprocess: { command: 'true' }\n");
    let cfg = ZkConfig {
        connect: format!("{}/tenants/blue", zk.connect_string()),
        session_timeout: Duration::from_secs(2),
        auth: Some(("ops".into(), "s3cret".into())),
    };
    let acls = Acls::new(&cfg);
    let owner = ochopod::zk::connect(&cfg).await.unwrap();
    let paths = ClusterPaths::new(&s.key());
    // The chroot does not exist yet: registering creates it.
    register::ensure_layout(&owner, &paths, acls).await.unwrap();
    let seq = register::claim_seq(&owner, &paths, acls, "p1", 0).await.unwrap();
    register::publish(&owner, &paths, acls, &pod(&s, "p1", seq))
        .await
        .unwrap();

    let anyone = client(&zk).await;
    let full = format!("/tenants/blue{}", paths.pod("p1"));
    let (data, _) = anyone.get_data(&full).await.expect("world can read");
    assert_eq!(serde_json::from_slice::<Pod>(&data).unwrap().seq, 1);
    let err = anyone.set_data(&full, b"{}", None).await.unwrap_err();
    assert_eq!(err, zkc::Error::NoAuth, "only the credentials' holders write");
    let seqs = format!("/tenants/blue{}", paths.seqs());
    let err = anyone
        .create(
            &format!("{seqs}/7"),
            b"x",
            &zkc::CreateMode::Persistent.with_acls(zkc::Acls::anyone_all()),
        )
        .await
        .unwrap_err();
    assert_eq!(err, zkc::Error::NoAuth);

    // Another pod with the same credentials works in the same cluster.
    let peer = ochopod::zk::connect(&cfg).await.unwrap();
    assert_eq!(
        register::claim_seq(&peer, &paths, acls, "p2", 0).await.unwrap(),
        2
    );
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
        // Long enough that the outage below stays a connection loss, not an expiry.
        zk: ZkConfig {
            connect: zk.connect_string(),
            session_timeout: Duration::from_secs(8),
            auth: None,
        },
        token: None,
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
