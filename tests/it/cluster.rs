//! Clusters end to end: real `ochopod run` processes forming clusters through a real ZooKeeper,
//! configured by their leader over real HTTP (SPEC §3-§7).
//!
//! Every pod renders `peers.txt` from the cluster map and appends the generation to
//! `configured.log` from its `configured` hook, so a test sees both what each pod was told and
//! how many configurations it went through. The process watches its parent and ends with it, so
//! a pod killed with -9 leaves nothing behind.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::harness::eventually;
use crate::harness::pod::{read, Pod, PodDir, PodOptions};
use crate::harness::zk::ZkServer;

pub(crate) const T: Duration = Duration::from_secs(30);

pub(crate) const PEERS: &str =
    "gen {{cluster.generation}}\n{{#each cluster.pods}}{{seq}} {{ip}} {{port this 9000}}\n{{/each}}";

/// A pod.yaml of `cluster` in `namespace`; `extra` is appended (settings, depends_on...).
pub(crate) fn pod_yaml(namespace: &str, cluster: &str, extra: &str, template: &str) -> PodDir {
    PodDir::new(&format!(
        r#"cluster: {cluster}
namespace: {namespace}
ports: [9000]
process:
  command: "while kill -0 $PPID 2>/dev/null; do sleep 0.2; done"
  stop: {{ grace: 2s }}
templates:
  - source: peers.hbs
    dest: "{{{{env.OCHOPOD_HOME}}}}/peers.txt"
hooks:
  configured: "echo {{{{cluster.generation}}}} >> {{{{env.OCHOPOD_HOME}}}}/configured.log"
{extra}
"#
    ))
    .with_file("peers.hbs", template)
}

/// A pod of `web` in `namespace` that is never ready: its `on` answers 504 after the ready
/// timeout (for eviction tests).
pub(crate) fn never_ready(namespace: &str, settings: &str) -> PodDir {
    pod_yaml(
        namespace,
        "web",
        &format!("{settings}\nchecks: {{ ready: {{ command: 'false', every: 100ms, timeout: 500ms }} }}"),
        PEERS,
    )
}

/// A pod of the cluster, with its dir (which must outlive it).
pub(crate) struct Member {
    pub(crate) pod: Pod,
    pub(crate) _dir: PodDir,
}

impl std::ops::Deref for Member {
    type Target = Pod;
    fn deref(&self) -> &Pod {
        &self.pod
    }
}

pub(crate) fn start(zk: &ZkServer, dir: PodDir, token: Option<&str>) -> Member {
    let mut opts = PodOptions {
        args: Vec::new(),
        ..PodOptions::default()
    };
    opts.env.insert("OCHOPOD_ZK".into(), zk.connect_string());
    opts.env.insert("OCHOPOD_ZK_SESSION_TIMEOUT".into(), "2s".into());
    opts.token = token.map(String::from);
    Member {
        pod: Pod::start(&dir, opts),
        _dir: dir,
    }
}

pub(crate) fn peers(m: &Member) -> String {
    read(&m.home_file("peers.txt"))
}

pub(crate) fn configured(m: &Member) -> String {
    read(&m.home_file("configured.log"))
}

/// Waits until every member rendered the same `peers.txt` listing `n` pods; returns it.
pub(crate) async fn converged(members: &[&Member], n: usize, what: &str) -> String {
    eventually(T, what, || async {
        let first = peers(members[0]);
        let same = members.iter().all(|m| peers(m) == first);
        (same && first.lines().count() == n + 1).then_some(first)
    })
    .await
}

/// The (seq, ip, port) lines of a rendered `peers.txt`.
pub(crate) fn entries(text: &str) -> Vec<(u32, String, u16)> {
    text.lines()
        .skip(1)
        .map(|l| {
            let v: Vec<&str> = l.split(' ').collect();
            (v[0].parse().unwrap(), v[1].to_string(), v[2].parse().unwrap())
        })
        .collect()
}

/// `/info`, or None while the pod is not answering yet.
pub(crate) async fn info(m: &Member) -> Option<Value> {
    let mut req = m.client.get(m.url("/info"));
    if let Some(t) = &m.token {
        req = req.bearer_auth(t);
    }
    req.send().await.ok()?.json().await.ok()
}

pub(crate) async fn leader<'a>(members: &[&'a Member]) -> &'a Member {
    eventually(T, "a leader", || async {
        for m in members {
            if info(m).await.is_some_and(|i| i["state"] == "leader") {
                return Some(*m);
            }
        }
        None
    })
    .await
}

/// Makes sure the leader of `key` (one of `members`) has looked at the cluster as it is now, and
/// returns its status then (without the probe's mention) once `pred` holds for it: the way to
/// assert that something did *not* happen without sleeping. A znode under `pods/` that is not a
/// pod (SPEC §6: left out of every map, named in the leader's status) wakes the leader, which
/// re-reads everything and names it: a status that names it was decided on a view of ZooKeeper
/// later than every change made before this call. With `pred` saying "at rest" (hash equal to
/// the snapshot's: no configuration due, no damper running), nothing more can happen until
/// something changes again. The probe is deleted before returning (and the status seen without it).
pub(crate) async fn leader_looked(
    zk: &ZkServer,
    key: &str,
    members: &[&Member],
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    use zookeeper_client as zkc;
    static PROBES: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "look-{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    );
    let obs = zk.observer().await;
    let path = format!("/ochopod/clusters/{key}/pods/{name}");
    let ephemeral = zkc::CreateMode::Ephemeral.with_acls(zkc::Acls::anyone_all());
    obs.create(&path, b"not a pod", &ephemeral).await.unwrap();
    let leader_status = |seen: bool| {
        let pred = &pred;
        let name = &name;
        async move {
            for m in members {
                let i = info(m).await?;
                if i["state"] != "leader" {
                    continue;
                }
                let s = i["cluster_status"].as_str()?;
                let (line, rejected) = match s.split_once("; rejected registrations: ") {
                    Some((line, rejected)) => (line, rejected),
                    None => (s, ""),
                };
                if rejected.contains(name.as_str()) == seen && pred(line) {
                    return Some(line.to_string());
                }
            }
            None
        }
    };
    let line = eventually(T, &format!("the leader to look: {what}"), || leader_status(true)).await;
    obs.delete(&path, None).await.unwrap();
    eventually(T, &format!("the leader to look again: {what}"), || {
        leader_status(false)
    })
    .await;
    line
}

pub(crate) async fn cluster_status(m: &Member) -> String {
    info(m)
        .await
        .and_then(|i| i["cluster_status"].as_str().map(String::from))
        .unwrap_or_default()
}

#[tokio::test]
async fn pods_form_a_cluster_grow_and_shrink_through_zookeeper() {
    let zk = ZkServer::start();
    let yaml = || {
        pod_yaml(
            "e2e1",
            "web",
            "settings: { min_size: 3, damper: 300ms, timeout: 10s }",
            PEERS,
        )
    };
    let token = Some("s3cret");
    let a = start(&zk, yaml(), token);
    let b = start(&zk, yaml(), token);
    // min_size: nothing is configured with two pods, and the leader says why.
    let lead = leader(&[&a, &b]).await;
    eventually(T, "the leader waiting for min_size", || async {
        (cluster_status(lead).await == "waiting for min_size: 2/3 pods").then_some(())
    })
    .await;
    assert_eq!(peers(&a), "");
    let c = start(&zk, yaml(), token);
    let three = converged(&[&a, &b, &c], 3, "3 pods configured alike").await;
    let e = entries(&three);
    assert_eq!(e.iter().map(|x| x.0).collect::<Vec<_>>(), [1, 2, 3], "{three}");
    let ips: BTreeSet<String> = e.iter().map(|x| x.1.clone()).collect();
    assert_eq!(ips, [&a, &b, &c].iter().map(|m| m.ip.clone()).collect());
    assert!(e.iter().all(|x| x.2 == 9000));
    assert!(three.starts_with("gen 1\n"), "{three}");
    for m in [&a, &b, &c] {
        eventually(T, "the configured hook", || async {
            (configured(m) == "1\n").then_some(())
        })
        .await;
    }

    // A fourth joins: everybody is reconfigured, once.
    let d = start(&zk, yaml(), token);
    let four = converged(&[&a, &b, &c, &d], 4, "4 pods configured alike").await;
    assert!(four.starts_with("gen 2\n"), "{four}");
    assert_eq!(
        entries(&four).iter().map(|x| x.0).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    for m in [&a, &b, &c] {
        eventually(T, "one more configuration", || async {
            (configured(m) == "1\n2\n").then_some(())
        })
        .await;
    }
    eventually(T, "the newcomer's configured hook", || async {
        (configured(&d) == "2\n").then_some(())
    })
    .await;

    // kill -9 one of them (once the leader wrote the snapshot: killed in between, the leader's
    // successor would rightly configure generation 2 again): its session expires and the rest
    // are reconfigured without it.
    let lead = leader(&[&a, &b, &c, &d]).await;
    eventually(T, "the leader at rest", || async {
        cluster_status(lead)
            .await
            .starts_with("configured: 4 pods, generation 2")
            .then_some(())
    })
    .await;
    let mut b = b;
    let gone = b.ip.clone();
    let gone_seq = entries(&four).iter().find(|x| x.1 == gone).unwrap().0;
    let kept: Vec<u32> = [1, 2, 3, 4].into_iter().filter(|&s| s != gone_seq).collect();
    b.pod.signal(Signal::SIGKILL);
    b.pod.wait_exit(T).await;
    let three = converged(&[&a, &c, &d], 3, "the others configured without the killed pod").await;
    assert!(three.starts_with("gen 3\n"), "{three}");
    assert!(entries(&three).iter().all(|x| x.1 != gone), "{three}");
    assert_eq!(
        entries(&three).iter().map(|x| x.0).collect::<Vec<_>>(),
        kept,
        "seqs are stable"
    );
}

#[tokio::test]
async fn a_reset_of_the_leader_causes_no_reconfiguration_and_stale_maps_are_refused() {
    let zk = ZkServer::start();
    let yaml = || pod_yaml("e2e2", "web", "settings: { min_size: 2, damper: 1s }", PEERS);
    let a = start(&zk, yaml(), None);
    let b = start(&zk, yaml(), None);
    converged(&[&a, &b], 2, "2 pods configured").await;
    let old = leader(&[&a, &b]).await;
    // Reset only once the configuration is complete (snapshot written): a reset in the middle of
    // one rightly makes the next leader configure again.
    eventually(T, "the configuration to complete", || async {
        cluster_status(old)
            .await
            .starts_with("configured: 2 pods, generation 1")
            .then_some(())
    })
    .await;
    let (status, _) = old.post("/reset", "").await;
    assert_eq!(status, 200);
    // The session is replaced (the old one's ephemeral nodes vanish at once), the pod registers
    // again as itself; whoever leads then finds the same pods and the same hash.
    eventually(T, "the reset pod back and a leader at rest", || async {
        let i = info(old).await?;
        if i["connected"] != true || i["state"] == "connecting" {
            return None;
        }
        let now = leader(&[&a, &b]).await;
        cluster_status(now)
            .await
            .starts_with("configured: 2 pods, generation 1")
            .then_some(())
    })
    .await;
    for m in [&a, &b] {
        assert_eq!(configured(m), "1\n", "no reconfiguration after a reset");
        assert_eq!(m.get("/info").await.1["generation"], 1);
    }

    // A pod refuses a map older than the one it applied (SPEC §6).
    let mut me = a.get("/info").await.1;
    let uuid = me["uuid"].as_str().unwrap().to_string();
    let obj = me.as_object_mut().unwrap();
    obj.insert("state".into(), json!("running"));
    let map = json!({ "generation": 0, "key": uuid, "pods": { uuid.clone(): Value::Object(obj.clone()) } });
    let (status, body) = a.post("/control/on", &map.to_string()).await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test]
async fn a_dependent_waits_for_min_pods_of_its_dependency_then_lists_them() {
    let zk = ZkServer::start();
    let zk_yaml = || pod_yaml("e2e3", "zookeeper", "settings: { damper: 200ms }", PEERS);
    let kafka_yaml = pod_yaml(
        "e2e3",
        "kafka",
        "depends_on: [{ cluster: zookeeper, min: 3 }]\nsettings: { damper: 200ms }",
        "gen {{cluster.generation}}\nzk={{grep \"zookeeper\" 9000}}\n",
    );
    let kafka = start(&zk, kafka_yaml, None);
    let z1 = start(&zk, zk_yaml(), None);
    let z2 = start(&zk, zk_yaml(), None);
    converged(&[&z1, &z2], 2, "2 zookeeper pods configured").await;
    eventually(T, "kafka waiting for zookeeper", || async {
        (cluster_status(&kafka).await == "waiting for dependency zookeeper: 2/3 pods").then_some(())
    })
    .await;
    assert_eq!(peers(&kafka), "");
    let z3 = start(&zk, zk_yaml(), None);
    converged(&[&z1, &z2, &z3], 3, "3 zookeeper pods configured").await;
    let text = eventually(T, "kafka configured with 3 zookeeper pods", || async {
        let t = peers(&kafka);
        (t.matches(":9000").count() == 3).then_some(t)
    })
    .await;
    for z in [&z1, &z2, &z3] {
        assert!(text.contains(&format!("{}:9000", z.ip)), "{text}");
    }
    assert!(text.starts_with("gen 1\n"), "{text}");
    // A dependency change reconfigures the dependent.
    let mut z3 = z3;
    z3.pod.signal(Signal::SIGTERM);
    z3.pod.wait_exit(T).await;
    eventually(
        T,
        "kafka reconfigured without the departed zookeeper pod",
        || async {
            let t = peers(&kafka);
            (t.starts_with("gen 2\n") && t.matches(":9000").count() == 2).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn sequential_added_first_configures_new_pods_first_one_at_a_time() {
    let zk = ZkServer::start();
    let shared = tempfile::tempdir().unwrap();
    let order = shared.path().join("order.log");
    let yaml = || {
        pod_yaml(
            "e2e4",
            "quorum",
            "settings: { min_size: 2, damper: 300ms, sequential: true, order: added-first }\n\
             checks: { ready: { command: 'sleep 0.2', every: 100ms, timeout: 5s } }",
            PEERS,
        )
    };
    let start_logged = |dir: PodDir| {
        let mut opts = PodOptions {
            args: Vec::new(),
            ..PodOptions::default()
        };
        opts.env.insert("OCHOPOD_ZK".into(), zk.connect_string());
        opts.env.insert("OCHOPOD_ZK_SESSION_TIMEOUT".into(), "2s".into());
        // Each start of the process (one per `on` that changes the map) logs generation and seq.
        std::fs::write(
            dir.path(),
            std::fs::read_to_string(dir.path()).unwrap().replace(
                "hooks:\n",
                &format!(
                    "hooks:\n  pre_start: \"echo {{{{cluster.generation}}}} {{{{pod.seq}}}} >> {}\"\n",
                    order.display()
                ),
            ),
        )
        .unwrap();
        Member {
            pod: Pod::start(&dir, opts),
            _dir: dir,
        }
    };
    let a = start_logged(yaml());
    let b = start_logged(yaml());
    converged(&[&a, &b], 2, "2 pods configured").await;
    let c = start_logged(yaml());
    converged(&[&a, &b, &c], 3, "3 pods configured").await;
    // The rendered file comes before the process start (and its pre_start): wait for the log.
    let lines = eventually(T, "the three starts of generation 2", || async {
        let lines: Vec<String> = read(&order)
            .lines()
            .filter(|l| l.starts_with("2 "))
            .map(String::from)
            .collect();
        (lines.len() >= 3).then_some(lines)
    })
    .await;
    assert_eq!(
        lines,
        ["2 3", "2 1", "2 2"],
        "the added pod first, then the others by seq"
    );
}

#[tokio::test]
async fn a_pod_failing_on_is_evicted_after_evict_after_attempts_and_the_rest_converge() {
    let zk = ZkServer::start();
    let settings = "settings: { min_size: 2, damper: 200ms, evict_after: 2, timeout: 10s }";
    let good = || pod_yaml("e2e5", "web", settings, PEERS);
    let a = start(&zk, good(), None);
    let b = start(&zk, good(), None);
    converged(&[&a, &b], 2, "2 good pods configured").await;
    let bad = never_ready("e2e5", settings);
    let c = start(&zk, bad, None);
    let lead = leader(&[&a, &b]).await;
    eventually(T, "the leader to evict the failing pod", || async {
        let s = cluster_status(lead).await;
        s.starts_with("configured: 2 pods, generation 2").then_some(())
    })
    .await;
    let two = converged(&[&a, &b], 2, "the good pods configured without the failing one").await;
    // Failed attempts write no snapshot: the one that succeeds is still generation 2.
    assert!(two.starts_with("gen 2\n"), "{two}");
    assert!(entries(&two).iter().all(|x| x.1 != c.ip), "{two}");
}

#[tokio::test]
async fn the_leader_runs_apply_once_per_configuration_and_reports_its_probe() {
    let zk = ZkServer::start();
    let yaml = || {
        pod_yaml(
            "e2e6",
            "web",
            "settings:\n  min_size: 2\n  damper: 200ms\n  \
             apply: { command: \"cp $OCHOPOD_CLUSTER_FILE {{env.OCHOPOD_HOME}}/applied-{{cluster.generation}}.json\" }\n  \
             probe: { command: \"echo checking; echo {{cluster.size}} pods answer, seq {{pod.seq}} leads\", every: 200ms }",
            PEERS,
        )
    };
    let a = start(&zk, yaml(), None);
    let b = start(&zk, yaml(), None);
    converged(&[&a, &b], 2, "2 pods configured").await;
    let lead = leader(&[&a, &b]).await;
    let seq = info(lead).await.unwrap()["seq"].clone();
    let line = format!("2 pods answer, seq {seq} leads");
    eventually(T, "the probe's last line as the leader's status", || async {
        (cluster_status(lead).await == line).then_some(())
    })
    .await;
    let applied: Value =
        serde_json::from_str(&read(&lead.home_file("applied-1.json"))).expect("apply ran with the map");
    assert_eq!(applied["generation"], 1);
    assert_eq!(applied["key"], info(lead).await.unwrap()["uuid"]);
    assert_eq!(applied["pods"].as_object().unwrap().len(), 2);
    let other = if std::ptr::eq(lead, &a) { &b } else { &a };
    assert!(
        !other.home_file("applied-1.json").exists(),
        "apply runs on the leader only"
    );
}

#[tokio::test]
async fn a_draining_leader_stops_only_after_the_others_were_configured_without_it() {
    let zk = ZkServer::start();
    // `process.stop.drain`, and a tear_down hook that notes when the process is being stopped.
    let yaml = || {
        let dir = pod_yaml("e2e7", "web", "settings: { min_size: 3, damper: 200ms }", PEERS);
        let text = std::fs::read_to_string(dir.path()).unwrap();
        let text = text
            .replace("  stop: { grace: 2s }", "  stop: { grace: 2s, drain: 20s }")
            .replace(
                "hooks:\n",
                "hooks:\n  tear_down: \"touch {{env.OCHOPOD_HOME}}/tear_down\"\n",
            );
        std::fs::write(dir.path(), text).unwrap();
        dir
    };
    let mut pods = vec![
        start(&zk, yaml(), None),
        start(&zk, yaml(), None),
        start(&zk, yaml(), None),
    ];
    converged(&pods.iter().collect::<Vec<_>>(), 3, "3 pods configured").await;
    let lead = leader(&pods.iter().collect::<Vec<_>>()).await.ip.clone();
    let mut leaving = pods.remove(pods.iter().position(|m| m.ip == lead).unwrap());
    eventually(T, "the leader at rest", || async {
        cluster_status(&leaving)
            .await
            .starts_with("configured: 3 pods")
            .then_some(())
    })
    .await;
    // Stop the leader itself: it hands over, and its process stops only once the others were
    // configured without it.
    let started = std::time::Instant::now();
    leaving.pod.signal(Signal::SIGTERM);
    leaving.pod.wait_exit(T).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the drain ended with the configuration, not its timeout"
    );
    let rest: Vec<&Member> = pods.iter().collect();
    let two = converged(&rest, 2, "the others configured without the leaving pod").await;
    assert!(entries(&two).iter().all(|x| x.1 != lead), "{two}");
    let stopped = std::fs::metadata(leaving.home_file("tear_down"))
        .expect("tear_down ran")
        .modified()
        .unwrap();
    for m in &rest {
        let configured = std::fs::metadata(m.home_file("peers.txt"))
            .unwrap()
            .modified()
            .unwrap();
        assert!(
            configured <= stopped,
            "reconfigured before the leaving pod's process was stopped"
        );
    }
}

#[tokio::test]
async fn a_leader_behind_the_pods_generation_starts_above_it() {
    let zk = ZkServer::start();
    let yaml = || pod_yaml("e2e8", "web", "settings: { min_size: 2, damper: 200ms }", PEERS);
    let a = start(&zk, yaml(), None);
    let b = start(&zk, yaml(), None);
    converged(&[&a, &b], 2, "2 pods configured").await;
    let c = start(&zk, yaml(), None);
    let three = converged(&[&a, &b, &c], 3, "3 pods configured").await;
    assert!(three.starts_with("gen 2\n"), "{three}");
    let lead = leader(&[&a, &b, &c]).await;
    eventually(T, "the leader at rest", || async {
        cluster_status(lead)
            .await
            .starts_with("configured: 3 pods, generation 2")
            .then_some(())
    })
    .await;
    // The snapshot is lost (an operator, a restored ZooKeeper): the leader would say generation 1.
    let obs = zk.observer().await;
    obs.delete("/ochopod/clusters/e2e8.web/snapshot", None)
        .await
        .unwrap();
    let d = start(&zk, yaml(), None);
    let four = converged(&[&a, &b, &c, &d], 4, "4 pods configured").await;
    assert!(
        four.starts_with("gen 3\n"),
        "the generation keeps growing: {four}"
    );
}

#[tokio::test]
async fn a_veto_postpones_the_configuration_and_full_shutdown_does_not_hold_pods() {
    let zk = ZkServer::start();
    let gate = tempfile::tempdir().unwrap();
    let open = gate.path().join("open");
    let yaml = || {
        let dir = pod_yaml(
            "e2e9",
            "web",
            "settings: { min_size: 2, damper: 200ms, full_shutdown: true }",
            PEERS,
        );
        let text = std::fs::read_to_string(dir.path()).unwrap().replace(
            "hooks:\n",
            &format!("hooks:\n  can_configure: \"test -e {}\"\n", open.display()),
        );
        std::fs::write(dir.path(), text).unwrap();
        dir
    };
    let a = start(&zk, yaml(), None);
    let b = start(&zk, yaml(), None);
    let lead = leader(&[&a, &b]).await;
    eventually(T, "the leader to report the veto", || async {
        cluster_status(lead)
            .await
            .starts_with("configuration failed: vetoed by seq")
            .then_some(())
    })
    .await;
    assert_eq!(peers(&a), "");
    std::fs::write(&open, "").unwrap();
    converged(&[&a, &b], 2, "2 pods configured once the veto is lifted").await;
    // full_shutdown: every pod is turned off by the leader before the new map; that `off` must
    // not hold them (an operator's would), or the third pod would never be configured with them.
    let c = start(&zk, yaml(), None);
    let three = converged(&[&a, &b, &c], 3, "3 pods configured through a full shutdown").await;
    assert!(three.starts_with("gen 2\n"), "{three}");
    // The files are written before each pod's `on` finishes: wait for the pods to report it.
    for m in [&a, &b, &c] {
        eventually(T, "every pod running, none held", || async {
            let i = info(m).await?;
            (i["pod_state"] == "running" && i["process"] == "running" && i["generation"] == 2).then_some(())
        })
        .await;
    }
}
