//! Seq claims (SPEC §4) against a real ZooKeeper: pods claiming together get 1..N at a cost per
//! claim that does not grow with N (a queue of tickets, `zk::register`), and a pod keeps its seq
//! across a restart with its state dir, and takes its StatefulSet ordinal + 1.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use ochopod::zk::paths::ClusterPaths;
use ochopod::zk::{register, Acls};
use tokio::task::JoinSet;

use crate::cluster::{info, pod_yaml, Member, PEERS, T};
use crate::harness::eventually;
use crate::harness::pod::{Pod, PodDir, PodOptions};
use crate::harness::zk::ZkServer;
use crate::sync_zk::{client, zk_config};

/// Requests received so far on each connection, by session id (`cons`: `recved=N,...,sid=0x..`).
fn received(zk: &ZkServer) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in zk.four_letter("cons").lines() {
        let field = |name: &str| {
            line.split(['(', ',', ')'])
                .find_map(|f| f.trim().strip_prefix(name).map(str::to_string))
        };
        if let (Some(sid), Some(n)) = (field("sid="), field("recved=")) {
            out.insert(sid, n.parse().unwrap());
        }
    }
    out
}

#[tokio::test]
async fn pods_claiming_together_get_seqs_one_to_n_each_in_a_few_requests() {
    const N: usize = 30;
    // The most requests one claim may take whatever N (3 without a lost race: ticket, listing,
    // transaction), with room for a session ping. Racing for the smallest free seq instead costs
    // a create and a listing per lost race: up to 2N.
    const MOST: u64 = 6;
    let zk = ZkServer::start_with("maxClientCnxns=0\n");
    let paths = ClusterPaths::new("t41.together");
    let acls = Acls::new(&zk_config(&zk));
    register::ensure_layout(&client(&zk).await, &paths, acls)
        .await
        .unwrap();
    let mut clients = Vec::new();
    for _ in 0..N {
        clients.push(client(&zk).await);
    }
    let sid = |c: &zookeeper_client::Client| format!("{:#x}", c.session_id().0);
    let before = received(&zk);
    let mut claims = JoinSet::new();
    for (i, c) in clients.iter().enumerate() {
        let (c, paths) = (c.clone(), paths.clone());
        claims.spawn(async move {
            let seq = register::claim_seq(&c, &paths, acls, &format!("u{i}"), 0, true).await;
            (i, seq.unwrap())
        });
    }
    let mut seqs: Vec<u32> = claims.join_all().await.into_iter().map(|(_, s)| s).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=N as u32).collect::<Vec<_>>(), "dense, each once");
    let after = received(&zk);
    let costs: Vec<u64> = clients
        .iter()
        .map(|c| after[&sid(c)] - before.get(&sid(c)).copied().unwrap_or(0))
        .collect();
    assert!(
        costs.iter().all(|&n| n <= MOST),
        "requests per claim, each at most {MOST}: {costs:?}"
    );
    // No ticket left behind: seqs/ holds the seqs alone.
    let left = clients[0].list_children(&paths.seqs()).await.unwrap();
    assert_eq!(left.len(), N, "{left:?}");
    assert!(left.iter().all(|n| register::seq_of(n).is_some()), "{left:?}");
}

fn options(zk: &ZkServer, env: &[(&str, &str)]) -> PodOptions {
    let mut opts = PodOptions {
        args: Vec::new(),
        ..PodOptions::default()
    };
    opts.env.insert("OCHOPOD_ZK".into(), zk.connect_string());
    opts.env.insert("OCHOPOD_ZK_SESSION_TIMEOUT".into(), "2s".into());
    for (k, v) in env {
        opts.env.insert(k.to_string(), v.to_string());
    }
    opts
}

fn start(zk: &ZkServer, dir: PodDir, env: &[(&str, &str)]) -> Member {
    Member {
        pod: Pod::start(&dir, options(zk, env)),
        _dir: dir,
    }
}

/// The pod's seq once registered (before, `/info` shows the seq asked for, if any).
async fn seq_of(m: &Member) -> u64 {
    let i = m
        .wait_info("a registered pod", T, |i| {
            i["connected"] == true && i["seq"].as_u64() > Some(0)
        })
        .await;
    i["seq"].as_u64().unwrap()
}

/// Kills the pod (as a container is killed: no deregistration) and starts it again on the same
/// state dir, with `seq` removed first if `forget_seq`.
async fn restart(zk: &ZkServer, m: &mut Member, forget_seq: bool) {
    m.pod.kill_hard();
    if forget_seq {
        std::fs::remove_file(m.home_file(".ochopod/seq")).unwrap();
    }
    m.pod = Pod::start(&m._dir, options(zk, &[]));
    eventually(T, "the pod back", || async { info(m).await }).await;
}

#[tokio::test]
async fn a_pod_back_on_its_state_dir_keeps_its_seq_even_without_its_seq_file() {
    let zk = ZkServer::start();
    let dir = || pod_yaml("t42", "back", "", PEERS);
    let mut a = start(&zk, dir(), &[]);
    let b = start(&zk, dir(), &[]);
    let (sa, sb) = (seq_of(&a).await, seq_of(&b).await);
    assert_eq!([sa.min(sb), sa.max(sb)], [1, 2]);
    let uuid = std::fs::read_to_string(a.home_file(".ochopod/uuid")).unwrap();
    // Back with its seq file: that seq first.
    restart(&zk, &mut a, false).await;
    assert_eq!(seq_of(&a).await, sa);
    // Back without it: the uuid (read, not made anew) still holds its seq, found by reading the
    // taken ones; a new seq would leave two held by the same pod.
    restart(&zk, &mut a, true).await;
    assert_eq!(seq_of(&a).await, sa, "the seq its uuid holds");
    assert_eq!(
        std::fs::read_to_string(a.home_file(".ochopod/uuid")).unwrap(),
        uuid
    );
    assert_eq!(seq_of(&b).await, sb);
}

#[tokio::test]
async fn a_statefulset_pod_takes_its_ordinal_plus_one_among_pods_claiming_together() {
    let zk = ZkServer::start();
    let dir = || pod_yaml("t43", "web", "", PEERS);
    let kube = [("KUBERNETES_SERVICE_HOST", "10.0.0.1"), ("HOSTNAME", "web-1")];
    // First: a registered pod's seq is never taken from it, so started together another pod
    // could get 2 before it asks.
    let set = start(&zk, dir(), &kube);
    assert_eq!(seq_of(&set).await, 2, "ordinal 1 + 1");
    let others = [
        start(&zk, dir(), &[]),
        start(&zk, dir(), &[]),
        start(&zk, dir(), &[]),
    ];
    let mut seqs = Vec::new();
    for m in &others {
        seqs.push(seq_of(m).await);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, [1, 3, 4], "the others around it, dense");
}
