//! ZooKeeper: the session, the layout of SPEC §6, registration, election and snapshots.
//!
//! This module owns no task. It wraps `zookeeper-client` with what ochopod needs: a
//! [`ZkConfig`] read from the environment, [`connect`] (one attempt; the sync loop retries with
//! backoff), the ACLs every created node gets, and typed operations over the layout
//! ([`paths::ClusterPaths`]): [`register`] (seq claim and pod znode), [`election`] (one leader per
//! cluster), [`snapshot`] (the last configuration, written in one transaction guarded by the
//! leader's election node) and [`cluster`] (reading registered pods and dependencies).
//!
//! Errors: a [`ZkError`] keeps the znode and what was being done. Whether it is worth a retry on
//! the same session is [`ZkError::is_session_lost`]: Expired, AuthFailed and Closed are final for
//! a session, the caller builds a new client and registers again; anything else (connection loss
//! shows up as timeouts or `Custom` errors) is retried on the same session once it reconnects.

pub mod cluster;
pub mod election;
pub mod paths;
pub mod register;
pub mod snapshot;

use std::future::Future;
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

impl ZkConfig {
    /// From `OCHOPOD_ZK`, `OCHOPOD_ZK_SESSION_TIMEOUT` and `OCHOPOD_ZK_AUTH`.
    pub fn from_env() -> Result<ZkConfig, ZkError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// As [`ZkConfig::from_env`] over any variable lookup (tests use a map).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<ZkConfig, ZkError> {
        let mut cfg = ZkConfig::default();
        if let Some(c) = var("OCHOPOD_ZK").filter(|c| !c.trim().is_empty()) {
            cfg.connect = c.trim().to_string();
        }
        if let Some(t) = var("OCHOPOD_ZK_SESSION_TIMEOUT").filter(|t| !t.trim().is_empty()) {
            cfg.session_timeout = crate::spec::parse_duration(&t).map_err(|message| ZkError::Config {
                var: "OCHOPOD_ZK_SESSION_TIMEOUT",
                message,
            })?;
        }
        if let Some(a) = var("OCHOPOD_ZK_AUTH").filter(|a| !a.trim().is_empty()) {
            cfg.auth = Some(parse_auth(a.trim())?);
        }
        Ok(cfg)
    }
}

fn parse_auth(text: &str) -> Result<(String, String), ZkError> {
    let bad = || ZkError::Config {
        var: "OCHOPOD_ZK_AUTH",
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
/// new session and a new registration. `Config` is fatal (bad environment).
#[derive(Debug, thiserror::Error)]
pub enum ZkError {
    #[error("{var}: {message}")]
    Config { var: &'static str, message: String },
    #[error("cannot connect to ZooKeeper at {connect}: {source}")]
    Connect {
        connect: String,
        #[source]
        source: zkc::Error,
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
        cfg.session_timeout + Duration::from_secs(1),
        WithSpawner(Box::pin(connector.connect(&cfg.connect))),
    )
    .await
    {
        Ok(r) => r.map_err(|source| ZkError::Connect {
            connect: cfg.connect.clone(),
            source,
        }),
        Err(_) => Err(ZkError::Connect {
            connect: cfg.connect.clone(),
            source: zkc::Error::Timeout,
        }),
    }
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
    fn bad_auth_and_timeout_name_the_variable() {
        let e = ZkConfig::from_vars(vars(&[("OCHOPOD_ZK_AUTH", "sasl:x")])).unwrap_err();
        assert!(e.to_string().starts_with("OCHOPOD_ZK_AUTH:"), "{e}");
        let e = ZkConfig::from_vars(vars(&[("OCHOPOD_ZK_SESSION_TIMEOUT", "ten")])).unwrap_err();
        assert!(e.to_string().starts_with("OCHOPOD_ZK_SESSION_TIMEOUT:"), "{e}");
    }
}
