//! Every verb against registered pods: tables, `--json`, and what each does to the pods. One
//! test per verb (each its own ZooKeeper and pods), so that one failing verb hides no other.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{pods_of, Fixture, T};
use crate::harness::pod::{Pod, PodDir};

/// Registered pods: `web` (`webs` pods, `web_extra` appended to their pod.yaml; the election's
/// leader is seq 2 when there are two) and `db` (`dbs` pods, 0 or 1).
struct Pods {
    fx: Fixture,
    web: Vec<(PodDir, Pod)>,
    db: Vec<(PodDir, Pod)>,
    uuids: Vec<String>,
}

async fn web_and_db(webs: usize, web_extra: &str, dbs: usize) -> Pods {
    let fx = Fixture::new().await;
    let web = fx.start("web", webs, web_extra);
    let db = fx.start("db", dbs, "");
    let uuids = fx.register(&web).await;
    fx.register(&db).await;
    if let Some(second) = uuids.get(1) {
        fx.elect("default.web", second).await;
    }
    Pods { fx, web, db, uuids }
}

/// Each pod's process id, from `ctl info --json`.
fn pids(infos: &Value) -> Vec<Value> {
    pods_of(infos)
        .iter()
        .map(|p| p["answer"]["pid"].clone())
        .collect()
}

#[tokio::test]
async fn ls_lists_clusters_running_pods_and_leaders() {
    let Pods {
        fx,
        web: _web,
        db: _db,
        uuids,
    } = web_and_db(3, "", 1).await;
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
}

#[tokio::test]
async fn info_has_a_row_per_pod_and_its_json_carries_each_info() {
    let Pods {
        fx,
        web,
        db: _db,
        uuids,
    } = web_and_db(3, "", 0).await;
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
}

#[tokio::test]
async fn log_shows_each_pods_own_lines() {
    let Pods {
        fx,
        web: _web,
        db: _db,
        uuids: _,
    } = web_and_db(0, "", 1).await;
    // log: the pods' own lines.
    let log = fx.ctl(&["log", "-n", "5", "--json", "db"]).await.json();
    let lines = pods_of(&log)[0]["answer"]["lines"].as_array().unwrap().clone();
    assert!(!lines.is_empty() && lines.len() <= 5, "{log}");
    let out = fx.ctl(&["log", "db"]).await;
    assert!(out.stdout.starts_with("==> default.db #1 ("), "{out:?}");
}

#[tokio::test]
async fn port_lists_addresses_from_zookeeper_alone() {
    let Pods {
        fx,
        web,
        db: _db,
        uuids: _,
    } = web_and_db(3, "", 1).await;
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
}

#[tokio::test]
async fn a_persistent_registration_is_no_pod_to_ctl() {
    let Pods {
        fx,
        web,
        db: _db,
        uuids: _,
    } = web_and_db(2, "", 0).await;
    // A valid pod's JSON under its own uuid, but in a persistent znode: no ochopod registered it
    // (each registers with its session), and the leader leaves it out of every map. ctl must not
    // call it either: only whoever can write to ZooKeeper could have put it there.
    let info = web[0].1.info().await;
    let mut json = crate::runner::pod_json(&info);
    let uuid = "5f0c6a52-95a1-4b1e-9f38-0b5d3c7a9e99";
    json["uuid"] = uuid.into();
    json["seq"] = 9.into();
    json["ip"] = "127.0.0.99".into();
    let persistent = zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    fx.client
        .create(
            &format!("/ochopod/clusters/default.web/pods/{uuid}"),
            json.to_string().as_bytes(),
            &persistent,
        )
        .await
        .unwrap();
    let out = fx.ctl(&["port", "7000", "web"]).await;
    let want: Vec<String> = web.iter().map(|(_, p)| format!("{}:7000", p.ip)).collect();
    assert_eq!(out.stdout.trim(), want.join(","), "{out:?}");
    assert!(
        out.stderr.contains(uuid) && out.stderr.contains("not ephemeral"),
        "{out:?}"
    );
}

#[tokio::test]
async fn off_holds_a_pod_and_on_releases_it() {
    let Pods {
        fx,
        web,
        db: _db,
        uuids: _,
    } = web_and_db(3, "", 0).await;
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
}

#[tokio::test]
async fn restart_gives_every_pod_a_new_process() {
    let Pods {
        fx,
        web: _web,
        db: _db,
        uuids: _,
    } = web_and_db(3, "", 0).await;
    // restart: every pod gets a new process.
    let before = pids(&fx.ctl(&["info", "--json", "web"]).await.json());
    let out = fx.ctl(&["restart", "web", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let after = pids(&fx.ctl(&["info", "--json", "web"]).await.json());
    for (b, a) in before.iter().zip(&after) {
        assert_ne!(b, a, "restart gives a new process");
    }
}

#[tokio::test]
async fn restart_rolling_keeps_all_but_one_pod_running() {
    let Pods {
        fx,
        web,
        db: _db,
        uuids: _,
    } = web_and_db(
        3,
        r#"hooks:
  pre_start: "sleep 0.3"
"#,
        0,
    )
    .await;
    let before = pids(&fx.ctl(&["info", "--json", "web"]).await.json());
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
    for (b, a) in before.iter().zip(&rolled) {
        assert_ne!(b, a, "rolling restart gives every pod a new process");
    }
}

#[tokio::test]
async fn signal_answers_with_each_pods_hook_output() {
    let Pods {
        fx,
        web: _web,
        db: _db,
        uuids: _,
    } = web_and_db(
        3,
        r#"hooks:
  signaled: "read body; echo \"{\\\"got\\\": $body}\""
"#,
        0,
    )
    .await;
    // signal: each pod's hook answer.
    let sig = fx
        .ctl(&["signal", "web", "-i", "3", "--body", r#"{"hello": 1}"#, "--json"])
        .await;
    assert_eq!(sig.code, 0, "{sig:?}");
    assert_eq!(
        pods_of(&sig.json())[0]["answer"],
        serde_json::json!({"got": {"hello": 1}})
    );
}

#[tokio::test]
async fn reconnect_shows_a_standalone_pods_own_409() {
    let Pods {
        fx,
        web: _web,
        db: _db,
        uuids: _,
    } = web_and_db(0, "", 1).await;
    // reconnect: standalone pods have no session to reset; the pod's own error is shown.
    let out = fx.ctl(&["reconnect", "db"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("default.db #1: 409 from") && out.stderr.contains("standalone"),
        "{out:?}"
    );
}

#[tokio::test]
async fn kill_stops_one_pod_and_info_names_it_while_reporting_the_others() {
    let Pods {
        fx,
        mut web,
        db: _db,
        uuids: _,
    } = web_and_db(3, "", 0).await;
    // kill one pod: it exits 0; its znode stays (our session), so the next info fails for that
    // pod only, naming it and its address, with exit 1 and the others still reported.
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
