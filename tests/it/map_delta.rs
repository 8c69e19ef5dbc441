//! Map deltas (SPEC §7) end to end: real pods, a real ZooKeeper, the leader's real HTTP calls.
//! Once a pod accepted a map of the leader (`check`) or applied it (`on`), later bodies reach it
//! as deltas (a first configuration sends each pod the whole map once); a pod that cannot
//! rebuild one (it lost its map) answers 409 `"need": "full"` and gets the whole map; a whole map
//! without the newer fields (an older leader's) is still taken.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ochopod::model::{delta, ClusterMap};
use serde_json::{json, Value};

use crate::cluster::{converged, info, leader, peers, pod_yaml, start, Member, PEERS, T};
use crate::harness::eventually;
use crate::harness::pod::{read, Pod, PodDir, PodOptions};
use crate::harness::zk::ZkServer;

/// `ochopod_cluster_map_bytes_sent_total` on `m` (0 while absent).
async fn bytes_sent(m: &Member) -> u64 {
    let (_, text) = m.get("/metrics").await;
    text.as_str()
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("ochopod_cluster_map_bytes_sent_total{"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// The map a pod applied last (its `cluster.json`).
fn applied(m: &Member) -> ClusterMap {
    serde_json::from_str(&read(&m.home_file(".ochopod/cluster.json"))).unwrap()
}

/// Waits until the leader says it configured `n` pods at `generation`.
async fn at_rest(lead: &Member, n: usize, generation: u64) {
    let want = format!("configured: {n} pods, generation {generation}");
    eventually(T, &want, || async {
        let status = info(lead).await?["cluster_status"].as_str()?.to_string();
        status.starts_with(&want).then_some(())
    })
    .await;
}

fn yaml() -> PodDir {
    pod_yaml(
        "delta1",
        "web",
        "settings: { min_size: 4, damper: 300ms, timeout: 10s }",
        PEERS,
    )
}

#[tokio::test]
async fn a_pod_joining_sends_deltas_to_the_others_and_every_pod_ends_on_the_same_map() {
    let zk = ZkServer::start();
    let token = Some("s3cret");
    let mut pods: Vec<Member> = (0..4).map(|_| start(&zk, yaml(), token)).collect();
    let four = converged(&pods.iter().collect::<Vec<_>>(), 4, "4 pods configured").await;
    let lead = leader(&pods.iter().collect::<Vec<_>>()).await;
    at_rest(lead, 4, 1).await;
    let before = bytes_sent(lead).await;
    // The first configuration of the leadership: the whole map once per pod, at `check`; `on`
    // and `ok` are empty deltas from it (three whole maps per pod before).
    let maps: Vec<ClusterMap> = pods.iter().map(applied).collect();
    let full = serde_json::to_vec(&maps[0]).unwrap().len() as u64;
    assert!(
        before >= 4 * full * 9 / 10 && before < 2 * 4 * full,
        "the first configuration of 4 pods sent {before} bytes; a whole map is {full} bytes"
    );
    for (m, map) in pods.iter().zip(&maps) {
        assert_eq!(delta::digest(map), delta::digest(&maps[0]), "{}", m.ip);
        assert_eq!(map.me().map(|p| p.ip.clone()), Some(m.ip.clone()));
        assert_eq!(peers(m), four, "every pod rendered the same peers");
    }
    let lead_ip = lead.ip.clone();

    pods.push(start(&zk, yaml(), token));
    let all: Vec<&Member> = pods.iter().collect();
    let five = converged(&all, 5, "5 pods configured alike").await;
    assert!(five.starts_with("gen 2\n"), "{five}");
    let lead = all.iter().find(|m| m.ip == lead_ip).unwrap();
    at_rest(lead, 5, 2).await;
    let sent = bytes_sent(lead).await - before;

    // Every pod holds the same map, the ones that rebuilt it from deltas as the newcomer that got
    // it whole: same digest, and the same key for each.
    let maps: Vec<ClusterMap> = all.iter().map(|m| applied(m)).collect();
    let digest = delta::digest(&maps[0]);
    for (m, map) in all.iter().zip(&maps) {
        assert_eq!(delta::digest(map), digest, "{}", m.ip);
        assert_eq!(map.generation, 2);
        assert_eq!(map.me().map(|p| p.ip.clone()), Some(m.ip.clone()));
        assert_eq!(peers(m), five);
        assert_eq!(info(m).await.unwrap()["generation"], 2);
    }
    // What a whole map costs: 5 pods, three calls each (check, on, ok), 15 whole maps before.
    let full = serde_json::to_vec(&maps[0]).unwrap().len() as u64;
    assert!(
        sent * 2 < 15 * full,
        "one pod joining sent {sent} bytes; 15 whole maps are {} bytes",
        15 * full
    );
}

#[tokio::test]
async fn a_pod_that_lost_its_map_asks_for_the_whole_map_and_is_configured() {
    let zk = ZkServer::start();
    let mut pods: Vec<Member> = (0..4).map(|_| start(&zk, yaml(), None)).collect();
    converged(&pods.iter().collect::<Vec<_>>(), 4, "4 pods configured").await;
    let lead_ip = leader(&pods.iter().collect::<Vec<_>>()).await.ip.clone();
    let lead = pods.iter().find(|m| m.ip == lead_ip).unwrap();
    at_rest(lead, 4, 1).await;

    // A follower's ochopod restarts on the same volume: the same uuid, no map in memory. The
    // leader remembers it applied generation 1 and sends it a delta; it answers 409, then takes
    // the whole map.
    let i = pods.iter().position(|m| m.ip != lead_ip).unwrap();
    let Member { pod, _dir: dir } = pods.remove(i);
    let uuid = info_of(&pod).await["uuid"].clone();
    let mut pod = pod;
    pod.kill_hard();
    let mut opts = PodOptions {
        args: Vec::new(),
        ..PodOptions::default()
    };
    opts.env.insert("OCHOPOD_ZK".into(), zk.connect_string());
    opts.env.insert("OCHOPOD_ZK_SESSION_TIMEOUT".into(), "2s".into());
    let back = Member {
        pod: Pod::start(&dir, opts),
        _dir: dir,
    };
    assert_eq!(info_of(&back.pod).await["uuid"], uuid, "the same pod");
    pods.push(back);
    let all: Vec<&Member> = pods.iter().collect();
    // Every pod renders the same peers and holds the same map. Read together: an `on` writes
    // the rendered files, then cluster.json, so a pod caught between the two shows the new
    // peers with the old map for a moment.
    eventually(
        T,
        "the restarted pod configured with the others, on one map",
        || async {
            let text = peers(all[3]);
            let same = all.iter().all(|m| peers(m) == text);
            let maps: Vec<ClusterMap> = all.iter().map(|m| applied(m)).collect();
            let one_map = maps.iter().all(|m| delta::digest(m) == delta::digest(&maps[0]));
            (same && one_map && text.lines().count() == 5 && !text.starts_with("gen 1\n")).then_some(())
        },
    )
    .await;
}

async fn info_of(pod: &Pod) -> Value {
    pod.info().await
}

/// A standalone pod (no leader): maps posted by hand, as an older leader or a delta would.
#[tokio::test]
async fn a_pod_takes_old_whole_maps_and_deltas_from_its_map_and_asks_for_the_whole_map_otherwise() {
    let dir = PodDir::new(
        "cluster: api\nports: [7000]\nprocess:\n  command: [\"sleep\", \"60\"]\n  stop: { grace: 2s }\n",
    );
    let pod = Pod::start(&dir, PodOptions::default());
    let me = pod
        .wait_info("running", Duration::from_secs(20), |i| i["process"] == "running")
        .await;
    let uuid = me["uuid"].as_str().unwrap().to_string();
    let mine = crate::runner::pod_json(&me);
    // An older leader's body: no version, no epoch, no removed_pods.
    let old = json!({"generation": 5, "key": uuid, "pods": {uuid.clone(): mine}, "added": [], "removed": [], "dependencies": {}});
    let (status, body) = pod.post("/control/check", &old.to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deltas"], true, "the pod says it takes deltas");
    assert_eq!(pod.post("/control/on", &old.to_string()).await.0, 200);
    assert_eq!(pod.info().await["generation"], 5);

    let base: ClusterMap = serde_json::from_value(old).unwrap();
    let mut next = base.clone();
    next.generation = 6;
    next.version = ochopod::model::WIRE_VERSION;
    next.dependencies.insert("db".into(), Default::default());
    let mut d = delta::make(&base, &delta::digest(&base), &next, &delta::digest(&next));
    d.key = uuid.clone();
    let (status, body) = pod.post("/control/on", &serde_json::to_string(&d).unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(pod.info().await["generation"], 6);
    let applied: ClusterMap = serde_json::from_str(&read(&dir.home().join(".ochopod/cluster.json"))).unwrap();
    assert_eq!(applied, next, "the map rebuilt from the delta is the one meant");

    // The map of the last `check` is a base too: `on` as an empty delta from it applies it.
    let seventh = ClusterMap {
        generation: 7,
        ..next.clone()
    };
    let (status, body) = pod
        .post("/control/check", &serde_json::to_string(&seventh).unwrap())
        .await;
    assert_eq!(status, 200, "{body}");
    let mut same = delta::make(
        &seventh,
        &delta::digest(&seventh),
        &seventh,
        &delta::digest(&seventh),
    );
    same.key = uuid.clone();
    for call in ["/control/on", "/control/ok"] {
        let (status, body) = pod.post(call, &serde_json::to_string(&same).unwrap()).await;
        assert_eq!(status, 200, "{call}: {body}");
    }
    assert_eq!(pod.info().await["generation"], 7);

    // The first delta again: its base (generation 5) is neither the applied map nor the last
    // `check`'s.
    let (status, body) = pod
        .post("/control/check", &serde_json::to_string(&d).unwrap())
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["need"], "full", "{body}");
    assert_eq!(pod.info().await["generation"], 7, "nothing changed");
    // A broken one is a 400, not a request for the whole map.
    let (status, body) = pod.post("/control/on", r#"{"base": 1}"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.get("need").is_none(), "{body}");
}
