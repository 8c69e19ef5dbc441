//! Rolling restarts (SPEC §3 `settings.rolling`, `max_unavailable`): dependents whose files change
//! when their dependency grows are restarted a few at a time, each ready before the next, and a
//! roll stops at a pod that does not become ready. The same scenario without `rolling` restarts
//! every dependent at once: that is what the sampled count of pods down tells apart.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{cluster_status, info, leader, pod_yaml, start, Member, PEERS, T};
use crate::harness::eventually;
use crate::harness::pod::{read, PodDir};
use crate::harness::zk::ZkServer;

/// The dependency's ips, one per line: changes (and restarts the process) when `db` grows.
const DB_IPS: &str = "{{#each dependencies.db.pods}}{{ip}}\n{{/each}}";

/// A `web` pod depending on `db`, slow to be ready (a second), never ready while
/// `$OCHOPOD_HOME/broken` exists.
fn web(namespace: &str, rolling: bool) -> PodDir {
    pod_yaml(
        namespace,
        "web",
        &format!(
            "depends_on: [{{ cluster: db }}]\n\
             settings: {{ min_size: 3, damper: 300ms, rolling: {rolling}, max_unavailable: 1, evict_after: 10 }}\n\
             checks: {{ ready: {{ command: 'sleep 1; test ! -e {{{{env.OCHOPOD_HOME}}}}/broken', every: 1500ms, timeout: 6s }} }}"
        ),
        DB_IPS,
    )
}

fn db(namespace: &str) -> PodDir {
    pod_yaml(namespace, "db", "settings: { damper: 200ms }", PEERS)
}

fn dbs(m: &Member) -> usize {
    read(&m.home_file("peers.txt")).lines().count()
}

/// Pods down (process not running, or not ready), sampled every 50 ms until `stop`: the most
/// seen at once.
fn sample_down(members: Vec<(String, u16)>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    let most = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        while !stop.load(Ordering::SeqCst) {
            let mut down = 0;
            for (ip, port) in &members {
                let up = match client.get(format!("http://{ip}:{port}/info")).send().await {
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .is_ok_and(|i| i["process"] == "running" && i["ready"] == true),
                    Err(_) => false,
                };
                down += usize::from(!up);
            }
            most.fetch_max(down, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        most.load(Ordering::SeqCst)
    })
}

async fn pid(m: &Member) -> u64 {
    info(m).await.and_then(|i| i["pid"].as_u64()).unwrap_or(0)
}

/// Three dependents configured with one db pod, all ready; returns them with their pids.
async fn three_ready(zk: &ZkServer, namespace: &str, rolling: bool) -> (Member, [Member; 3], [u64; 3]) {
    let d = start(zk, db(namespace), None);
    let w = [
        start(zk, web(namespace, rolling), None),
        start(zk, web(namespace, rolling), None),
        start(zk, web(namespace, rolling), None),
    ];
    for m in &w {
        eventually(T, "each dependent configured and ready", || async {
            let i = info(m).await?;
            (dbs(m) == 1 && i["ready"] == true).then_some(())
        })
        .await;
    }
    let pids = [pid(&w[0]).await, pid(&w[1]).await, pid(&w[2]).await];
    (d, w, pids)
}

async fn most_down_while_db_grows(namespace: &str, rolling: bool) -> usize {
    let zk = ZkServer::start();
    let (_d1, w, pids) = three_ready(&zk, namespace, rolling).await;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_down(w.iter().map(|m| (m.ip.clone(), m.port)).collect(), stop.clone());
    let _d2 = start(&zk, db(namespace), None);
    for (m, before) in w.iter().zip(pids) {
        eventually(T, "every dependent restarted with two db pods, ready", || async {
            let i = info(m).await?;
            let restarted = i["pid"].as_u64().is_some_and(|p| p != before);
            (dbs(m) == 2 && restarted && i["ready"] == true).then_some(())
        })
        .await;
    }
    stop.store(true, Ordering::SeqCst);
    sampler.await.unwrap()
}

#[tokio::test]
async fn a_rolling_dependency_change_restarts_one_dependent_at_a_time() {
    let most = most_down_while_db_grows("roll1", true).await;
    assert_eq!(most, 1, "at most max_unavailable (1) down at once, and one was");
}

#[tokio::test]
async fn without_rolling_every_dependent_restarts_at_once() {
    let most = most_down_while_db_grows("roll2", false).await;
    assert_eq!(most, 3, "the control case: all three down together");
}

#[tokio::test]
async fn a_roll_stops_at_a_pod_that_does_not_become_ready() {
    let zk = ZkServer::start();
    let (_d1, w, pids) = three_ready(&zk, "roll3", true).await;
    let lead = leader(&[&w[0], &w[1], &w[2]]).await;
    // The roll goes by seq: break the second one.
    let mut by_seq = Vec::new();
    for (m, p) in w.iter().zip(pids) {
        let s = info(m).await.unwrap()["seq"].as_u64().unwrap();
        by_seq.push((s, m, p));
    }
    by_seq.sort_by_key(|(s, _, _)| *s);
    let (broken_seq, broken, _) = by_seq[1];
    let (_, last, last_pid) = by_seq[2];
    std::fs::write(broken.home_file("broken"), "").unwrap();

    let _d2 = start(&zk, db("roll3"), None);
    let want = format!("seq {broken_seq}");
    let status = eventually(
        T,
        "the leader to say the roll stopped at the broken pod",
        || async {
            let s = cluster_status(lead).await;
            (s.contains("configuration failed") && s.contains(&want)).then_some(s)
        },
    )
    .await;
    // The pods after it in the roll keep their process and their last map.
    if !std::ptr::eq(last, lead) {
        assert_eq!(pid(last).await, last_pid, "{status}");
        assert_eq!(dbs(last), 1, "{status}");
    }
    // Fixed, the next attempt finishes the roll.
    std::fs::remove_file(broken.home_file("broken")).unwrap();
    for m in &w {
        eventually(T, "every dependent on two db pods and ready", || async {
            let i = info(m).await?;
            (dbs(m) == 2 && i["ready"] == true).then_some(())
        })
        .await;
    }
}
