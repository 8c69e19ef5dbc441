//! `ochopod ctl`: the CI/CD client. Finds pods through ZooKeeper (SPEC §6) and drives them over
//! their control API (SPEC §7).
//!
//! ```text
//!  argv ──▶ CtlArgs ──▶ discover (read-only ZooKeeper session: clusters, pods, leader)
//!                           │ Targets
//!                           ▼
//!                       http::Caller (parallel, per-request timeout, bearer token)
//!                           │ answers / Failures
//!                           ▼
//!                       verbs / wait ──▶ table (people) or --json (machines) on stdout,
//!                                        failures and progress on stderr, exit code
//! ```
//!
//! Everything lives for one command: one ZooKeeper session and one HTTP pool, dropped on return.
//! ctl writes nothing to ZooKeeper but the `paused` node of `pause` and `resume`
//! ([`crate::zk::pause`]).
//!
//! Exit codes (the one table; `main.rs` passes them through):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | every targeted pod succeeded |
//! | 1 | some pod failed (each named on stderr), ZooKeeper unreachable, no cluster matches |
//! | 2 | bad usage |
//! | 3 | `wait` timed out |

mod context;
mod discover;
mod events;
mod http;
mod pause;
mod report;
mod status;
mod table;
mod ui;
mod verbs;
mod wait;
pub mod watch;

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

pub use discover::{key_pattern, Cluster, Registered, Target};
pub use http::Failure;

/// Every targeted pod succeeded.
pub const EXIT_OK: i32 = 0;
/// Some pod failed, or ctl could not find them.
pub const EXIT_FAILED: i32 = 1;
/// Bad usage.
pub const EXIT_USAGE: i32 = 2;
/// `wait` gave up.
pub const EXIT_TIMEOUT: i32 = 3;

fn duration(text: &str) -> Result<Duration, crate::spec::DurationError> {
    crate::spec::parse_duration(text)
}

/// `ochopod ctl [OPTIONS] <VERB> [CLUSTERS...]`.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// ZooKeeper connect string: host:port, comma-separated, then an optional /chroot.
    #[arg(long, env = "OCHOPOD_ZK", default_value = "127.0.0.1:2181", global = true)]
    pub zk: String,
    /// The namespace cluster names are relative to (`prod.kafka` or `/prod.kafka` is absolute).
    #[arg(long, env = "OCHOPOD_NAMESPACE", default_value = "default", global = true)]
    pub namespace: String,
    /// Bearer token for the pods' control API (comma-separated: the first is sent).
    #[arg(long, env = "OCHOPOD_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// JSON on stdout instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// How long to try reaching ZooKeeper.
    #[arg(long, default_value = "5s", value_parser = duration, global = true)]
    pub zk_timeout: Duration,
    /// Timeout of each read (`/info`, `/log`) and of `/reset`.
    #[arg(long, default_value = "10s", value_parser = duration, global = true)]
    pub request_timeout: Duration,
    /// At most this many requests in flight.
    #[arg(long, default_value_t = 64, global = true)]
    pub parallelism: usize,
    #[command(subcommand)]
    pub verb: Verb,
}

/// Which pods: cluster names (`*` wildcards; none: every cluster of the namespace) and seqs.
#[derive(Debug, Clone, Default, Args)]
pub struct Select {
    /// Cluster names, relative to the namespace; `*` and `?` wildcards.
    pub clusters: Vec<String>,
    /// Only the pods with these seqs (`-i 1 -i 3` or `-i 1,3`).
    #[arg(short = 'i', long = "seq", value_name = "SEQ", value_delimiter = ',')]
    pub seqs: Vec<u32>,
}

impl Select {
    /// The pods of `clusters` that the `-i` seqs (if any) pick.
    pub(crate) fn pods_of(&self, clusters: &[discover::Cluster]) -> Vec<discover::Target> {
        clusters
            .iter()
            .flat_map(|c| c.pods.iter())
            .filter(|t| self.seqs.is_empty() || self.seqs.contains(&t.pod.seq))
            .cloned()
            .collect()
    }
}

#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Clusters: pods running/total, leader, generation, status.
    Ls(Select),
    /// Pods: seq, ip, ports, process, state, role, restarts.
    Info(Select),
    /// The last lines of each pod's log.
    Log {
        #[command(flatten)]
        select: Select,
        /// Lines per pod.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
    },
    /// Re-apply the last configuration (releases an `off`); answers once each pod is ready.
    On {
        #[command(flatten)]
        select: Select,
        /// How long each pod may take to be ready.
        #[arg(long, default_value = "120s", value_parser = duration)]
        timeout: Duration,
    },
    /// Stop the process and hold the pod (the leader skips it until an `on`).
    Off {
        #[command(flatten)]
        select: Select,
        /// How long each pod may take to stop.
        #[arg(long, default_value = "120s", value_parser = duration)]
        timeout: Duration,
    },
    /// `off` then `on`: restart the service.
    Restart {
        #[command(flatten)]
        select: Select,
        /// One pod at a time, in seq order, each ready again before the next; stops at the
        /// first failure.
        #[arg(long)]
        rolling: bool,
        /// How long each pod may take to stop, then to be ready.
        #[arg(long, default_value = "120s", value_parser = duration)]
        timeout: Duration,
    },
    /// Drop and re-create each pod's ZooKeeper session (`POST /reset`).
    Reconnect(Select),
    /// Finalize and stop each pod for good (its container ends).
    Kill {
        #[command(flatten)]
        select: Select,
        #[arg(long, default_value = "120s", value_parser = duration)]
        timeout: Duration,
    },
    /// Pass a JSON body to each pod's `signaled` hook; prints the answers.
    Signal {
        #[command(flatten)]
        select: Select,
        /// The JSON body.
        #[arg(long, default_value = "{}")]
        body: String,
        #[arg(long, default_value = "120s", value_parser = duration)]
        timeout: Duration,
    },
    /// `ip:port` of each pod for a container port (remapped), comma-separated.
    Port {
        /// The container port, as in pod.yaml `ports`.
        port: u16,
        #[command(flatten)]
        select: Select,
    },
    /// Pause clusters: their leader configures nothing (newcomers wait, lost pods stay in the
    /// maps) until `resume`, whoever leads. Control calls still work.
    Pause {
        /// Cluster names, relative to the namespace; `*` and `?` wildcards.
        #[arg(required = true)]
        clusters: Vec<String>,
        /// Why, shown by `ls`, `/info` and the leader's status.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Lift the pause of clusters (an operator's, or the leader's own for `settings.max_lost`,
    /// whose losses are then accepted): their leader configures them again.
    Resume {
        /// Cluster names, relative to the namespace; `*` and `?` wildcards.
        #[arg(required = true)]
        clusters: Vec<String>,
    },
    /// Block until each cluster is configured with at least COUNT pods in STATE.
    Wait {
        #[command(flatten)]
        select: Select,
        #[arg(long, value_enum, default_value_t = WaitState::Running)]
        state: WaitState,
        /// Pods needed per cluster (default: every registered pod, at least one).
        #[arg(long)]
        count: Option<usize>,
        /// Give up (exit 3) after this long.
        #[arg(long, default_value = "120s", value_parser = duration)]
        timeout: Duration,
    },
    /// What changes, one line per change (JSON lines with --json): pods registered, left,
    /// expired, held, failed; configurations, leaders, evictions, dependencies.
    Events {
        /// Cluster names, relative to the namespace; `*` and `?` wildcards.
        clusters: Vec<String>,
        /// Keep printing changes as they happen (else: the current state, then exit).
        #[arg(short, long)]
        follow: bool,
    },
    /// A read-only web page of the clusters, live: pods, leaders, dependencies, logs.
    Ui {
        /// Cluster names as for the other verbs (none: every cluster of every namespace).
        clusters: Vec<String>,
        /// Where to serve the page. It shows logs: keep it on loopback, or behind a proxy.
        #[arg(long, default_value = "127.0.0.1:8070")]
        listen: std::net::SocketAddr,
        /// Also re-read each pod's /info this often (0s: only when ZooKeeper changes).
        #[arg(long, default_value = "10s", value_parser = duration)]
        refresh: Duration,
    },
}

/// What `wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WaitState {
    /// Configured with the cluster's current generation, process running, ready.
    Running,
    /// Held by an operator `off`.
    Held,
}

/// What stops ctl before or instead of calling pods. Fatal for the command: nothing retries.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("cannot reach ZooKeeper at {connect} (gave up after {after:.1?}): {reason}")]
    ZkUnreachable {
        connect: String,
        after: Duration,
        reason: String,
    },
    #[error("ZooKeeper at {connect}: while {doing} {path}: {source}")]
    Zk {
        connect: String,
        doing: &'static str,
        path: String,
        #[source]
        source: zookeeper_client::Error,
    },
    #[error("no cluster matches `{pattern}` in ZooKeeper at {connect}; {}", existing_clusters(.existing))]
    NoMatch {
        pattern: String,
        connect: String,
        existing: Vec<String>,
    },
    #[error("{0}")]
    NoPods(String),
    #[error("{0}")]
    Usage(String),
    /// `--token`, `OCHOPOD_TOKEN` or `OCHOPOD_TOKEN_FILE` holds no usable token.
    #[error(transparent)]
    Token(#[from] crate::auth::TokenError),
    /// `OCHOPOD_ZK_AUTH` or `OCHOPOD_ZK_AUTH_FILE` cannot be used.
    #[error(transparent)]
    ZkConfig(crate::zk::ZkError),
    #[error("cannot serve on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

fn existing_clusters(existing: &[String]) -> String {
    if existing.is_empty() {
        "it has no cluster at all (/ochopod/clusters is empty)".to_string()
    } else {
        format!("clusters there: {}", existing.join(", "))
    }
}

impl CtlError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CtlError::Usage(_) | CtlError::Token(_) | CtlError::ZkConfig(_) => EXIT_USAGE,
            _ => EXIT_FAILED,
        }
    }
}

/// Runs one ctl command to completion; the exit code.
pub fn run(args: CtlArgs) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ochopod ctl: cannot start the async runtime: {e}");
            return EXIT_FAILED;
        }
    };
    let json = args.json;
    match runtime.block_on(verbs::execute(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ochopod ctl: {e}");
            // A machine reading stdout gets a document even when no pod was reached.
            if json {
                report::out_json(&serde_json::json!({"ok": false, "error": e.to_string()}));
            }
            e.exit_code()
        }
    }
}
