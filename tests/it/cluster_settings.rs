//! Leader settings and addresses end to end (SPEC §3 `settings.parallelism`; §5-§7 IPv6 peers):
//! real pods in a real ZooKeeper, configured by their leader over real HTTP. The pods are those
//! of `cluster.rs` (`peers.txt`, `configured.log`).
#![allow(clippy::unwrap_used)]

use crate::cluster::{cluster_status, converged, entries, leader, pod_yaml, Member, PEERS, T};
use crate::harness::eventually;
use crate::harness::pod::{read, Pod, PodDir, PodOptions};
use crate::harness::zk::ZkServer;

/// A pod that records, in `shared`, how many control calls are in flight on any pod of the
/// cluster each time `check` (its `can_configure` hook) or `on` (its `pre_start` hook, the
/// process starts at the first `on`) runs on it: each call marks itself in `shared/in`, appends
/// the number of marks to `shared/counts`, lasts 0.3 s so that calls sent together overlap, and
/// unmarks itself.
fn recording(namespace: &str, settings: &str, shared: &std::path::Path) -> PodDir {
    let d = shared.display();
    let record = format!(
        "\"mkdir -p {d}/in; touch {d}/in/{{{{pod.uuid}}}}-$$; ls {d}/in | wc -l >> {d}/counts; sleep 0.3; rm {d}/in/{{{{pod.uuid}}}}-$$\""
    );
    pod_yaml(
        namespace,
        "web",
        &format!("  can_configure: {record}\n  pre_start: {record}\n{settings}"),
        PEERS,
    )
}

fn start(zk: &ZkServer, dir: PodDir, ip: Option<&str>, token: Option<&str>) -> Member {
    let mut opts = PodOptions {
        args: Vec::new(),
        ip: ip.map(String::from),
        token: token.map(String::from),
        ..PodOptions::default()
    };
    opts.env.insert("OCHOPOD_ZK".into(), zk.connect_string());
    opts.env.insert("OCHOPOD_ZK_SESSION_TIMEOUT".into(), "2s".into());
    Member {
        pod: Pod::start(&dir, opts),
        _dir: dir,
    }
}

/// Configures 4 pods with `parallelism`; returns the in-flight counts recorded by every call.
async fn in_flight(namespace: &str, parallelism: usize) -> Vec<usize> {
    let zk = ZkServer::start();
    let shared = tempfile::tempdir().unwrap();
    let settings = format!("settings: {{ min_size: 4, damper: 200ms, parallelism: {parallelism} }}");
    let pods: Vec<Member> = (0..4)
        .map(|_| start(&zk, recording(namespace, &settings, shared.path()), None, None))
        .collect();
    let all: Vec<&Member> = pods.iter().collect();
    converged(&all, 4, "4 pods configured").await;
    let lead = leader(&all).await;
    eventually(T, "the leader at rest", || async {
        cluster_status(lead)
            .await
            .starts_with("configured: 4 pods, generation 1")
            .then_some(())
    })
    .await;
    let counts: Vec<usize> = read(&shared.path().join("counts"))
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 8, "a check and an on per pod: {counts:?}");
    counts
}

#[tokio::test]
async fn parallelism_1_sends_one_control_call_at_a_time() {
    let counts = in_flight("par1", 1).await;
    assert!(
        counts.iter().all(|&n| n == 1),
        "never two calls in flight: {counts:?}"
    );
}

#[tokio::test]
async fn parallelism_above_the_cluster_size_sends_the_calls_together() {
    // The contrast: the calls do overlap when allowed to (else the test above proves nothing).
    let counts = in_flight("par16", 16).await;
    assert!(
        counts.iter().any(|&n| n > 1),
        "calls sent together overlap: {counts:?}"
    );
}

#[tokio::test]
async fn pods_on_ipv6_loopback_form_a_cluster_with_signed_calls() {
    // Two pods on ::1 (distinct control ports): the leader calls each at [::1]:port and signs
    // for the address without brackets (SPEC §7).
    let zk = ZkServer::start();
    let yaml = || pod_yaml("v6", "web", "settings: { min_size: 2, damper: 200ms }", PEERS);
    let token = Some("s3cret");
    let a = start(&zk, yaml(), Some("::1"), token);
    let b = start(&zk, yaml(), Some("::1"), token);
    let two = converged(&[&a, &b], 2, "2 IPv6 pods configured").await;
    assert!(two.starts_with("gen 1\n"), "{two}");
    let e = entries(&two);
    assert_eq!(e.iter().map(|x| x.0).collect::<Vec<_>>(), [1, 2], "{two}");
    assert!(e.iter().all(|x| x.1 == "::1"), "{two}");
    for m in [&a, &b] {
        let i = m
            .wait_info("configured", T, |i| i["generation"] == 1 && i["ready"] == true)
            .await;
        assert_eq!(i["ip"], "::1", "{i}");
    }
    // ctl reaches them too.
    let out = crate::ctl::ctl_with(
        &zk.connect_string(),
        &["--namespace", "v6", "info", "web", "--json"],
        &[("OCHOPOD_TOKEN", "s3cret")],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let pods = crate::ctl::pods_of(&out.json());
    assert_eq!(pods.len(), 2, "{out:?}");
    assert!(pods.iter().all(|p| p["answer"]["generation"] == 1), "{out:?}");
}
