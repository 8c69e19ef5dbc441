//! ZooKeeper: the session, the layout of SPEC §6, registration, election and snapshots.
//!
//! This module owns no task. It wraps `zookeeper-client` with what ochopod needs: a
//! [`ZkConfig`] read from the environment, [`connect`] (one attempt; the sync loop retries with
//! backoff), the ACLs every created node gets, and typed operations over the layout
//! ([`paths::ClusterPaths`]): [`register`] (seq claim and pod znode), [`election`] (one leader per
//! cluster), [`snapshot`] (the last configuration, written in one transaction guarded by the
//! leader's election node; in parts when too big for one znode), [`pause`] (a cluster paused by an operator or its leader) and
//! [`cluster`] (reading registered pods and dependencies).
//!
//! Errors: a [`ZkError`] keeps the znode and what was being done. Whether it is worth a retry on
//! the same session is [`ZkError::is_session_lost`]: Expired, AuthFailed and Closed are final for
//! a session, the caller builds a new client and registers again; anything else (connection loss
//! shows up as timeouts or `Custom` errors) is retried on the same session once it reconnects.
//! [`ZkError::is_fatal`] ones (a bad setting, a tree ochopod may not trust: [`acl`]) are never
//! retried: ochopod stops with exit code 2.

pub mod acl;
pub mod cluster;
pub mod election;
pub mod mirror;
pub mod paths;
pub mod pause;
pub mod register;
pub mod snapshot;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use zookeeper_client as zkc;

pub use zkc::{Client, SessionInfo, SessionState};

/// Where the cluster coordinator is, and how to talk to it (SPEC §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkConfig {
    /// `host:port[,host:port][/chroot]`.
    pub connect: String,
    pub session_timeout: Duration,
    /// `(user, password)` for the digest scheme, from `OCHOPOD_ZK_AUTH=digest:user:password`.
    pub auth: Option<(String, String)>,
}

impl Default for ZkConfig {
    fn default() -> Self {
        ZkConfig {
            connect: "127.0.0.1:2181".into(),
            session_timeout: Duration::from_secs(10),
            auth: None,
        }
    }
}

/// The shortest `OCHOPOD_ZK_SESSION_TIMEOUT` accepted: below it the client pings several times a
/// second and any pause expires the session.
pub const MIN_SESSION_TIMEOUT: Duration = Duration::from_millis(100);

/// The longest `OCHOPOD_ZK_SESSION_TIMEOUT` accepted. ZooKeeper grants at most its
/// `maxSessionTimeout` (20 ticks, 40 s, by default) whatever is asked; beyond minutes, a dead pod
/// would keep its registration (and its seat in every configuration) for that long.
pub const MAX_SESSION_TIMEOUT: Duration = Duration::from_secs(600);

impl ZkConfig {
    /// From `OCHOPOD_ZK`, `OCHOPOD_ZK_SESSION_TIMEOUT`, and `OCHOPOD_ZK_AUTH` or
    /// `OCHOPOD_ZK_AUTH_FILE`.
    pub fn from_env() -> Result<ZkConfig, ZkError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// As [`ZkConfig::from_env`] over any variable lookup (tests use a map).
    ///
    /// `OCHOPOD_ZK_AUTH` wins over `OCHOPOD_ZK_AUTH_FILE` (as `OCHOPOD_TOKEN` over its file). The
    /// file fails closed: unreadable, empty or malformed is an error, never "no auth".
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<ZkConfig, ZkError> {
        let mut cfg = ZkConfig::default();
        if let Some(c) = var("OCHOPOD_ZK").filter(|c| !c.trim().is_empty()) {
            cfg.connect = c.trim().to_string();
        }
        if let Some(t) = var("OCHOPOD_ZK_SESSION_TIMEOUT").filter(|t| !t.trim().is_empty()) {
            cfg.session_timeout = parse_session_timeout(&t)?;
        }
        if let Some(a) = var("OCHOPOD_ZK_AUTH").filter(|a| !a.trim().is_empty()) {
            cfg.auth = Some(parse_auth("OCHOPOD_ZK_AUTH", a.trim())?);
        } else if let Some(file) = var("OCHOPOD_ZK_AUTH_FILE").filter(|f| !f.trim().is_empty()) {
            let path = PathBuf::from(file.trim());
            let text = std::fs::read_to_string(&path).map_err(|source| ZkError::AuthFile {
                path: path.clone(),
                source,
            })?;
            if text.trim().is_empty() {
                return Err(ZkError::Config {
                    var: "OCHOPOD_ZK_AUTH_FILE",
                    message: format!("{} is empty; expected digest:user:password", path.display()),
                });
            }
            cfg.auth = Some(parse_auth("OCHOPOD_ZK_AUTH_FILE", text.trim())?);
        }
        Ok(cfg)
    }
}

fn parse_session_timeout(text: &str) -> Result<Duration, ZkError> {
    let bad = |message| ZkError::Config {
        var: "OCHOPOD_ZK_SESSION_TIMEOUT",
        message,
    };
    let d = crate::spec::parse_duration(text).map_err(|e| bad(e.to_string()))?;
    if !(MIN_SESSION_TIMEOUT..=MAX_SESSION_TIMEOUT).contains(&d) {
        return Err(bad(format!(
            "expected a duration from {} to {}, found {:?}",
            crate::spec::format_duration(MIN_SESSION_TIMEOUT),
            crate::spec::format_duration(MAX_SESSION_TIMEOUT),
            text.trim()
        )));
    }
    Ok(d)
}

/// `digest:user:password` (the password may hold colons). The message never repeats the text: it
/// holds a password.
fn parse_auth(var: &'static str, text: &str) -> Result<(String, String), ZkError> {
    let bad = || ZkError::Config {
        var,
        message: "expected digest:user:password".to_string(),
    };
    let rest = text.strip_prefix("digest:").ok_or_else(bad)?;
    let (user, password) = rest.split_once(':').ok_or_else(bad)?;
    if user.is_empty() {
        return Err(bad());
    }
    Ok((user.to_string(), password.to_string()))
}

/// A failed ZooKeeper operation, with the znode and what was being done.
///
/// Retried by the sync loop: on the same session unless [`ZkError::is_session_lost`], else with a
/// new session and a new registration. [`ZkError::is_fatal`] ones are never retried.
#[derive(Debug, thiserror::Error)]
pub enum ZkError {
    /// A variable ochopod cannot use. Fatal (exit 2).
    #[error("{var}: {message}")]
    Config { var: &'static str, message: String },
    /// `OCHOPOD_ZK_AUTH_FILE` cannot be read. Fatal (exit 2): running without the credentials
    /// would leave the tree open.
    #[error("OCHOPOD_ZK_AUTH_FILE: cannot read {}", path.display())]
    AuthFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A node of the tree that others may change, which this session may not repair (see
    /// [`acl`]). Fatal (exit 2): the operator fixes the ACL or deletes the tree.
    #[error("{path}: {problem}; {fix}")]
    Unsafe {
        path: String,
        problem: String,
        fix: String,
    },
    /// `hint`: what the servers' behaviour says (a server that closes connections at once:
    /// `maxClientCnxns`, no quorum), else empty.
    #[error("cannot connect to ZooKeeper at {connect}: {source}{hint}")]
    Connect {
        connect: String,
        #[source]
        source: zkc::Error,
        hint: String,
    },
    #[error("while {doing} {path}: {source}")]
    Op {
        doing: &'static str,
        path: String,
        #[source]
        source: zkc::Error,
    },
    #[error("{path}: {message}")]
    Data { path: String, message: String },
    /// The snapshot transaction found the leader's election node gone or changed.
    #[error("no longer the leader ({path} is gone)")]
    Deposed { path: String },
    /// A snapshot that cannot be read: not JSON, or a manifest whose parts are refused (see
    /// [`snapshot::parts`]).
    #[error("{path}: {source}")]
    Snapshot {
        path: String,
        #[source]
        source: snapshot::SnapshotError,
    },
}

impl ZkError {
    pub(crate) fn op<'a>(doing: &'static str, path: &'a str) -> impl FnOnce(zkc::Error) -> ZkError + 'a {
        move |source| ZkError::Op {
            doing,
            path: path.to_string(),
            source,
        }
    }

    /// The session is over (expired, auth failed, closed): only a new client helps.
    pub fn is_session_lost(&self) -> bool {
        match self {
            ZkError::Op { source, .. } | ZkError::Connect { source, .. } => is_final(source),
            _ => false,
        }
    }

    /// A setting or a tree ochopod refuses to run with: retrying cannot help (exit 2).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ZkError::Config { .. } | ZkError::AuthFile { .. } | ZkError::Unsafe { .. }
        )
    }

    /// The underlying client error, if any.
    pub fn source_error(&self) -> Option<&zkc::Error> {
        match self {
            ZkError::Op { source, .. } | ZkError::Connect { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Expired, AuthFailed and Closed end a session; everything else may pass once reconnected.
pub fn is_final(e: &zkc::Error) -> bool {
    matches!(
        e,
        zkc::Error::SessionExpired | zkc::Error::AuthFailed | zkc::Error::ClientClosed
    )
}

/// CREATOR_ALL + world READ, for `OCHOPOD_ZK_AUTH` (SPEC §5): other tools can read the layout,
/// only holders of the credentials can change it.
static AUTHED_ACLS: [zkc::Acl; 2] = [
    zkc::Acl::new_const(zkc::Permission::ALL, "auth", ""),
    zkc::Acl::new_const(zkc::Permission::READ, "world", "anyone"),
];

/// The ACLs of every node ochopod creates.
#[derive(Debug, Clone, Copy)]
pub struct Acls {
    authed: bool,
}

impl Acls {
    pub fn new(cfg: &ZkConfig) -> Acls {
        Acls {
            authed: cfg.auth.is_some(),
        }
    }

    fn acls(self) -> zkc::Acls<'static> {
        if self.authed {
            zkc::Acls::new(&AUTHED_ACLS)
        } else {
            zkc::Acls::anyone_all()
        }
    }

    pub fn persistent(self) -> zkc::CreateOptions<'static> {
        zkc::CreateMode::Persistent.with_acls(self.acls())
    }

    pub fn ephemeral(self) -> zkc::CreateOptions<'static> {
        zkc::CreateMode::Ephemeral.with_acls(self.acls())
    }

    pub fn ephemeral_sequential(self) -> zkc::CreateOptions<'static> {
        zkc::CreateMode::EphemeralSequential.with_acls(self.acls())
    }
}

/// Runs `zookeeper-client`'s background task (one per session, spawned while connecting) on
/// tokio. The client spawns through `spawns-core`, which needs a spawner in scope at that moment;
/// its own tokio feature would pull a crate ochopod does not otherwise need.
struct TokioSpawner;

impl spawns_core::Spawn for TokioSpawner {
    fn spawn(&self, task: spawns_core::Task) {
        tokio::spawn(Box::into_pin(task.future));
    }
}

static SPAWNER: TokioSpawner = TokioSpawner;

/// A future polled with [`TokioSpawner`] in scope.
pub(crate) struct WithSpawner<F: Future>(Pin<Box<F>>);

/// Wraps a zookeeper-client future (a connect) so its session task lands on tokio.
pub(crate) fn with_spawner<F: Future>(future: F) -> WithSpawner<F> {
    WithSpawner(Box::pin(future))
}

impl<F: Future> Future for WithSpawner<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _scope = spawns_core::enter(&SPAWNER);
        self.0.as_mut().poll(cx)
    }
}

/// Opens a session, trying the hosts until about the session timeout has passed.
pub async fn connect(cfg: &ZkConfig) -> Result<Client, ZkError> {
    connect_with(cfg, false, None).await
}

/// One quick attempt: fails as soon as every host refused, rather than cycling until the session
/// timeout. The sync loop uses it and backs off between attempts, saying so in its status.
pub async fn try_connect(cfg: &ZkConfig) -> Result<Client, ZkError> {
    connect_with(cfg, true, None).await
}

/// As [`try_connect`], but re-establishing `session`: the client gives a session up after 1.4 x
/// its timeout without a server, while a ZooKeeper that restarts restores its sessions with a
/// fresh timeout; resuming keeps the pod's ephemeral nodes, so its peers see no departure. Fails
/// with `SessionExpired` when the server no longer knows it.
pub async fn try_resume(cfg: &ZkConfig, session: SessionInfo) -> Result<Client, ZkError> {
    connect_with(cfg, true, Some(session)).await
}

async fn connect_with(cfg: &ZkConfig, eager: bool, session: Option<SessionInfo>) -> Result<Client, ZkError> {
    let mut connector = Client::connector().with_session_timeout(cfg.session_timeout);
    if let Some(session) = session {
        connector = connector.with_session(session);
    }
    if eager {
        connector = connector.with_fail_eagerly();
    }
    if let Some((user, password)) = &cfg.auth {
        connector = connector.with_auth("digest", format!("{user}:{password}").as_bytes());
    }
    // A session that cannot be established within its own timeout is as good as down: bound the
    // attempt so the caller can say so in the status and back off.
    match tokio::time::timeout(
        cfg.session_timeout.saturating_add(Duration::from_secs(1)),
        WithSpawner(Box::pin(connector.connect(&cfg.connect))),
    )
    .await
    {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(source)) => Err(ZkError::Connect {
            hint: diagnose(&cfg.connect).await,
            connect: cfg.connect.clone(),
            source,
        }),
        Err(_) => Err(ZkError::Connect {
            hint: diagnose(&cfg.connect).await,
            connect: cfg.connect.clone(),
            source: zkc::Error::Timeout,
        }),
    }
}

/// Why no server gave a session, when their behaviour tells: ZooKeeper accepts the connection
/// and closes it at once when it refuses the client (more than `maxClientCnxns` connections from
/// one IP, 60 by default) or does not serve (no quorum). The client only says "no available
/// hosts". Each server gets one plain TCP connection, all at once; empty when none closed it.
/// Bounded to 750 ms, as it delays the next attempt.
async fn diagnose(connect: &str) -> String {
    use tokio::io::AsyncReadExt as _;
    let hosts = connect.split('/').next().unwrap_or_default();
    let mut probes = tokio::task::JoinSet::new();
    for host in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        let host = host.to_string();
        probes.spawn(async move {
            use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
            let connect = tokio::net::TcpStream::connect(&host);
            let mut stream = match tokio::time::timeout(Duration::from_millis(500), connect).await {
                Ok(Ok(stream)) => stream,
                // Closed so fast that the connect itself sees it.
                Ok(Err(e)) if matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe) => {
                    return Some(host)
                }
                // Refused (nothing listens) or unreachable: the client's message says enough.
                _ => return None,
            };
            // A serving ZooKeeper waits for the client's first request: nothing to read. One that
            // refuses closes within a millisecond.
            match tokio::time::timeout(Duration::from_millis(250), stream.read(&mut [0u8; 1])).await {
                Ok(Ok(0)) | Ok(Err(_)) => Some(host),
                _ => None,
            }
        });
    }
    let mut closing: Vec<String> = probes.join_all().await.into_iter().flatten().collect();
    if closing.is_empty() {
        return String::new();
    }
    closing.sort();
    format!(
        "; {} accepted the connection and closed it at once: ZooKeeper refuses this client \
         (more than its maxClientCnxns connections from this IP, 60 by default: count the \
         sessions of this machine's pods and tools, or raise it) or is not serving (no quorum: \
         see its log)",
        closing.join(", ")
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn config_defaults_and_overrides_come_from_the_environment() {
        assert_eq!(ZkConfig::from_vars(vars(&[])).unwrap(), ZkConfig::default());
        let cfg = ZkConfig::from_vars(vars(&[
            ("OCHOPOD_ZK", "zk1:2181,zk2:2181/ochopod"),
            ("OCHOPOD_ZK_SESSION_TIMEOUT", "4s"),
            ("OCHOPOD_ZK_AUTH", "digest:ops:s3cr:et"),
        ]))
        .unwrap();
        assert_eq!(cfg.connect, "zk1:2181,zk2:2181/ochopod");
        assert_eq!(cfg.session_timeout, Duration::from_secs(4));
        assert_eq!(cfg.auth, Some(("ops".into(), "s3cr:et".into())));
    }

    #[test]
    fn credentials_come_from_a_file_trimmed_and_the_variable_wins() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("zk-auth");
        std::fs::write(&file, "  digest:ops:from:file\n").unwrap();
        let path = file.to_str().unwrap();
        let cfg = ZkConfig::from_vars(vars(&[("OCHOPOD_ZK_AUTH_FILE", path)])).unwrap();
        assert_eq!(cfg.auth, Some(("ops".into(), "from:file".into())));
        let cfg = ZkConfig::from_vars(vars(&[
            ("OCHOPOD_ZK_AUTH_FILE", path),
            ("OCHOPOD_ZK_AUTH", "digest:env:pw"),
        ]))
        .unwrap();
        assert_eq!(cfg.auth, Some(("env".into(), "pw".into())));
    }

    #[test]
    fn an_auth_file_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let e =
            ZkConfig::from_vars(vars(&[("OCHOPOD_ZK_AUTH_FILE", missing.to_str().unwrap())])).unwrap_err();
        assert!(matches!(e, ZkError::AuthFile { .. }), "{e:?}");
        assert!(e.is_fatal());
        assert_eq!(
            e.to_string(),
            format!("OCHOPOD_ZK_AUTH_FILE: cannot read {}", missing.display())
        );
        let empty = dir.path().join("empty");
        std::fs::write(&empty, " \n").unwrap();
        let e = ZkConfig::from_vars(vars(&[("OCHOPOD_ZK_AUTH_FILE", empty.to_str().unwrap())])).unwrap_err();
        assert!(
            e.to_string().starts_with("OCHOPOD_ZK_AUTH_FILE:") && e.to_string().contains("is empty"),
            "{e}"
        );
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "ops:hunter2").unwrap();
        let e = ZkConfig::from_vars(vars(&[("OCHOPOD_ZK_AUTH_FILE", bad.to_str().unwrap())])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "OCHOPOD_ZK_AUTH_FILE: expected digest:user:password"
        );
        assert!(!format!("{e:?}").contains("hunter2"), "the password never shows");
    }

    #[test]
    fn session_timeouts_outside_the_range_are_refused() {
        for ok in ["100ms", "2s", "10m"] {
            let cfg = ZkConfig::from_vars(vars(&[("OCHOPOD_ZK_SESSION_TIMEOUT", ok)])).unwrap();
            assert_eq!(cfg.session_timeout, crate::spec::parse_duration(ok).unwrap());
        }
        let e =
            ZkConfig::from_vars(vars(&[("OCHOPOD_ZK_SESSION_TIMEOUT", "9999999999999999h")])).unwrap_err();
        assert!(e.to_string().starts_with("OCHOPOD_ZK_SESSION_TIMEOUT: "), "{e}");
        for bad in ["0", "99ms", "11m"] {
            let e = ZkConfig::from_vars(vars(&[("OCHOPOD_ZK_SESSION_TIMEOUT", bad)])).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("OCHOPOD_ZK_SESSION_TIMEOUT: expected a duration from 100ms to 10m, found {bad:?}")
            );
        }
    }

    #[test]
    fn bad_auth_and_timeout_name_the_variable() {
        let e = ZkConfig::from_vars(vars(&[("OCHOPOD_ZK_AUTH", "sasl:x")])).unwrap_err();
        assert!(e.to_string().starts_with("OCHOPOD_ZK_AUTH:"), "{e}");
        let e = ZkConfig::from_vars(vars(&[("OCHOPOD_ZK_SESSION_TIMEOUT", "ten")])).unwrap_err();
        assert!(e.to_string().starts_with("OCHOPOD_ZK_SESSION_TIMEOUT:"), "{e}");
    }
}
