//! The pod.yaml contract (SPEC §3) as typed values.
//!
//! Parsing happens in two steps: `raw` deserializes the YAML with serde-saphyr, keeping the
//! line:col of every value that needs a semantic check (durations, signals, template files);
//! `load` hands them to `validate` and `sections`, which build the plain [`PodSpec`] below: all
//! the rest of the program sees. Every problem found on the way is a [`Diagnostic`] naming
//! `file:line:col`; they are all collected rather than stopping at the first.

mod duration;
mod error;
mod load;
mod raw;
mod sections;
#[cfg(test)]
mod tests;
mod validate;
mod values;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use duration::{format_duration, parse_duration, DurationError, MAX_DURATION};
pub use error::{Diagnostic, Diagnostics};
pub use load::{load, load_str, load_with_env};
pub use nix::sys::signal::Signal;
pub use values::{parse_signal, SignalError};

/// A validated pod.yaml.
#[derive(Debug, Clone)]
pub struct PodSpec {
    /// The pod.yaml file this came from.
    pub path: PathBuf,
    /// The folder template sources are relative to.
    pub dir: PathBuf,
    /// `[a-z0-9-]+`, after the `OCHOPOD_CLUSTER` override.
    pub cluster: String,
    /// After the `OCHOPOD_NAMESPACE` / `POD_NAMESPACE` override.
    pub namespace: String,
    /// Container ports the process serves (the control port is not in this list).
    pub ports: Vec<u16>,
    pub depends_on: Vec<Dependency>,
    pub settings: Settings,
    pub process: Process,
    pub templates: Vec<TemplateSpec>,
    pub checks: Checks,
    pub hooks: Hooks,
}

/// One `depends_on` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// As written: `zookeeper` (relative to the namespace), `/ns.name` (absolute) or a `*` pattern.
    pub cluster: String,
    /// Gates the first configuration: at least this many live pods in the dependency.
    pub min: usize,
}

/// Leader-side settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub min_size: usize,
    pub damper: Duration,
    pub damper_max: Duration,
    pub sequential: bool,
    pub order: Order,
    /// Pods that would restart on a new map are restarted `max_unavailable` at a time, each
    /// ready before the next (SPEC §3).
    pub rolling: bool,
    pub max_unavailable: usize,
    /// More pods of the last configuration than this vanishing without leaving (sessions
    /// expired) pause the cluster instead of configuring the survivors (SPEC §3). None: never.
    pub max_lost: Option<usize>,
    pub parallelism: usize,
    pub full_shutdown: bool,
    pub timeout: Duration,
    pub evict_after: u32,
    /// How long the seq of a pod that vanished without leaving stays reserved for it (SPEC §4);
    /// zero frees it at the next configuration.
    pub seq_hold: Duration,
    pub apply: Option<CommandLine>,
    pub probe: Option<Probe>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// By seq.
    Seq,
    /// Pods added by this configuration first, then the rest by seq (quorum systems).
    AddedFirst,
}

#[derive(Debug, Clone)]
pub struct Probe {
    pub command: CommandLine,
    pub every: Duration,
}

/// A command: a list is exec'd as is, a string runs under `/bin/sh -c`.
/// Every part is a template over the context of SPEC §4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    Exec(Vec<String>),
    Shell(String),
}

#[derive(Debug, Clone)]
pub struct Process {
    pub command: CommandLine,
    /// Values are templates.
    pub env: BTreeMap<String, String>,
    /// A template.
    pub cwd: Option<String>,
    pub start: bool,
    pub restart: Restart,
    pub stop: Stop,
    pub reload: Option<Reload>,
    pub strict: bool,
    pub linger: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

#[derive(Debug, Clone)]
pub struct Restart {
    pub policy: RestartPolicy,
    /// Floor of the exponential backoff (0 = re-exec at once).
    pub backoff: Duration,
    /// Ceiling of the exponential backoff.
    pub max_backoff: Duration,
}

#[derive(Debug, Clone)]
pub struct Stop {
    pub signal: Signal,
    /// Zero means never KILL.
    pub grace: Duration,
    /// How long to wait for a configuration without this pod before stopping (SPEC §8).
    pub drain: Duration,
}

#[derive(Debug, Clone)]
pub struct Reload {
    pub action: ReloadAction,
    pub on_failure: ReloadFailure,
}

#[derive(Debug, Clone)]
pub enum ReloadAction {
    /// Send this signal to the process group.
    Signal(Signal),
    /// Run this command (a template) while the process keeps running.
    Command(CommandLine),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadFailure {
    Restart,
    Keep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    Always,
    IfAbsent,
}

#[derive(Debug, Clone)]
pub struct TemplateSpec {
    /// Resolved against the pod.yaml's folder; it exists and is readable.
    pub source: PathBuf,
    /// The template text, read at load time.
    pub text: String,
    /// A template.
    pub dest: String,
    pub mode: u32,
    pub write: WriteMode,
}

#[derive(Debug, Clone, Default)]
pub struct Checks {
    pub ready: Option<Check>,
    pub sanity: Option<Check>,
}

#[derive(Debug, Clone)]
pub struct Check {
    /// A template, run under `/bin/sh -c`.
    pub command: String,
    pub every: Duration,
    /// `ready`: how long an `on` waits for the pod to become ready (504 after).
    pub timeout: Duration,
    /// `sanity`: consecutive failures before the pod is turned off and marked failed.
    pub failures: u32,
}

/// Shell commands (templates) run at points of the pod's life.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub initialize: Option<String>,
    pub pre_start: Option<String>,
    pub can_configure: Option<String>,
    pub configured: Option<String>,
    pub signaled: Option<String>,
    pub tear_down: Option<String>,
    pub finalize: Option<String>,
}

/// Whether an environment variable holds one of ochopod's own secrets: `OCHOPOD_TOKEN*` (the
/// control API's tokens, or the file holding them) and `OCHOPOD_ZK_AUTH*` (the ZooKeeper
/// credentials, or their file). Such variables stay with ochopod: the process, hooks, checks,
/// `apply` and `probe` run without them, and templates do not see them in `env` (SPEC §4). A
/// process that needs one gets it through an explicit `process.env` entry written literally.
pub fn is_secret_env(name: &str) -> bool {
    name.starts_with("OCHOPOD_TOKEN") || name.starts_with("OCHOPOD_ZK_AUTH")
}

impl PodSpec {
    /// `<namespace>.<cluster>`, the cluster's key in ZooKeeper.
    pub fn key(&self) -> String {
        format!("{}.{}", self.namespace, self.cluster)
    }
}
