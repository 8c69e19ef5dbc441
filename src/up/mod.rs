//! `ochopod up POD_YAML --replicas N`: a local cluster on one machine, for development.
//!
//! Starts a throwaway ZooKeeper (unless `--zk` names one), then N `ochopod run` processes on
//! 127.0.0.2, 127.0.0.3, ... — each its own IP, `OCHOPOD_HOME` and log file, the same ports, as
//! pods on separate hosts would be. A one-line-per-pod view follows their `/info` until Ctrl-C
//! (or SIGTERM), which stops the pods (SIGTERM, then KILL after a bound) and the ZooKeeper, and
//! removes the session folder unless `--keep`.

mod zookeeper;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::signal::unix::{signal, SignalKind};

use crate::control::client::Call;

pub use zookeeper::{ruok, LocalZk};

/// At most this much of a pod's `/info` is read (it is a few hundred bytes).
const MAX_INFO: usize = 64 << 10;

/// `ochopod up` options (also its command line).
#[derive(Debug, Clone, clap::Args)]
pub struct UpOptions {
    /// The pod.yaml every pod runs.
    pub pod_yaml: PathBuf,
    /// How many pods.
    #[arg(long, short = 'n', default_value_t = 3)]
    pub replicas: u32,
    /// Use this ZooKeeper instead of starting a throwaway one.
    #[arg(long, env = "OCHOPOD_ZK")]
    pub zk: Option<String>,
    /// The control port of every pod (each listens on its own IP).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Keep the pods' homes and logs here (default: a temp folder removed at exit).
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// Print the view on each change instead of redrawing the screen (also when stdout is not a
    /// terminal).
    #[arg(long)]
    pub plain: bool,
    /// The first pod's loopback address; the others follow (`127.0.0.2` → `127.0.0.3`, ...).
    #[arg(long, default_value = "127.0.0.2")]
    pub first_ip: std::net::Ipv4Addr,
}

/// One local pod.
struct LocalPod {
    seq_hint: u32,
    ip: String,
    home: PathBuf,
    child: Child,
}

/// Runs the local cluster until Ctrl-C; the exit code.
pub async fn up(opts: UpOptions) -> anyhow::Result<i32> {
    let last = u32::from(opts.first_ip).checked_add(opts.replicas.saturating_sub(1));
    if opts.replicas == 0
        || !opts.first_ip.is_loopback()
        || last.is_none_or(|l| l > u32::from(std::net::Ipv4Addr::new(127, 255, 255, 254)))
    {
        bail!("--replicas must be at least 1, with one loopback address (127.x.y.z) per pod from --first-ip");
    }
    let spec = crate::spec::load(&opts.pod_yaml).map_err(|d| anyhow::anyhow!("{d}"))?;
    // How long a pod may take to stop: its drain, its grace, and some slack for hooks. Past that
    // `up` kills the ochopod processes (and their process groups would be orphaned), so be generous.
    let patience = spec.process.stop.drain + spec.process.stop.grace + Duration::from_secs(15);
    let pod_yaml = opts
        .pod_yaml
        .canonicalize()
        .context("cannot resolve the pod.yaml path")?;
    let (root, temporary) = match &opts.home {
        Some(h) => (h.clone(), false),
        None => (tempdir()?, true),
    };
    std::fs::create_dir_all(&root)?;
    let local_zk = match &opts.zk {
        Some(_) => None,
        None => {
            eprintln!("ochopod up: starting a throwaway ZooKeeper ...");
            Some(LocalZk::start(&root)?)
        }
    };
    let connect = opts
        .zk
        .clone()
        .or_else(|| local_zk.as_ref().map(|z| z.connect.clone()))
        .unwrap_or_default();
    eprintln!(
        "ochopod up: ZooKeeper at {connect}; {} pod(s) of {} in {}",
        opts.replicas,
        pod_yaml.display(),
        root.display()
    );
    let exe = std::env::current_exe().context("cannot find the ochopod binary")?;
    let mut pods = Vec::new();
    for i in 0..opts.replicas {
        let ip = std::net::Ipv4Addr::from(u32::from(opts.first_ip) + i).to_string();
        let home = root.join(format!("pod-{}", i + 1));
        std::fs::create_dir_all(&home)?;
        let log = std::fs::File::create(home.join("ochopod.log"))?;
        let child = Command::new(&exe)
            .arg("run")
            .arg(&pod_yaml)
            .env("OCHOPOD_ZK", &connect)
            .env("OCHOPOD_IP", &ip)
            .env("OCHOPOD_BIND", &ip)
            .env("OCHOPOD_PORT", opts.port.to_string())
            .env("OCHOPOD_HOME", &home)
            .env_remove("OCHOPOD_STATE_DIR")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start a pod")?;
        pods.push(LocalPod {
            seq_hint: i + 1,
            ip,
            home,
            child,
        });
    }
    let result = watch(&mut pods, opts.port, opts.plain).await;
    stop(&mut pods, patience).await;
    drop(local_zk);
    if temporary {
        let _ = std::fs::remove_dir_all(&root);
    } else {
        eprintln!("ochopod up: pod homes and logs kept in {}", root.display());
    }
    result
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("ochopod-up-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Shows the pods until Ctrl-C / SIGTERM, or until every pod has exited.
async fn watch(pods: &mut [LocalPod], port: u16, plain: bool) -> anyhow::Result<i32> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut last = String::new();
    loop {
        let mut lines = Vec::new();
        let mut alive = 0;
        for pod in pods.iter_mut() {
            let exited = pod.child.try_wait().ok().flatten();
            if exited.is_none() {
                alive += 1;
            }
            let info = match exited {
                Some(status) => Err(InfoError::Exited {
                    status,
                    log: pod.home.join("ochopod.log"),
                }),
                None => fetch(&pod.ip, port).await,
            };
            lines.push(line(pod, info));
        }
        let view = lines.join("\n");
        if view != last {
            if plain {
                println!("{view}\n");
            } else {
                // Clear the screen and redraw from the top.
                print!("\x1b[2J\x1b[H{view}\n\n(Ctrl-C stops every pod and the ZooKeeper)\n");
            }
            last = view;
        }
        if alive == 0 {
            eprintln!("ochopod up: every pod has exited");
            return Ok(1);
        }
        tokio::select! {
            _ = int.recv() => return Ok(0),
            _ = term.recv() => return Ok(0),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Why a pod's `/info` gave no line yet.
#[derive(Debug, thiserror::Error)]
enum InfoError {
    #[error("starting (no answer yet)")]
    NoAnswer(#[source] crate::control::client::CallError),
    #[error("{0}")]
    NotJson(#[source] serde_json::Error),
    #[error("exited ({status}); log: {}", log.display())]
    Exited {
        status: std::process::ExitStatus,
        log: std::path::PathBuf,
    },
}

async fn fetch(ip: &str, port: u16) -> Result<Value, InfoError> {
    let mut call = Call::get(ip, port, "/info");
    if let Ok(t) = std::env::var("OCHOPOD_TOKEN") {
        if let Some(first) = t.split(',').next() {
            call = call.bearer(first.trim());
        }
    }
    match call.send(Duration::from_millis(800), MAX_INFO).await {
        Ok(r) => serde_json::from_str(&r.text).map_err(InfoError::NotJson),
        Err(e) => Err(InfoError::NoAnswer(e)),
    }
}

fn line(pod: &LocalPod, info: Result<Value, InfoError>) -> String {
    match info {
        Err(e) => format!("pod-{:<3} {:<11} {e}", pod.seq_hint, pod.ip),
        Ok(i) => {
            let s = |k: &str| i[k].as_str().unwrap_or("-").to_string();
            format!(
                "{} #{:<3} {:<11} {:<10} {:<11} gen {:<3} restarts {:<3} {}",
                s("key"),
                i["seq"].as_u64().unwrap_or(0),
                pod.ip,
                s("state"),
                s("process"),
                i["generation"].as_u64().unwrap_or(0),
                i["restarts"].as_u64().unwrap_or(0),
                s("status"),
            )
        }
    }
}

/// SIGTERM every pod (they stop their processes and leave ZooKeeper), KILL what is left after
/// `patience`.
async fn stop(pods: &mut [LocalPod], patience: Duration) {
    eprintln!(
        "ochopod up: stopping {} pod(s) (up to {}: drain + grace) ...",
        pods.len(),
        crate::spec::format_duration(patience)
    );
    for pod in pods.iter() {
        let _ = kill(Pid::from_raw(pod.child.id() as i32), Signal::SIGTERM);
    }
    // The whole cluster is going: once every pod has marked itself leaving, a drain would wait
    // for a configuration that nobody is left to make. A second SIGTERM tells each pod to skip it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for pod in pods.iter_mut() {
        if pod.child.try_wait().ok().flatten().is_none() {
            let _ = kill(Pid::from_raw(pod.child.id() as i32), Signal::SIGTERM);
        }
    }
    let deadline = Instant::now() + patience;
    for pod in pods.iter_mut() {
        while pod.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = pod.child.kill();
                let _ = pod.child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
