//! A seq survives a blip (SPEC §4, `settings.seq_hold`): a pod cut off from ZooKeeper past its
//! session timeout keeps its seq reserved while the others are configured without it, a
//! newcomer takes the next free one, and the pod comes back as itself. Same pods as
//! `cluster.rs` (its helpers); the cut is a freeze of the pod's ochopod (SIGSTOP), as in
//! `cluster_faults.rs`.
#![allow(clippy::unwrap_used)]

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::cluster::{cluster_status, converged, entries, info, pod_yaml, start, Member, PEERS, T};
use crate::ctl::ctl_with;
use crate::harness::eventually;
use crate::harness::zk::ZkServer;

/// The pod's registered seq, once it has one.
async fn seq_of(m: &Member) -> u64 {
    let i = m
        .wait_info("a registered pod", T, |i| i["seq"].as_u64() > Some(0))
        .await;
    i["seq"].as_u64().unwrap()
}

/// Waits until one of `pods` leads a cluster at rest with `n` pods (its snapshot written).
async fn at_rest(pods: &[&Member], n: usize) {
    let want = format!("configured: {n} pods,");
    eventually(T, &format!("a leader at rest ({want})"), || async {
        for m in pods {
            let i = info(m).await?;
            if i["state"] == "leader" && cluster_status(m).await.starts_with(&want) {
                return Some(());
            }
        }
        None
    })
    .await;
}

/// `ctl ls --json`'s `reserved` for the only cluster.
async fn reserved(zk: &ZkServer) -> Value {
    let out = ctl_with(
        &zk.connect_string(),
        &["--json", "--namespace", "hold1", "ls"],
        &[],
    )
    .await;
    out.json()["clusters"][0]["reserved"].clone()
}

#[tokio::test]
async fn a_pod_cut_off_past_its_session_timeout_comes_back_with_its_seq() {
    let zk = ZkServer::start();
    // Sessions of 2 s (crate::cluster::start): the freeze below outlives them.
    let yaml = || pod_yaml("hold1", "web", "settings: { min_size: 3, damper: 500ms }", PEERS);
    let mut pods = vec![
        start(&zk, yaml(), None),
        start(&zk, yaml(), None),
        start(&zk, yaml(), None),
    ];
    let all: Vec<&Member> = pods.iter().collect();
    converged(&all, 3, "3 pods configured").await;
    // Frozen before its snapshot is written, the leader would leave a cluster never configured
    // (and `min_size: 3` would wait for it).
    at_rest(&all, 3).await;
    let mut seqs = Vec::new();
    for m in &pods {
        seqs.push(seq_of(m).await);
    }
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [1, 2, 3]);
    let frozen = pods.remove(seqs.iter().position(|s| *s == 1).unwrap());
    let uuid = info(&frozen).await.unwrap()["uuid"].as_str().unwrap().to_string();

    // Cut off: its session expires on the server, the others are configured without it.
    frozen.signal(Signal::SIGSTOP);
    let survivors: Vec<&Member> = pods.iter().collect();
    converged(&survivors, 2, "the survivors configured without the frozen pod").await;
    at_rest(&survivors, 2).await;
    let held = reserved(&zk).await;
    assert_eq!(held[0]["seq"], 1, "{held}");
    assert_eq!(held[0]["uuid"], uuid.as_str(), "{held}");
    let human = ctl_with(&zk.connect_string(), &["--namespace", "hold1", "ls"], &[]).await;
    assert!(
        human
            .stdout
            .contains(&format!("reserved: hold1.web seq 1 ({uuid}) until ")),
        "{human:?}"
    );

    // A newcomer meanwhile: the next free seq, not the frozen pod's.
    let newcomer = start(&zk, yaml(), None);
    assert_eq!(
        seq_of(&newcomer).await,
        4,
        "the newcomer must not take the reserved seq"
    );
    pods.push(newcomer);
    converged(&pods.iter().collect::<Vec<_>>(), 3, "the newcomer configured").await;

    // Thawed: it registers again with a new session (its `/info` may still say what it was
    // before it notices), and the leader's map says which seq it came back with.
    frozen.signal(Signal::SIGCONT);
    let (frozen_ip, newcomer_ip) = (frozen.ip.clone(), pods[2].ip.clone());
    pods.push(frozen);
    let all: Vec<&Member> = pods.iter().collect();
    let map = converged(&all, 4, "all 4 configured").await;
    let seq_at = |ip: &str| entries(&map).into_iter().find(|e| e.1 == ip).map(|e| e.0);
    assert_eq!(
        seq_at(&frozen_ip),
        Some(1),
        "the thawed pod must come back with its seq: {map}"
    );
    assert_eq!(seq_at(&newcomer_ip), Some(4), "{map}");
    at_rest(&all, 4).await;
    assert_eq!(seq_of(&pods[3]).await, 1);
    // Back: the reservation is gone from the snapshot.
    let obs = zk.observer().await;
    let (data, _) = obs
        .get_data("/ochopod/clusters/hold1.web/snapshot")
        .await
        .unwrap();
    let snapshot: Value = serde_json::from_slice(&data).unwrap();
    assert!(snapshot.get("reserved").is_none(), "{snapshot}");
    assert_eq!(reserved(&zk).await, Value::Array(Vec::new()));
}
