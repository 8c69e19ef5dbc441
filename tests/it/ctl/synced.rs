//! Pods that register through their own sync loop: ctl reads what they wrote (seqs they
//! claimed, the election, the leader's snapshot) and drives their ZooKeeper session.

use serde_json::Value;

use super::{pods_of, Fixture};

#[tokio::test]
async fn reads_what_the_sync_loop_registers_and_resets_a_session() {
    let fx = Fixture::new().await;
    let _pods = fx.start_synced("synced", 3, "settings: { damper: 200ms, min_size: 3 }\n");

    // The deploy gate: three pods in the leader's configuration, at its generation, ready.
    let out = fx
        .ctl(&["wait", "synced", "--count", "3", "--timeout", "60s"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");

    let ls = fx.ctl(&["ls", "--json", "synced"]).await.json();
    let cluster = &ls["clusters"][0];
    assert_eq!(
        (cluster["total"].as_u64(), cluster["running"].as_u64()),
        (Some(3), Some(3)),
        "{ls}"
    );
    assert!(cluster["generation"].as_u64() >= Some(1), "{ls}");
    let leader_seq = cluster["leader"]["seq"].as_u64().expect("a leader");

    // Seqs as the pods claimed them; exactly one pod says it leads, the one ls named.
    let info = fx.ctl(&["info", "--json", "synced"]).await.json();
    let pods = pods_of(&info);
    let seqs: Vec<u64> = pods.iter().map(|p| p["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3], "{info}");
    for p in &pods {
        assert_eq!(
            p["answer"]["seq"], p["seq"],
            "the pod's own seq agrees with ZooKeeper"
        );
    }
    let leaders: Vec<&Value> = pods.iter().filter(|p| p["answer"]["state"] == "leader").collect();
    assert_eq!(leaders.len(), 1, "{info}");
    assert_eq!(leaders[0]["seq"].as_u64(), Some(leader_seq));
    let out = fx.ctl(&["ls", "synced"]).await;
    assert!(out.stdout.contains(&format!(" #{leader_seq} ")), "{out:?}");

    // reconnect: a follower drops and re-creates its session (200, unlike a standalone pod),
    // and the cluster is whole again afterwards.
    let follower = pods
        .iter()
        .find(|p| p["answer"]["state"] == "follower")
        .expect("a follower");
    let seq = follower["seq"].to_string();
    let out = fx.ctl(&["reconnect", "synced", "-i", &seq, "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(pods_of(&out.json())[0]["ok"], true);
    let out = fx
        .ctl(&["wait", "synced", "--count", "3", "--timeout", "60s"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");

    // A rolling restart under a leader: each pod back in the configuration before the next.
    let before = fx.ctl(&["info", "--json", "synced"]).await.json();
    let out = fx
        .ctl(&["restart", "--rolling", "synced", "--timeout", "60s"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let after = fx.ctl(&["info", "--json", "synced"]).await.json();
    for (b, a) in pods_of(&before).iter().zip(pods_of(&after).iter()) {
        assert_ne!(
            b["answer"]["pid"], a["answer"]["pid"],
            "{} has a new process",
            a["pod"]
        );
    }
    let out = fx
        .ctl(&["wait", "synced", "--count", "3", "--timeout", "60s"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
}
