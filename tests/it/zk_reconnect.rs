//! zookeeper-client 0.11.2 does not resend persistent watches after a connection loss that keeps
//! the session (`resend_watches` never raises its index past the three classic kinds, so
//! SetWatches2 is never sent). These tests pin that down, and show the leader living with it.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use zookeeper_client as zkc;

use crate::harness::zk::ZkServer;

/// Freezes the server long enough for the client to notice (no answer to its pings), short of
/// the session timeout; returns once the client is connected again.
async fn blip(zk: &ZkServer, client: &zkc::Client) {
    let mut states = client.state_watcher();
    zk.pause();
    let lost = tokio::time::timeout(Duration::from_secs(10), async {
        while states.changed().await != zkc::SessionState::Disconnected {}
    })
    .await;
    zk.resume();
    lost.expect("the client notices the frozen server");
    tokio::time::timeout(Duration::from_secs(10), async {
        while client.state() != zkc::SessionState::SyncConnected {
            states.changed().await;
        }
    })
    .await
    .expect("the client reconnects with its session");
}

#[tokio::test]
async fn zookeeper_client_loses_persistent_watches_when_the_connection_comes_back() {
    let zk = ZkServer::start();
    let client = zk.observer().await;
    let opts = zkc::CreateMode::Persistent.with_acls(zkc::Acls::anyone_all());
    client.create("/w", b"", &opts).await.unwrap();
    let mut watcher = client
        .watch("/w", zkc::AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    let session = client.session_id();
    blip(&zk, &client).await;
    assert_eq!(client.session_id(), session, "same session");
    client.create("/w/after", b"", &opts).await.unwrap();
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            let e = watcher.changed().await;
            seen.push(e.event_type);
            if e.event_type == zkc::EventType::NodeCreated {
                break;
            }
        }
    })
    .await;
    // When this fails, the crate restores persistent watches: `Watches::renew` in
    // src/sync/leader.rs can go.
    assert!(
        !seen.contains(&zkc::EventType::NodeCreated),
        "zookeeper-client now restores persistent watches: {seen:?}"
    );
}

#[tokio::test]
async fn the_leader_still_sees_new_pods_after_a_connection_loss() {
    use crate::harness::pod::{Pod, PodDir, PodOptions};
    let zk = ZkServer::start();
    let yaml = "cluster: blip\nprocess:\n  command: \"sleep 600\"\nsettings: { damper: 100ms }\n";
    let opts = || PodOptions {
        args: vec![],
        env: [
            ("OCHOPOD_ZK".to_string(), zk.connect_string()),
            ("OCHOPOD_ZK_SESSION_TIMEOUT".to_string(), "6s".to_string()),
        ]
        .into(),
        ..PodOptions::default()
    };
    let (da, db) = (PodDir::new(yaml), PodDir::new(yaml));
    let a = Pod::start(&da, opts());
    let t = Duration::from_secs(20);
    let configured = |n: usize| {
        move |i: &serde_json::Value| {
            i["state"] == "leader"
                && i["cluster_status"]
                    .as_str()
                    .is_some_and(|s| s.starts_with(&format!("configured: {n} pods")))
        }
    };
    a.wait_info("a configured alone", t, configured(1)).await;
    zk.pause();
    let lost = tokio::time::timeout(t, a.wait_info("a disconnected", t, |i| i["connected"] == false)).await;
    zk.resume();
    lost.expect("a notices the frozen server");
    a.wait_info("a connected again", t, |i| i["connected"] == true)
        .await;
    let b = Pod::start(&db, opts());
    a.wait_info("a configuring b", t, configured(2)).await;
    let info = b.info().await;
    assert!(info["generation"].as_u64() >= Some(2), "{info}");
}
