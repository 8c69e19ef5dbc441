//! The rest of the process life: sanity checks, `start: false`, `linger`, reload by command,
//! signal forwarding, hooks' order, JSON logs.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::harness::eventually;
use crate::harness::pod::{read, Pod, PodDir, PodOptions};

const T: Duration = Duration::from_secs(20);

#[tokio::test]
async fn failing_sanity_checks_turn_the_pod_off_and_mark_it_failed() {
    let dir = PodDir::new(
        r#"
cluster: sane
process:
  command: ["sleep", "60"]
checks:
  sanity: { command: "test ! -f {{env.OCHOPOD_HOME}}/sick", every: 100ms, failures: 3 }
"#,
    );
    let pod = Pod::start(&dir, PodOptions::default());
    pod.wait_info("running", T, |i| i["process"] == "running").await;
    std::fs::write(pod.home_file("sick"), "").expect("touch");
    let info = pod.wait_info("failed", T, |i| i["pod_state"] == "failed").await;
    assert_eq!(info["process"], "stopped");
    assert!(info["status"].as_str().unwrap_or("").contains("sanity"), "{info}");
    assert_eq!(pod.get("/readyz").await.0, 503);
    // An operator's on clears the failure once the check passes again.
    std::fs::remove_file(pod.home_file("sick")).expect("rm");
    assert_eq!(pod.post("/control/on", "").await.0, 200);
    let info = pod.info().await;
    assert_eq!(
        (info["pod_state"].as_str(), info["process"].as_str()),
        (Some("running"), Some("running"))
    );
}

#[tokio::test]
async fn start_false_configures_but_waits_for_an_explicit_on() {
    let dir = PodDir::new(
        r#"
cluster: lazy
process:
  command: ["sleep", "60"]
  start: false
templates:
  - source: f.hbs
    dest: "{{env.OCHOPOD_HOME}}/f"
"#,
    )
    .with_file("f.hbs", "seq={{pod.seq}}\n");
    let pod = Pod::start(&dir, PodOptions::default());
    let info = pod.wait_info("configured", T, |i| i["generation"] == 1).await;
    assert_eq!(info["process"], "stopped");
    assert_eq!(
        read(&pod.home_file("f")),
        "seq=1\n",
        "rendered although not started"
    );
    assert_eq!(pod.post("/control/on", "").await.0, 200);
    assert_eq!(pod.info().await["process"], "running");
}

#[tokio::test]
async fn linger_keeps_the_pod_up_after_the_process_ends_and_answers_410() {
    let dir = PodDir::new(
        "cluster: linger\nprocess:\n  command: \"exit 4\"\n  restart: { policy: never }\n  linger: true\n",
    );
    let pod = Pod::start(&dir, PodOptions::default());
    let info = pod.wait_info("dead", T, |i| i["process"] == "dead").await;
    assert_eq!(info["last_exit"]["code"], 4);
    for path in ["/control/on", "/control/off", "/control/kill", "/control/ok"] {
        assert_eq!(pod.post(path, "").await.0, 410, "{path}");
    }
    assert_eq!(pod.get("/healthz").await.0, 200, "still up for inspection");
}

#[tokio::test]
async fn a_failed_reload_command_restarts_when_asked_to() {
    let dir = PodDir::new(
        r#"
cluster: reloadcmd
process:
  command: ["sleep", "60"]
  reload: { command: "test -f {{env.OCHOPOD_HOME}}/reload-ok", on_failure: restart }
templates:
  - source: f.hbs
    dest: "{{env.OCHOPOD_HOME}}/f"
"#,
    )
    .with_file("f.hbs", "generation {{cluster.generation}}\n");
    let pod = Pod::start(&dir, PodOptions::default());
    let info = pod.wait_info("running", T, |i| i["process"] == "running").await;
    let uuid = info["uuid"].as_str().expect("uuid");
    let map = |g: u64| {
        serde_json::json!({"generation": g, "key": uuid, "pods": {uuid: crate::runner::pod_json(&info)}})
            .to_string()
    };
    std::fs::write(pod.home_file("reload-ok"), "").expect("touch");
    assert_eq!(pod.post("/control/on", &map(2)).await.0, 200);
    let kept = pod.info().await;
    assert_eq!(
        kept["pid"], info["pid"],
        "the reload command succeeded: same process"
    );
    std::fs::remove_file(pod.home_file("reload-ok")).expect("rm");
    assert_eq!(pod.post("/control/on", &map(3)).await.0, 200);
    let restarted = pod.info().await;
    assert_ne!(
        restarted["pid"], info["pid"],
        "the reload command failed: restarted"
    );
    assert_eq!(read(&pod.home_file("f")), "generation 3\n");
}

#[tokio::test]
async fn hup_usr1_and_usr2_are_forwarded_to_the_process() {
    let dir = PodDir::new(
        r#"
cluster: signals
process:
  command: |
    trap 'echo HUP >> {{env.OCHOPOD_HOME}}/got' HUP
    trap 'echo USR1 >> {{env.OCHOPOD_HOME}}/got' USR1
    trap 'echo USR2 >> {{env.OCHOPOD_HOME}}/got' USR2
    touch {{env.OCHOPOD_HOME}}/trapped
    while :; do sleep 0.05; done
"#,
    );
    let pod = Pod::start(&dir, PodOptions::default());
    eventually(T, "traps set", || async {
        pod.home_file("trapped").exists().then_some(())
    })
    .await;
    for (sig, name) in [
        (Signal::SIGHUP, "HUP"),
        (Signal::SIGUSR1, "USR1"),
        (Signal::SIGUSR2, "USR2"),
    ] {
        pod.signal(sig);
        eventually(T, name, || async {
            read(&pod.home_file("got")).contains(name).then_some(())
        })
        .await;
    }
    assert_eq!(pod.info().await["restarts"], 0, "ochopod itself kept running");
}

#[tokio::test]
async fn hooks_run_in_order_and_initialize_only_once_per_state_dir() {
    let dir = PodDir::new(
        r#"
cluster: hooks
process:
  command: ["sleep", "60"]
hooks:
  initialize: "echo initialize >> {{env.OCHOPOD_HOME}}/trail"
  pre_start: "echo pre_start $OCHOPOD_CLUSTER_FILE >> {{env.OCHOPOD_HOME}}/trail"
  tear_down: "echo tear_down >> {{env.OCHOPOD_HOME}}/trail"
  finalize: "echo finalize >> {{env.OCHOPOD_HOME}}/trail"
"#,
    );
    let pod = Pod::start(&dir, PodOptions::default());
    pod.wait_info("running", T, |i| i["process"] == "running").await;
    assert_eq!(pod.post("/control/off", "").await.0, 200);
    assert_eq!(pod.post("/control/on", "").await.0, 200);
    let mut pod = pod;
    assert_eq!(pod.post("/control/kill", "").await.0, 200);
    assert_eq!(pod.wait_exit(T).await, 0);
    let trail = read(&dir.home().join("trail"));
    let steps: Vec<&str> = trail
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(
        steps,
        [
            "initialize",
            "pre_start",
            "tear_down",
            "pre_start",
            "tear_down",
            "finalize"
        ],
        "{trail}"
    );
    assert!(trail.contains(".json"), "hooks get OCHOPOD_CLUSTER_FILE: {trail}");
}

#[tokio::test]
async fn json_logs_on_request() {
    let dir = PodDir::new("cluster: jsonlog\nprocess:\n  command: \"sleep 1\"\n");
    let mut opts = PodOptions::default();
    opts.env.insert("OCHOPOD_LOG_FORMAT".into(), "json".into());
    let mut pod = Pod::start(&dir, opts);
    pod.wait_info("running", T, |i| i["process"] == "running").await;
    let (_, log) = pod.get("/log").await;
    assert_eq!(pod.wait_exit(T).await, 0);
    let lines: Vec<String> = serde_json::from_value(log["lines"].clone()).unwrap_or_default();
    let ours: Vec<&String> = lines.iter().filter(|l| l.starts_with('{')).collect();
    assert!(!ours.is_empty(), "{lines:?}");
    for l in ours {
        let v: serde_json::Value = serde_json::from_str(l).expect("a JSON log line");
        assert!(v["level"].is_string() && v["fields"].is_object(), "{v}");
    }
}

#[tokio::test]
async fn an_on_whose_start_fails_is_not_a_success() {
    // The leader must not count a pod as configured when pre_start (or the spawn) failed.
    let dir = PodDir::new(
        "cluster: nostart\nprocess:\n  command: [\"sleep\", \"60\"]\nhooks:\n  pre_start: \"test -f {{env.OCHOPOD_HOME}}/go\"\n",
    );
    let pod = Pod::start(&dir, PodOptions::default());
    pod.wait_info("a failed start", T, |i| i["restarts"].as_u64() >= Some(1))
        .await;
    assert_eq!(pod.post("/control/off", "").await.0, 200);
    let (status, body) = pod.post("/control/on", "").await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("pre_start"),
        "{body}"
    );
    std::fs::write(pod.home_file("go"), "").expect("touch");
    assert_eq!(pod.post("/control/on", "").await.0, 200);
    assert_eq!(pod.info().await["process"], "running");
}
