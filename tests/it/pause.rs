//! Pause and the lost-pods safety net (SPEC §2 `ctl pause`/`resume`, §3 `settings.max_lost`,
//! §6 `paused`): real pods, a real ZooKeeper, the real `ochopod ctl`.
//!
//! While a cluster is paused its leader configures nothing: a newcomer waits, the pods keep their
//! map (their `configurations` count does not move), and the pause holds across a leader killed
//! with -9. With `max_lost`, a leader that loses more pods of its last configuration at once
//! pauses by itself instead of configuring the survivor, and lifts its pause when one comes back;
//! `ctl resume` lifts it too, and the losses are accepted.
#![allow(clippy::unwrap_used)]

use serde_json::Value;

use crate::cluster::{
    cluster_status, configured, converged, entries, info, leader_looked, peers, pod_yaml, start, Member,
    PEERS, T,
};
use crate::ctl::{ctl_with, Out};
use crate::harness::eventually;
use crate::harness::pod::{Pod, PodOptions};
use crate::harness::zk::ZkServer;

/// `ochopod ctl --namespace NS ARGS...` against `zk`.
async fn ctl(zk: &ZkServer, ns: &str, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut all = vec!["--namespace", ns];
    all.extend_from_slice(args);
    ctl_with(&zk.connect_string(), &all, env).await
}

/// The member that says it leads, among `members` (by index).
async fn leading(members: &[&Member]) -> usize {
    eventually(T, "a leader", || async {
        for (i, m) in members.iter().enumerate() {
            if info(m).await.is_some_and(|i| i["state"] == "leader") {
                return Some(i);
            }
        }
        None
    })
    .await
}

/// Waits until `m`'s cluster status satisfies `pred`; returns it.
async fn status_until(m: &Member, what: &str, pred: impl Fn(&str) -> bool) -> String {
    eventually(T, what, || async {
        let s = cluster_status(m).await;
        pred(&s).then_some(s)
    })
    .await
}

async fn count(m: &Member) -> Value {
    info(m).await.unwrap()["configurations"].clone()
}

async fn metrics(m: &Member) -> String {
    m.client
        .get(m.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The leader (one of `members`) looked at the cluster after every change so far and stays
/// paused (its status satisfies `pred`); then the `configurations` counts of `kept` are still
/// `before`, and `waiting` is still unconfigured. That nothing is configured later either is
/// shown by the generation and the `configured.log` once resumed (one configuration, not two).
async fn still_paused(
    zk: &ZkServer,
    key: &str,
    members: &[&Member],
    kept: (&[&Member], &[Value]),
    waiting: Option<&Member>,
    pred: impl Fn(&str) -> bool,
) {
    leader_looked(zk, key, members, "still paused", |s| {
        s.starts_with("paused ") && pred(s)
    })
    .await;
    assert_eq!(counts(kept.0).await, kept.1, "a paused cluster was configured");
    if let Some(w) = waiting {
        assert_eq!(
            info(w).await.unwrap()["generation"],
            0,
            "the newcomer was configured"
        );
    }
}

async fn counts(ms: &[&Member]) -> Vec<Value> {
    let mut out = Vec::new();
    for m in ms {
        out.push(count(m).await);
    }
    out
}

#[tokio::test]
async fn an_operators_pause_holds_a_newcomer_back_across_a_leader_kill_until_resume() {
    let zk = ZkServer::start();
    let yaml = || pod_yaml("pz1", "web", "settings: { damper: 300ms, timeout: 10s }", PEERS);
    let a = start(&zk, yaml(), None);
    let b = start(&zk, yaml(), None);
    converged(&[&a, &b], 2, "2 pods configured").await;
    let mut two = vec![a, b];
    let l = leading(&[&two[0], &two[1]]).await;
    status_until(&two[l], "the leader at rest", |s| {
        s == "configured: 2 pods, generation 1"
    })
    .await;

    let out = ctl(&zk, "pz1", &["pause", "web", "--reason", "kernel upgrade"], &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("pz1.web") && out.stdout.contains("paused"),
        "{out:?}"
    );
    let line = status_until(&two[l], "the leader to say it is paused", |s| {
        s.starts_with("paused ")
    })
    .await;
    assert!(line.starts_with("paused by an operator since 20"), "{line}");
    assert!(
        line.ends_with(": kernel upgrade; configured: 2 pods, generation 1"),
        "{line}"
    );
    let i = info(&two[l]).await.unwrap();
    assert_eq!(i["paused"]["by"], "operator", "{i}");
    assert_eq!(i["paused"]["reason"], "kernel upgrade", "{i}");
    let m = metrics(&two[l]).await;
    assert!(
        m.lines()
            .any(|l| l == r#"ochopod_cluster_paused{ochopod_namespace="pz1",ochopod_cluster="web"} 1"#),
        "{m}"
    );
    let ls = ctl(&zk, "pz1", &["ls", "--json"], &[]).await.json();
    assert_eq!(ls["clusters"][0]["paused"]["by"], "operator", "{ls}");
    assert!(
        ls["clusters"][0]["status"]
            .as_str()
            .unwrap()
            .starts_with("paused by an operator"),
        "{ls}"
    );
    let out = ctl(&zk, "pz1", &["info"], &[]).await;
    assert!(
        out.stdout.contains("pz1.web is paused by an operator since "),
        "{out:?}"
    );
    // The event stream and the page's model say so too (the current state, as events).
    let out = ctl(&zk, "pz1", &["events", "web"], &[]).await;
    assert!(
        out.stdout
            .contains("pz1.web paused by an operator: kernel upgrade"),
        "{out:?}"
    );
    // Pausing again changes nothing and says so.
    let out = ctl(&zk, "pz1", &["pause", "web"], &[]).await;
    assert!(out.stdout.contains("already paused by an operator"), "{out:?}");

    // A newcomer registers and waits; the others keep their map.
    let before = counts(&[&two[0], &two[1]]).await;
    let c = start(&zk, yaml(), None);
    status_until(&two[l], "the leader to see the newcomer", |s| {
        s.ends_with("not configuring 3 live pods (generation 1 has 2)")
    })
    .await;
    let both = [&two[0], &two[1]];
    still_paused(&zk, "pz1.web", &both, (&both, &before), Some(&c), |s| {
        s.ends_with("not configuring 3 live pods (generation 1 has 2)")
    })
    .await;

    // The leader dies (-9): its successor reads the pause and stays paused.
    let mut dead = two.remove(l);
    let (seq, uuid) = seq_uuid(&dead).await;
    dead.pod.kill_hard();
    let survivor = &two[0];
    let line = status_until(survivor, "the successor to lead, paused", |s| {
        s.starts_with("paused ")
    })
    .await;
    assert!(
        line.ends_with(&format!(
            "kernel upgrade; lost: seq {seq} ({uuid}); not configuring 2 live pods (generation 1 has 2)"
        )),
        "{line}"
    );
    assert_eq!(info(survivor).await.unwrap()["state"], "leader");
    let kept = counts(&[survivor]).await;
    assert_eq!(
        kept[0],
        before[1 - l],
        "the survivor was not configured meanwhile"
    );
    still_paused(&zk, "pz1.web", &[survivor], (&[survivor], &kept), Some(&c), |s| {
        s.ends_with("not configuring 2 live pods (generation 1 has 2)")
    })
    .await;
    assert_eq!(
        entries(&peers(survivor)).len(),
        2,
        "still the map with the dead leader"
    );

    // Resumed: the survivor and the newcomer are configured together.
    let out = ctl(&zk, "pz1", &["resume", "web"], &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("resumed (was paused by an operator since "),
        "{out:?}"
    );
    let now = converged(&[survivor, &c], 2, "the survivor and the newcomer configured").await;
    assert!(now.starts_with("gen 2\n"), "{now}");
    status_until(survivor, "the leader at rest", |s| {
        s == "configured: 2 pods, generation 2"
    })
    .await;
    assert_eq!(info(survivor).await.unwrap()["paused"], Value::Null);
    eventually(T, "one configuration after the pause, none during it", || async {
        (configured(survivor) == "1\n2\n").then_some(())
    })
    .await;
    let out = ctl(&zk, "pz1", &["resume", "web"], &[]).await;
    assert!(out.stdout.contains("was not paused"), "{out:?}");
}

/// `(seq, uuid)` of a member, from its `/info`.
async fn seq_uuid(m: &Member) -> (u64, String) {
    let i = info(m).await.unwrap();
    (
        i["seq"].as_u64().unwrap(),
        i["uuid"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn losing_more_than_max_lost_pauses_instead_of_configuring_the_survivor() {
    let zk = ZkServer::start();
    let yaml = || {
        pod_yaml(
            "pz2",
            "web",
            "settings: { damper: 1500ms, timeout: 10s, max_lost: 1 }",
            PEERS,
        )
    };
    let mut pods: Vec<Member> = (0..3).map(|_| start(&zk, yaml(), None)).collect();
    converged(&[&pods[0], &pods[1], &pods[2]], 3, "3 pods configured").await;
    let l = leading(&[&pods[0], &pods[1], &pods[2]]).await;
    let lead = pods.remove(l);
    status_until(&lead, "the leader at rest", |s| {
        s == "configured: 3 pods, generation 1"
    })
    .await;
    let before = count(&lead).await;

    // Both followers killed at once (-9: their sessions expire, nobody leaves).
    let mut killed = Vec::new();
    for m in &mut pods {
        killed.push(seq_uuid(m).await);
        m.pod.kill_hard();
    }
    killed.sort();
    let line = status_until(&lead, "the leader to pause by itself", |s| {
        s.starts_with("paused ")
    })
    .await;
    let named = format!(
        "lost 2 pods of generation 1 (more than max_lost 1): seq {} ({}), seq {} ({})",
        killed[0].0, killed[0].1, killed[1].0, killed[1].1
    );
    assert!(line.starts_with("paused by the leader since 20"), "{line}");
    assert!(line.contains(&named), "{line}");
    assert!(
        line.ends_with("resumes by itself once at most 1 are lost, or on `ochopod ctl resume`; not configuring 1 live pods (generation 1 has 3)"),
        "{line}"
    );
    let m = metrics(&lead).await;
    let labels = r#"{ochopod_namespace="pz2",ochopod_cluster="web"}"#;
    assert!(m.contains(&format!("ochopod_cluster_paused{labels} 1")), "{m}");
    assert!(m.contains(&format!("ochopod_cluster_lost_pods{labels} 2")), "{m}");
    let ls = ctl(&zk, "pz2", &["ls", "--json"], &[]).await.json();
    assert_eq!(ls["clusters"][0]["paused"]["by"], "leader", "{ls}");
    // The survivor keeps the map of three, however long the loss lasts.
    still_paused(&zk, "pz2.web", &[&lead], (&[&lead], &[before]), None, |s| {
        s.starts_with("paused by the leader")
    })
    .await;
    assert_eq!(entries(&peers(&lead)).len(), 3);

    // One comes back (same state dir: same uuid): one lost is within max_lost, the leader lifts
    // its own pause and configures the two.
    let gone = pods.remove(0);
    let back = start(&zk, gone._dir, None);
    drop(gone.pod);
    let two = converged(&[&lead, &back], 2, "the leader and the returned pod configured").await;
    assert!(two.starts_with("gen 2\n"), "{two}");
    status_until(&lead, "the leader at rest", |s| {
        s == "configured: 2 pods, generation 2"
    })
    .await;
    eventually(T, "one configuration after the pause, none during it", || async {
        (configured(&lead) == "1\n2\n").then_some(())
    })
    .await;
    assert_eq!(info(&lead).await.unwrap()["paused"], Value::Null);

    // Again with three, two lost, and an operator's `resume`: the losses are accepted and the
    // survivor is configured alone (the leader does not pause again).
    let third = start(&zk, yaml(), None);
    converged(&[&lead, &back, &third], 3, "3 pods again").await;
    status_until(&lead, "the leader at rest", |s| {
        s == "configured: 3 pods, generation 3"
    })
    .await;
    let mut back = back;
    let mut third = third;
    back.pod.kill_hard();
    third.pod.kill_hard();
    status_until(&lead, "the leader to pause by itself again", |s| {
        s.starts_with("paused by the leader")
    })
    .await;
    let out = ctl(&zk, "pz2", &["resume", "web"], &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("resumed (was paused by the leader since "),
        "{out:?}"
    );
    status_until(&lead, "the survivor configured alone", |s| {
        s == "configured: 1 pods, generation 4"
    })
    .await;
    assert!(configured(&lead).ends_with("3\n4\n"), "{}", configured(&lead));
}

#[tokio::test]
async fn on_a_secured_tree_ctl_pauses_with_the_pods_credentials_only() {
    let zk = ZkServer::start();
    let dir = pod_yaml("pz3", "web", "settings: { damper: 200ms }", PEERS);
    let mut opts = PodOptions {
        args: Vec::new(),
        ..PodOptions::default()
    };
    opts.env.insert("OCHOPOD_ZK".into(), zk.connect_string());
    opts.env.insert("OCHOPOD_ZK_SESSION_TIMEOUT".into(), "2s".into());
    opts.env
        .insert("OCHOPOD_ZK_AUTH".into(), "digest:ops:s3cret".into());
    let pod = Pod::start(&dir, opts);
    pod.wait_info("the pod configured", T, |i| i["generation"] == 1)
        .await;

    let out = ctl(&zk, "pz3", &["pause", "web"], &[]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("OCHOPOD_ZK_AUTH"), "names the fix: {out:?}");

    let creds = [("OCHOPOD_ZK_AUTH", "digest:ops:s3cret")];
    let out = ctl(&zk, "pz3", &["pause", "web", "--reason", "backup"], &creds).await;
    assert_eq!(out.code, 0, "{out:?}");
    pod.wait_info("the leader paused", T, |i| i["paused"]["reason"] == "backup")
        .await;
    // Created with ochopod's ACL: readable by all, lifted only with the credentials.
    let anyone = zk.observer().await;
    let path = "/ochopod/clusters/pz3.web/paused";
    let (acl, _) = anyone.get_acl(path).await.unwrap();
    assert_eq!(acl.len(), 2, "{acl:?}");
    assert_eq!(
        anyone.delete(path, None).await.unwrap_err(),
        zookeeper_client::Error::NoAuth
    );
    let out = ctl(&zk, "pz3", &["resume", "web"], &[]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let out = ctl(&zk, "pz3", &["resume", "web"], &creds).await;
    assert_eq!(out.code, 0, "{out:?}");
    pod.wait_info("the leader resumed", T, |i| {
        i["paused"].is_null() && i["status"] == "configured: 1 pods, generation 1"
    })
    .await;
    // _dir outlives the pod.
    drop(pod);
    drop(dir);
}
