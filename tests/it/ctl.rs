//! `ochopod ctl` end to end: a real ZooKeeper holding the SPEC §6 layout, real pods answering
//! the §7 API, the real binary as a pipeline would run it.
//!
//! Until the sync loop registers pods itself, the test registers standalone pods: their real
//! `/info` as the znode (ephemeral, from the test's session), with the seq the test gives them
//! (standalone pods all call themselves #1).

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use zookeeper_client as zkc;

use crate::harness::eventually;
use crate::harness::pod::{binary, Pod, PodDir, PodOptions};
use crate::harness::zk::ZkServer;
use crate::runner::pod_json;

const T: Duration = Duration::from_secs(30);

/// A ZooKeeper, a session on it, and the pods registered through that session.
struct Fixture {
    zk: ZkServer,
    client: zkc::Client,
    token: Option<String>,
}

/// A finished `ochopod ctl`.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// The client spawns its session task through `spawns-core`: give it tokio while connecting.
struct Tokio;

impl spawns_core::Spawn for Tokio {
    fn spawn(&self, task: spawns_core::Task) {
        tokio::spawn(Box::into_pin(task.future));
    }
}

async fn zk_session(connect: &str) -> zkc::Client {
    static TOKIO: Tokio = Tokio;
    let connecting = zkc::Client::connect(connect);
    let _scope = spawns_core::enter(&TOKIO);
    connecting.await.unwrap()
}

fn persistent() -> zkc::CreateOptions<'static> {
    zkc::CreateMode::Persistent.with_acls(zkc::Acls::anyone_all())
}

impl Fixture {
    async fn new() -> Fixture {
        let zk = tokio::task::spawn_blocking(ZkServer::start).await.unwrap();
        let client = zk_session(&zk.connect_string()).await;
        Fixture {
            zk,
            client,
            token: None,
        }
    }

    /// Starts `n` pods of `cluster` (each its own dir, hence its own uuid) from one pod.yaml.
    fn start(&self, cluster: &str, n: usize, extra: &str) -> Vec<(PodDir, Pod)> {
        (0..n)
            .map(|_| {
                let dir = PodDir::new(&format!(
                    "cluster: {cluster}\nports: [7000]\nprocess:\n  command: [\"sleep\", \"300\"]\n  \
                     stop: {{ grace: 2s }}\n{extra}"
                ));
                let opts = PodOptions {
                    token: self.token.clone(),
                    ..PodOptions::default()
                };
                let pod = Pod::start(&dir, opts);
                (dir, pod)
            })
            .collect()
    }

    /// Registers the pods with seqs 1, 2, ...: their `/info` as pod JSON under `pods/<uuid>`.
    async fn register(&self, pods: &[(PodDir, Pod)]) -> Vec<String> {
        let mut uuids = Vec::new();
        for (i, (_, pod)) in pods.iter().enumerate() {
            let info = pod.wait_info("running", T, |i| i["process"] == "running").await;
            let mut json = pod_json(&info);
            json["seq"] = (i as u32 + 1).into();
            json["state"] = info["pod_state"].clone();
            let key = info["key"].as_str().unwrap();
            let uuid = info["uuid"].as_str().unwrap().to_string();
            let dir = format!("/ochopod/clusters/{key}/pods");
            self.client.mkdir(&dir, &persistent()).await.unwrap();
            let ephemeral = zkc::CreateMode::Ephemeral.with_acls(zkc::Acls::anyone_all());
            self.client
                .create(&format!("{dir}/{uuid}"), json.to_string().as_bytes(), &ephemeral)
                .await
                .unwrap();
            uuids.push(uuid);
        }
        uuids
    }

    /// An election node for `uuid` (the first one created leads).
    async fn elect(&self, key: &str, uuid: &str) {
        let dir = format!("/ochopod/clusters/{key}/leader");
        self.client.mkdir(&dir, &persistent()).await.unwrap();
        let opts = zkc::CreateMode::EphemeralSequential.with_acls(zkc::Acls::anyone_all());
        self.client
            .create(&format!("{dir}/n_"), uuid.as_bytes(), &opts)
            .await
            .unwrap();
    }

    async fn ctl(&self, args: &[&str]) -> Out {
        ctl_with(&self.zk.connect_string(), args, &[]).await
    }
}

async fn ctl_with(zk: &str, args: &[&str], env: &[(&str, &str)]) -> Out {
    let out = tokio::process::Command::new(binary())
        .arg("ctl")
        .arg("--zk")
        .arg(zk)
        .args(args)
        .env_remove("OCHOPOD_TOKEN")
        .env_remove("OCHOPOD_TOKEN_FILE")
        .env_remove("OCHOPOD_NAMESPACE")
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn pods_of(v: &Value) -> Vec<Value> {
    v["pods"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn ls_info_log_port_on_off_restart_signal_and_kill() {
    let fx = Fixture::new().await;
    let signaled = r#"hooks:
  signaled: "read body; echo \"{\\\"got\\\": $body}\""
  pre_start: "sleep 0.3"
"#;
    let web = fx.start("web", 3, signaled);
    let db = fx.start("db", 1, "");
    let uuids = fx.register(&web).await;
    fx.register(&db).await;
    fx.elect("default.web", &uuids[1]).await;

    // ls: clusters, running/total, the election's leader (standalone pods do not claim one).
    let out = fx.ctl(&["ls"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("CLUSTER"), "{out:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("default.db ") && l.contains(" 1/1 ")),
        "{out:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("default.web ") && l.contains(" 3/3 ") && l.contains(" #2 ")),
        "{out:?}"
    );
    let ls = fx.ctl(&["ls", "--json", "w*"]).await.json();
    assert_eq!(ls["ok"], true);
    assert_eq!(
        ls["clusters"].as_array().unwrap().len(),
        1,
        "w* matches web only: {ls}"
    );
    assert_eq!(ls["clusters"][0]["running"], 3);
    assert_eq!(ls["clusters"][0]["leader"]["seq"], 2);
    assert_eq!(ls["clusters"][0]["leader"]["uuid"], uuids[1].as_str());

    // info: one row per pod, `<ns>.<cluster> #<seq>`; --json carries each pod's /info.
    let out = fx.ctl(&["info", "web"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    for seq in 1..=3 {
        assert!(out.stdout.contains(&format!("default.web #{seq} ")), "{out:?}");
    }
    assert!(out.stdout.contains("7000,"), "ports column: {out:?}");
    let info = fx.ctl(&["info", "--json", "web", "-i", "1,3"]).await.json();
    let pods = pods_of(&info);
    assert_eq!(
        pods.iter()
            .map(|p| p["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![1, 3]
    );
    assert_eq!(pods[0]["answer"]["uuid"], uuids[0].as_str());
    assert_eq!(pods[1]["address"], format!("{}:{}", web[2].1.ip, web[2].1.port));
    assert_eq!(pods[1]["answer"]["process"], "running");

    // log: the pods' own lines.
    let log = fx.ctl(&["log", "-n", "5", "--json", "db"]).await.json();
    let lines = pods_of(&log)[0]["answer"]["lines"].as_array().unwrap().clone();
    assert!(!lines.is_empty() && lines.len() <= 5, "{log}");
    let out = fx.ctl(&["log", "db"]).await;
    assert!(out.stdout.starts_with("==> default.db #1 ("), "{out:?}");

    // port: ip:port of every pod, from ZooKeeper alone.
    let out = fx.ctl(&["port", "7000", "web"]).await;
    let want: Vec<String> = web.iter().map(|(_, p)| format!("{}:7000", p.ip)).collect();
    assert_eq!(out.stdout.trim(), want.join(","), "{out:?}");
    let port = fx.ctl(&["port", "7000", "web", "--json", "-i", "2"]).await.json();
    assert_eq!(port["addresses"], serde_json::json!([want[1]]));
    let out = fx.ctl(&["port", "9999", "db"]).await;
    assert_eq!(out.code, 1, "no such port: {out:?}");
    assert!(
        out.stderr.contains("default.db #1: does not declare port 9999"),
        "{out:?}"
    );

    // off holds one pod; ls counts it out; wait --state held sees it; on releases it.
    let off = fx.ctl(&["off", "web", "-i", "2", "--json"]).await;
    assert_eq!(off.code, 0, "{off:?}");
    assert_eq!(pods_of(&off.json()).len(), 1);
    let held = web[1].1.info().await;
    assert_eq!(
        (held["process"].as_str(), held["pod_state"].as_str()),
        (Some("stopped"), Some("held"))
    );
    assert_eq!(
        fx.ctl(&["ls", "--json", "web"]).await.json()["clusters"][0]["running"],
        2
    );
    let out = fx
        .ctl(&[
            "wait",
            "web",
            "--state",
            "held",
            "--count",
            "1",
            "--timeout",
            "10s",
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = fx.ctl(&["on", "web", "-i", "2"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("default.web #2") && out.stdout.contains(" ok"),
        "{out:?}"
    );
    assert_eq!(web[1].1.info().await["pod_state"], "running");

    // restart: every pod gets a new process.
    let pids = |infos: &Value| -> Vec<Value> {
        pods_of(infos)
            .iter()
            .map(|p| p["answer"]["pid"].clone())
            .collect()
    };
    let before = pids(&fx.ctl(&["info", "--json", "web"]).await.json());
    let out = fx.ctl(&["restart", "web", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let after = pids(&fx.ctl(&["info", "--json", "web"]).await.json());
    for (b, a) in before.iter().zip(&after) {
        assert_ne!(b, a, "restart gives a new process");
    }

    // restart --rolling: one pod at a time, so at least 2 of 3 run at every sample, and the
    // sampler does see a pod down (pre_start sleeps 0.3 s), else it proves nothing.
    let urls: Vec<String> = web.iter().map(|(_, p)| p.url("/info")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let min_running = Arc::new(AtomicUsize::new(usize::MAX));
    let sampler = tokio::spawn({
        let (stop, min_running) = (stop.clone(), min_running.clone());
        async move {
            let client = reqwest::Client::new();
            let mut samples = 0;
            while !stop.load(Ordering::Relaxed) {
                // The three at once, so a sample is one instant (sequential reads could see one
                // pod down just before it came back and the next one down just after).
                let up = |url: String| {
                    let client = client.clone();
                    async move {
                        let resp = client.get(url).timeout(Duration::from_secs(2)).send().await;
                        match resp {
                            Ok(r) => r
                                .json::<Value>()
                                .await
                                .is_ok_and(|v| v["process"] == "running" && v["pod_state"] == "running"),
                            Err(_) => false,
                        }
                    }
                };
                let (a, b, c) = tokio::join!(up(urls[0].clone()), up(urls[1].clone()), up(urls[2].clone()));
                let running = [a, b, c].iter().filter(|x| **x).count();
                min_running.fetch_min(running, Ordering::Relaxed);
                samples += 1;
            }
            samples
        }
    });
    let started = Instant::now();
    let out = fx.ctl(&["restart", "--rolling", "web"]).await;
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.await.unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("restart --rolling: 3/3 default.web #3"),
        "progress on stderr: {out:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "three pods, each down 0.3 s at least"
    );
    assert!(samples > 10, "sampled {samples} times");
    assert_eq!(
        min_running.load(Ordering::Relaxed),
        2,
        "never fewer than N-1 running, and one down at times"
    );
    let rolled = pids(&fx.ctl(&["info", "--json", "web"]).await.json());
    for (b, a) in after.iter().zip(&rolled) {
        assert_ne!(b, a, "rolling restart gives every pod a new process");
    }

    // signal: each pod's hook answer.
    let sig = fx
        .ctl(&["signal", "web", "-i", "3", "--body", r#"{"hello": 1}"#, "--json"])
        .await;
    assert_eq!(sig.code, 0, "{sig:?}");
    assert_eq!(
        pods_of(&sig.json())[0]["answer"],
        serde_json::json!({"got": {"hello": 1}})
    );

    // reconnect: standalone pods have no session to reset; the pod's own error is shown.
    let out = fx.ctl(&["reconnect", "db"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("default.db #1: 409 from") && out.stderr.contains("standalone"),
        "{out:?}"
    );

    // kill one pod: it exits 0; its znode stays (our session), so the next info fails for that
    // pod only, naming it and its address, with exit 1 and the others still reported.
    let mut web = web;
    let out = fx.ctl(&["kill", "web", "-i", "3", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(web[2].1.wait_exit(T).await, 0);
    let out = fx.ctl(&["info", "web", "--json"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let pods = pods_of(&out.json());
    assert_eq!(pods.iter().filter(|p| p["ok"] == true).count(), 2);
    let dead = format!("{}:{}", web[2].1.ip, web[2].1.port);
    assert_eq!(pods[2]["ok"], false);
    assert!(pods[2]["error"].as_str().unwrap().contains(&dead), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("default.web #3: no answer from {dead}")),
        "{out:?}"
    );
    let out = fx.ctl(&["ls"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("default.web ") && l.contains(" 2/3 ")),
        "{out:?}"
    );
}

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

    // Started before the cluster exists: it waits, then passes once both pods register.
    let zk = fx.zk.connect_string();
    let waiter = tokio::spawn(async move {
        ctl_with(
            &zk,
            &["wait", "gate", "--count", "2", "--timeout", "60s", "--json"],
            &[],
        )
        .await
    });
    // It must still be waiting while nothing is registered.
    tokio::time::timeout(Duration::from_millis(1500), async {
        while !waiter.is_finished() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect_err("wait returned before the cluster existed");
    fx.register(&pods).await;
    let out = waiter.await.unwrap();
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
