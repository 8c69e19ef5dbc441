//! Clusters under faults: the leader killed, ZooKeeper gone for a while (SPEC §6: "a change of
//! leader alone causes no reconfiguration"; the process is never touched by the sync loop).
//!
//! Same pods as `cluster.rs` (its helpers): each renders `peers.txt` and logs every generation it
//! was configured with to `configured.log`; `/info` gives the process pid and `configurations`
//! (how many maps the pod applied).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::cluster::{
    cluster_status, configured, converged, entries, info, leader, leader_looked, pod_yaml, start, Member,
    PEERS, T,
};
use crate::harness::eventually;
use crate::harness::pod::{read, Pod, PodDir, PodOptions};
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

/// Waits until whichever pod leads (it may change meanwhile) is at rest with `n` pods at
/// `generation`.
async fn cluster_at_rest(pods: &[Member], n: usize, generation: u64) {
    let want = format!("configured: {n} pods, generation {generation}");
    eventually(T, &format!("a leader at rest ({want})"), || async {
        for m in pods {
            let i = info(m).await?;
            if i["state"] == "leader" && i["cluster_status"].as_str()?.starts_with(&want) {
                return Some(());
            }
        }
        None
    })
    .await;
}

fn start_with_timeout(zk: &ZkServer, dir: PodDir, session_timeout: &str) -> Member {
    let mut opts = PodOptions {
        args: Vec::new(),
        ..PodOptions::default()
    };
    opts.env.insert("OCHOPOD_ZK".into(), zk.connect_string());
    opts.env
        .insert("OCHOPOD_ZK_SESSION_TIMEOUT".into(), session_timeout.into());
    Member {
        pod: Pod::start(&dir, opts),
        _dir: dir,
    }
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
    // The successor looked again (after every change above) and has nothing more to do.
    leader_looked(
        &zk,
        "f1.web",
        &refs(&pods),
        "still at rest at generation 2",
        |s| s == "configured: 2 pods, generation 2",
    )
    .await;
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

/// The pods registered under the cluster's `pods/`, uuid -> the zxid that created the znode (a
/// new registration has a new one), read by an observer session.
async fn registered(zk: &ZkServer, key: &str) -> BTreeMap<String, i64> {
    let obs = zk.observer().await;
    let dir = format!("/ochopod/clusters/{key}/pods");
    let mut out = BTreeMap::new();
    for uuid in obs.list_children(&dir).await.unwrap() {
        if let Some(stat) = obs.check_stat(&format!("{dir}/{uuid}")).await.unwrap() {
            out.insert(uuid, stat.czxid);
        }
    }
    out
}

/// How ZooKeeper goes away.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// Killed, then started again on the same port and data: it restores the sessions with a
    /// fresh timeout, so a pod may resume its own even after its client gave it up.
    Restart,
    /// Not ZooKeeper: the first pod's ochopod frozen (SIGSTOP; its process runs on) longer than
    /// the session timeout: the server expires its session, and once thawed it registers again
    /// as itself with a new one.
    FreezePod,
}

/// ZooKeeper (or one pod) away for a while then back: every pod keeps its process and identity,
/// registers again, and the cluster is not reconfigured. A restart: the pods' znodes survive
/// (their sessions are resumed); a frozen pod: its znode is new.
async fn outage(namespace: &str, session_timeout: &str, fault: Fault) {
    let mut zk = ZkServer::start();
    // The damper absorbs a pod briefly gone with its expired session.
    let yaml = || pod_yaml(namespace, "web", "settings: { min_size: 2, damper: 3s }", PEERS);
    let pods = vec![
        start_with_timeout(&zk, yaml(), session_timeout),
        start_with_timeout(&zk, yaml(), session_timeout),
    ];
    converged(&refs(&pods), 2, "2 pods configured").await;
    cluster_at_rest(&pods, 2, 1).await;
    let mut before = Vec::new();
    for m in &pods {
        before.push(seen(m).await);
    }
    let key = format!("{namespace}.web");
    let znodes = registered(&zk, &key).await;
    assert_eq!(znodes.len(), 2);

    // The outage itself is a duration, not a synchronisation.
    match fault {
        Fault::Restart => {
            zk.stop();
            for m in &pods {
                m.wait_info("the pod to see ZooKeeper gone", T, |i| i["connected"] == false)
                    .await;
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
            zk.restart();
        }
        Fault::FreezePod => {
            pods[0].signal(Signal::SIGSTOP);
            tokio::time::sleep(Duration::from_secs(5)).await;
            pods[0].signal(Signal::SIGCONT);
        }
    }

    for m in &pods {
        m.wait_info("the pod registered again", Duration::from_secs(60), |i| {
            i["connected"] == true && i["state"] != "connecting"
        })
        .await;
    }
    cluster_at_rest(&pods, 2, 1).await;
    let uuids: BTreeSet<String> = znodes.keys().cloned().collect();
    let now = eventually(T, "both pods' znodes present", || async {
        let now = registered(&zk, &key).await;
        (now.keys().cloned().collect::<BTreeSet<_>>() == uuids).then_some(now)
    })
    .await;
    match fault {
        Fault::Restart => assert_eq!(now, znodes, "the sessions were resumed: the same znodes"),
        Fault::FreezePod => {
            let frozen = before[0].uuid.as_str().unwrap();
            assert!(
                now.iter()
                    .all(|(u, czxid)| (znodes[u] != *czxid) == (u == frozen)),
                "a new session, a new znode for the frozen pod only: {znodes:?} -> {now:?}"
            );
        }
    }
    // A leader looked once every pod was back, and found the cluster as configured.
    leader_looked(&zk, &key, &refs(&pods), "at rest at generation 1", |s| {
        s == "configured: 2 pods, generation 1"
    })
    .await;
    for (m, b) in pods.iter().zip(before) {
        assert_eq!(seen(m).await, b, "same identity, process and configurations");
        assert_eq!(configured(m), "1\n", "no reconfiguration");
    }
}

#[tokio::test]
async fn a_zookeeper_restart_within_the_session_timeout_restarts_and_reconfigures_nothing() {
    outage("f2", "20s", Fault::Restart).await;
}

#[tokio::test]
async fn a_zookeeper_restart_longer_than_the_client_waits_resumes_the_sessions() {
    // 4 s: the client gives the session up after 1.4 x that without a server, during the outage;
    // the restarted server still knows it, and each pod resumes it.
    outage("f3", "4s", Fault::Restart).await;
}

#[tokio::test]
async fn an_expired_session_registers_again_as_itself_and_reconfigures_nothing() {
    outage("f4", "4s", Fault::FreezePod).await;
}

#[tokio::test]
async fn evictions_survive_a_change_of_leader() {
    let zk = ZkServer::start();
    let settings = "settings: { min_size: 2, damper: 200ms, evict_after: 2, timeout: 10s }";
    let good = || pod_yaml("f5", "web", settings, PEERS);
    let mut pods = vec![start(&zk, good(), None), start(&zk, good(), None)];
    converged(&refs(&pods), 2, "2 good pods configured").await;
    let bad = crate::cluster::never_ready("f5", settings);
    let c = start(&zk, bad, None);
    let c_uuid = c.info().await["uuid"].as_str().unwrap().to_string();
    let lead = leader(&refs(&pods)).await.ip.clone();
    let mut old = pods.remove(pods.iter().position(|m| m.ip == lead).unwrap());
    let next = &pods[0];
    let evicted = format!("configured: 2 pods, generation 2; evicted: seq 3 ({c_uuid})");
    eventually(T, "the leader to evict the failing pod", || async {
        (cluster_status(&old).await == evicted).then_some(())
    })
    .await;
    let tried = seen(&c).await.configurations;

    // The leader goes: its successor finds the eviction in the snapshot and does not try the
    // failing pod again.
    old.pod.signal(Signal::SIGKILL);
    old.pod.wait_exit(T).await;
    let evicted = format!("configured: 1 pods, generation 3; evicted: seq 3 ({c_uuid})");
    eventually(T, "the successor at rest, the eviction kept", || async {
        (cluster_status(next).await == evicted).then_some(())
    })
    .await;
    // The successor looked again and still leaves the evicted pod out.
    let line = evicted.clone();
    leader_looked(&zk, "f5.web", &[next], "the eviction kept", |s| s == line).await;
    assert_eq!(
        c.info().await["configurations"],
        tried,
        "the evicted pod was not tried again"
    );
    assert_eq!(info(next).await.unwrap()["state"], "leader");
}

#[tokio::test]
async fn a_second_sigterm_cuts_the_drain_short() {
    // Alone in its cluster, a draining pod would wait its whole drain for a configuration that
    // nobody is left to make (what `ochopod up` hits when it stops a whole cluster).
    let zk = ZkServer::start();
    // The apply fails once `block` exists: the configuration without the leaving pod never
    // completes, as when a whole ZooKeeper ensemble stops and its reconfig cannot run.
    let dir = pod_yaml(
        "drain2",
        "solo",
        "settings: { damper: 100ms, apply: { command: \"test ! -f {{env.OCHOPOD_HOME}}/block\" } }",
        PEERS,
    );
    let text = std::fs::read_to_string(dir.path()).unwrap().replace(
        "  stop: { grace: 2s }",
        "  stop: { signal: TERM, grace: 5s, drain: 60s }",
    );
    std::fs::write(dir.path(), text).unwrap();
    let mut m = start(&zk, dir, None);
    at_rest(&m, 1, 1).await;
    std::fs::write(m.home_file("block"), "").unwrap();
    m.signal(Signal::SIGTERM);
    eventually(T, "the pod marked leaving", || async {
        (info(&m).await?["pod_state"] == "leaving").then_some(())
    })
    .await;
    assert_eq!(info(&m).await.unwrap()["process"], "running", "still draining");
    let second = std::time::Instant::now();
    m.signal(Signal::SIGTERM);
    assert_eq!(m.pod.wait_exit(Duration::from_secs(20)).await, 128 + 15);
    assert!(
        second.elapsed() < Duration::from_secs(20),
        "the drain (60 s) was cut short"
    );
}

#[tokio::test]
async fn a_leaving_pod_waits_for_its_dependents_to_drop_it() {
    // SPEC §8: with `stop.drain`, a pod stops only once its own cluster and every cluster that
    // depends on it were configured without it. The dependent (a load balancer, say) is slower
    // to reconfigure (damper 3 s) than the pod's own cluster (200 ms): without the wait, the pod
    // would stop while the dependent still lists it.
    let zk = ZkServer::start();
    let web = || {
        let dir = pod_yaml("leave9", "web", "settings: { damper: 200ms }", PEERS);
        let text = std::fs::read_to_string(dir.path()).unwrap().replace(
            "  stop: { grace: 2s }",
            "  stop: { signal: TERM, grace: 2s, drain: 30s }",
        );
        std::fs::write(dir.path(), text).unwrap();
        dir
    };
    let lb = pod_yaml(
        "leave9",
        "lb",
        "depends_on: [{ cluster: web }]\nsettings: { damper: 3s }",
        "{{#each dependencies.web.pods}}{{ip}}\n{{/each}}",
    );
    let a = start(&zk, web(), None);
    let mut b = start(&zk, web(), None);
    let l = start(&zk, lb, None);
    eventually(T, "the dependent configured with both web pods", || async {
        let text = read(&l.home_file("peers.txt"));
        (text.contains(&a.ip) && text.contains(&b.ip)).then_some(())
    })
    .await;
    b.signal(Signal::SIGTERM);
    assert_eq!(b.pod.wait_exit(T).await, 128 + 15);
    let seen = read(&l.home_file("peers.txt"));
    assert!(
        !seen.contains(&b.ip) && seen.contains(&a.ip),
        "when the leaving pod stopped, its dependent no longer listed it: {seen}"
    );
}
