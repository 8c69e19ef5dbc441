//! `Pod`: the real `ochopod` binary running a pod.yaml written into a temp dir, on its own
//! loopback address and free port. Killed (the whole group) on drop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;

use super::{eventually, free_port};

/// The ochopod binary under test: this build's, or the one `OCHOPOD_IT_BINARY` names (to run
/// the tests against another build, e.g. to show that a test fails without a change).
pub fn binary() -> &'static str {
    static BINARY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BINARY.get_or_init(|| {
        std::env::var("OCHOPOD_IT_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_ochopod").to_string())
    })
}

static NEXT_IP: AtomicU32 = AtomicU32::new(0);

/// A distinct 127.x address per pod of the test run (127.0.0.1 stays free for servers).
pub fn next_ip() -> String {
    let n = NEXT_IP.fetch_add(1, Ordering::Relaxed) + (std::process::id() % 200) * 256;
    format!("127.{}.{}.{}", 10 + (n >> 16) % 200, (n >> 8) % 256, 2 + n % 250)
}

/// A pod.yaml and its templates in a fresh temp dir.
pub struct PodDir {
    pub dir: tempfile::TempDir,
}

impl PodDir {
    pub fn new(pod_yaml: &str) -> PodDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pod.yaml"), pod_yaml).expect("write pod.yaml");
        PodDir { dir }
    }

    pub fn with_file(self, name: &str, text: &str) -> PodDir {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write file");
        self
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("pod.yaml")
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
}

/// A running `ochopod run`.
pub struct Pod {
    pub child: Option<Child>,
    pub ip: String,
    pub port: u16,
    pub home: PathBuf,
    pub token: Option<String>,
    pub client: reqwest::Client,
}

pub struct PodOptions {
    /// A command ochopod runs under (e.g. `unshare --pid --fork --mount-proc`).
    pub prefix: Vec<String>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub token: Option<String>,
    /// The pod's address (`OCHOPOD_IP` and `OCHOPOD_BIND`), e.g. `::1`; a fresh 127.x by default.
    pub ip: Option<String>,
    /// Its control port (`OCHOPOD_PORT`); a free one by default.
    pub port: Option<u16>,
}

impl Default for PodOptions {
    fn default() -> Self {
        PodOptions {
            prefix: Vec::new(),
            args: vec!["--standalone".into()],
            env: BTreeMap::new(),
            token: None,
            ip: None,
            port: None,
        }
    }
}

impl Pod {
    /// Starts `ochopod run` on the dir's pod.yaml, standalone by default.
    pub fn start(dir: &PodDir, opts: PodOptions) -> Pod {
        Pod::start_file(&dir.path(), dir, opts)
    }

    /// Starts `ochopod run` on `pod_yaml`, with its home in `dir`.
    pub fn start_file(pod_yaml: &Path, dir: &PodDir, opts: PodOptions) -> Pod {
        let ip = opts.ip.clone().unwrap_or_else(next_ip);
        let port = opts.port.unwrap_or_else(|| free_port(&ip));
        let home = dir.home();
        std::fs::create_dir_all(&home).expect("home");
        let mut cmd = match opts.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        cmd.arg("run").arg(pod_yaml).args(&opts.args);
        cmd.env("OCHOPOD_IP", &ip)
            .env("OCHOPOD_BIND", &ip)
            .env("OCHOPOD_PORT", port.to_string())
            .env("OCHOPOD_HOME", &home)
            .env_remove("OCHOPOD_TOKEN")
            .env_remove("OCHOPOD_STATE_DIR")
            .envs(&opts.env)
            .stdin(Stdio::null());
        if let (Some(t), false) = (&opts.token, opts.env.contains_key("OCHOPOD_TOKEN")) {
            cmd.env("OCHOPOD_TOKEN", t);
        }
        let child = cmd.spawn().expect("spawn ochopod");
        Pod {
            child: Some(child),
            ip,
            port,
            home,
            token: opts.token.clone(),
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        match self.ip.contains(':') {
            true => format!("http://[{}]:{}{}", self.ip, self.port, path),
            false => format!("http://{}:{}{}", self.ip, self.port, path),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// GET, returning (status, JSON or text-as-JSON-string).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .authorize(self.client.get(self.url(path)))
            .send()
            .await
            .expect("GET");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let resp = self
            .authorize(self.client.post(self.url(path)).body(body.to_string()))
            .header("content-type", "application/json")
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .expect("POST");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Waits until `/info` answers, and returns it.
    pub async fn info(&self) -> Value {
        eventually(Duration::from_secs(20), "GET /info", || async {
            let resp = self
                .authorize(self.client.get(self.url("/info")))
                .send()
                .await
                .ok()?;
            resp.json::<Value>().await.ok()
        })
        .await
    }

    /// Waits until `/info` satisfies `pred`.
    pub async fn wait_info(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        eventually(timeout, what, || async {
            let resp = self
                .authorize(self.client.get(self.url("/info")))
                .send()
                .await
                .ok()?;
            let v: Value = resp.json().await.ok()?;
            pred(&v).then_some(v)
        })
        .await
    }

    /// Sends a signal to the ochopod process.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        nix::sys::signal::kill(pid, sig).expect("signal ochopod");
    }

    /// Waits for ochopod to exit; its exit code (128+n for a signal).
    pub async fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let child = self.child.as_mut().expect("running");
        let status = eventually(timeout, "ochopod to exit", || {
            let s = child.try_wait().expect("try_wait");
            async move { s }
        })
        .await;
        self.child = None;
        use std::os::unix::process::ExitStatusExt;
        status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
    }

    pub fn home_file(&self, rel: &str) -> PathBuf {
        self.home.join(rel)
    }

    /// Kills ochopod and everything it started at once (SIGKILL), as when a container is killed:
    /// no tear_down, no deregistration; its znode goes when its session expires.
    pub fn kill_hard(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let root = child.id();
        // Freeze the tree first so nobody forks or gets reparented while it is collected.
        let mut all = vec![root];
        let mut i = 0;
        while i < all.len() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(all[i] as i32),
                nix::sys::signal::Signal::SIGSTOP,
            );
            all.extend(children(all[i]));
            i += 1;
        }
        for pid in all {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = child.wait();
    }
}

/// The direct children of `pid`, from /proc.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so split after the last ')'.
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

impl Drop for Pod {
    fn drop(&mut self) {
        // TERM first so ochopod stops its process group too; KILL only if it hangs.
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads a file, empty when missing.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Whether a process exists (not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}
