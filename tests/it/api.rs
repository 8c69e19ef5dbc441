//! The control API over real HTTP: every endpoint, the token, and bad input.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::pod::{Pod, PodDir, PodOptions};
use crate::runner::pod_json;

const T: Duration = Duration::from_secs(20);

fn sleeper(extra: &str) -> PodDir {
    PodDir::new(&format!(
        "cluster: api\nports: [7000]\nprocess:\n  command: [\"sleep\", \"60\"]\n  stop: {{ grace: 2s }}\n{extra}"
    ))
}

#[tokio::test]
async fn token_guards_everything_but_health_readiness_and_metrics() {
    let dir = sleeper("");
    let mut opts = PodOptions::default();
    opts.env
        .insert("OCHOPOD_TOKEN".into(), "new-secret,old-secret".into());
    opts.token = Some("old-secret".into());
    let pod = Pod::start(&dir, opts);
    pod.wait_info("running", T, |i| i["process"] == "running").await;
    let bare = reqwest::Client::new();
    for path in ["/healthz", "/readyz", "/metrics"] {
        let status = bare.get(pod.url(path)).send().await.expect("GET").status();
        assert_eq!(status, 200, "{path} is open");
    }
    for (method, path) in [
        ("GET", "/info"),
        ("GET", "/log"),
        ("POST", "/control/off"),
        ("POST", "/control/kill"),
        ("POST", "/reset"),
    ] {
        let req = bare.request(method.parse().expect("method"), pod.url(path));
        let resp = req.send().await.expect("send");
        assert_eq!(resp.status(), 401, "{method} {path} needs the token");
        let body: Value = resp.json().await.expect("JSON error");
        assert!(body["error"].is_string());
        let resp = bare
            .request(method.parse().expect("method"), pod.url(path))
            .bearer_auth("wrong")
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 401);
    }
    // Any token of the list is accepted (rotation).
    let resp = bare
        .get(pod.url("/info"))
        .bearer_auth("new-secret")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(pod.get("/info").await.0, 200);
    assert_eq!(
        pod.wait_info("still running", T, |i| i["process"] == "running")
            .await["restarts"],
        0
    );
}

#[tokio::test]
async fn bad_input_gets_json_4xx_and_changes_nothing() {
    let dir = sleeper("");
    let pod = Pod::start(&dir, PodOptions::default());
    let before = pod
        .wait_info("running", T, |i| i["process"] == "running" && i["ready"] == true)
        .await;
    let cases: Vec<(&str, &str, String, u16)> = vec![
        ("POST", "/control/on", "{not json".into(), 400),
        ("POST", "/control/on", json!({"generation": 5}).to_string(), 400),
        (
            "POST",
            "/control/on",
            json!({"generation": 9, "key": "nobody", "pods": {}}).to_string(),
            400,
        ),
        ("POST", "/control/check", "[1,2".into(), 400),
        ("POST", "/control/off", "{oops".into(), 400),
        ("POST", "/control/signal", "nope".into(), 400),
        ("GET", "/control/on", String::new(), 405),
        ("DELETE", "/info", String::new(), 405),
        ("GET", "/no/such/thing", String::new(), 404),
        ("GET", "/log?lines=minus-one", String::new(), 400),
    ];
    // A body announced over the limit is refused before it is read (the answer comes first).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect((pod.ip.as_str(), pod.port))
            .await
            .expect("io");
        let head = format!(
            "POST /control/on HTTP/1.1\r\nhost: {}:{}\r\ncontent-length: {}\r\n\r\n",
            pod.ip,
            pod.port,
            17 << 20
        );
        s.write_all(head.as_bytes()).await.expect("io");
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.expect("io");
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("\"error\""), "{answer}");
    }
    let client = reqwest::Client::new();
    for (method, path, body, want) in cases {
        let resp = client
            .request(method.parse().expect("method"), pod.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status().as_u16(), want, "{method} {path}");
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(
            v["error"].is_string(),
            "{method} {path}: JSON error body, got {v}"
        );
    }
    let after = pod.info().await;
    for k in ["pid", "generation", "restarts", "process", "pod_state"] {
        assert_eq!(before[k], after[k], "{k} unchanged");
    }
}

/// A running standalone pod of [`sleeper`], its dir and its first `/info`.
async fn running() -> (PodDir, Pod, Value) {
    let dir = sleeper("");
    let pod = Pod::start(&dir, PodOptions::default());
    let info = pod.wait_info("running", T, |i| i["process"] == "running").await;
    (dir, pod, info)
}

/// A cluster map of generation `generation` for the pod of `info`, alone.
fn map_for(info: &Value, generation: u64) -> String {
    let uuid = info["uuid"].as_str().expect("uuid");
    json!({"generation": generation, "key": uuid, "pods": {uuid: pod_json(info)}}).to_string()
}

#[tokio::test]
async fn an_operators_off_holds_the_pod_and_an_empty_on_releases_it() {
    let (_dir, pod, info) = running().await;
    assert_eq!(pod.get("/healthz").await.0, 200);
    assert_eq!(pod.get("/readyz").await.0, 200);
    // An operator off holds the pod; readyz goes 503; an empty on releases and restarts.
    assert_eq!(pod.post("/control/off", "").await.0, 200);
    let held = pod.info().await;
    assert_eq!(held["process"], "stopped");
    assert_eq!(held["pod_state"], "held");
    assert_eq!(pod.get("/readyz").await.0, 503);
    assert_eq!(pod.get("/healthz").await.0, 200, "alive while held");
    let (status, body) = pod.post("/control/on", "").await;
    assert_eq!(status, 200, "{body}");
    let back = pod.info().await;
    assert_eq!(back["process"], "running");
    assert_eq!(back["pod_state"], "running");
    assert_ne!(back["pid"], info["pid"]);
}

#[tokio::test]
async fn a_newer_generation_applies_and_an_older_one_is_refused_with_409() {
    let (_dir, pod, info) = running().await;
    assert_eq!(pod.post("/control/on", &map_for(&info, 7)).await.0, 200);
    assert_eq!(pod.info().await["generation"], 7);
    let (status, body) = pod.post("/control/on", &map_for(&info, 6)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(pod.post("/control/check", &map_for(&info, 6)).await.0, 409);
    assert_eq!(pod.post("/control/check", &map_for(&info, 8)).await.0, 200);
    assert_eq!(
        pod.post("/control/on", &map_for(&info, 7)).await.0,
        200,
        "the same map again"
    );
    assert_eq!(pod.info().await["generation"], 7);
}

#[tokio::test]
async fn ok_answers_200_signal_without_a_hook_501_and_reset_standalone_409() {
    let (_dir, pod, _) = running().await;
    let mut wrong = Vec::new();
    for (path, body, want, why) in [
        ("/control/ok", "", 200, "the configuration is complete"),
        ("/control/signal", "{}", 501, "no signaled hook declared"),
        ("/reset", "", 409, "standalone: no session"),
    ] {
        let (status, body) = pod.post(path, body).await;
        if status != want {
            wrong.push(format!("{path}: {status} {body}, want {want} ({why})"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[tokio::test]
async fn metrics_count_configurations_and_have_no_leader_series_when_standalone() {
    let (_dir, pod, info) = running().await;
    // Standalone: configured once at start; then one map more.
    assert_eq!(pod.post("/control/on", &map_for(&info, 7)).await.0, 200);
    let (status, metrics) = pod.get("/metrics").await;
    assert_eq!(status, 200);
    let text = metrics.as_str().expect("text");
    let labels = r#"{ochopod_namespace="default",ochopod_cluster="api"}"#;
    assert!(
        text.contains(&format!("ochopod_configurations_total{labels} 2")),
        "{text}"
    );
    assert!(
        text.contains(&format!("ochopod_process_running{labels} 1")),
        "{text}"
    );
    assert!(
        !text.contains("ochopod_leader"),
        "standalone: no leader series\n{text}"
    );
}

#[tokio::test]
async fn kill_finalizes_stops_for_good_and_exits_0() {
    let (_dir, mut pod, _) = running().await;
    assert_eq!(pod.post("/control/kill", "").await.0, 200);
    assert_eq!(pod.wait_exit(T).await, 0);
}

#[tokio::test]
async fn hooks_veto_signal_and_ready_check() {
    let dir = sleeper(
        r#"checks:
  ready: { command: "test -f {{env.OCHOPOD_HOME}}/ready", every: 100ms, timeout: 2s }
hooks:
  can_configure: "test ! -f {{env.OCHOPOD_HOME}}/veto"
  signaled: "read body; echo \"{\\\"got\\\": $body, \\\"seq\\\": {{pod.seq}}}\""
"#,
    );
    let pod = Pod::start(&dir, PodOptions::default());
    let info = pod.wait_info("running", T, |i| i["process"] == "running").await;
    assert_eq!(info["ready"], false, "the ready check has not passed");
    assert_eq!(pod.get("/readyz").await.0, 503);
    std::fs::write(pod.home_file("ready"), "").expect("touch");
    pod.wait_info("ready", T, |i| i["ready"] == true).await;
    let uuid = info["uuid"].as_str().expect("uuid");
    let map = json!({"generation": 2, "key": uuid, "pods": {uuid: pod_json(&info)}}).to_string();
    assert_eq!(pod.post("/control/check", &map).await.0, 200);
    std::fs::write(pod.home_file("veto"), "").expect("touch");
    assert_eq!(pod.post("/control/check", &map).await.0, 406);
    let (status, answer) = pod.post("/control/signal", r#"{"hello": 1}"#).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"got": {"hello": 1}, "seq": 1}));
    // Not ready again after a restart: an on that forces a restart answers 504.
    std::fs::remove_file(pod.home_file("ready")).expect("rm");
    assert_eq!(pod.post("/control/off", "").await.0, 200);
    let (status, body) = pod.post("/control/on", "").await;
    assert_eq!(status, 504, "{body}");
}
