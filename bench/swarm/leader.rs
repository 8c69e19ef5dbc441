//! The one real pod: `ochopod run` (the release build) with a pod.yaml of the swarm's cluster,
//! started before the simulated pods so that it wins the election; its process is `sleep 3600`.
//!
//! Read over its own HTTP API (`/info`, no ZooKeeper traffic) to know when a configuration is
//! committed: its status says `configured: N pods, generation G` once the snapshot is written.
//! A watchdog kills it when its memory passes a cap, so that a leader that cannot cope does not
//! push a shared machine into swap; the run then says so.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::probe;

pub const IP: &str = "127.88.0.1";
pub const PORT: u16 = 8080;

/// Why the leader could not be run.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {}", binary.display())]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub struct Settings<'a> {
    pub binary: &'a Path,
    pub dir: &'a Path,
    pub zk: &'a str,
    pub session_timeout: &'a str,
    pub damper: Duration,
    pub parallelism: Option<u32>,
}

pub struct Leader {
    child: Child,
    pub pid: String,
    http: reqwest::Client,
    /// Set by the watchdog when it killed the leader: its RSS then, MiB.
    pub killed_at_mib: Arc<Mutex<Option<f64>>>,
    watchdog: CancellationToken,
}

impl Leader {
    pub fn start(s: &Settings<'_>, rss_cap_mib: f64) -> Result<Leader, LeaderError> {
        let parallelism = s
            .parallelism
            .map(|p| format!(", parallelism: {p}"))
            .unwrap_or_default();
        let yaml = format!(
            "cluster: swarm\nports: [9000]\nsettings: {{ damper: {}ms, damper_max: 600s, min_size: 1{parallelism} }}\n\
             process:\n  command: [\"sleep\", \"3600\"]\n",
            s.damper.as_millis()
        );
        let pod_yaml = s.dir.join("pod.yaml");
        std::fs::write(&pod_yaml, yaml).map_err(|source| LeaderError::Write {
            path: pod_yaml.clone(),
            source,
        })?;
        let log = s.dir.join("leader.log");
        let out = std::fs::File::create(&log).map_err(|source| LeaderError::Write {
            path: log.clone(),
            source,
        })?;
        let err = out
            .try_clone()
            .map_err(|source| LeaderError::Write { path: log, source })?;
        let child = Command::new(s.binary)
            .arg("run")
            .arg(&pod_yaml)
            .env("OCHOPOD_ZK", s.zk)
            .env("OCHOPOD_IP", IP)
            .env("OCHOPOD_BIND", IP)
            .env("OCHOPOD_PORT", PORT.to_string())
            .env("OCHOPOD_HOME", s.dir.join("leader"))
            .env("OCHOPOD_ZK_SESSION_TIMEOUT", s.session_timeout)
            .env(
                "OCHOPOD_LOG",
                std::env::var("OCHOPOD_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env_remove("OCHOPOD_TOKEN")
            .env_remove("OCHOPOD_TOKEN_FILE")
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| LeaderError::Spawn {
                binary: s.binary.to_path_buf(),
                source,
            })?;
        let pid = child.id().map(|p| p.to_string()).unwrap_or_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let leader = Leader {
            child,
            pid,
            http,
            killed_at_mib: Arc::new(Mutex::new(None)),
            watchdog: CancellationToken::new(),
        };
        leader.watch_memory(rss_cap_mib);
        Ok(leader)
    }

    /// Every 250 ms: over `cap` MiB of RSS, SIGKILL.
    fn watch_memory(&self, cap: f64) {
        let (pid, killed, stop) = (
            self.pid.clone(),
            self.killed_at_mib.clone(),
            self.watchdog.clone(),
        );
        tokio::spawn(async move {
            let Ok(raw) = pid.parse::<i32>() else { return };
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
                let Some((rss, _)) = probe::memory(&pid) else {
                    return;
                };
                if rss > cap {
                    tracing::warn!(rss_mib = rss, cap_mib = cap, "leader over its memory cap: killed");
                    *killed.lock().unwrap_or_else(|e| e.into_inner()) = Some(rss);
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(raw),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    return;
                }
            }
        });
    }

    /// The leader's `/info`, when it answers.
    pub async fn info(&self) -> Option<serde_json::Value> {
        let url = format!("http://{IP}:{PORT}/info");
        self.http.get(url).send().await.ok()?.json().await.ok()
    }

    /// Its status line (empty when it does not answer).
    pub async fn status(&self) -> String {
        self.info()
            .await
            .and_then(|i| Some(i.get("status")?.as_str()?.to_string()))
            .unwrap_or_default()
    }

    /// Polls `/info` (every 50 ms: an HTTP read, no ZooKeeper traffic) until it leads and its
    /// last configuration, snapshot written, has `pods` pods. Err: the last status seen.
    pub async fn wait_configured(&mut self, pods: usize, deadline: Instant) -> Result<Instant, String> {
        let want = format!("configured: {pods} pods,");
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(Some(exit)) = self.child.try_wait() {
                return Err(format!("the leader exited ({exit}); last status: {last}"));
            }
            if let Some(info) = self.info().await {
                let leads = info.get("state").and_then(|s| s.as_str()) == Some("leader");
                last = info
                    .get("status")
                    .and_then(|s| s.as_str())
                    .unwrap_or_default()
                    .to_string();
                if leads && last.starts_with(&want) {
                    return Ok(Instant::now());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(last)
    }

    pub async fn stop(mut self) {
        self.watchdog.cancel();
        let _ = self.child.kill().await;
    }
}
