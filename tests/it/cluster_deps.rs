//! Dependencies between clusters end to end: a cycle is an error (SPEC §3), reported by each
//! leader in its status; each cluster's own membership is configured anyway (the cycle's `min`
//! gates would wait for each other). Each leader finds it through the snapshots, where every
//! leader publishes its cluster's `depends_on` (resolved keys).
#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};

use crate::cluster::{cluster_status, peers, pod_yaml, start, PEERS, T};
use crate::harness::eventually;
use crate::harness::zk::ZkServer;

async fn snapshot(zk: &ZkServer, key: &str) -> Value {
    let obs = zk.observer().await;
    let (data, _) = obs
        .get_data(&format!("/ochopod/clusters/{key}/snapshot"))
        .await
        .unwrap();
    serde_json::from_slice(&data).unwrap()
}

#[tokio::test]
async fn clusters_depending_on_each_other_report_the_cycle_and_still_configure_their_members() {
    let zk = ZkServer::start();
    let yaml = |cluster: &str, other: &str| {
        pod_yaml(
            "cyc",
            cluster,
            &format!("depends_on: [{{ cluster: {other}, min: 1 }}]\nsettings: {{ damper: 200ms }}"),
            PEERS,
        )
    };
    let a = start(&zk, yaml("a", "b"), None);
    let b = start(&zk, yaml("b", "a"), None);
    for (m, want) in [
        (
            &a,
            "dependency cycle: cyc.a -> cyc.b -> cyc.a; configured: 1 pods",
        ),
        (
            &b,
            "dependency cycle: cyc.b -> cyc.a -> cyc.b; configured: 1 pods",
        ),
    ] {
        eventually(T, want, || async {
            cluster_status(m).await.starts_with(want).then_some(())
        })
        .await;
    }
    for m in [&a, &b] {
        eventually(T, "its own pod rendered", || async {
            peers(m).contains(&m.ip).then_some(())
        })
        .await;
    }
    let s = snapshot(&zk, "cyc.a").await;
    assert_eq!(s["depends_on"], json!(["cyc.b"]), "{s}");
    assert!(s["generation"].as_u64() >= Some(1), "{s}");
}
