//! A real load balancer in front of a web cluster (issue 9, SPEC §8 `stop.drain`): Debian's
//! HAProxy runs as the process of a pod of cluster `lb` that depends on `web`, its `haproxy.cfg`
//! rendered from `dependencies.web.pods` and reloaded by signal. A client sends requests through
//! it without a pause while a web pod leaves by SIGTERM: none may fail.
//!
//! HAProxy is set up so that a dead backend shows: no health checks, `retries 0`, no
//! `option redispatch`. A request routed to a pod whose server is gone answers 503 (connection
//! refused) or 502 (cut mid-answer). HAProxy runs in master-worker mode (`-W`) in the
//! foreground (`-db`): SIGUSR2 makes the master re-read the file and start a new worker, which
//! takes the listening sockets over (no refused connection during a reload) while the old one
//! finishes its requests. SIGHUP only dumps the proxies' status to the log.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::cluster::{leader, start, Member, T};
use crate::harness::eventually;
use crate::harness::pod::{read, PodDir};
use crate::harness::zk::ZkServer;

const HAPROXY: &str = "/usr/sbin/haproxy";

/// Every web pod serves this on `<its ip>:8000`: 200 and its ip, one connection per request
/// (HTTP/1.0, so HAProxy's backend connections are never reused).
const SERVE_PY: &str = r#"import http.server, sys
ip = sys.argv[1]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (ip + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((ip, 8000), Handler).serve_forever()
"#;

/// One `server` line per web pod; no `check`, so HAProxy never learns by itself that one died.
const HAPROXY_CFG: &str = "global
  maxconn 512
  hard-stop-after 10s
defaults
  mode http
  timeout connect 2s
  timeout client 10s
  timeout server 10s
  retries 0
frontend www
  bind {{pod.ip}}:{{port pod 8000}}
  default_backend web
backend web
  balance roundrobin
{{#each dependencies.web.pods}}  server web{{seq}} {{ip}}:{{port this 8000}}
{{/each}}";

/// A web pod: `serve.py` on port 8000, ready once the port answers, `drain: 20s` on SIGTERM,
/// and a second of `tear_down` between the end of the drain and the stop. The pause is for the
/// load balancer: its `on` answers once SIGUSR2 is delivered, so the lb leader writes its
/// snapshot (which ends the drain) while HAProxy's old worker may still route requests to the
/// leaving pod for some tens of milliseconds (without it, 1 or 2 requests of ~300 failed in
/// each of 3 runs).
fn web(namespace: &str, damper: &str) -> PodDir {
    let dir = PodDir::new("").with_file("serve.py", SERVE_PY);
    let yaml = format!(
        r#"cluster: web
namespace: {namespace}
ports: [8000]
settings: {{ damper: {damper} }}
process:
  command: ["python3", "{script}", "{{{{pod.ip}}}}"]
  stop: {{ signal: TERM, grace: 2s, drain: 20s }}
checks:
  ready: {{ command: "nc -z -w1 {{{{sh pod.ip}}}} 8000", every: 100ms, timeout: 20s }}
hooks:
  tear_down: "sleep 1"
"#,
        script = dir.dir.path().join("serve.py").display(),
    );
    std::fs::write(dir.path(), yaml).unwrap();
    dir
}

/// The load balancer: HAProxy on `<its ip>:8000`, reloaded with SIGUSR2.
fn lb(namespace: &str, damper: &str) -> PodDir {
    PodDir::new(&format!(
        r#"cluster: lb
namespace: {namespace}
ports: [8000]
depends_on: [{{ cluster: web }}]
settings: {{ damper: {damper} }}
process:
  command: ["{HAPROXY}", "-W", "-db", "-f", "{{{{env.OCHOPOD_HOME}}}}/haproxy.cfg"]
  reload: {{ signal: USR2 }}
  stop: {{ signal: TERM, grace: 5s }}
templates:
  - source: haproxy.cfg.hbs
    dest: "{{{{env.OCHOPOD_HOME}}}}/haproxy.cfg"
"#
    ))
    .with_file("haproxy.cfg.hbs", HAPROXY_CFG)
}

/// The `server` lines of the rendered haproxy.cfg.
fn servers(lb: &Member) -> Vec<String> {
    read(&lb.home_file("haproxy.cfg"))
        .lines()
        .filter(|l| l.trim_start().starts_with("server "))
        .map(|l| l.trim().to_string())
        .collect()
}

/// What the client saw: requests sent, and the failed ones (when, what).
#[derive(Debug, Default)]
struct Seen {
    sent: usize,
    failed: Vec<String>,
}

/// Sends `GET /` to `url` until `stop`, a new connection each time (no pooling), each with a
/// 2 s timeout, 10 ms apart. A failure is anything but a 200.
fn client(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Seen> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let t0 = Instant::now();
        let mut seen = Seen::default();
        while !stop.load(Ordering::SeqCst) {
            seen.sent += 1;
            let at = t0.elapsed().as_millis();
            match http.get(&url).send().await {
                Ok(r) if r.status() == 200 => {}
                Ok(r) => seen.failed.push(format!("{at} ms: HTTP {}", r.status())),
                Err(e) => seen.failed.push(format!("{at} ms: {e}")),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_fails_through_haproxy_while_a_web_pod_leaves_with_a_slower_lb() {
    // The dependent (the load balancer) reconfigures more slowly (damper 3 s) than the web
    // cluster (200 ms): the leaving pod must wait for both, not only for its own cluster.
    leave_behind_haproxy("200ms", "3s").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_fails_through_haproxy_while_a_web_pod_leaves_with_a_slower_web_tier() {
    // The other way round: the lb leader drops the leaving pod (it watches the `leaving` mark
    // too) before the web leader does, and the pod waits for its own cluster.
    leave_behind_haproxy("3s", "200ms").await;
}

/// Three web pods behind HAProxy, a client sending requests through it; one web pod (not the
/// web leader) gets SIGTERM: no request fails, and haproxy.cfg no longer lists it once it exited.
async fn leave_behind_haproxy(web_damper: &str, lb_damper: &str) {
    assert!(
        Path::new(HAPROXY).exists(),
        "{HAPROXY} is missing: install the Debian package `haproxy` (scripts/deps) to run the load balancer test"
    );
    let zk = ZkServer::start();
    let ns = "lb9";
    let webs = [
        start(&zk, web(ns, web_damper), None),
        start(&zk, web(ns, web_damper), None),
        start(&zk, web(ns, web_damper), None),
    ];
    let l = start(&zk, lb(ns, lb_damper), None);
    let url = format!("http://{}:8000/", l.ip);

    // Configured with the three web pods, and each of them answering through HAProxy.
    eventually(T, "haproxy.cfg lists the three web pods", || async {
        let s = servers(&l);
        (s.len() == 3
            && webs
                .iter()
                .all(|w| s.iter().any(|l| l.contains(&format!(" {}:8000", w.ip)))))
        .then_some(())
    })
    .await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let answered = std::sync::Mutex::new(std::collections::BTreeSet::new());
    eventually(T, "every web pod answering through HAProxy", || async {
        let r = http.get(&url).send().await.ok()?;
        let body = if r.status() == 200 {
            r.text().await.ok()?
        } else {
            String::new()
        };
        let mut answered = answered.lock().unwrap();
        answered.insert(body.trim().to_string());
        webs.iter().all(|w| answered.contains(&w.ip)).then_some(())
    })
    .await;

    // The leaving pod is not the web leader: its own cluster's reconfiguration stays one step.
    let lead = leader(&webs.iter().collect::<Vec<_>>()).await.ip.clone();
    let mut webs = Vec::from(webs);
    let leaving = webs.iter().position(|w| w.ip != lead).unwrap();
    let mut gone = webs.remove(leaving);

    let stop = Arc::new(AtomicBool::new(false));
    let traffic = client(url, stop.clone());
    // Traffic flows before the leave (the client counts from here).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    gone.signal(Signal::SIGTERM);
    let code = gone.pod.wait_exit(Duration::from_secs(40)).await;
    let took = t.elapsed();
    // And a little after: a pod that stopped while HAProxy still listed it fails from here on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let seen = traffic.await.unwrap();
    eprintln!(
        "{} of {} requests failed; SIGTERM to exit {took:?}",
        seen.failed.len(),
        seen.sent
    );

    assert!(seen.sent >= 50, "the client kept sending: {} requests", seen.sent);
    assert!(
        seen.failed.is_empty(),
        "{} of {} requests failed while {} left: {:?}",
        seen.failed.len(),
        seen.sent,
        gone.ip,
        seen.failed
    );
    assert_eq!(code, 128 + 15, "the leaving pod's server died of its SIGTERM");
    let s = servers(&l);
    assert!(
        s.len() == 2 && !s.iter().any(|l| l.contains(&format!(" {}:8000", gone.ip))),
        "haproxy.cfg no longer lists the pod that left ({}): {s:?}",
        gone.ip
    );
}
