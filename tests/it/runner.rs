//! The pod runner end to end: templates rendered, the process supervised, exit codes.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::harness::pod::{alive, read, Pod, PodDir, PodOptions};

const T: Duration = Duration::from_secs(20);

#[tokio::test]
async fn renders_templates_and_runs_the_process_standalone() {
    let dir = PodDir::new(
        r#"
cluster: hello
ports: [9000]
process:
  command: "cat {{env.OCHOPOD_HOME}}/greeting.txt; exec sleep 30"
templates:
  - source: greeting.hbs
    dest: "{{env.OCHOPOD_HOME}}/greeting.txt"
    mode: "0600"
"#,
    )
    .with_file(
        "greeting.hbs",
        "hello from #{{pod.seq}} at {{pod.ip}}:{{port pod 9000}} of {{cluster.size}} <&>\n",
    );
    let pod = Pod::start(&dir, PodOptions::default());
    let info = pod
        .wait_info("the process to run", T, |i| i["process"] == "running")
        .await;
    assert_eq!(info["generation"], 1);
    assert_eq!(info["state"], "standalone");
    let text = read(&pod.home_file("greeting.txt"));
    assert_eq!(text, format!("hello from #1 at {}:9000 of 1 <&>\n", pod.ip));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(pod.home_file("greeting.txt"))
        .expect("rendered")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let (_, log) = pod.get("/log?lines=50").await;
    let lines: Vec<String> = serde_json::from_value(log["lines"].clone()).expect("lines");
    assert!(
        lines.iter().any(|l| l.contains("hello from #1")),
        "process output in /log: {lines:?}"
    );
}

async fn exit_code_of(command: &str, policy: &str) -> i32 {
    let dir = PodDir::new(&format!(
        "cluster: exits\nprocess:\n  command: {command:?}\n  restart: {{ policy: {policy} }}\n"
    ));
    let mut pod = Pod::start(&dir, PodOptions::default());
    pod.wait_exit(T).await
}

#[tokio::test]
async fn exits_with_the_process_code_when_it_ends_for_good() {
    assert_eq!(exit_code_of("exit 0", "on-failure").await, 0);
    assert_eq!(exit_code_of("exit 3", "never").await, 3);
    assert_eq!(exit_code_of("kill -9 $$", "never").await, 128 + 9);
}

#[tokio::test]
async fn sigterm_stops_the_process_and_exits_with_its_code() {
    let dir = PodDir::new("cluster: term\nprocess:\n  command: [\"sleep\", \"60\"]\n");
    let mut pod = Pod::start(&dir, PodOptions::default());
    let info = pod
        .wait_info("the process to run", T, |i| i["process"] == "running")
        .await;
    let child = info["pid"].as_u64().expect("pid") as u32;
    pod.signal(Signal::SIGTERM);
    assert_eq!(pod.wait_exit(T).await, 128 + 15, "sleep dies of TERM: 143");
    assert!(!alive(child));
}

#[tokio::test]
async fn restarts_child_with_backoff_growing_then_resetting() {
    // Each run appends a timestamp; the first 4 runs crash at once, the 5th runs past the
    // ceiling (stable) then crashes, the 6th crashes at once: its delay is back at the floor.
    let dir = PodDir::new(
        r#"
cluster: crashy
process:
  command: |
    n=$(cat {{env.OCHOPOD_HOME}}/runs 2>/dev/null | wc -l)
    date +%s%N >> {{env.OCHOPOD_HOME}}/runs
    if [ "$n" -eq 4 ]; then sleep 1.2; fi
    if [ "$n" -ge 6 ]; then exec sleep 60; fi
    exit 1
  restart: { policy: always, backoff: 100ms, max_backoff: 800ms }
"#,
    );
    let pod = Pod::start(&dir, PodOptions::default());
    let runs: Vec<u128> = crate::harness::eventually(Duration::from_secs(30), "7 runs", || async {
        let runs: Vec<u128> = read(&pod.home_file("runs"))
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        (runs.len() >= 7).then_some(runs)
    })
    .await;
    let gaps: Vec<u128> = runs.windows(2).map(|w| (w[1] - w[0]) / 1_000_000).collect();
    // Gaps 0..3 are the delays 100, 200, 400, 800 ms (plus spawn time); gap 4 includes the 1.2 s
    // run; gap 5 follows a stable run: back to ~100 ms.
    assert!(gaps[0] >= 90 && gaps[0] < 400, "first delay ~100ms: {gaps:?}");
    assert!(gaps[1] >= 190 && gaps[1] > gaps[0], "growing: {gaps:?}");
    assert!(gaps[2] >= 390 && gaps[2] > gaps[1], "growing: {gaps:?}");
    assert!(gaps[3] >= 790, "ceiling reached: {gaps:?}");
    assert!(
        gaps[5] >= 90 && gaps[5] < 600,
        "reset after a stable run: {gaps:?}"
    );
}

#[tokio::test]
async fn stop_sends_kill_after_grace_to_the_whole_group() {
    // The shell ignores TERM and so does its background grandchild; both must be gone.
    let dir = PodDir::new(
        r#"
cluster: stubborn
process:
  command: |
    trap '' TERM
    sh -c "trap '' TERM; echo \$\$ > {{env.OCHOPOD_HOME}}/grandchild; while :; do sleep 0.1; done" &
    while :; do sleep 0.1; done
  stop: { signal: TERM, grace: 500ms }
"#,
    );
    let mut pod = Pod::start(&dir, PodOptions::default());
    let info = pod
        .wait_info("the process to run", T, |i| i["process"] == "running")
        .await;
    let child = info["pid"].as_u64().expect("pid") as u32;
    let grandchild: u32 = crate::harness::eventually(T, "the grandchild's pid", || async {
        read(&pod.home_file("grandchild")).trim().parse().ok()
    })
    .await;
    let started = std::time::Instant::now();
    pod.signal(Signal::SIGTERM);
    assert_eq!(pod.wait_exit(T).await, 128 + 9, "killed after the grace period");
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "grace was honoured"
    );
    crate::harness::eventually(T, "child and grandchild gone", || async {
        (!alive(child) && !alive(grandchild)).then_some(())
    })
    .await;
}

/// `stop.grace: 0s` means wait as long as it takes, never KILL: a process that needs a second
/// to shut down ends with its own code, not 137.
#[tokio::test]
async fn a_zero_grace_waits_for_the_process_and_never_kills_it() {
    let dir = PodDir::new(
        r#"
cluster: patient
process:
  command: |
    trap 'sleep 1; exit 7' TERM
    while :; do sleep 0.1; done
  stop: { signal: TERM, grace: 0s }
"#,
    );
    let mut pod = Pod::start(&dir, PodOptions::default());
    pod.wait_info("the process to run", T, |i| i["process"] == "running")
        .await;
    let started = std::time::Instant::now();
    pod.signal(Signal::SIGTERM);
    assert_eq!(pod.wait_exit(T).await, 7, "its own exit, not KILL's 137");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "it had the second it asked for"
    );
}

#[tokio::test]
async fn reloads_by_signal_without_restart_when_the_render_changes() {
    let dir = PodDir::new(
        r#"
cluster: reloader
process:
  command: |
    trap 'cat {{env.OCHOPOD_HOME}}/conf >> {{env.OCHOPOD_HOME}}/reloads' HUP
    while :; do sleep 0.1; done
  reload: { signal: HUP }
templates:
  - source: conf.hbs
    dest: "{{env.OCHOPOD_HOME}}/conf"
"#,
    )
    .with_file("conf.hbs", "size={{cluster.size}} gen={{cluster.generation}}\n");
    let pod = Pod::start(&dir, PodOptions::default());
    let info = pod
        .wait_info("the process to run", T, |i| i["process"] == "running")
        .await;
    let pid = info["pid"].clone();
    let me: Value = info.clone();
    let uuid = me["uuid"].as_str().expect("uuid").to_string();
    let mut other = me.clone();
    other["uuid"] = "peer".into();
    other["seq"] = 2.into();
    let map = serde_json::json!({
        "generation": 2, "key": uuid,
        "pods": { uuid.clone(): pod_json(&me), "peer": pod_json(&other) },
        "added": ["peer"], "removed": []
    });
    let (status, body) = pod.post("/control/on", &map.to_string()).await;
    assert_eq!(status, 200, "{body}");
    crate::harness::eventually(T, "the HUP handler to run", || async {
        read(&pod.home_file("reloads"))
            .contains("size=2 gen=2")
            .then_some(())
    })
    .await;
    let info = pod.info().await;
    assert_eq!(info["pid"], pid, "reloaded, not restarted");
    assert_eq!(info["restarts"], 0);
    // The same map again: nothing changed, nothing signalled.
    let (status, _) = pod.post("/control/on", &map.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(read(&pod.home_file("reloads")).lines().count(), 1);
}

/// The pod JSON part of an `/info` answer.
pub fn pod_json(info: &Value) -> Value {
    let mut pod = serde_json::Map::new();
    for k in [
        "uuid",
        "seq",
        "cluster",
        "namespace",
        "ip",
        "host",
        "public",
        "node",
        "task",
        "ports",
        "control_port",
        "binding",
        "version",
    ] {
        pod.insert(k.into(), info[k].clone());
    }
    Value::Object(pod)
}
