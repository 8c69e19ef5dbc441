//! The ZooKeeper layer (`ochopod::zk`) against a real server: seq claims, election, the
//! leader's snapshot transaction, dependency resolution, digest ACLs and chroot.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ochopod::model::{Pod, PodState};
use ochopod::sync::plan;
use ochopod::zk::paths::ClusterPaths;
use ochopod::zk::snapshot::{Commit, Snapshot};
use ochopod::zk::{cluster, election, register, snapshot, Acls, ZkConfig, ZkError};
use zookeeper_client as zkc;

use crate::harness::eventually;
use crate::harness::zk::ZkServer;
use crate::sync_zk::{client, pod, spec, zk_config, T};

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
        let seq = register::claim_seq(&c, &paths, acls, uuid, 0, true)
            .await
            .unwrap();
        assert_eq!(seq as usize, i + 1, "{uuid}");
        register::publish(&c, &paths, acls, &pod(&s, uuid, seq))
            .await
            .unwrap();
        clients.push(c);
    }
    // u2 goes away: its seq stays taken until a configuration without it.
    drop(clients.remove(1));
    let c4 = client(&zk).await;
    assert_eq!(
        register::claim_seq(&c4, &paths, acls, "u4", 0, true)
            .await
            .unwrap(),
        4
    );
    register::publish(&c4, &paths, acls, &pod(&s, "u4", 4))
        .await
        .unwrap();
    // A pod coming back with its seq gets it again.
    assert_eq!(
        register::claim_seq(&c4, &paths, acls, "u3", 3, false)
            .await
            .unwrap(),
        3
    );

    // A configuration of u1, u3, u4 (as the leader writes it) frees seq 2.
    let leader = &clients[0];
    let me = election::enter(leader, &paths, acls, "u1").await.unwrap();
    election::wait_until_leader(leader, &paths, &me).await.unwrap();
    let reg = eventually(T, "u2's znode to go", || async {
        let r = cluster::registered(leader, &paths).await.unwrap().pods;
        (!r.contains_key("u2")).then_some(r)
    })
    .await;
    let pods: plan::Pods = reg
        .values()
        .map(|r| (r.pod.uuid.clone(), r.pod.clone()))
        .collect();
    let held = cluster::held_seqs(leader, &paths).await.unwrap();
    let names: BTreeSet<String> = reg.keys().cloned().collect();
    // `seq_hold: 0s`: no reservation, the seq is freed by this configuration.
    let none = BTreeMap::new();
    let free: Vec<(String, i32)> = plan::seqs_to_free(
        &held,
        &pods,
        &names,
        &Default::default(),
        &none,
        0,
        Duration::ZERO,
    )
    .free
    .into_iter()
    .map(|h| (paths.seq(h.seq), h.version))
    .collect();
    assert_eq!(free.len(), 1, "{free:?}");
    let snap = Snapshot {
        generation: 1,
        hash: plan::config_hash(&pods, &BTreeMap::new()),
        pods,
        ..Snapshot::default()
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
    assert_eq!(
        register::claim_seq(&c5, &paths, acls, "u5", 0, true)
            .await
            .unwrap(),
        2
    );
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
    let b_node = cb.path.clone();
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
    // Each waits on a watch of its predecessor's node, as the server shows: b on a's, c on b's
    // only (no herd). Once both watches are there, both have looked and must still be waiting.
    let session = |c: &zkc::Client| format!("{:#x}", c.session_id().0);
    let (sb, sc) = (session(&b), session(&c));
    let watches = eventually(T, "b watching a's node and c watching b's", || async {
        let w = zk.watches();
        let on = |path: &str, s: &str| w.get(path).is_some_and(|v| v.iter().any(|x| x == s));
        (on(&ca.path, &sb) && on(&b_node, &sc)).then_some(w)
    })
    .await;
    assert!(
        !watches.get(&ca.path).is_some_and(|v| v.contains(&sc)),
        "c watches only b's node, not the leader's (no herd): {watches:?}"
    );
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
        ..Snapshot::default()
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
        ..Snapshot::default()
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
        ..Snapshot::default()
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
            ..Snapshot::default()
        })
        .unwrap(),
        &acls.persistent(),
    )
    .await
    .unwrap();
    let (_, pods) = cluster::dependency_pods(&c, "default.zookeeper").await.unwrap();
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
            cluster::dependency_pods(&c, &r.key).await.unwrap().1,
        );
    }
    assert!(
        plan::unmet_min(&web.depends_on, &resolved, &found, &[]).is_none(),
        "2 live zookeeper pods meet min: 2"
    );
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
    let seq = register::claim_seq(&owner, &paths, acls, "p1", 0, true)
        .await
        .unwrap();
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
        register::claim_seq(&peer, &paths, acls, "p2", 0, true)
            .await
            .unwrap(),
        2
    );
}
