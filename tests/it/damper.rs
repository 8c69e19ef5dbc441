//! `settings.damper_max` (SPEC §3): under constant churn, changes closer together than `damper`,
//! a configuration still happens within `damper_max` of the first change.
//!
//! The churn is a dependency's pod whose znode changes every 200 ms: the dependent's leader sees
//! a new configuration each time (a dependency's pods are part of it, SPEC §6), yet never calls
//! that pod (it is only listed in the maps), so the churn costs nothing but the leader's
//! attention. The dependency is written by the test as the layout says (its snapshot naming the
//! pod, the pod's ephemeral znode).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::json;
use zookeeper_client as zkc;

use crate::cluster::{cluster_status, configured, peers, pod_yaml, start, T};
use crate::harness::eventually;
use crate::harness::zk::ZkServer;

const DAMPER: Duration = Duration::from_secs(1);
const DAMPER_MAX: Duration = Duration::from_secs(3);
/// How often the dependency's pod changes: well within `DAMPER`.
const CHURN: Duration = Duration::from_millis(200);
/// What a configuration of one pod takes once due (check, on, ok, the `configured` hook), on a
/// loaded machine.
const SLACK: Duration = Duration::from_secs(2);

/// A pod of `ns.dep` as a pod registers it (SPEC §6), with `task` as given.
fn dep_pod(task: &str) -> serde_json::Value {
    json!({
        "uuid": "dep-pod-1", "seq": 1, "cluster": "dep", "namespace": "dmx",
        "ip": "127.0.0.1", "host": "127.0.0.1", "public": "127.0.0.1", "node": "", "task": task,
        "ports": {"7000": 7000}, "control_port": 9, "binding": "explicit", "version": "0.1.0",
        "state": "running", "started": 1
    })
}

#[tokio::test]
async fn under_constant_churn_a_configuration_still_happens_within_damper_max() {
    let zk = ZkServer::start();
    let obs = zk.observer().await;
    let persistent = zkc::CreateMode::Persistent.with_acls(zkc::Acls::anyone_all());
    let ephemeral = zkc::CreateMode::Ephemeral.with_acls(zkc::Acls::anyone_all());
    let dep = "/ochopod/clusters/dmx.dep";
    obs.mkdir(&format!("{dep}/pods"), &persistent).await.unwrap();
    let snapshot = json!({"generation": 1, "hash": "set-by-the-test", "pods": {"dep-pod-1": dep_pod("t0")}});
    obs.create(
        &format!("{dep}/snapshot"),
        snapshot.to_string().as_bytes(),
        &persistent,
    )
    .await
    .unwrap();
    let znode = format!("{dep}/pods/dep-pod-1");
    obs.create(&znode, dep_pod("t0").to_string().as_bytes(), &ephemeral)
        .await
        .unwrap();

    let settings = format!(
        "depends_on: [dep]\nsettings: {{ damper: {}ms, damper_max: {}ms }}",
        DAMPER.as_millis(),
        DAMPER_MAX.as_millis()
    );
    let template = "gen {{cluster.generation}}\n{{#each dependencies.dep.pods}}{{task}}\n{{/each}}";
    let web = start(&zk, pod_yaml("dmx", "web", &settings, template), None);
    eventually(T, "the first configuration, at rest", || async {
        let s = cluster_status(&web).await;
        (s.starts_with("configured: 1 pods, generation 1") && configured(&web) == "1\n").then_some(())
    })
    .await;
    assert_eq!(peers(&web), "gen 1\nt0\n");

    // Churn: the dependency's pod changes every CHURN, for as long as it takes (at most until
    // DAMPER_MAX + SLACK after the first change): each change restarts the damper.
    let first = Instant::now();
    let mut n = 0u32;
    let seen = loop {
        n += 1;
        let data = dep_pod(&format!("t{n}")).to_string();
        obs.set_data(&znode, data.as_bytes(), None).await.unwrap();
        if configured(&web).lines().any(|l| l == "2") {
            break first.elapsed();
        }
        assert!(
            first.elapsed() < DAMPER_MAX + SLACK,
            "no configuration {:?} after the first of {n} changes {CHURN:?} apart (damper {DAMPER:?}, \
             damper_max {DAMPER_MAX:?}); the leader says: {}",
            first.elapsed(),
            cluster_status(&web).await
        );
        tokio::time::sleep(CHURN).await;
    };
    // The configuration was made from a view taken during the churn, not before it.
    let rendered = peers(&web);
    let task = rendered.lines().nth(1).unwrap_or_default();
    assert!(
        rendered.starts_with("gen 2\n") || rendered.starts_with("gen 3\n"),
        "{rendered}"
    );
    assert!(
        task.strip_prefix('t')
            .and_then(|k| k.parse::<u32>().ok())
            .is_some_and(|k| k >= 1),
        "the map lists the churned pod as changed: {rendered}"
    );
    assert!(
        seen >= DAMPER_MAX.saturating_sub(CHURN),
        "configured after {seen:?}, before damper_max: the churn was not constant"
    );
}
