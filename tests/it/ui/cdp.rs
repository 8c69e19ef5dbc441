//! A real browser for the UI tests: Debian's headless Chromium, driven over the DevTools protocol
//! (a websocket on loopback) with a client small enough to read here: navigate, evaluate, take a
//! screenshot. `--dump-dom` does not fit: the page keeps an SSE connection open, so a virtual
//! time budget never runs out, and the point is to watch the page change live.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const CHROMIUM: &str = "/usr/bin/chromium";

/// A headless Chromium, killed (its whole process group) on drop.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    pub port: u16,
}

impl Browser {
    pub async fn start() -> Browser {
        assert!(
            std::path::Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: the browser tests need Debian's `chromium` package \
             (scripts/deps installs it: apt-get install chromium)"
        );
        let profile = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(CHROMIUM);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--window-size=1280,800",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // Its own process group, so that drop ends the renderers and the zygote with it.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("start chromium");
        // Port 0: Chromium picks one and writes it into the profile.
        let file: PathBuf = profile.path().join("DevToolsActivePort");
        let port =
            crate::harness::eventually(Duration::from_secs(30), "chromium's DevToolsActivePort", || {
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                let port = text.lines().next().and_then(|l| l.trim().parse::<u16>().ok());
                async move { port }
            })
            .await;
        Browser {
            child,
            _profile: profile,
            port,
        }
    }

    /// A tab, through its websocket.
    pub async fn page(&self) -> Page {
        let url = format!("http://127.0.0.1:{}/json/list", self.port);
        let ws = crate::harness::eventually(Duration::from_secs(20), "a page target", || async {
            let list: Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
            list.as_array()?
                .iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                .map(str::to_string)
        })
        .await;
        Page::connect(&ws).await
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// One tab: commands in, answers out (events are skipped).
pub struct Page {
    stream: TcpStream,
    next_id: u64,
}

impl Page {
    async fn connect(ws_url: &str) -> Page {
        let rest = ws_url.strip_prefix("ws://").expect("a ws:// url");
        let (host, path) = rest.split_once('/').expect("a path");
        let mut stream = TcpStream::connect(host).await.expect("connect to chromium");
        let request = format!(
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            stream.read_exact(&mut b).await.expect("websocket handshake");
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "websocket handshake: {head}");
        Page { stream, next_id: 0 }
    }

    async fn send_frame(&mut self, payload: &[u8]) {
        // FIN + text; a client masks every frame (RFC 6455 §5.3); a zero mask keeps it simple.
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame).await.expect("websocket write");
    }

    async fn read_message(&mut self) -> Vec<u8> {
        let mut message = Vec::new();
        loop {
            let mut h = [0u8; 2];
            self.stream.read_exact(&mut h).await.expect("websocket read");
            let (fin, opcode) = (h[0] & 0x80 != 0, h[0] & 0x0f);
            let len = match h[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    self.stream.read_exact(&mut b).await.unwrap();
                    u16::from_be_bytes(b) as usize
                }
                127 => {
                    let mut b = [0u8; 8];
                    self.stream.read_exact(&mut b).await.unwrap();
                    u64::from_be_bytes(b) as usize
                }
                n => n as usize,
            };
            let mut payload = vec![0u8; len];
            self.stream.read_exact(&mut payload).await.unwrap();
            match opcode {
                // Ping (Chromium sends none): skip.
                0x9 => continue,
                0x8 => panic!("chromium closed the websocket"),
                _ => message.extend_from_slice(&payload),
            }
            if fin {
                return message;
            }
        }
    }

    /// Sends a command; its `result` (panics on a protocol error).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let text = json!({"id": id, "method": method, "params": params}).to_string();
        self.send_frame(text.as_bytes()).await;
        loop {
            let message: Value = serde_json::from_slice(&self.read_message().await).expect("CDP JSON");
            if message["id"] == id {
                assert!(message.get("error").is_none(), "{method}: {message}");
                return message["result"].clone();
            }
        }
    }

    pub async fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url })).await;
    }

    /// The value of a JavaScript expression (JSON-able).
    pub async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        r["result"]["value"].clone()
    }

    /// Evaluates `expression` until `pred` holds; panics after `timeout` with the last value.
    pub async fn until(
        &mut self,
        what: &str,
        timeout: Duration,
        expression: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(expression).await;
            if pred(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed {what}; last: {v:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&mut self) -> Vec<u8> {
        let r = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        base64(r["data"].as_str().expect("PNG data"))
    }
}

fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= (value(*c) as u32) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

#[test]
fn decodes_base64() {
    assert_eq!(base64("aGVsbG8="), b"hello");
    assert_eq!(base64("aGk="), b"hi");
    assert_eq!(base64("YWJj"), b"abc");
}
