//! The control server's limits (SPEC §7): slow or excess connections are closed, so clients that
//! hold half a request cannot use up the pod's file descriptors.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::eventually;
use crate::harness::pod::{Pod, PodDir, PodOptions};

const T: Duration = Duration::from_secs(20);
/// ochopod's fd limit in the flood test; its connection cap is then 256 / 4 = 64.
const FD_LIMIT: u32 = 256;
/// More half-requests than ochopod has fds.
const FLOOD: usize = 400;

/// A pod whose process restarts at once when it dies.
fn sleeper() -> PodDir {
    PodDir::new(
        "cluster: limits\nprocess:\n  command: [\"sleep\", \"600\"]\n  restart: { policy: always, backoff: 0s }\n  stop: { grace: 1s }\n",
    )
}

/// This test process holds two floods at once: give it the fds for them.
fn raise_own_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    let want = hard.min(8192);
    if soft < want {
        setrlimit(Resource::RLIMIT_NOFILE, want, hard).expect("setrlimit");
    }
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    assert!(
        soft >= 2 * FLOOD as u64 + 256,
        "the test needs {} fds, its hard limit allows {soft}",
        2 * FLOOD + 256
    );
}

/// Up to `n` connections that each sent the start of a request and hold it; fewer when the
/// server is so saturated that a connect times out (the kernel's queue is full).
async fn half_requests(pod: &Pod, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let connect = TcpStream::connect((pod.ip.as_str(), pod.port));
        let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_secs(2), connect).await else {
            break;
        };
        // A closed (shed) connection may refuse the write: that is the server's right.
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: pod\r\n").await;
        held.push(s);
    }
    held
}

/// `GET /healthz` answers 200 within the deadline, each try bounded.
async fn healthz_answers(pod: &Pod, within: Duration) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("client");
    eventually(within, "/healthz to answer 200 during the flood", || async {
        let resp = client.get(pod.url("/healthz")).send().await.ok()?;
        (resp.status() == 200).then_some(())
    })
    .await;
}

/// The value of a metric from `/metrics` text.
/// The value of the series `name` (whatever its labels).
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let rest = match rest.strip_prefix('{') {
            Some(labelled) => labelled.split_once('}')?.1,
            None => rest,
        };
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

#[tokio::test]
async fn a_flood_of_half_requests_leaves_healthz_and_restarts_working() {
    raise_own_fd_limit();
    let dir = sleeper();
    let pod = Pod::start(
        &dir,
        PodOptions {
            prefix: vec![
                "sh".into(),
                "-c".into(),
                format!("ulimit -n {FD_LIMIT} && exec \"$@\""),
                "sh".into(),
            ],
            ..PodOptions::default()
        },
    );
    let before = pod.wait_info("running", T, |i| i["process"] == "running").await;

    let first = half_requests(&pod, FLOOD).await;
    healthz_answers(&pod, Duration::from_secs(10)).await;
    let (status, text) = pod.get("/metrics").await;
    assert_eq!(status, 200);
    let text = text.as_str().expect("metrics text");
    let shed = metric(text, "ochopod_http_connections_shed_total").expect("shed counter");
    // Headers take 5 s to time out; well before that, the cap (64) made room by shedding.
    assert!(
        shed >= (FLOOD - 64) as f64,
        "the longest-waiting connections were shed: {shed}"
    );
    assert_eq!(metric(text, "ochopod_http_connections_max"), Some(64.0));

    // A second wave holds the table while the process dies: ochopod still has the fds to start
    // it again, and /info still gets through to say so.
    let second = half_requests(&pod, FLOOD).await;
    let pid = before["pid"].as_u64().expect("pid") as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL)
        .expect("kill the process");
    let after = pod
        .wait_info("the process restarted", T, |i| {
            i["process"] == "running" && i["pid"] != before["pid"] && i["restarts"] == 1
        })
        .await;
    assert!(after["pid"].as_u64().is_some());
    healthz_answers(&pod, Duration::from_secs(10)).await;
    drop((first, second));
}

/// Waits until the server closes `s` (EOF or reset), sending one byte of `drip` every 250 ms if
/// given; how long that took.
async fn closed_by_server(s: &mut TcpStream, drip: &[u8], within: Duration) -> Duration {
    let start = Instant::now();
    let mut drip = drip.iter();
    let mut buf = [0u8; 1024];
    while start.elapsed() < within {
        if let Some(b) = drip.next() {
            if s.write_all(std::slice::from_ref(b)).await.is_err() {
                return start.elapsed();
            }
        }
        match tokio::time::timeout(Duration::from_millis(250), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(n)) => panic!(
                "unexpected answer to an incomplete request: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(_) => {}
        }
    }
    panic!("the server kept the connection open for {within:?}");
}

/// Reads one whole answer (headers and a `content-length` body).
async fn read_answer(s: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("content-length");
            if answer.len() >= end + 4 + length {
                return String::from_utf8_lossy(&answer).into_owned();
            }
        }
        let n = tokio::time::timeout(T, s.read(&mut buf))
            .await
            .expect("an answer")
            .expect("read");
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn headers_sent_too_slowly_and_idle_connections_are_closed() {
    let dir = sleeper();
    let pod = Pod::start(&dir, PodOptions::default());
    pod.wait_info("running", T, |i| i["process"] == "running").await;

    // Headers dripped a byte at a time: the 5 s deadline counts from the accept, not per byte.
    let mut slow = TcpStream::connect((pod.ip.as_str(), pod.port))
        .await
        .expect("connect");
    let drip = b"GET /healthz HTTP/1.1\r\nHost: pod\r\nX-Slow: ".repeat(4);
    let took = closed_by_server(&mut slow, &drip, T).await;
    assert!(took >= Duration::from_secs(4), "closed too early: {took:?}");

    // A keep-alive connection that goes quiet after its answer is closed the same way.
    let mut idle = TcpStream::connect((pod.ip.as_str(), pod.port))
        .await
        .expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: pod\r\n\r\n")
        .await
        .expect("write");
    let answer = read_answer(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    let took = closed_by_server(&mut idle, b"", T).await;
    assert!(took < Duration::from_secs(10), "idle for {took:?}");
}

#[tokio::test]
async fn a_half_sent_request_does_not_hold_up_the_stop() {
    let dir = sleeper();
    let mut pod = Pod::start(&dir, PodOptions::default());
    pod.wait_info("running", T, |i| i["process"] == "running").await;
    let mut held = half_requests(&pod, 1).await;
    assert_eq!(held.len(), 1);
    // And one that answered and stays open, as a leader's keep-alive does.
    let mut idle = TcpStream::connect((pod.ip.as_str(), pod.port))
        .await
        .expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: pod\r\n\r\n")
        .await
        .expect("write");
    read_answer(&mut idle).await;

    let start = Instant::now();
    pod.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(pod.wait_exit(T).await, 143);
    // Waiting connections have nothing in flight: they close at once, not after the header
    // timeout or the runtime's 5 s bound on draining.
    let took = start.elapsed();
    assert!(took < Duration::from_secs(3), "the stop took {took:?}");
    let closed = held[0].read(&mut [0u8; 16]).await;
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
}
