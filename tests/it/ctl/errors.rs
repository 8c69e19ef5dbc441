//! What goes wrong, said so a user can act (401, no match, ZooKeeper down, bad usage), and
//! `wait`, the deploy gate, with its timeout.

use std::time::{Duration, Instant};

use super::{ctl_with, Fixture, T};
use crate::harness::eventually;

#[tokio::test]
async fn errors_say_what_to_fix() {
    let mut fx = Fixture::new().await;
    fx.token = Some("s3cret".into());
    let pods = fx.start("secure", 2, "");
    fx.register(&pods).await;

    // No token, a wrong one: 401 for each pod, naming the option to set.
    for args in [vec!["info", "secure"], vec!["info", "secure", "--token", "nope"]] {
        let out = fx.ctl(&args).await;
        assert_eq!(out.code, 1, "{out:?}");
        assert_eq!(out.stderr.matches("401 from").count(), 2, "{out:?}");
        assert!(out.stderr.contains("--token or OCHOPOD_TOKEN"), "{out:?}");
    }
    let out = fx.ctl(&["info", "secure", "--token", "s3cret"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let env = [("OCHOPOD_TOKEN", "s3cret,older")];
    let out = ctl_with(&fx.zk.connect_string(), &["ls", "secure"], &env).await;
    assert_eq!(out.code, 0, "the first token of OCHOPOD_TOKEN is sent: {out:?}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "s3cret\n").unwrap();
    let env = [("OCHOPOD_TOKEN_FILE", file.to_str().unwrap())];
    let out = ctl_with(&fx.zk.connect_string(), &["info", "secure"], &env).await;
    assert_eq!(out.code, 0, "OCHOPOD_TOKEN_FILE: {out:?}");

    // No cluster matches: the names that exist.
    let out = fx.ctl(&["info", "nosuch", "--token", "s3cret"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("no cluster matches `nosuch`") && out.stderr.contains("default.secure"),
        "{out:?}"
    );
    let out = fx
        .ctl(&["info", "--namespace", "prod", "--token", "s3cret"])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("prod.*") && out.stderr.contains("default.secure"),
        "{out:?}"
    );
    let out = fx.ctl(&["off", "secure", "-i", "7", "--token", "s3cret"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("no pod #7 in default.secure"), "{out:?}");

    // ZooKeeper unreachable: which address, after how long; quickly.
    let closed = format!("127.0.0.1:{}", crate::harness::free_port("127.0.0.1"));
    let started = Instant::now();
    let out = ctl_with(&closed, &["ls"], &[]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("cannot reach ZooKeeper at {closed}")),
        "{out:?}"
    );
    assert!(out.stderr.contains("gave up after"), "{out:?}");
    let out = ctl_with(&closed, &["ls", "--json"], &[]).await;
    assert_eq!((out.code, out.json()["ok"].clone()), (1, false.into()), "{out:?}");
    assert!(out.json()["error"].as_str().unwrap().contains(&closed));
    assert!(started.elapsed() < Duration::from_secs(5));

    // Bad usage: 2, before any network.
    for args in [
        vec!["frobnicate"],
        vec!["signal", "x", "--body", "{nope"],
        vec!["kill"],
        vec!["wait", "--timeout", "ten"],
    ] {
        let out = ctl_with(&closed, &args, &[]).await;
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
    }
}

#[tokio::test]
async fn wait_gates_a_deploy_and_times_out_with_exit_3() {
    let fx = Fixture::new().await;
    let pods = fx.start("gate", 2, "");
    for (_, p) in &pods {
        p.wait_info("running", T, |i| i["process"] == "running").await;
    }

    // Started before the cluster exists: it waits, then passes once both pods register. Its
    // progress line on stderr says that it looked, found nothing and goes on waiting.
    let waiter = Waiting::start(
        &fx.zk.connect_string(),
        &["wait", "gate", "--count", "2", "--timeout", "60s", "--json"],
    )
    .await;
    fx.register(&pods).await;
    let out = waiter.finish().await;
    assert_eq!(out.code, 0, "{out:?}");
    let v = out.json();
    assert_eq!(
        (v["ok"].clone(), v["clusters"][0]["have"].clone()),
        (true.into(), 2.into())
    );
    assert!(
        out.stderr.contains("waiting ("),
        "progress line on stderr: {out:?}"
    );

    // More pods than there are: exit 3 after the timeout, naming what is missing.
    let started = Instant::now();
    let out = fx.ctl(&["wait", "gate", "--count", "3", "--timeout", "2s"]).await;
    assert_eq!(out.code, 3, "{out:?}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(
        out.stderr.contains("timed out after 2s") && out.stderr.contains("default.gate 2/3 running"),
        "{out:?}"
    );

    // A pod held: `wait` (running, all pods) names it once it times out.
    assert_eq!(fx.ctl(&["off", "gate", "-i", "1"]).await.code, 0);
    let out = fx.ctl(&["wait", "gate", "--timeout", "1s", "--json"]).await;
    assert_eq!(out.code, 3, "{out:?}");
    let v = out.json();
    assert_eq!(v["timed_out"], true);
    assert_eq!(v["clusters"][0]["waiting_for"][0]["pod"], "default.gate #1");
    assert!(out.stderr.contains("default.gate #1: process stopped"), "{out:?}");
    // And passes again after `on`.
    assert_eq!(fx.ctl(&["on", "gate"]).await.code, 0);
    let out = fx.ctl(&["wait", "gate", "--timeout", "20s"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    eventually(T, "both running", || async {
        let v = fx.ctl(&["ls", "--json", "gate"]).await.json();
        (v["clusters"][0]["running"] == 2).then_some(())
    })
    .await;
}

/// An `ochopod ctl wait` running, seen to be waiting: it printed a progress line (one per round
/// that found the condition unmet) and has not exited.
struct Waiting {
    child: tokio::process::Child,
    stderr: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
    seen: String,
}

impl Waiting {
    async fn start(zk: &str, args: &[&str]) -> Waiting {
        use tokio::io::AsyncBufReadExt;
        let mut child = super::ctl_command(zk, args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = String::new();
        tokio::time::timeout(T, async {
            while let Some(line) = stderr.next_line().await.unwrap() {
                seen.push_str(&line);
                seen.push('\n');
                if line.starts_with("waiting (") {
                    return;
                }
            }
            panic!("ctl ended its stderr without waiting: {seen}");
        })
        .await
        .unwrap_or_else(|_| panic!("no progress line from ctl in {T:?}: {seen}"));
        assert!(
            child.try_wait().unwrap().is_none(),
            "ctl exited after saying it waits: {seen}"
        );
        Waiting { child, stderr, seen }
    }

    async fn finish(self) -> super::Out {
        let Waiting {
            child,
            mut stderr,
            mut seen,
        } = self;
        let rest = tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                seen.push_str(&line);
                seen.push('\n');
            }
            seen
        });
        let out = child.wait_with_output().await.unwrap();
        super::Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: rest.await.unwrap(),
        }
    }
}

/// The client connections ZooKeeper has (its `cons` command), to know ctl is connected.
fn zk_connections(zk: &crate::harness::zk::ZkServer) -> usize {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", zk.port)) else {
        return 0;
    };
    let _ = s.write_all(b"cons");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines().filter(|l| l.contains("sid=")).count()
}

#[tokio::test]
async fn wait_outlives_a_zookeeper_freeze_longer_than_its_session() {
    let fx = Fixture::new().await;
    let pods = fx.start("frozen", 2, "");
    fx.register(&pods[..1]).await;
    let zk = fx.zk.connect_string();
    let args = [
        "wait",
        "frozen",
        "--count",
        "2",
        "--timeout",
        "60s",
        "--zk-timeout",
        "2s",
    ];
    let waiter = tokio::spawn(async move { ctl_with(&zk, &args, &[]).await });
    // ctl has its session once ZooKeeper serves two clients (the test's and ctl's).
    eventually(T, "ctl connected", || async {
        (zk_connections(&fx.zk) >= 2).then_some(())
    })
    .await;
    // The fault itself: frozen for twice ctl's session timeout (the test's own session is 10s).
    fx.zk.pause();
    tokio::time::sleep(Duration::from_secs(4)).await;
    fx.zk.resume();
    assert!(!waiter.is_finished(), "wait gave up during the freeze");
    fx.register_from(&pods[1..], 2).await;
    let out = waiter.await.unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("default.frozen 2/2 running"), "{out:?}");
}

#[test]
fn completions_cover_every_verb_and_parse_in_bash() {
    let out = std::process::Command::new(crate::harness::pod::binary())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).unwrap();
    for verb in [
        "ls",
        "info",
        "log",
        "on",
        "off",
        "restart",
        "reconnect",
        "kill",
        "signal",
        "port",
        "wait",
    ] {
        assert!(
            script.contains(&format!("ochopod__subcmd__ctl__subcmd__{verb}")),
            "{verb} completes"
        );
    }
    assert!(script.contains("--rolling") && script.contains("--json"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ochopod.bash");
    std::fs::write(&path, &script).unwrap();
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .status()
        .unwrap();
    assert!(syntax.success(), "bash -n accepts the script");
}
