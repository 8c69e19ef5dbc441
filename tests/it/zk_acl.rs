//! The tree's ACLs (`ochopod::zk::acl`, SPEC §6) and the ZooKeeper credentials' settings, against
//! a real server: an anonymous client pre-creates the tree with open ACLs or plants a persistent
//! node under `leader/`; ochopod with credentials repairs what it may and refuses (exit 2) what it
//! may not, naming the node.
#![allow(clippy::unwrap_used)]

use ochopod::zk::paths::ClusterPaths;
use ochopod::zk::{acl, ZkConfig, ZkError};
use zookeeper_client as zkc;

use crate::cluster::{pod_yaml, PEERS, T};
use crate::harness::free_port;
use crate::harness::pod::{binary, next_ip, Pod, PodDir, PodOptions};
use crate::harness::zk::ZkServer;
use crate::sync_zk::zk_config;

/// ZooKeeper's digest id of `ops:s3cret` (its `DigestAuthenticationProvider ops:s3cret`).
const OPS_ID: &str = "ops:CzCEOKcNDOImQNsA1kmK0V5DZ/A=";

fn authed(zk: &ZkServer, chroot: &str) -> ZkConfig {
    ZkConfig {
        connect: format!("{}{chroot}", zk.connect_string()),
        auth: Some(("ops".into(), "s3cret".into())),
        ..zk_config(zk)
    }
}

fn open() -> zkc::CreateOptions<'static> {
    zkc::CreateMode::Persistent.with_acls(zkc::Acls::anyone_all())
}

/// What an anonymous client leaves when it gets there first: the whole layout, open to all, a
/// snapshot of its own, and a persistent node that sorts before every election node.
async fn plant_open_tree(anyone: &zkc::Client, paths: &ClusterPaths) {
    for dir in [paths.pods(), paths.seqs(), paths.leader(), paths.snapshot_parts()] {
        anyone.mkdir(&dir, &open()).await.unwrap();
    }
    anyone
        .create(
            &paths.snapshot(),
            br#"{"generation":0,"hash":"","pods":{}}"#,
            &open(),
        )
        .await
        .unwrap();
    plant_leader(anyone, paths).await;
}

async fn plant_leader(anyone: &zkc::Client, paths: &ClusterPaths) -> String {
    let path = format!("{}/n_0000000000", paths.leader());
    anyone.create(&path, b"intruder", &open()).await.unwrap();
    path
}

fn the_nodes(paths: &ClusterPaths) -> Vec<String> {
    vec![
        "/ochopod".into(),
        "/ochopod/clusters".into(),
        paths.root.clone(),
        paths.pods(),
        paths.seqs(),
        paths.leader(),
        paths.snapshot(),
        paths.snapshot_parts(),
    ]
}

/// Every node of the layout is ochopod's: all for its credentials, read for the world (as
/// `owner`, a session with the credentials, sees it: ZooKeeper shows others `ops:x`); and an
/// anonymous client can neither register a pod nor write the snapshot.
async fn assert_closed(owner: &zkc::Client, anyone: &zkc::Client, paths: &ClusterPaths) {
    let want = vec![
        zkc::Acl::new(zkc::Permission::ALL, zkc::AuthId::new("digest", OPS_ID)),
        zkc::Acl::new(zkc::Permission::READ, zkc::AuthId::anyone()),
    ];
    for path in the_nodes(paths) {
        let (acl, _) = owner.get_acl(&path).await.unwrap();
        assert_eq!(acl, want, "{path}");
    }
    let err = anyone
        .create(&paths.pod("intruder"), b"{}", &open())
        .await
        .unwrap_err();
    assert_eq!(err, zkc::Error::NoAuth, "anonymous registration");
    let err = anyone.set_data(&paths.snapshot(), b"{}", None).await.unwrap_err();
    assert_eq!(err, zkc::Error::NoAuth, "anonymous snapshot");
    let part = format!("{}/x-0", paths.snapshot_parts());
    let err = anyone.create(&part, b"{}", &open()).await.unwrap_err();
    assert_eq!(err, zkc::Error::NoAuth, "anonymous snapshot part");
}

#[tokio::test]
async fn an_open_tree_is_repaired_when_the_credentials_may() {
    let zk = ZkServer::start();
    let paths = ClusterPaths::new("t1.open");
    let anyone = zk.observer().await;
    plant_open_tree(&anyone, &paths).await;
    let cfg = authed(&zk, "");
    let owner = ochopod::zk::connect(&cfg).await.unwrap();
    acl::secure(&owner, &paths, &cfg).await.unwrap();
    assert_closed(&owner, &anyone, &paths).await;
    let planted = format!("{}/n_0000000000", paths.leader());
    assert_eq!(
        anyone.check_stat(&planted).await.unwrap(),
        None,
        "planted leader node deleted"
    );
    // Once repaired, the check has nothing left to do.
    acl::secure(&owner, &paths, &cfg).await.unwrap();
}

#[tokio::test]
async fn a_node_the_credentials_may_not_repair_is_refused_by_name() {
    let zk = ZkServer::start();
    let paths = ClusterPaths::new("t2.shut");
    let anyone = zk.observer().await;
    // Open to all, but without ADMIN: nobody may change its ACL, ochopod included. Under a
    // chroot, which the message must name (zkCli sees the full path).
    let no_admin = [zkc::Acl::new(
        zkc::Permission::READ | zkc::Permission::WRITE | zkc::Permission::CREATE | zkc::Permission::DELETE,
        zkc::AuthId::anyone(),
    )];
    let root = format!("/tenants/red{}", paths.root);
    anyone
        .mkdir("/tenants/red/ochopod/clusters", &open())
        .await
        .unwrap();
    anyone
        .create(
            &root,
            b"",
            &zkc::CreateMode::Persistent.with_acls(zkc::Acls::new(&no_admin)),
        )
        .await
        .unwrap();
    let cfg = authed(&zk, "/tenants/red");
    let owner = ochopod::zk::connect(&cfg).await.unwrap();
    let err = acl::secure(&owner, &paths, &cfg).await.unwrap_err();
    assert!(err.is_fatal(), "{err:?}");
    let ZkError::Unsafe { path, problem, fix } = &err else {
        panic!("expected Unsafe, got {err:?}");
    };
    assert_eq!(path, &root);
    assert!(problem.contains("world:anyone:cdrw"), "{problem}");
    assert!(
        fix.contains(&format!("setAcl {root} digest:ops:<hash>:cdrwa,world:anyone:r")),
        "{fix}"
    );
    // The nodes above it, which it may repair, are repaired on the way.
    let (acl, _) = anyone.get_acl("/tenants/red/ochopod/clusters").await.unwrap();
    assert_eq!(acl.len(), 2, "{acl:?}");
}

#[tokio::test]
async fn persistent_nodes_under_leader_are_deleted_and_named_when_they_cannot_be() {
    let zk = ZkServer::start();
    let paths = ClusterPaths::new("t3.elect");
    let anyone = zk.observer().await;
    anyone.mkdir(&paths.leader(), &open()).await.unwrap();
    let planted = plant_leader(&anyone, &paths).await;
    // A real candidate (ephemeral) stays.
    let candidate = zk.observer().await;
    let (_, seq) = candidate
        .create(
            &format!("{}/n_", paths.leader()),
            b"u1",
            &zkc::CreateMode::EphemeralSequential.with_acls(zkc::Acls::anyone_all()),
        )
        .await
        .unwrap();
    // Without credentials too: no ACL to check, but the election must not be blocked.
    let cfg = zk_config(&zk);
    let pod = ochopod::zk::connect(&cfg).await.unwrap();
    acl::secure(&pod, &paths, &cfg).await.unwrap();
    assert_eq!(anyone.check_stat(&planted).await.unwrap(), None);
    let names = anyone.list_children(&paths.leader()).await.unwrap();
    assert_eq!(names, [format!("n_{seq}")]);

    // One with a child of its own is not deleted blindly: named, with the fix.
    let planted = plant_leader(&anyone, &paths).await;
    anyone
        .create(&format!("{planted}/x"), b"", &open())
        .await
        .unwrap();
    let err = acl::secure(&pod, &paths, &cfg).await.unwrap_err();
    let ZkError::Unsafe { path, fix, .. } = &err else {
        panic!("expected Unsafe, got {err:?}");
    };
    assert_eq!(path, &planted);
    assert!(fix.contains(&format!("deleteall {planted}")), "{fix}");
}

/// The environment of an `ochopod run` against `zk` (like `harness::pod`, plus the credentials).
fn pod_options(zk: &ZkServer, auth: (&str, &str)) -> PodOptions {
    let mut opts = PodOptions {
        args: Vec::new(),
        ..PodOptions::default()
    };
    opts.env.insert("OCHOPOD_ZK".into(), zk.connect_string());
    opts.env.insert("OCHOPOD_ZK_SESSION_TIMEOUT".into(), "2s".into());
    opts.env.insert(auth.0.into(), auth.1.into());
    opts
}

#[tokio::test]
async fn a_pod_repairs_an_open_tree_with_credentials_from_a_file_and_leads_past_a_planted_node() {
    let zk = ZkServer::start();
    let paths = ClusterPaths::new("t4.web");
    let anyone = zk.observer().await;
    plant_open_tree(&anyone, &paths).await;
    let dir = pod_yaml("t4", "web", "", PEERS).with_file("zk-auth", "digest:ops:s3cret\n");
    let file = dir.path().with_file_name("zk-auth");
    let pod = Pod::start(
        &dir,
        pod_options(&zk, ("OCHOPOD_ZK_AUTH_FILE", file.to_str().unwrap())),
    );
    // The planted node sorts first: while it is there, nobody leads.
    pod.wait_info("the pod to lead", T, |i| i["state"] == "leader")
        .await;
    let owner = ochopod::zk::connect(&authed(&zk, "")).await.unwrap();
    assert_closed(&owner, &anyone, &paths).await;
}

/// Runs `ochopod run` to its end; its exit code and stderr.
async fn run_to_the_end(dir: &PodDir, env: &[(&str, &str)]) -> (i32, String) {
    let ip = next_ip();
    let home = dir.home();
    std::fs::create_dir_all(&home).unwrap();
    let run = tokio::process::Command::new(binary())
        .arg("run")
        .arg(dir.path())
        .env("OCHOPOD_IP", &ip)
        .env("OCHOPOD_BIND", &ip)
        .env("OCHOPOD_PORT", free_port(&ip).to_string())
        .env("OCHOPOD_HOME", &home)
        .env_remove("OCHOPOD_TOKEN")
        .env_remove("OCHOPOD_STATE_DIR")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(T, run)
        .await
        .expect("ochopod to exit")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_pod_refuses_a_tree_it_may_not_repair_with_exit_2_naming_the_node() {
    let zk = ZkServer::start();
    let paths = ClusterPaths::new("t5.web");
    let anyone = zk.observer().await;
    anyone.mkdir(&paths.leader(), &open()).await.unwrap();
    // A persistent election node with a child: not deleted blindly.
    let planted = plant_leader(&anyone, &paths).await;
    anyone
        .create(&format!("{planted}/x"), b"", &open())
        .await
        .unwrap();
    let dir = pod_yaml("t5", "web", "", PEERS);
    let connect = zk.connect_string();
    let env = [
        ("OCHOPOD_ZK", connect.as_str()),
        ("OCHOPOD_ZK_AUTH", "digest:ops:s3cret"),
    ];
    let (code, stderr) = run_to_the_end(&dir, &env).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&format!("deleteall {planted}")), "{stderr}");
}

#[tokio::test]
async fn an_unreadable_or_empty_credentials_file_stops_run_with_exit_2() {
    let dir = pod_yaml("t6", "web", "", PEERS).with_file("empty", " \n");
    // Nothing listens there: ochopod must stop before it tries.
    let nowhere = "127.0.0.1:1";
    let missing = dir.path().with_file_name("missing");
    for (file, says) in [
        (missing.to_str().unwrap().to_string(), "cannot read"),
        (
            dir.path().with_file_name("empty").to_str().unwrap().to_string(),
            "is empty",
        ),
    ] {
        let env = [("OCHOPOD_ZK", nowhere), ("OCHOPOD_ZK_AUTH_FILE", file.as_str())];
        let (code, stderr) = run_to_the_end(&dir, &env).await;
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains("OCHOPOD_ZK_AUTH_FILE") && stderr.contains(says),
            "{stderr}"
        );
    }
    let env = [("OCHOPOD_ZK", nowhere), ("OCHOPOD_ZK_SESSION_TIMEOUT", "1h")];
    let (code, stderr) = run_to_the_end(&dir, &env).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("OCHOPOD_ZK_SESSION_TIMEOUT"), "{stderr}");
}

#[tokio::test]
async fn a_server_closing_connections_at_once_is_told_apart_and_maxclientcnxns_named() {
    // Two connections from 127.0.0.1 at most: the observers below take both.
    let zk = ZkServer::start_with("maxClientCnxns=2\n");
    let _a = zk.observer().await;
    let _b = zk.observer().await;
    let err = ochopod::zk::try_connect(&zk_config(&zk)).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("closed it at once") && text.contains("maxClientCnxns"),
        "{text}"
    );
    // A server that is not there at all is not mistaken for one that refuses.
    let gone = ZkConfig {
        connect: format!("127.0.0.1:{}", free_port("127.0.0.1")),
        ..zk_config(&zk)
    };
    let text = ochopod::zk::try_connect(&gone).await.unwrap_err().to_string();
    assert!(!text.contains("maxClientCnxns"), "{text}");
}

#[tokio::test]
async fn a_pod_refused_by_maxclientcnxns_says_so_in_its_status_and_log_and_connects_once_a_slot_frees() {
    let zk = ZkServer::start_with("maxClientCnxns=2\n");
    let a = zk.observer().await;
    let _b = zk.observer().await;
    let dir = PodDir::new("cluster: crowded\nprocess:\n  command: \"sleep 600\"\n");
    let opts = PodOptions {
        args: vec![],
        env: [("OCHOPOD_ZK".to_string(), zk.connect_string())].into(),
        ..PodOptions::default()
    };
    let pod = Pod::start(&dir, opts);
    // What the operator sees in /info (and `ctl info`): what ZooKeeper did and what to check.
    let info = pod
        .wait_info("the refusal named in the status", T, |i| {
            i["cluster_status"]
                .as_str()
                .is_some_and(|s| s.contains("maxClientCnxns"))
        })
        .await;
    let status = info["cluster_status"].as_str().unwrap();
    assert!(
        status.contains("closed it at once") && status.contains("retrying"),
        "{status}"
    );
    assert_eq!(info["connected"], false, "{info}");
    // And in its log.
    let (_, log) = pod.get("/log?lines=200").await;
    let log = log.to_string();
    assert!(
        log.contains("maxClientCnxns") && log.contains("closed it at once"),
        "{log}"
    );
    // A slot frees: the pod connects on its next attempt.
    drop(a);
    pod.wait_info("connected once a slot is free", T, |i| i["connected"] == true)
        .await;
}
