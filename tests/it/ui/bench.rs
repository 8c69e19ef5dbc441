//! Figures for docs/benchmarks.md: ignored tests, run by `bench/live.sh`, each printing a
//! Markdown table on stdout. Real parts only: the harness's ZooKeeper, the `ochopod` binary
//! (`OCHOPOD_BENCH_BIN`, else the one cargo built for the tests), Debian's Chromium. Pods are raw
//! znodes written by the test's own ZooKeeper session (valid pod JSON, addresses where nothing
//! listens), so that 100 pods cost no 100 processes.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use zookeeper_client as zkc;

use super::cdp::Browser;
use crate::ctl::events::Follow;
use crate::ctl::Fixture;
use crate::harness::free_port;

fn bin() -> String {
    std::env::var("OCHOPOD_BENCH_BIN").unwrap_or_else(|_| crate::harness::pod::binary().to_string())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(mut ms: Vec<f64>) -> String {
    ms.sort_by(|a, b| a.total_cmp(b));
    format!(
        "{:.1} / {:.1} / {:.1} / {:.1}",
        percentile(&ms, 0.5),
        percentile(&ms, 0.9),
        ms[0],
        ms[ms.len() - 1]
    )
}

/// A valid pod's JSON (SPEC §6) at an address where nothing listens.
fn raw_pod(key: &str, uuid: &str, seq: u32, ip: &str) -> Value {
    let (namespace, cluster) = key.split_once('.').unwrap();
    json!({"uuid": uuid, "seq": seq, "cluster": cluster, "namespace": namespace, "ip": ip,
           "host": ip, "public": ip, "ports": {"9000": 9000}, "control_port": 9,
           "state": "running", "started": 1})
}

fn ephemeral() -> zkc::CreateOptions<'static> {
    zkc::CreateMode::Ephemeral.with_acls(zkc::Acls::anyone_all())
}

fn persistent() -> zkc::CreateOptions<'static> {
    zkc::CreateMode::Persistent.with_acls(zkc::Acls::anyone_all())
}

/// `ctl events --follow`: from a znode change acknowledged by ZooKeeper to its line read from the
/// command's stdout; 50 registrations and 50 removals, one at a time.
#[tokio::test]
#[ignore = "a benchmark: bench/live.sh"]
async fn bench_events_latency() {
    let fx = Fixture::new().await;
    let zk = fx.zk.connect_string();
    let dir = "/ochopod/clusters/default.bench/pods";
    fx.client.mkdir(dir, &persistent()).await.unwrap();
    let mut events = Follow::start_with(&bin(), &zk, &["bench"]);
    // Wait until it reads ZooKeeper: its first update (the empty cluster) prints nothing, so
    // register one pod and wait for its line.
    let warm = raw_pod("default.bench", "warm", 999, "127.0.99.1");
    fx.client
        .create(&format!("{dir}/warm"), warm.to_string().as_bytes(), &ephemeral())
        .await
        .unwrap();
    events
        .until("the warm-up pod", Duration::from_secs(30), |v| {
            v["uuid"] == "warm"
        })
        .await;
    let (mut registered, mut removed) = (Vec::new(), Vec::new());
    for i in 0..50u32 {
        let uuid = format!("bench-{i}");
        let path = format!("{dir}/{uuid}");
        let pod = raw_pod("default.bench", &uuid, i + 1, "127.0.99.2");
        fx.client
            .create(&path, pod.to_string().as_bytes(), &ephemeral())
            .await
            .unwrap();
        let t = Instant::now();
        events
            .until("registered", Duration::from_secs(10), |v| {
                v["uuid"] == uuid.as_str() && v["kind"] == "registered"
            })
            .await;
        registered.push(t.elapsed().as_secs_f64() * 1000.0);
        fx.client.delete(&path, None).await.unwrap();
        let t = Instant::now();
        events
            .until("expired", Duration::from_secs(10), |v| {
                v["uuid"] == uuid.as_str() && v["kind"] == "expired"
            })
            .await;
        removed.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let all: Vec<f64> = registered.iter().chain(&removed).copied().collect();
    println!("\n### ctl events --follow: change -> line\n");
    println!("| change (n) | median / p90 / min / max (ms) |");
    println!("|---|---:|");
    println!(
        "| pod znode created -> `registered` line (50) | {} |",
        summary(registered)
    );
    println!(
        "| pod znode deleted -> `expired` line (50) | {} |",
        summary(removed)
    );
    println!("| all (100) | {} |", summary(all));
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// `ctl ui` with 10 clusters of 10 pods: its memory, and how fast the page paints and shows
/// the model in Chromium.
#[tokio::test]
#[ignore = "a benchmark: bench/live.sh"]
async fn bench_ui_first_paint_and_memory() {
    let fx = Fixture::new().await;
    let zk = fx.zk.connect_string();
    for c in 0..10u32 {
        let key = format!("default.svc{c}");
        let root = format!("/ochopod/clusters/{key}");
        fx.client
            .mkdir(&format!("{root}/pods"), &persistent())
            .await
            .unwrap();
        fx.client
            .mkdir(&format!("{root}/leader"), &persistent())
            .await
            .unwrap();
        let mut pods = serde_json::Map::new();
        for s in 1..=10u32 {
            let uuid = format!("svc{c}-pod{s}");
            let pod = raw_pod(&key, &uuid, s, &format!("127.0.99.{}", 2 + c * 10 + s));
            fx.client
                .create(
                    &format!("{root}/pods/{uuid}"),
                    pod.to_string().as_bytes(),
                    &ephemeral(),
                )
                .await
                .unwrap();
            pods.insert(uuid, pod);
        }
        let seq = zkc::CreateMode::EphemeralSequential.with_acls(zkc::Acls::anyone_all());
        fx.client
            .create(
                &format!("{root}/leader/n_"),
                format!("svc{c}-pod1").as_bytes(),
                &seq,
            )
            .await
            .unwrap();
        let depends_on: Vec<String> = (c > 0)
            .then(|| format!("default.svc{}", c / 2))
            .into_iter()
            .collect();
        let snapshot = json!({"generation": 1, "hash": "x", "pods": pods, "depends_on": depends_on});
        fx.client
            .create(
                &format!("{root}/snapshot"),
                snapshot.to_string().as_bytes(),
                &persistent(),
            )
            .await
            .unwrap();
    }
    let port = free_port("127.0.0.1");
    let url = format!("http://127.0.0.1:{port}/");
    let mut child = tokio::process::Command::new(bin())
        .args(["ctl", "--zk", &zk, "ui", "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("OCHOPOD_TOKEN")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    // Every pod's /info tried (refused: nothing listens on port 9 there).
    let model: Value =
        crate::harness::eventually(Duration::from_secs(60), "100 pods, each /info tried", || async {
            let v: Value = reqwest::get(format!("{url}api/model"))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let pods: Vec<&Value> = v["clusters"]
                .as_array()?
                .iter()
                .flat_map(|c| c["pods"].as_array().unwrap())
                .collect();
            (pods.len() == 100 && pods.iter().all(|p| p["info_error"].is_string())).then_some(v)
        })
        .await;
    let bytes = model.to_string().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_idle, hwm_idle) = (status_kib(pid, "VmRSS:"), status_kib(pid, "VmHWM:"));

    let browser = Browser::start().await;
    let mut page = browser.page().await;
    let (mut fcp, mut render) = (Vec::new(), Vec::new());
    for i in 0..21 {
        page.navigate(&format!("{url}?n={i}")).await;
        let v = page
            .until("the first render", Duration::from_secs(30), "[document.documentElement.dataset.firstRenderMs, document.documentElement.dataset.fcpMs, document.querySelectorAll('tr.pod').length]", |v| {
                v[0].is_string() && v[1].is_string() && v[2] == 100
            })
            .await;
        // The first load warms Chromium's own caches (fonts, the renderer): left out.
        if i > 0 {
            fcp.push(v[1].as_str().unwrap().parse::<f64>().unwrap());
            render.push(v[0].as_str().unwrap().parse::<f64>().unwrap());
        }
    }
    let (rss_viewing, hwm) = (status_kib(pid, "VmRSS:"), status_kib(pid, "VmHWM:"));
    println!("\n### ctl ui: 10 clusters x 10 pods\n");
    println!("| figure | value |");
    println!("|---|---:|");
    println!("| clusters x pods | 10 x 10 (raw znodes, /info refused) |");
    println!("| model JSON (bytes) | {bytes} |");
    println!(
        "| server RSS after the first model (MiB; peak) | {:.1} ({:.1}) |",
        rss_idle as f64 / 1024.0,
        hwm_idle as f64 / 1024.0
    );
    println!(
        "| server RSS after 21 page loads, 1 viewer live (MiB; peak) | {:.1} ({:.1}) |",
        rss_viewing as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "| first contentful paint, median / p90 / min / max (ms, n=20) | {} |",
        summary(fcp)
    );
    println!(
        "| 100 rows on screen (first model rendered), median / p90 / min / max (ms, n=20) | {} |",
        summary(render)
    );
    let _ = child.kill().await;
}
