//! What a pod's own process and hooks can cost ochopod, and what they can see (issue 8): output
//! lines and the log ring bounded, hooks run a few at a time, secrets kept out of their
//! environment, durations bounded, and the process dying with ochopod.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::eventually;
use crate::harness::pod::{alive, binary, read, Pod, PodDir, PodOptions};

const T: Duration = Duration::from_secs(20);

/// The `/log` lines.
async fn log_lines(pod: &Pod) -> Vec<String> {
    let (status, log) = pod.get("/log?lines=100000").await;
    assert_eq!(status, 200, "{log}");
    serde_json::from_value(log["lines"].clone()).expect("lines")
}

/// The peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[test]
fn check_refuses_a_duration_beyond_30_days_with_its_position() {
    let dir = PodDir::new(
        "cluster: web\nprocess:\n  command: \"sleep 100\"\n  stop:\n    grace: 9999999999999999h\n",
    );
    let out = Command::new(binary())
        .arg("check")
        .arg(dir.path())
        .output()
        .expect("run check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let at = format!("{}:5:12: process.stop.grace:", dir.path().display());
    assert!(err.contains(&at), "{err}");
    assert!(err.contains("maximum of 720h (30 days)"), "{err}");
}

#[tokio::test]
async fn a_child_printing_a_huge_line_without_newline_costs_a_bounded_amount() {
    // 64 MiB on one line, then a short line, then the child waits.
    let dir = PodDir::new(
        r#"
cluster: chatty
process:
  command: "head -c 67108864 /dev/zero | tr '\\0' x; echo; echo after the long line; exec sleep 60"
  stop: { grace: 1s }
"#,
    );
    let pod = Pod::start(&dir, PodOptions::default());
    pod.info().await;
    let lines = eventually(T, "the line after the long one in /log", || async {
        let lines = log_lines(&pod).await;
        lines.iter().any(|l| l == "after the long line").then_some(lines)
    })
    .await;
    let long = lines
        .iter()
        .find(|l| l.starts_with("xxxx"))
        .expect("the long line, cut, in /log");
    let dropped = (64u64 << 20) - ochopod::logs::LINE_BYTES as u64;
    assert!(
        long.ends_with(&format!("… [truncated {dropped} bytes]")),
        "ends with {:?}",
        &long[long.len().saturating_sub(60)..]
    );
    assert!(
        long.len() < ochopod::logs::LINE_BYTES + 64,
        "{} bytes",
        long.len()
    );
    // Reading the line whole would take 64 MiB at least (more with a growing buffer).
    let peak = peak_rss_kib(pod.pid());
    assert!(peak < 40 * 1024, "ochopod peaked at {peak} KiB");
}

#[tokio::test]
async fn the_log_ring_is_bounded_in_bytes() {
    // 2500 lines of 5000 bytes: 12.5 MB, more than the ring may hold.
    let dir = PodDir::new(
        r#"
cluster: chatty
process:
  command: "yes \"$(head -c 5000 /dev/zero | tr '\\0' y)\" | head -n 2500; echo end of output; exec sleep 60"
  stop: { grace: 1s }
"#,
    );
    let pod = Pod::start(&dir, PodOptions::default());
    pod.info().await;
    let lines = eventually(T, "the end of the output in /log", || async {
        let lines = log_lines(&pod).await;
        lines.iter().any(|l| l == "end of output").then_some(lines)
    })
    .await;
    let bytes: usize = lines.iter().map(String::len).sum();
    assert!(
        bytes <= ochopod::logs::RING_BYTES,
        "/log holds {bytes} bytes in {} lines",
        lines.len()
    );
    assert!(lines.iter().filter(|l| l.starts_with("yyy")).count() > 100);
}

#[tokio::test]
async fn parallel_signals_run_at_most_four_hooks_at_once() {
    let runs = tempfile::tempdir().expect("tempdir");
    let at = runs.path().display();
    // Each run marks itself in `inflight`, counts who is there, waits a little, leaves.
    let dir = PodDir::new(&format!(
        r#"
cluster: hooks
process:
  command: ["sleep", "60"]
  stop: {{ grace: 1s }}
hooks:
  signaled: "touch {at}/inflight/$$; ls {at}/inflight | wc -l >> {at}/counts; sleep 0.5; rm {at}/inflight/$$; echo '{{\"ok\": 1}}'"
"#
    ));
    std::fs::create_dir(runs.path().join("inflight")).expect("mkdir");
    let pod = Pod::start(&dir, PodOptions::default());
    pod.wait_info("running", T, |i| i["process"] == "running").await;
    let calls: Vec<_> = (0..12)
        .map(|_| {
            let req = pod.client.post(pod.url("/control/signal")).body("{}");
            tokio::spawn(async move {
                let resp = req.send().await.expect("POST /control/signal");
                (resp.status().as_u16(), resp.json::<Value>().await.expect("JSON"))
            })
        })
        .collect();
    for call in calls {
        let (status, body) = call.await.expect("the call task");
        assert_eq!((status, body), (200, serde_json::json!({"ok": 1})));
    }
    let counts: Vec<usize> = read(&runs.path().join("counts"))
        .lines()
        .map(|l| l.trim().parse().expect("a count"))
        .collect();
    assert_eq!(counts.len(), 12, "{counts:?}");
    let most = counts.iter().copied().max().unwrap_or(0);
    assert!(
        most <= ochopod::supervise::HOOKS_IN_FLIGHT,
        "{most} hooks ran at once: {counts:?}"
    );
}

#[tokio::test]
async fn secrets_stay_out_of_the_process_hooks_checks_and_templates() {
    let home_hint = "{{env.OCHOPOD_HOME}}";
    let dir = PodDir::new(&format!(
        r#"
cluster: secrets
process:
  command: "env > {home_hint}/process.env; exec sleep 60"
  env: {{ APP_TOKEN: "{{{{env.APP_SOURCE}}}}", GIVEN: "literal" }}
  stop: {{ grace: 1s }}
checks:
  ready: {{ command: "env > {home_hint}/ready.env", every: 1s }}
hooks:
  pre_start: "env > {home_hint}/pre_start.env"
  signaled: "echo {{{{env.OCHOPOD_TOKEN}}}}"
"#
    ));
    let token_file = dir.dir.path().join("token");
    std::fs::write(&token_file, "s3cret").expect("token file");
    let mut opts = PodOptions::default();
    for (k, v) in [
        ("OCHOPOD_TOKEN", "s3cret"),
        ("OCHOPOD_TOKEN_FILE", token_file.to_str().expect("utf-8 path")),
        ("OCHOPOD_TOKEN_OLD", "older"),
        ("OCHOPOD_ZK_AUTH", "digest:ochopod:zk-password"),
        ("OCHOPOD_ZK_AUTH_FILE", "/nonexistent/zk-auth"),
        ("APP_SOURCE", "for-the-app"),
    ] {
        opts.env.insert(k.into(), v.into());
    }
    opts.token = Some("s3cret".into());
    let pod = Pod::start(&dir, opts);
    pod.wait_info("ready", T, |i| i["process"] == "running" && i["ready"] == true)
        .await;
    for file in ["process.env", "ready.env", "pre_start.env"] {
        let env = read(&pod.home_file(file));
        assert!(
            env.contains("OCHOPOD_HOME="),
            "{file} is a dump of the environment: {env}"
        );
        for secret in [
            "OCHOPOD_TOKEN",
            "OCHOPOD_ZK_AUTH",
            "s3cret",
            "zk-password",
            "older",
        ] {
            assert!(!env.contains(secret), "{file} holds {secret}:\n{env}");
        }
    }
    let env = read(&pod.home_file("process.env"));
    assert!(env.contains("APP_TOKEN=for-the-app\n"), "{env}");
    assert!(env.contains("GIVEN=literal\n"), "{env}");
    // A template cannot reach the token either: strict rendering fails on it.
    let (status, body) = pod.post("/control/signal", "{}").await;
    assert_eq!(status, 500, "{body}");
    assert!(!body.to_string().contains("s3cret"), "{body}");
    assert!(body.to_string().contains("OCHOPOD_TOKEN"), "{body}");
}

#[test]
fn check_refuses_a_template_that_reads_a_secret() {
    let dir = PodDir::new("cluster: secrets\nprocess:\n  command: \"run --token {{env.OCHOPOD_TOKEN}}\"\n");
    let out = Command::new(binary())
        .arg("check")
        .arg(dir.path())
        .env("OCHOPOD_TOKEN", "s3cret")
        .output()
        .expect("run check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("OCHOPOD_TOKEN"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

#[tokio::test]
async fn the_process_dies_with_ochopod_killed_hard() {
    let dir = PodDir::new("cluster: orphan\nprocess:\n  command: [\"sleep\", \"1000\"]\n");
    let mut pod = Pod::start(&dir, PodOptions::default());
    let info = pod
        .wait_info("running", T, |i| i["process"] == "running" && i["pid"].is_u64())
        .await;
    let child = u32::try_from(info["pid"].as_u64().expect("pid")).expect("a pid");
    assert!(alive(child));
    // kill -9 ochopod alone, not its process group: nobody stops the child but the kernel.
    let mut ochopod = pod.child.take().expect("running");
    ochopod.kill().expect("kill -9 ochopod");
    ochopod.wait().expect("reap ochopod");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while alive(child) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    if alive(child) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        panic!("the child {child} outlived ochopod by 5 s");
    }
}
