//! The leader's cache of its cluster (src/sync/cache.rs): kept from watch events, it must stay
//! right when events are lost (the leader's connection cut while pods join, leave and expire), and
//! a change must cost the leader the same number of ZooKeeper reads whatever the cluster's size
//! (`ochopod_zk_reads_total` on its `/metrics`).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use crate::harness::eventually;
use crate::harness::pod::{next_ip, Pod, PodDir, PodOptions};
use crate::harness::zk::ZkServer;

const T: Duration = Duration::from_secs(30);

/// A TCP relay to ZooKeeper that can be cut (every connection closed, new ones refused) and
/// healed: one pod's connection lost while the others go on (events for it are lost).
struct Relay {
    addr: String,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    task: AbortHandle,
}

impl Relay {
    async fn start(zk: &ZkServer) -> Relay {
        let target = zk.connect_string();
        let ip = next_ip();
        let listener = TcpListener::bind((ip.as_str(), 0)).await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (c, k) = (cut.clone(), conns.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let target = target.clone();
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                k.lock().unwrap().push(h.abort_handle());
            }
        })
        .abort_handle();
        Relay {
            addr,
            cut,
            conns,
            task,
        }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

const YAML: &str = "cluster: cache\nprocess:\n  command: \"sleep 600\"\nsettings: { damper: 100ms }\n";

fn opts(connect: &str, session_timeout: &str) -> PodOptions {
    PodOptions {
        args: vec![],
        env: [
            ("OCHOPOD_ZK".to_string(), connect.to_string()),
            (
                "OCHOPOD_ZK_SESSION_TIMEOUT".to_string(),
                session_timeout.to_string(),
            ),
        ]
        .into(),
        ..PodOptions::default()
    }
}

fn configured(n: usize) -> impl Fn(&serde_json::Value) -> bool {
    move |i| {
        i["state"] == "leader"
            && i["cluster_status"]
                .as_str()
                .is_some_and(|s| s.starts_with(&format!("configured: {n} pods")))
    }
}

/// The uuids registered under the cluster's `pods/`, and those of its snapshot.
async fn registered_and_configured(zk: &ZkServer) -> (BTreeSet<String>, BTreeSet<String>) {
    let c = zk.observer().await;
    let paths = ochopod::zk::paths::ClusterPaths::new("default.cache");
    let pods = c
        .list_children(&paths.pods())
        .await
        .unwrap()
        .into_iter()
        .collect();
    let snap = ochopod::zk::snapshot::read(&c, &paths.snapshot())
        .await
        .unwrap()
        .unwrap()
        .0;
    (pods, snap.pods.into_keys().collect())
}

fn uuid(pod: &Pod) -> String {
    std::fs::read_to_string(pod.home.join(".ochopod/uuid"))
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test]
async fn the_leader_cache_is_right_after_pods_join_leave_and_expire_while_it_is_cut_off() {
    let zk = ZkServer::start();
    let relay = Relay::start(&zk).await;
    let direct = zk.connect_string();
    let dirs: Vec<PodDir> = (0..5).map(|_| PodDir::new(YAML)).collect();
    // The leader reaches ZooKeeper through the relay, with a session that outlives the cut.
    let leader = Pod::start(&dirs[0], opts(&relay.addr, "15s"));
    leader.wait_info("a leads alone", T, configured(1)).await;
    let mut b = Pod::start(&dirs[1], opts(&direct, "2s"));
    let mut c = Pod::start(&dirs[2], opts(&direct, "2s"));
    leader.wait_info("a configured 3", T, configured(3)).await;
    let (b_uuid, c_uuid) = (uuid(&b), uuid(&c));

    relay.cut();
    leader
        .wait_info("a disconnected", T, |i| i["connected"] == false)
        .await;
    // While the leader hears nothing: b leaves, c's session expires, d joins.
    b.signal(nix::sys::signal::Signal::SIGTERM);
    b.wait_exit(T).await;
    c.kill_hard();
    let d = Pod::start(&dirs[3], opts(&direct, "2s"));
    let d_uuid = eventually(T, "b and c gone, d registered", || async {
        let (pods, _) = registered_and_configured(&zk).await;
        let d_uuid = std::fs::read_to_string(d.home.join(".ochopod/uuid")).ok()?;
        let d_uuid = d_uuid.trim().to_string();
        (!pods.contains(&b_uuid) && !pods.contains(&c_uuid) && pods.contains(&d_uuid)).then_some(d_uuid)
    })
    .await;
    relay.heal();

    leader.wait_info("a configured a and d", T, configured(2)).await;
    let (pods, snap) = registered_and_configured(&zk).await;
    assert_eq!(snap, pods, "the snapshot holds exactly the registered pods");
    assert_eq!(snap, BTreeSet::from([uuid(&leader), d_uuid]));
    // The watches are back: a pod joining now is seen.
    let e = Pod::start(&dirs[4], opts(&direct, "2s"));
    leader.wait_info("a configured e too", T, configured(3)).await;
    let (_, snap) = registered_and_configured(&zk).await;
    assert!(snap.contains(&uuid(&e)), "{snap:?}");
}

/// The leader's `ochopod_zk_reads_total`.
async fn reads(leader: &Pod) -> u64 {
    let (_, text) = leader.get("/metrics").await;
    let text = text.as_str().unwrap().to_string();
    text.lines()
        .filter(|l| l.starts_with("ochopod_zk_reads_total"))
        .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no ochopod_zk_reads_total in {text}"))
}

/// The leader's reads for one pod joining a cluster of `n` (the leader and `pods`).
async fn join_cost(zk: &ZkServer, leader: &Pod, pods: &mut Vec<(PodDir, Pod)>, n: usize) -> u64 {
    let connect = zk.connect_string();
    let start = |pods: &mut Vec<(PodDir, Pod)>| {
        let dir = PodDir::new(YAML);
        let pod = Pod::start(&dir, opts(&connect, "10s"));
        pods.push((dir, pod));
    };
    while pods.len() + 1 < n {
        start(pods);
    }
    leader.wait_info("the cluster at rest", T, configured(n)).await;
    // Settled: no more reads (the last reads follow the snapshot write).
    let before = eventually(T, "the leader's reads to settle", || async {
        let r = reads(leader).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        (reads(leader).await == r).then_some(r)
    })
    .await;
    start(pods);
    leader
        .wait_info("the new pod configured", T, configured(n + 1))
        .await;
    let after = eventually(T, "the leader's reads to settle", || async {
        let r = reads(leader).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        (reads(leader).await == r).then_some(r)
    })
    .await;
    after - before
}

#[tokio::test]
async fn one_pod_joining_costs_the_leader_the_same_reads_at_3_and_at_12_pods() {
    let zk = ZkServer::start();
    let dir = PodDir::new(YAML);
    let leader = Pod::start(&dir, opts(&zk.connect_string(), "10s"));
    leader.wait_info("a leads alone", T, configured(1)).await;
    let mut pods = Vec::new();
    let small = join_cost(&zk, &leader, &mut pods, 3).await;
    let big = join_cost(&zk, &leader, &mut pods, 12).await;
    // Reading the pods and seqs again would cost at least 2 x 12 on its own.
    assert!(big < 24, "one join at 12 pods cost {big} reads (at 3: {small})");
    assert!(
        big <= small + 3,
        "one join at 12 pods cost {big} reads, at 3: {small}"
    );
}
