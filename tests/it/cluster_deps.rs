//! Dependencies between clusters end to end: a cycle is an error (SPEC §3), reported by each
//! leader in its status, and nothing is configured. Each leader finds it through the snapshots,
//! where every leader publishes its cluster's `depends_on` (resolved keys).
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
async fn clusters_depending_on_each_other_report_the_cycle_and_configure_nothing() {
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
        (&a, "dependency cycle: cyc.a -> cyc.b -> cyc.a"),
        (&b, "dependency cycle: cyc.b -> cyc.a -> cyc.b"),
    ] {
        eventually(T, want, || async {
            (cluster_status(m).await == want).then_some(())
        })
        .await;
    }
    assert_eq!(peers(&a), "", "nothing configured");
    assert_eq!(peers(&b), "", "nothing configured");
    // The dependencies are published before any configuration: a snapshot of generation 0.
    let s = snapshot(&zk, "cyc.a").await;
    assert_eq!(s["depends_on"], json!(["cyc.b"]), "{s}");
    assert_eq!(s["generation"], 0, "{s}");
    assert_eq!(s["pods"], json!({}), "{s}");
}
