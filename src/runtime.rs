//! The one place that starts the loops, and the order they stop in.
//!
//! Start: load the pod.yaml, find out who we are (binding), open the state dir (uuid), become a
//! subreaper and start reaping, start supervise, bind the control port, then either configure the
//! pod as a cluster of one (`--standalone`) or start the sync loop.
//!
//! Stop, on SIGTERM/SIGINT (SPEC §8), in this order:
//! 1. mark the pod `leaving` (the leader and dependents drop it) and, with `stop.drain`, wait for
//!    a configuration without it;
//! 2. `tear_down`, the stop signal to the process group, `grace`, KILL;
//! 3. leave ZooKeeper (delete the registration, close the session);
//! 4. stop the HTTP server, reap what is left, exit with the process's code (128+n for signal n).
//!
//! When the process ends for good on its own (policy, `/control/kill`) the same order runs from
//! step 3, and ochopod exits with the process's code (0 after a kill).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::control;
use crate::logs::LogRing;
use crate::model::held::Known;
use crate::model::{ClusterMap, Pod, PodState};
use crate::render::Renderer;
use crate::spec::{self, PodSpec, Signal};
use crate::supervise::{self, Origin, PodContext};
use crate::sync::{self, SyncConfig, SyncStatus};
use crate::zk::ZkConfig;

/// The longest each last step of a stop (deregistration, HTTP drain) may take.
const STEP: std::time::Duration = std::time::Duration::from_secs(5);

/// How `ochopod run` was asked to run.
pub struct RunOptions {
    pub pod_yaml: PathBuf,
    pub standalone: bool,
    pub ring: LogRing,
}

/// Why `run` could not even start. Exit code 2 for the pod.yaml and the ZooKeeper settings, 1
/// otherwise.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Spec(spec::Diagnostics),
    /// A template that does not compile (the same exit code as a pod.yaml problem: 2).
    #[error("{0}")]
    Template(#[source] crate::render::RenderError),
    /// A token configuration that would leave the control API open (exit 2).
    #[error(transparent)]
    Token(#[from] crate::auth::TokenError),
    /// A variable saying who the pod is holds a value ochopod cannot use (exit 2).
    #[error(transparent)]
    Binding(#[from] crate::binding::BindingError),
    /// This pod's own identity would be refused by its peers (exit 2).
    #[error("this pod's identity is not valid (OCHOPOD_IP, OCHOPOD_HOST, ...): {0}")]
    Identity(#[from] crate::model::Invalid),
    /// `OCHOPOD_ZK*` ochopod refuses (exit 2): a bad value, unreadable credentials.
    #[error(transparent)]
    Zk(crate::zk::ZkError),
    /// The state dir or the uuid in it cannot be written (exit 1).
    #[error("cannot create the state dir {}", .dir.display())]
    StateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Uuid(#[from] crate::fsutil::WriteError),
    /// The control port is taken, or the address is not this host's (exit 1).
    #[error("cannot listen on {address} (OCHOPOD_BIND / OCHOPOD_PORT)")]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
}

/// The state dir: `OCHOPOD_STATE_DIR`, else `$OCHOPOD_HOME/.ochopod`, else `/var/lib/ochopod`.
pub fn state_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(dir) = env("OCHOPOD_STATE_DIR") {
        return PathBuf::from(dir);
    }
    match env("OCHOPOD_HOME") {
        Some(home) => Path::new(&home).join(".ochopod"),
        None => PathBuf::from("/var/lib/ochopod"),
    }
}

/// The pod's uuid, created on first use and kept in the state dir so that a restarted container
/// with the same volume comes back as the same pod; and whether it was created now (a new uuid
/// holds no seq: its first claim need not look for one).
pub fn load_or_create_uuid(dir: &Path) -> Result<(String, bool), StartError> {
    let path = dir.join("uuid");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let text = text.trim();
        if uuid::Uuid::parse_str(text).is_ok() {
            return Ok((text.to_string(), false));
        }
        tracing::warn!(path = %path.display(), "ignoring a malformed uuid file");
    }
    std::fs::create_dir_all(dir).map_err(|source| StartError::StateDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let uuid = uuid::Uuid::new_v4().to_string();
    crate::fsutil::write_atomic(&path, uuid.as_bytes(), 0o644)?;
    Ok((uuid, true))
}

fn process_env() -> impl Fn(&str) -> Option<String> {
    |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// Runs the pod until it stops; returns the exit code.
pub async fn run(opts: RunOptions) -> Result<i32, StartError> {
    let env = process_env();
    let spec = Arc::new(spec::load(&opts.pod_yaml).map_err(StartError::Spec)?);
    let mut identity = crate::binding::detect_from_process_env(&spec.ports)?;
    // SPEC §3: the control port is one of the pod's ports, so peers find it like any other.
    identity
        .ports
        .insert(identity.listen_port.to_string(), identity.control_port);
    let state_dir = state_dir(&env);
    let (uuid, new_uuid) = load_or_create_uuid(&state_dir)?;
    let tokens = crate::auth::Tokens::from_vars(&|k| std::env::var(k).ok())?;
    if tokens.is_none() {
        tracing::warn!("no OCHOPOD_TOKEN: the control API accepts anybody who can reach it");
    }
    let renderer = Renderer::new(&spec).map_err(StartError::Template)?;
    // Before anything starts: a bad setting or unreadable credentials must not leave a process
    // running without its cluster (nor a pod registered without auth).
    let zk = if opts.standalone {
        None
    } else {
        Some(ZkConfig::from_env().map_err(StartError::Zk)?)
    };
    let me = Pod {
        uuid: uuid.clone(),
        seq: if opts.standalone {
            1
        } else {
            identity.preferred_seq()
        },
        cluster: spec.cluster.clone(),
        namespace: spec.namespace.clone(),
        ip: identity.ip.clone(),
        host: identity.host.clone(),
        public: identity.public.clone(),
        node: identity.node.clone(),
        task: identity.task.clone(),
        ports: identity.ports.clone(),
        control_port: identity.control_port,
        binding: identity.binding.to_string(),
        version: crate::VERSION.to_string(),
        state: PodState::Running,
        started: crate::clock::now_ms(),
    };
    // Peers validate every registration (SPEC §6): one they would refuse must not start.
    crate::model::check_pod(&me)?;
    tracing::info!(cluster = %spec.key(), %uuid, ip = %me.ip, binding = %me.binding, "starting the pod");

    let shutdown = CancellationToken::new();
    // OCHOPOD_REAP=off exists to show that the PID-1 test detects zombies; never needed otherwise.
    let reap = env("OCHOPOD_REAP").as_deref() != Some("off");
    if reap && supervise::become_subreaper() {
        tokio::spawn(supervise::run_reaper(shutdown.child_token()));
    }
    // ochopod's secrets stay out of templates (and out of every process it starts, see
    // supervise::child::command).
    let template_env: BTreeMap<String, String> = std::env::vars()
        .filter(|(name, _)| !spec::is_secret_env(name))
        .collect();
    let supervise = supervise::spawn(PodContext {
        spec: spec.clone(),
        renderer,
        me: me.clone(),
        env: template_env,
        state_dir: state_dir.clone(),
        ring: opts.ring.clone(),
        hook_slots: tokio::sync::Semaphore::new(supervise::HOOKS_IN_FLIGHT),
    });

    let address = format!("{}:{}", identity.bind, identity.listen_port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|source| StartError::Listen {
            address: address.clone(),
            source,
        })?;
    tracing::info!(%address, "control API listening");
    let http_stop = CancellationToken::new();
    let sync = zk.map(|zk| {
        start_sync(
            zk,
            &me,
            &state_dir,
            new_uuid,
            tokens.as_ref(),
            &supervise,
            shutdown.child_token(),
        )
    });
    let api = control::Api {
        supervise: supervise.clone(),
        sync: sync.as_ref().map(|s| s.status.clone()),
        reset: sync.as_ref().map(|s| s.reset.clone()),
        me: me.clone(),
        auth: tokens
            .map(|t| crate::auth::Verifier::new(t, &me.uuid, own_addresses(&me, identity.listen_port))),
        ring: opts.ring.clone(),
        started: Instant::now(),
        checked: control::Checked::default(),
    };
    let server = tokio::spawn(control::serve(listener, api, http_stop.clone()));

    if opts.standalone {
        let supervise = supervise.clone();
        // A cluster of one: the pod itself, seq 1, generation 1.
        let map = ClusterMap::of_one(
            &Pod {
                seq: me.seq.max(1),
                ..me.clone()
            },
            1,
        );
        tokio::spawn(async move {
            // A process that ends at once (a one-shot job) is not a failed configuration.
            if let Err(e) = supervise.on(Some(Known::new(map)), Origin::Leader).await {
                if supervise.status().borrow().process != supervise::ProcessState::Dead {
                    tracing::error!(error = %e, "standalone configuration failed");
                }
            }
        });
    }

    let code = wait_for_the_end(&spec, &supervise, sync.as_ref()).await;
    // Leaving ZooKeeper and draining HTTP are bounded: a leader busy configuring, or a peer
    // holding a keep-alive connection, must not keep a stopping container alive. Whatever is
    // left ends with the process (the session's ephemeral nodes go with it).
    if let Some(sync) = &sync {
        tracing::info!("leaving ZooKeeper");
        if tokio::time::timeout(STEP, sync.handle.deregister())
            .await
            .is_err()
        {
            tracing::warn!(
                after_s = STEP.as_secs_f64(),
                "deregistration did not finish; exiting anyway"
            );
        }
    }
    shutdown.cancel();
    http_stop.cancel();
    if tokio::time::timeout(STEP, server).await.is_err() {
        tracing::warn!(
            after_s = STEP.as_secs_f64(),
            "HTTP connections still open; exiting anyway"
        );
    }
    supervise::reap_orphans();
    tracing::info!(code, "ochopod exits");
    Ok(code)
}

/// Every `host:port` a signed request may be addressed to: the pod's addresses and names, at the
/// advertised and at the listening control port (see [`crate::auth`]).
fn own_addresses(me: &Pod, listen_port: u16) -> Vec<String> {
    let mut out = Vec::new();
    for name in [&me.ip, &me.host, &me.public] {
        // Callers sign the address as read back from ZooKeeper, where it is in one spelling.
        let name = name
            .parse::<std::net::IpAddr>()
            .map_or_else(|_| name.clone(), |ip| ip.to_string());
        for port in [me.control_port, listen_port] {
            let a = format!("{name}:{port}");
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    out
}

/// The running sync loop, as the runtime holds it.
struct Sync {
    handle: sync::Handle,
    /// `POST /reset` sends here; a task turns it into [`sync::Handle::reset`].
    reset: mpsc::Sender<()>,
    /// What the sync actor publishes (it holds the sender). Its sender dropping means the sync
    /// loop has stopped: before the runtime asked it to (deregister, shutdown), that is a refusal
    /// ([`crate::zk::ZkError::is_fatal`]): ochopod stops, exit 2.
    status: watch::Receiver<SyncStatus>,
}

/// Starts the sync loop, and the small task that turns `POST /reset` into [`sync::Handle::reset`]
/// (the handler answers at once; resets queue behind each other).
fn start_sync(
    zk: ZkConfig,
    me: &Pod,
    state_dir: &Path,
    new_uuid: bool,
    tokens: Option<&crate::auth::Tokens>,
    supervise: &supervise::Handle,
    shutdown: CancellationToken,
) -> Sync {
    tracing::info!(zk = %zk.connect, "joining the cluster through ZooKeeper");
    let cfg = SyncConfig {
        spec: supervise.context().spec.clone(),
        me: me.clone(),
        state_dir: state_dir.to_path_buf(),
        new_uuid,
        zk,
        signer: tokens.map(crate::auth::Tokens::signer),
        pod: supervise.context().clone(),
    };
    let (handle, status) = sync::spawn(cfg, supervise.pod_state(), shutdown);
    let (reset, mut resets) = mpsc::channel::<()>(4);
    let reset_handle = handle.clone();
    tokio::spawn(async move {
        while resets.recv().await.is_some() {
            reset_handle.reset().await;
        }
    });
    Sync {
        handle,
        reset,
        status,
    }
}

/// The exit code when the sync loop refused to run (a tree it may not trust): a setting to fix,
/// like a bad pod.yaml.
const EXIT_REFUSED: i32 = 2;

/// Handles OS signals until the pod must stop, stops the process, and returns the exit code.
/// The only task that touches OS signals.
async fn wait_for_the_end(spec: &PodSpec, supervise: &supervise::Handle, sync: Option<&Sync>) -> i32 {
    let sync_stopped = async {
        match sync {
            // Err once the sync actor dropped its sender: the loop has stopped.
            Some(s) => {
                let mut status = s.status.clone();
                while status.changed().await.is_ok() {}
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sync_stopped);
    let mut status = supervise.status();
    let (mut term, mut int, mut hup, mut usr1, mut usr2) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d), Ok(e)) => (a, b, c, d, e),
        _ => {
            tracing::error!("cannot install signal handlers; stopping");
            return supervise.shutdown().await.map(|e| e.shell_code()).unwrap_or(1);
        }
    };
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = hup.recv() => supervise.forward(Signal::SIGHUP).await,
            _ = usr1.recv() => supervise.forward(Signal::SIGUSR1).await,
            _ = usr2.recv() => supervise.forward(Signal::SIGUSR2).await,
            _ = &mut sync_stopped => {
                tracing::error!(code = EXIT_REFUSED, "the sync loop refused to run (see above): stopping");
                let _ = supervise.shutdown().await;
                return EXIT_REFUSED;
            }
            changed = status.changed() => {
                if changed.is_err() { return 1; }
                let code = status.borrow_and_update().exit_code;
                if let Some(code) = code {
                    let _ = supervise.shutdown().await;
                    return code;
                }
            }
        }
    }
    // Leaving first: the leader and dependents drop this pod; with a drain, the leader has time
    // to configure the others without it before its process stops (remove first, then stop).
    // A second SIGTERM/SIGINT cuts the drain short: the operator (or `ochopod up` stopping a
    // whole cluster, where nobody is left to configure the others) wants it gone now.
    supervise.leave().await;
    if let Some(sync) = sync {
        tokio::select! {
            _ = sync.handle.leave(spec.process.stop.drain) => {}
            _ = term.recv() => tracing::info!("second SIGTERM: not waiting for the drain"),
            _ = int.recv() => tracing::info!("second SIGINT: not waiting for the drain"),
        }
    }
    let exit = supervise.shutdown().await;
    exit.map(|e| e.shell_code()).unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_is_new_once_then_read_back_from_the_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (made, new) = load_or_create_uuid(&state).unwrap();
        assert!(new, "made by this run: it holds no seq");
        assert_eq!(load_or_create_uuid(&state).unwrap(), (made, false));
    }
}
