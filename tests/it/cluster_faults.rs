//! Clusters under faults: the leader killed, ZooKeeper gone for a while (SPEC §6: "a change of
//! leader alone causes no reconfiguration"; the process is never touched by the sync loop).
//!
//! Same pods as `cluster.rs` (its helpers): each renders `peers.txt` and logs every generation it
//! was configured with to `configured.log`; `/info` gives the process pid and `configurations`
//! (how many maps the pod applied).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::cluster::{
    cluster_status, configured, converged, entries, leader, pod_yaml, start, Member, PEERS, T,
};
use crate::harness::eventually;
use crate::harness::zk::ZkServer;

fn refs(pods: &[Member]) -> Vec<&Member> {
    pods.iter().collect()
}

/// Waits until `m` leads a cluster at rest with `n` pods at `generation`.
async fn at_rest(m: &Member, n: usize, generation: u64) {
    let want = format!("configured: {n} pods, generation {generation}");
    eventually(T, &format!("the leader at rest ({want})"), || async {
        cluster_status(m).await.starts_with(&want).then_some(())
    })
    .await;
}

/// Nothing to poll for: the point is that nothing more happens in a few damper periods.
async fn quiet() {
    tokio::time::sleep(Duration::from_millis(2000)).await;
}

/// What must not change across a fault: identity, process, configurations.
#[derive(Debug, PartialEq)]
struct Seen {
    uuid: Value,
    seq: Value,
    pid: Value,
    restarts: Value,
    configurations: Value,
    generation: Value,
}

async fn seen(m: &Member) -> Seen {
    let i = m
        .wait_info("a running, configured pod", T, |i| {
            i["process"] == "running" && i["generation"].as_u64() > Some(0) && i["pid"].is_u64()
        })
        .await;
    Seen {
        uuid: i["uuid"].clone(),
        seq: i["seq"].clone(),
        pid: i["pid"].clone(),
        restarts: i["restarts"].clone(),
        configurations: i["configurations"].clone(),
        generation: i["generation"].clone(),
    }
}

#[tokio::test]
async fn killing_the_leader_makes_its_successor_reconfigure_exactly_once() {
    let zk = ZkServer::start();
    let yaml = || pod_yaml("f1", "web", "settings: { min_size: 3, damper: 300ms }", PEERS);
    let mut pods = vec![
        start(&zk, yaml(), None),
        start(&zk, yaml(), None),
        start(&zk, yaml(), None),
    ];
    converged(&refs(&pods), 3, "3 pods configured").await;
    let lead = leader(&refs(&pods)).await.ip.clone();
    let mut old = pods.remove(pods.iter().position(|m| m.ip == lead).unwrap());
    // Killed once the snapshot is written (killed before, its successor rightly configures
    // generation 1 again).
    at_rest(&old, 3, 1).await;
    let mut before = Vec::new();
    for m in &pods {
        before.push(seen(m).await);
    }
    old.pod.signal(Signal::SIGKILL);
    old.pod.wait_exit(T).await;

    let two = converged(&refs(&pods), 2, "the survivors configured without the leader").await;
    assert!(two.starts_with("gen 2\n"), "{two}");
    let ips: BTreeSet<String> = entries(&two).into_iter().map(|e| e.1).collect();
    assert_eq!(ips, pods.iter().map(|m| m.ip.clone()).collect());
    let successor = leader(&refs(&pods)).await;
    at_rest(successor, 2, 2).await;
    quiet().await;
    at_rest(successor, 2, 2).await;
    for (m, b) in pods.iter().zip(before) {
        let now = seen(m).await;
        assert_eq!(now.generation, 2);
        assert_eq!(
            now.configurations.as_u64(),
            b.configurations.as_u64().map(|n| n + 1),
            "exactly one reconfiguration: {b:?} -> {now:?}"
        );
        assert_eq!((&now.uuid, &now.seq), (&b.uuid, &b.seq));
        assert_eq!(configured(m), "1\n2\n");
    }
}
