//! `process` options that change what an `on` or an `off` does to the running process (SPEC §3,
//! docs/pod-yaml.md "What an `on` does"): `strict`, `reload.on_failure: keep`, `stop.grace: 0s`.
//! Standalone pods, real processes, real HTTP.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::eventually;
use crate::harness::pod::{read, Pod, PodDir, PodOptions};
use crate::runner::pod_json;

const T: Duration = Duration::from_secs(20);

/// A cluster map of `generation` for the pod of `info`, alone.
fn map_for(info: &Value, generation: u64) -> String {
    let uuid = info["uuid"].as_str().expect("uuid");
    json!({"generation": generation, "key": uuid, "pods": {uuid: pod_json(info)}}).to_string()
}

/// Starts the pod and returns it with its first `/info` once its process runs.
async fn running(dir: &PodDir) -> (Pod, Value) {
    let pod = Pod::start(dir, PodOptions::default());
    let info = pod
        .wait_info("running", T, |i| i["process"] == "running" && i["pid"].is_u64())
        .await;
    (pod, info)
}

fn sleeper(process_extra: &str) -> PodDir {
    PodDir::new(&format!(
        "cluster: proc\nprocess:\n  command: [\"sleep\", \"60\"]\n{process_extra}"
    ))
}

#[tokio::test]
async fn strict_restarts_on_every_on_even_with_the_same_map() {
    let dir = sleeper("  strict: true\n");
    let (pod, info) = running(&dir).await;
    let (status, check) = pod.post("/control/check", &map_for(&info, 2)).await;
    assert_eq!(status, 200, "{check}");
    assert_eq!(check["action"], "restart", "{check}");
    assert_eq!(pod.post("/control/on", &map_for(&info, 2)).await.0, 200);
    let second = pod.info().await;
    assert_ne!(second["pid"], info["pid"], "strict: a new process");
    // The very same map again (and an operator's empty on): a restart each time.
    assert_eq!(pod.post("/control/on", &map_for(&info, 2)).await.0, 200);
    let third = pod.info().await;
    assert_ne!(third["pid"], second["pid"], "the same map again: restarted");
    assert_eq!(third["process"], "running");
    assert_eq!(third["generation"], 2);
}

#[tokio::test]
async fn without_strict_the_same_map_keeps_the_process() {
    // The contrast of the test above: what `strict` changes.
    let dir = sleeper("");
    let (pod, info) = running(&dir).await;
    let (_, check) = pod.post("/control/check", &map_for(&info, 2)).await;
    assert_eq!(check["action"], "keep", "{check}");
    assert_eq!(pod.post("/control/on", &map_for(&info, 2)).await.0, 200);
    assert_eq!(pod.post("/control/on", &map_for(&info, 2)).await.0, 200);
    assert_eq!(pod.info().await["pid"], info["pid"], "nothing changed: kept");
}

#[tokio::test]
async fn a_failed_reload_with_on_failure_keep_keeps_the_process_and_the_new_files() {
    let dir = PodDir::new(
        r#"
cluster: keep
process:
  command: ["sleep", "60"]
  reload: { command: "echo {{cluster.generation}} >> {{env.OCHOPOD_HOME}}/reloads; exit 3", on_failure: keep }
templates:
  - source: f.hbs
    dest: "{{env.OCHOPOD_HOME}}/f"
"#,
    )
    .with_file("f.hbs", "generation {{cluster.generation}}\n");
    let (pod, info) = running(&dir).await;
    let (_, check) = pod.post("/control/check", &map_for(&info, 2)).await;
    assert_eq!(check["action"], "reload", "{check}");
    assert_eq!(pod.post("/control/on", &map_for(&info, 2)).await.0, 200);
    assert_eq!(
        read(&pod.home_file("reloads")),
        "2\n",
        "the reload command ran and failed"
    );
    let after = pod.info().await;
    assert_eq!(after["pid"], info["pid"], "on_failure: keep: the same process");
    assert_eq!(after["restarts"], info["restarts"]);
    assert_eq!(after["process"], "running");
    assert_eq!(after["generation"], 2);
    assert_eq!(read(&pod.home_file("f")), "generation 2\n", "the new files stay");
}

#[tokio::test]
async fn stop_grace_0s_never_kills_the_process() {
    // The process ignores TERM until told to go, then exits 7: with `grace: 0s` ochopod waits
    // for it however long it takes. A KILL would end it as 137 before it is told.
    let dir = PodDir::new(
        r#"
cluster: patient
process:
  command: "trap 'touch {{env.OCHOPOD_HOME}}/termed' TERM; while [ ! -f {{env.OCHOPOD_HOME}}/go ]; do sleep 0.05; done; exit 7"
  stop: { signal: TERM, grace: 0s }
"#,
    );
    let (pod, info) = running(&dir).await;
    let off = tokio::spawn({
        let url = pod.url("/control/off");
        async move {
            reqwest::Client::new()
                .post(url)
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    eventually(T, "the process to get TERM", || async {
        pod.home_file("termed").exists().then_some(())
    })
    .await;
    let i = pod.info().await;
    assert_eq!(i["process"], "terminating", "{i}");
    assert_eq!(i["pid"], info["pid"]);
    assert!(!off.is_finished(), "off waits for the process");
    std::fs::write(pod.home_file("go"), "").expect("touch go");
    assert_eq!(off.await.expect("join").expect("off answered"), 200);
    let stopped = pod.wait_info("stopped", T, |i| i["process"] == "stopped").await;
    assert_eq!(stopped["last_exit"]["code"], 7, "exited on its own: {stopped}");
}

#[tokio::test]
async fn hooks_and_checks_get_the_pod_in_ochopod_pod_json_and_the_map_in_a_file() {
    // SPEC §4: hooks and commands get the map in $OCHOPOD_CLUSTER_FILE and the pod in
    // $OCHOPOD_POD_JSON; checks too (docs/pod-yaml.md).
    let dir = PodDir::new(
        r#"
cluster: podjson
process:
  command: ["sleep", "60"]
checks:
  ready: { command: "echo \"$OCHOPOD_POD_JSON\" > {{env.OCHOPOD_HOME}}/check-pod.json; cp \"$OCHOPOD_CLUSTER_FILE\" {{env.OCHOPOD_HOME}}/check-map.json", every: 100ms, timeout: 5s }
hooks:
  pre_start: "echo \"$OCHOPOD_POD_JSON\" > {{env.OCHOPOD_HOME}}/hook-pod.json; cp \"$OCHOPOD_CLUSTER_FILE\" {{env.OCHOPOD_HOME}}/hook-map.json"
"#,
    );
    let (pod, _) = running(&dir).await;
    let info = pod.wait_info("ready", T, |i| i["ready"] == true).await;
    for who in ["hook", "check"] {
        let text = read(&pod.home_file(&format!("{who}-pod.json")));
        let me: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{who}: {e}: {text:?}"));
        assert_eq!(me["uuid"], info["uuid"], "{who}: {me}");
        assert_eq!(me["cluster"], "podjson", "{who}: {me}");
        let text = read(&pod.home_file(&format!("{who}-map.json")));
        let map: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{who}: {e}: {text:?}"));
        assert_eq!(map["key"], info["uuid"], "{who}: {map}");
        let uuid = info["uuid"].as_str().expect("uuid");
        assert!(map["pods"][uuid].is_object(), "{who}: {map}");
    }
}
