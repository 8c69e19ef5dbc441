//! The trust boundary (issue 8), end to end: ZooKeeper contents and every network request are
//! untrusted. A real ZooKeeper, real `ochopod run` processes, and an intruder with what anybody
//! on the network has: an anonymous ZooKeeper session (no auth: the tree is `world:anyone`), a
//! listener of its own, and the pods' control ports.
//!
//! The comments between tests give the number of the finding of issue 8 that they cover.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zookeeper_client as zkc;

use crate::cluster::{cluster_status, converged, info, leader, Member, T};
use crate::harness::eventually;
use crate::harness::pod::{binary, next_ip, read, Pod, PodDir, PodOptions};
use crate::harness::zk::ZkServer;

/// Every pod renders its peers (`peers.txt`, as `cluster::converged` reads it) and logs each
/// configuration's generation from its `configured` hook.
const PEERS: &str = "gen {{cluster.generation}}\n{{#each cluster.pods}}{{seq}} {{ip}}\n{{/each}}";

/// The `configured` hook of most tests: one line per configuration, its generation.
const LOG_GENERATION: &str =
    "  configured: \"echo {{cluster.generation}} >> {{env.OCHOPOD_HOME}}/configured.log\"\n";

/// A pod.yaml of `web` in `namespace`: `settings` is a flow mapping, `hooks` the lines of the
/// `hooks:` block (indented by two; [`LOG_GENERATION`] for most).
fn web(namespace: &str, settings: &str, hooks: &str) -> PodDir {
    PodDir::new(&format!(
        r#"cluster: web
namespace: {namespace}
ports: [9000]
process:
  command: "while kill -0 $PPID 2>/dev/null; do sleep 0.2; done"
  stop: {{ grace: 2s }}
settings: {settings}
templates:
  - source: peers.hbs
    dest: "{{{{env.OCHOPOD_HOME}}}}/peers.txt"
hooks:
{hooks}"#
    ))
    .with_file("peers.hbs", PEERS)
}

fn start(zk: &ZkServer, dir: PodDir, token: Option<&str>, session_timeout: &str) -> Member {
    let mut opts = PodOptions {
        args: Vec::new(),
        token: token.map(String::from),
        ..PodOptions::default()
    };
    opts.env.insert("OCHOPOD_ZK".into(), zk.connect_string());
    opts.env
        .insert("OCHOPOD_ZK_SESSION_TIMEOUT".into(), session_timeout.into());
    Member {
        pod: Pod::start(&dir, opts),
        _dir: dir,
    }
}

fn standalone(dir: PodDir, token: Option<&str>) -> Member {
    let opts = PodOptions {
        token: token.map(String::from),
        ..PodOptions::default()
    };
    Member {
        pod: Pod::start(&dir, opts),
        _dir: dir,
    }
}

/// Waits until `m`'s cluster status satisfies `pred`; on timeout, says what it was.
async fn status_until(m: &Member, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + T;
    loop {
        let s = cluster_status(m).await;
        if pred(&s) {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {T:?} waiting for {what}; the status is {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until `m` leads its cluster at rest with `n` pods at `generation`.
async fn at_rest(m: &Member, n: usize, generation: u64) -> String {
    let want = format!("configured: {n} pods, generation {generation}");
    status_until(m, &format!("the leader at rest ({want})"), |s| {
        s.starts_with(&want)
    })
    .await
}

/// The map a pod applied last, as it keeps it (`$OCHOPOD_CLUSTER_FILE`).
fn applied(m: &Member) -> Value {
    serde_json::from_str(&read(&m.home_file(".ochopod/cluster.json"))).unwrap_or(Value::Null)
}

async fn uuid_of(m: &Member) -> String {
    m.info().await["uuid"].as_str().unwrap().to_string()
}

/// The JSON of a pod at `ip`, its control API on `port`, as a pod registers it.
fn pod_json(uuid: &str, seq: u32, namespace: &str, ip: &str, port: u16) -> Value {
    json!({
        "uuid": uuid, "seq": seq, "cluster": "web", "namespace": namespace,
        "ip": ip, "host": ip, "public": ip, "node": "", "task": "",
        "ports": { "9000": port, port.to_string(): port }, "control_port": port,
        "binding": "explicit", "version": "0.1.0", "state": "running", "started": 1
    })
}

/// Writes `pod` under the cluster's `pods/` from `session` (ephemeral, as a pod registers).
async fn register(session: &zkc::Client, key: &str, pod: &Value) {
    let path = format!("/ochopod/clusters/{key}/pods/{}", pod["uuid"].as_str().unwrap());
    let opts = zkc::CreateMode::Ephemeral.with_acls(zkc::Acls::anyone_all());
    session
        .create(&path, pod.to_string().as_bytes(), &opts)
        .await
        .unwrap();
}

/// The cluster's snapshot as ZooKeeper holds it, and its version.
async fn snapshot(session: &zkc::Client, key: &str) -> (Value, i32) {
    let (data, stat) = session
        .get_data(&format!("/ochopod/clusters/{key}/snapshot"))
        .await
        .unwrap();
    (serde_json::from_slice(&data).unwrap(), stat.version)
}

/// POSTs `body` to `path` with the given `Authorization` (none: None).
async fn post_as(m: &Member, path: &str, body: &str, authorization: Option<&str>) -> (u16, Value) {
    let mut req = m
        .client
        .post(m.url(path))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The `Authorization` of a request signed with `token` for `m` (what the leader and `ctl` send).
fn signed(token: &str, method: &str, m: &Member, path: &str, body: &[u8]) -> String {
    // The pod's uuid, from its state dir (the signature names the pod it is for).
    let uuid = std::fs::read_to_string(m.home_file(".ochopod/uuid")).unwrap();
    ochopod::auth::Tokens::one(token).signer().authorization(
        method,
        uuid.trim(),
        &format!("{}:{}", m.ip, m.port),
        path,
        body,
    )
}

/// How a [`Listener`] answers: (method, path, body) -> (status, JSON body).
type Answer = Arc<dyn Fn(&str, &str, &[u8]) -> (u16, String) + Send + Sync>;

/// An HTTP server of the intruder's on a loopback address of its own, that records every
/// request it receives byte for byte (request line, headers, body).
struct Listener {
    ip: String,
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    async fn start(answer: Answer) -> Listener {
        let ip = next_ip();
        let socket = tokio::net::TcpListener::bind((ip.as_str(), 0)).await.unwrap();
        let port = socket.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = socket.accept().await else {
                    continue;
                };
                tokio::spawn(serve(stream, seen.clone(), answer.clone()));
            }
        });
        Listener {
            ip,
            port,
            requests,
            task,
        }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// How many requests had `needle` in their request line.
    fn count(&self, needle: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.lines().next().is_some_and(|l| l.contains(needle)))
            .count()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection: HTTP/1.1 requests one after the other (keep-alive), each recorded whole.
async fn serve(mut stream: tokio::net::TcpStream, seen: Arc<Mutex<Vec<String>>>, answer: Answer) {
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let length: usize = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < end + length {
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        let body: Vec<u8> = buf[end..end + length].to_vec();
        buf.drain(..end + length);
        seen.lock()
            .unwrap()
            .push(format!("{head}{}", String::from_utf8_lossy(&body)));
        let mut words = head.split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let (status, text) = answer(method, path, &body);
        let reply = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Lines of the pod's log (ochopod's own) about a rejected registration that name `needle`.
async fn rejections_logged(m: &Member, needle: &str) -> usize {
    let (_, log) = m.get("/log?lines=1000").await;
    let lines: Vec<String> = serde_json::from_value(log["lines"].clone()).unwrap_or_default();
    lines
        .iter()
        .filter(|l| l.contains("registration rejected") && l.contains(needle))
        .count()
}

/// A line of `/metrics` (open, no token needed): `name value`.
async fn metric(m: &Member, name: &str) -> Option<String> {
    let text = m
        .client
        .get(m.url("/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    // `name{labels} value` → `name value`.
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match (l.split_once('{'), l.rsplit_once('}')) {
            (Some((n, _)), Some((_, v))) => format!("{n}{v}"),
            _ => l.to_string(),
        })
        .find(|l| l.split(' ').next() == Some(name))
}

// 1. Remote code execution from a registration.

#[tokio::test]
async fn a_hostile_registration_is_left_out_of_every_map_and_runs_nothing() {
    let zk = ZkServer::start();
    let shared = tempfile::tempdir().unwrap();
    let pwned = |n: u32| shared.path().join(format!("pwned{n}"));
    // Every pod's hooks render each pod's ip and host into `sh -c`, unquoted: what a hostile
    // value would run is in plain sight (the leader runs `check` on every pod first).
    let render_all = "{{#each cluster.pods}}{{ip}} {{host}} {{/each}}";
    let yaml = || {
        web(
            "t1",
            "{ min_size: 2, damper: 200ms, evict_after: 2, timeout: 5s }",
            &format!(
                "  can_configure: \"echo {render_all} >> {{{{env.OCHOPOD_HOME}}}}/checked\"\n  \
                 pre_start: \"echo {render_all} >> {{{{env.OCHOPOD_HOME}}}}/started\"\n  \
                 configured: \"echo {render_all} >> {{{{env.OCHOPOD_HOME}}}}/trail\"\n"
            ),
        )
    };
    let a = start(&zk, yaml(), None, "2s");
    let b = start(&zk, yaml(), None, "2s");
    converged(&[&a, &b], 2, "2 pods configured").await;

    // An anonymous session writes two registrations: an ip that closes the command and runs
    // another, a host with a newline that starts a new command line.
    let intruder = zk.observer().await;
    let ip_uuid = "0f1e2d3c-0000-4000-8000-000000000001";
    let mut bad_ip = pod_json(ip_uuid, 7, "t1", "127.0.0.99", 9000);
    bad_ip["ip"] = json!(format!("127.0.0.99/?;touch${{IFS}}{};#", pwned(1).display()));
    let host_uuid = "0f1e2d3c-0000-4000-8000-000000000002";
    let mut bad_host = pod_json(host_uuid, 8, "t1", "127.0.0.98", 9000);
    bad_host["host"] = json!(format!("h\ntouch {}\n", pwned(2).display()));
    register(&intruder, "t1.web", &bad_ip).await;
    register(&intruder, "t1.web", &bad_host).await;

    // A third real pod: the cluster keeps configuring, without them.
    let c = start(&zk, yaml(), None, "2s");
    let three = converged(&[&a, &b, &c], 3, "3 real pods configured").await;
    assert!(three.starts_with("gen 2\n"), "{three}");
    let lead = leader(&[&a, &b, &c]).await;
    let status = at_rest(lead, 3, 2).await;
    assert!(
        !pwned(1).exists() && !pwned(2).exists(),
        "a registration ran a command"
    );
    for m in [&a, &b, &c] {
        // `ip host` of each pod of generation 2.
        eventually(T, "the configured hook of generation 2", || async {
            let trail = read(&m.home_file("trail"));
            (trail.lines().last()?.split_whitespace().count() == 6).then_some(())
        })
        .await;
        let pods = applied(m)["pods"].as_object().unwrap().clone();
        assert_eq!(pods.len(), 3, "{pods:?}");
        assert!(!pods.contains_key(ip_uuid) && !pods.contains_key(host_uuid));
        for file in ["checked", "started", "trail"] {
            let text = read(&m.home_file(file));
            assert!(
                !text.contains("127.0.0.99") && !text.contains("127.0.0.98") && !text.contains("touch"),
                "{file}: {text}"
            );
        }
    }
    // The leader says why they are left out.
    assert!(
        status.contains("rejected registrations:")
            && status.contains(ip_uuid)
            && status.contains(host_uuid)
            && status.contains("ip: expected an IP address")
            && status.contains("host: expected an IP address or a DNS name"),
        "the leader names both rejected registrations: {status}"
    );
    assert_eq!(
        metric(lead, "ochopod_rejected_registrations").await.as_deref(),
        Some("ochopod_rejected_registrations 2")
    );
    // One log line per bad registration, not one per round (there were several).
    for uuid in [ip_uuid, host_uuid] {
        assert_eq!(rejections_logged(lead, uuid).await, 1, "{uuid} logged once");
    }

    // The same through the control port: a map whose pod ip carries `; touch ...` is refused
    // before anything is rendered or run.
    let before = applied(&a);
    let configurations = info(&a).await.unwrap()["configurations"].clone();
    let mut map = before.clone();
    let me = map["key"].as_str().unwrap().to_string();
    map["generation"] = json!(map["generation"].as_u64().unwrap() + 1);
    map["pods"][&me]["ip"] = json!(format!("127.0.0.5; touch {}", pwned(3).display()));
    let (status, body) = a.post("/control/on", &map.to_string()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("expected an IP address"),
        "{body}"
    );
    assert_eq!(applied(&a), before, "nothing written");
    assert_eq!(info(&a).await.unwrap()["configurations"], configurations);
    assert!(!pwned(3).exists(), "the map ran a command");
}

// 3. The token leaks (to whatever address ZooKeeper lists).

#[tokio::test]
async fn no_request_to_a_registered_listener_carries_the_token() {
    let zk = ZkServer::start();
    let token = format!("tok-{}", uuid::Uuid::new_v4().simple());
    let yaml = || {
        web(
            "t2",
            "{ min_size: 2, damper: 200ms, timeout: 5s }",
            LOG_GENERATION,
        )
    };
    let a = start(&zk, yaml(), Some(&token), "2s");
    let b = start(&zk, yaml(), Some(&token), "2s");
    converged(&[&a, &b], 2, "2 pods configured").await;

    // A valid pod as far as anybody can tell, registered by an anonymous session: the leader
    // configures it, `ctl` calls it.
    let listener = Listener::start(Arc::new(|_, _, _| (200, r#"{"ok":true}"#.to_string()))).await;
    let intruder = zk.observer().await;
    let fake = pod_json(
        "0f1e2d3c-0000-4000-8000-000000000003",
        9,
        "t2",
        &listener.ip,
        listener.port,
    );
    register(&intruder, "t2.web", &fake).await;
    converged(&[&a, &b], 3, "the 2 pods configured with the listener").await;
    let lead = leader(&[&a, &b]).await;
    at_rest(lead, 3, 2).await;
    for (verb, shows) in [("info", a.ip.as_str()), ("ls", "t2.web")] {
        let out = crate::ctl::ctl_with(
            &zk.connect_string(),
            &[verb, "web", "--namespace", "t2", "--token", &token],
            &[],
        )
        .await;
        assert!(out.stdout.contains(shows), "ctl {verb}: {out:?}");
    }
    // `ctl restart` of a real pod: signed `off` then `on`, taken.
    let before = a.wait_info("the process running", T, |i| i["pid"].is_u64()).await;
    let seq = before["seq"].to_string();
    let out = crate::ctl::ctl_with(
        &zk.connect_string(),
        &[
            "restart",
            "web",
            "--namespace",
            "t2",
            "-i",
            &seq,
            "--token",
            &token,
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, 0, "ctl restart: {out:?}");
    let after = a
        .wait_info("the process running", T, |i| i["process"] == "running")
        .await;
    assert_ne!(after["pid"], before["pid"], "restarted");
    for path in ["/control/check", "/control/on", "/control/ok", "GET /info"] {
        assert!(
            listener.count(path) >= 1,
            "no {path} in {:#?}",
            listener.requests()
        );
    }
    for r in listener.requests() {
        assert!(!r.contains(&token), "the token travelled: {r}");
        assert!(
            !r.to_lowercase().contains("bearer"),
            "a bearer token travelled: {r}"
        );
        assert!(r.contains("Ochopod-HMAC-SHA256 t="), "an unsigned request: {r}");
    }
}

// 4. A generation bomb.

/// `u64::MAX - 1`, what the hostile pod claims to have applied.
const HUGE: u64 = u64::MAX - 1;

#[tokio::test]
async fn a_pod_claiming_a_huge_generation_is_evicted_and_the_generation_stays_small() {
    let zk = ZkServer::start();
    let yaml = || {
        web(
            "t3",
            "{ min_size: 2, damper: 200ms, evict_after: 2, timeout: 5s }",
            LOG_GENERATION,
        )
    };
    let a = start(&zk, yaml(), None, "2s");
    let b = start(&zk, yaml(), None, "2s");
    converged(&[&a, &b], 2, "2 pods configured").await;

    // A registered pod that behaves as one that applied generation u64::MAX - 1: it refuses
    // (409) every map below that, takes any above, and says so in `/info`.
    let fake_uuid = "0f1e2d3c-0000-4000-8000-000000000004";
    let listener = Listener::start(Arc::new(move |method, path, body| {
        if method == "GET" && path == "/info" {
            return (200, json!({ "generation": HUGE, "uuid": fake_uuid }).to_string());
        }
        let generation = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|m| m["generation"].as_u64());
        match generation {
            Some(g) if g <= HUGE => (
                409,
                json!({ "error": format!("stale map: {HUGE} is applied") }).to_string(),
            ),
            _ => (200, r#"{"ok":true}"#.to_string()),
        }
    }))
    .await;
    let intruder = zk.observer().await;
    let fake = pod_json(fake_uuid, 9, "t3", &listener.ip, listener.port);
    register(&intruder, "t3.web", &fake).await;
    let lead = leader(&[&a, &b]).await;
    let evicted = format!("evicted: seq 9 ({fake_uuid})");
    status_until(lead, "the leader to evict the hostile pod", |s| {
        s.starts_with("configured: 2 pods, generation 1;") && s.contains(&evicted)
    })
    .await;
    assert!(
        listener.count("/control/check") >= 2,
        "{:#?}",
        listener.requests()
    );

    // The cluster still configures: a third pod joins at the next generation.
    let c = start(&zk, yaml(), None, "2s");
    let three = converged(&[&a, &b, &c], 3, "3 real pods configured").await;
    assert!(three.starts_with("gen 2\n"), "{three}");
    let lead = leader(&[&a, &b, &c]).await;
    at_rest(lead, 3, 2).await;
    let (snap, _) = snapshot(&intruder, "t3.web").await;
    assert_eq!(snap["generation"], 2, "{snap}");
    for m in [&a, &b, &c] {
        assert_eq!(info(m).await.unwrap()["generation"], 2);
    }
}

#[tokio::test]
async fn a_generation_bomb_posted_to_a_pod_is_refused() {
    let zk = ZkServer::start();
    let token = "bomb-token";
    let yaml = || {
        web(
            "t4",
            "{ min_size: 2, damper: 200ms, timeout: 5s }",
            LOG_GENERATION,
        )
    };
    let a = start(&zk, yaml(), Some(token), "2s");
    let b = start(&zk, yaml(), Some(token), "2s");
    converged(&[&a, &b], 2, "2 pods configured").await;
    at_rest(leader(&[&a, &b]).await, 2, 1).await;
    let mut bomb = applied(&a);
    bomb["generation"] = json!(u64::MAX);

    // Unsigned: 401.
    let (status, body) = post_as(&a, "/control/on", &bomb.to_string(), None).await;
    assert_eq!(status, 401, "{body}");
    // With the token itself (curl), addressed right, but without the leader's epoch (as any
    // map not from the current leader): older than the applied map, 409.
    let mut plain = bomb.clone();
    let obj = plain.as_object_mut().unwrap();
    obj.remove("epoch");
    obj.remove("version");
    let (status, body) = post_as(
        &a,
        "/control/on",
        &plain.to_string(),
        Some(&format!("Bearer {token}")),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    // Signed, but addressed to another pod: 400.
    let mut foreign = bomb.clone();
    foreign["key"] = json!(uuid_of(&b).await);
    let text = foreign.to_string();
    let auth = signed(token, "POST", &a, "/control/on", text.as_bytes());
    let (status, body) = post_as(&a, "/control/on", &text, Some(&auth)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(info(&a).await.unwrap()["generation"], 1);

    // The bombed pod goes on taking the leader's maps.
    let c = start(&zk, yaml(), Some(token), "2s");
    let three = converged(&[&a, &b, &c], 3, "3 pods configured").await;
    assert!(three.starts_with("gen 2\n"), "{three}");
}

// 5. Fencing: a frozen leader's late calls.

#[tokio::test]
async fn a_thawed_leader_changes_nothing_its_successor_configured() {
    let zk = ZkServer::start();
    // `can_configure` counts the checks, waits while the pod's `gate` file exists, then counts
    // the checks answered: a `check` is held on the pods the test chooses, for as long as it
    // wants.
    let yaml = || {
        web(
            "t5",
            "{ min_size: 3, damper: 300ms, timeout: 30s }",
            &format!(
                "{LOG_GENERATION}  can_configure: \"echo x >> {{{{env.OCHOPOD_HOME}}}}/checks; \
                 while test -e {{{{env.OCHOPOD_HOME}}}}/gate; do sleep 0.05; done; \
                 echo x >> {{{{env.OCHOPOD_HOME}}}}/checked\"\n"
            ),
        )
    };
    let count = |m: &Member, file: &str| read(&m.home_file(file)).lines().count();
    let pods = [
        start(&zk, yaml(), None, "4s"),
        start(&zk, yaml(), None, "4s"),
        start(&zk, yaml(), None, "4s"),
    ];
    let refs: Vec<&Member> = pods.iter().collect();
    converged(&refs, 3, "3 pods configured").await;
    let old = leader(&refs).await;
    at_rest(old, 3, 1).await;
    let others: Vec<&Member> = pods.iter().filter(|m| m.ip != old.ip).collect();

    // A fourth pod joins; the leader's `check` of generation 2 passes on itself and is held on
    // the others. Then the leader freezes (SIGSTOP) in the middle of that configuration, with
    // nothing left to wait for but their answers.
    for m in &others {
        std::fs::write(m.home_file("gate"), "").unwrap();
    }
    let dir = yaml();
    std::fs::create_dir_all(dir.home()).unwrap();
    std::fs::write(dir.home().join("gate"), "").unwrap();
    let d = start(&zk, dir, None, "4s");
    let mut rest = others.clone();
    rest.push(&d);
    eventually(
        T,
        "the leader's check of generation 2 held on every other pod",
        || async {
            let held = others.iter().all(|m| count(m, "checks") == 2) && count(&d, "checks") == 1;
            (held && count(old, "checked") == 2).then_some(())
        },
    )
    .await;
    old.signal(Signal::SIGSTOP);
    // The others answer; their answers wait in the frozen leader's sockets.
    for m in &rest {
        std::fs::remove_file(m.home_file("gate")).unwrap();
    }

    // Its session expires; a successor configures the others at generation 2.
    let successor = leader(&others).await;
    let three = converged(
        &rest,
        3,
        "the successor's configuration without the frozen leader",
    )
    .await;
    assert!(three.starts_with("gen 2\n"), "{three}");
    at_rest(successor, 3, 2).await;
    let epoch = applied(&d)["epoch"].clone();
    let (snap, version) = snapshot(&zk.observer().await, "t5.web").await;
    assert_eq!(snap["generation"], 2);
    let mut before = Vec::new();
    for m in &rest {
        assert_eq!(applied(m)["epoch"], epoch, "one epoch");
        before.push(info(m).await.unwrap()["configurations"].as_u64().unwrap());
    }

    // Thawed: it finds its session gone and comes back as a follower; the successor configures
    // it in (generation 3). Nothing it had in flight reaches a pod.
    old.signal(Signal::SIGCONT);
    let mut all = rest.clone();
    all.push(old);
    let four = converged(&all, 4, "the thawed pod configured in by the successor").await;
    assert!(four.starts_with("gen 3\n"), "{four}");
    at_rest(successor, 4, 3).await;
    assert_eq!(info(old).await.unwrap()["state"], "follower");
    for (m, n) in rest.iter().zip(before) {
        let log = read(&m.home_file("configured.log"));
        let generations: Vec<u64> = log.lines().map(|l| l.parse().unwrap()).collect();
        assert!(
            generations.windows(2).all(|w| w[0] < w[1]) && generations.last() == Some(&3),
            "each generation configured once, the last one 3: {log:?}"
        );
        assert_eq!(
            info(m).await.unwrap()["configurations"].as_u64(),
            Some(n + 1),
            "one configuration since the thaw: the successor's"
        );
        let map = applied(m);
        assert_eq!((&map["generation"], &map["epoch"]), (&json!(3), &epoch));
    }
    let (snap, now) = snapshot(&zk.observer().await, "t5.web").await;
    assert_eq!(snap["generation"], 3);
    assert_eq!(
        now,
        version + 1,
        "one snapshot write since the thaw, the successor's"
    );
}

#[tokio::test]
async fn a_map_of_an_older_epoch_is_refused_and_the_same_map_again_is_taken() {
    let zk = ZkServer::start();
    let yaml = || {
        web(
            "t6",
            "{ min_size: 2, damper: 200ms, timeout: 5s }",
            LOG_GENERATION,
        )
    };
    let a = start(&zk, yaml(), None, "2s");
    let b = start(&zk, yaml(), None, "2s");
    converged(&[&a, &b], 2, "2 pods configured").await;
    at_rest(leader(&[&a, &b]).await, 2, 1).await;
    let map = applied(&a);
    let epoch = map["epoch"].as_u64().unwrap_or(0);
    assert!(epoch > 0, "the map carries the leader's epoch: {map}");
    let configurations = info(&a).await.unwrap()["configurations"].as_u64().unwrap();

    // A deposed leader's: any generation, the same one too.
    for generation in [1, 5] {
        let mut older = map.clone();
        older["epoch"] = json!(epoch - 1);
        older["generation"] = json!(generation);
        let (status, body) = a.post("/control/on", &older.to_string()).await;
        assert_eq!(status, 409, "epoch {} generation {generation}: {body}", epoch - 1);
        let (status, body) = a.post("/control/check", &older.to_string()).await;
        assert_eq!(status, 409, "check: {body}");
    }
    assert_eq!(applied(&a), map, "nothing applied");
    // The same map again (a leader's retry) is taken.
    let (status, body) = a.post("/control/on", &map.to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        info(&a).await.unwrap()["configurations"].as_u64(),
        Some(configurations + 1)
    );
}

// 6. A map for someone else.

#[tokio::test]
async fn a_map_addressed_to_another_pod_or_cluster_is_refused_and_changes_nothing() {
    let dir = PodDir::new(
        "cluster: mine\nnamespace: home\nprocess:\n  command: \"sleep 300\"\n\
         templates:\n  - source: me.hbs\n    dest: \"{{env.OCHOPOD_HOME}}/me.txt\"\n",
    )
    .with_file(
        "me.hbs",
        "{{pod.uuid}} {{pod.namespace}}.{{pod.cluster}} gen {{cluster.generation}}\n",
    );
    let m = standalone(dir, None);
    let first = m
        .wait_info("configured", T, |i| i["generation"].as_u64() > Some(0))
        .await;
    let uuid = first["uuid"].as_str().unwrap().to_string();
    let rendered = read(&m.home_file("me.txt"));
    assert!(
        rendered.starts_with(&format!("{uuid} home.mine gen ")),
        "{rendered}"
    );
    let map = applied(&m);
    let me = map["pods"][&uuid].clone();

    let other = |uuid: &str, namespace: &str, cluster: &str| {
        let mut p = me.clone();
        p["uuid"] = json!(uuid);
        p["namespace"] = json!(namespace);
        p["cluster"] = json!(cluster);
        p
    };
    let cases = [
        // Keyed `other` (another pod of another cluster, in another namespace).
        json!({ "generation": 100, "key": "other", "pods": { "other": other("other", "elsewhere", "theirs") } }),
        // Keyed right, but its entry is of another cluster, or another namespace.
        json!({ "generation": 100, "key": uuid, "pods": { &uuid: other(&uuid, "home", "theirs") } }),
        json!({ "generation": 100, "key": uuid, "pods": { &uuid: other(&uuid, "elsewhere", "mine") } }),
    ];
    for case in cases {
        for path in ["/control/check", "/control/on"] {
            let (status, body) = m.post(path, &case.to_string()).await;
            assert_eq!(status, 400, "{path} {case}: {body}");
        }
    }
    let now = m.info().await;
    for k in [
        "uuid",
        "cluster",
        "namespace",
        "key",
        "generation",
        "configurations",
    ] {
        assert_eq!(now[k], first[k], "{k}");
    }
    assert_eq!(read(&m.home_file("me.txt")), rendered, "nothing rendered");
    assert_eq!(applied(&m), map);
}

// 7. Auth fails open.

#[tokio::test]
async fn a_token_setting_that_holds_no_token_stops_run_before_it_serves() {
    let dir = PodDir::new("cluster: closed\nprocess:\n  command: \"sleep 300\"\n");
    let empty = dir.dir.path().join("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    let cases = [
        ("OCHOPOD_TOKEN_FILE", empty.display().to_string()),
        ("OCHOPOD_TOKEN", ",".to_string()),
        ("OCHOPOD_TOKEN_FILE", "/nonexistent/token".to_string()),
    ];
    for (var, value) in cases {
        let ip = next_ip();
        let port = crate::harness::free_port(&ip);
        let child = tokio::process::Command::new(binary())
            .args(["run", "--standalone"])
            .arg(dir.path())
            .env("OCHOPOD_IP", &ip)
            .env("OCHOPOD_BIND", &ip)
            .env("OCHOPOD_PORT", port.to_string())
            .env("OCHOPOD_HOME", dir.dir.path().join("home"))
            .env_remove("OCHOPOD_TOKEN")
            .env_remove("OCHOPOD_TOKEN_FILE")
            .env(var, &value)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{var}={value:?}: still running after 10 s (serving)"))
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value:?}: {stderr}");
        assert!(stderr.contains(var), "{var}={value:?}: {stderr}");
        let refused = tokio::net::TcpStream::connect((ip.as_str(), port)).await;
        assert!(refused.is_err(), "{var}={value:?}: something listens");
    }
}

#[tokio::test]
async fn an_identity_variable_ochopod_cannot_use_stops_run_with_exit_2() {
    let dir = PodDir::new("cluster: ident\nprocess:\n  command: \"sleep 300\"\n");
    for (var, value) in [("OCHOPOD_IP", "127.0.0.1;id"), ("OCHOPOD_PORT", "99999")] {
        let out = tokio::process::Command::new(binary())
            .args(["run", "--standalone"])
            .arg(dir.path())
            .env("OCHOPOD_HOME", dir.dir.path().join("home"))
            .env(var, value)
            .stdin(std::process::Stdio::null())
            .output();
        let out = tokio::time::timeout(Duration::from_secs(10), out)
            .await
            .unwrap_or_else(|_| panic!("{var}={value:?}: still running after 10 s"))
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value:?}: {stderr}");
        assert!(stderr.contains(var), "{var}={value:?}: {stderr}");
    }
}

// 14. A forward-compatible wire.

#[tokio::test]
async fn a_map_with_fields_this_version_does_not_know_is_applied() {
    let dir = PodDir::new(
        "cluster: newer\nprocess:\n  command: \"sleep 300\"\n\
         templates:\n  - source: gen.hbs\n    dest: \"{{env.OCHOPOD_HOME}}/gen.txt\"\n",
    )
    .with_file("gen.hbs", "gen {{cluster.generation}}\n");
    let m = standalone(dir, None);
    let first = m
        .wait_info("configured", T, |i| i["generation"].as_u64() > Some(0))
        .await;
    let uuid = first["uuid"].as_str().unwrap().to_string();
    let mut map = applied(&m);
    let generation = first["generation"].as_u64().unwrap() + 1;
    map["generation"] = json!(generation);
    map["placement"] = json!({ "zone": "eu-1", "racks": [1, 2] });
    map["pods"][&uuid]["zone"] = json!("eu-1");
    let (status, body) = m.post("/control/on", &map.to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(m.info().await["generation"], generation);
    assert_eq!(read(&m.home_file("gen.txt")), format!("gen {generation}\n"));
}

// The signatures that replace the token on the wire: good once, and only where they were sent.

#[tokio::test]
async fn a_signed_request_is_taken_once_and_only_by_the_pod_it_was_signed_for() {
    let token = "replay-token";
    let dir = || PodDir::new("cluster: signed\nprocess:\n  command: \"sleep 300\"\n");
    let a = standalone(dir(), Some(token));
    let b = standalone(dir(), Some(token));
    for m in [&a, &b] {
        m.wait_info("the process running", T, |i| i["process"] == "running")
            .await;
    }
    let get = |m: &Member, authorization: String, host: Option<String>| {
        let mut req = m
            .client
            .get(m.url("/info"))
            .header("authorization", authorization);
        if let Some(h) = host {
            req = req.header("host", h);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let captured = signed(token, "GET", &a, "/info", b"");
    assert_eq!(get(&a, captured.clone(), None).await, 200, "the first time");
    assert_eq!(get(&a, captured.clone(), None).await, 401, "replayed");
    // To another pod holding the same token: its own Host, or the one signed for.
    let fresh = signed(token, "GET", &a, "/info", b"");
    assert_eq!(get(&b, fresh.clone(), None).await, 401, "sent to B");
    assert_eq!(
        get(&b, fresh.clone(), Some(format!("{}:{}", a.ip, a.port))).await,
        401,
        "sent to B as if to A"
    );
    // Unused by B, it is still good for A; a POST signed over another body is not.
    assert_eq!(get(&a, fresh, None).await, 200);
    let auth = signed(token, "POST", &a, "/control/kill", b"{}");
    let (status, body) = post_as(&a, "/control/kill", "", Some(&auth)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(a.info().await["process"], "running");
}

/// Sends the head of a request announcing a large body, and reads the answer that comes before
/// any of the body is sent (None: no answer within a second).
async fn answer_before_the_body(m: &Member, head: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect((m.ip.as_str(), m.port))
        .await
        .unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test]
async fn a_caller_without_the_token_is_refused_before_its_body_is_read() {
    let dir = PodDir::new("cluster: early\nprocess:\n  command: \"sleep 300\"\n");
    let m = standalone(dir, Some("early-token"));
    m.wait_info("the process running", T, |i| i["process"] == "running")
        .await;
    let host = format!("{}:{}", m.ip, m.port);
    // No token, 16 MiB announced: 401 at once, nothing buffered.
    let head = format!("POST /control/kill HTTP/1.1\r\nhost: {host}\r\ncontent-length: 16777215\r\n\r\n");
    let answer = answer_before_the_body(&m, &head)
        .await
        .expect("an answer before the body");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // A bad bearer token: the same.
    let head = format!(
        "POST /control/kill HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer nope\r\ncontent-length: 16777215\r\n\r\n"
    );
    let answer = answer_before_the_body(&m, &head)
        .await
        .expect("an answer before the body");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // Announcing more than the limit, with the token: 413 before reading it.
    let head = format!(
        "POST /control/signal HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer early-token\r\ncontent-length: 99999999\r\n\r\n"
    );
    let answer = answer_before_the_body(&m, &head)
        .await
        .expect("an answer before the body");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}
