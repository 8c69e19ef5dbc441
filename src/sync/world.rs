//! The leader's shared types, below every part that uses them: [`Ctx`] (what the leader needs
//! from the sync loop) and [`World`] (the cluster as last read), used by `leader`, `cache`,
//! `decide`, `lost` and `configure` alike, so that none of them imports another's internals.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::calls::last_line;
use super::plan::{Pods, ResolvedDep};
use super::status::{Report, Seen};
use crate::model::ClusterMap;
use crate::spec::PodSpec;
use crate::zk::cluster::{HeldSeq, Registered, Rejected};
use crate::zk::paths::ClusterPaths;
use crate::zk::pause::Pause;
use crate::zk::snapshot::{DependencyRecord, Snapshot};
use crate::zk::Acls;

/// What the leader needs from the sync loop.
pub(super) struct Ctx {
    pub spec: Arc<PodSpec>,
    pub uuid: String,
    pub paths: ClusterPaths,
    pub acls: Acls,
    /// Signs the control calls to pods (None: no token set).
    pub signer: Option<crate::auth::Signer>,
    /// The pod as the supervise loop knows it: `apply` and `probe` run through it.
    pub pod: Arc<crate::supervise::PodContext>,
    /// To the sync actor, the one writer of the status (`/info`, `/metrics`): role, status line,
    /// generation, the leader's figures.
    pub report: mpsc::UnboundedSender<Report>,
}

/// Why `settings.apply` or `settings.probe` failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum RunError {
    /// It ran and failed: its exit code and the last line of its stderr.
    #[error("exit {code}: {stderr}")]
    Failed { code: i32, stderr: String },
    /// It could not run (render, cluster file, spawn, timeout).
    #[error(transparent)]
    Start(#[from] crate::supervise::RunError),
}

impl Ctx {
    /// Runs a command field (`settings.apply` / `settings.probe`) on the leader's own pod, as
    /// hooks run (SPEC §4): rendered for this pod against `map`, with the map in
    /// `$OCHOPOD_CLUSTER_FILE` and the pod in `$OCHOPOD_POD_JSON`. Returns its stdout.
    pub(super) async fn run(&self, field: &'static str, map: &ClusterMap) -> Result<String, RunError> {
        let mine = ClusterMap {
            key: self.uuid.clone(),
            ..map.clone()
        };
        let out = crate::supervise::run_with_map(&self.pod, field, &mine).await?;
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(RunError::Failed {
                code: out.exit.shell_code(),
                stderr: last_line(&out.stderr).unwrap_or_default(),
            })
        }
    }

    /// Tells the sync actor (which publishes it unless it is already the line shown).
    pub(super) fn tell(&self, report: Report) {
        // The actor outlives its member task; a send after it stopped has nobody to tell.
        let _ = self.report.send(report);
    }

    /// A new status line.
    pub(super) fn say(&self, status: String) {
        self.tell(Report::Line(status));
    }
}

/// Everything the decision depends on, as the leader's cache holds it after a wake-up.
pub(super) struct World {
    pub registered: BTreeMap<String, Registered>,
    pub live: Pods,
    pub deps: BTreeMap<String, Pods>,
    pub resolved: Vec<ResolvedDep>,
    pub snapshot: Option<(Snapshot, i32)>,
    pub held: Vec<HeldSeq>,
    pub hash: String,
    /// This cluster's dependencies as resolved keys (published in its snapshot).
    pub depends_on: Vec<String>,
    /// A dependency cycle through this cluster, `[own, ..., own]`.
    pub cycle: Option<Vec<String>>,
    /// Registered, running pods left out as evicted, by seq.
    pub evicted: Vec<String>,
    /// Znodes under `pods/` that are not valid pods: left out, named in the status.
    pub rejected: Vec<Rejected>,
    /// Each dependency (by key) as read: its generation and pods (recorded in the snapshot).
    pub dependencies: BTreeMap<String, DependencyRecord>,
    /// The cluster's pause and the node's version: nothing is configured while there is one.
    pub paused: Option<(Pause, i32)>,
    /// Pods of the last configuration that vanished without leaving, by seq (set from the
    /// leader's `SafetyNet` after reading).
    pub lost: Vec<String>,
}

impl World {
    /// What this read shows for `/metrics` (the sync actor publishes it).
    pub(super) fn seen(&self, settings: &crate::spec::Settings) -> Seen {
        let w = self;
        let mut pods = super::status::PodCounts::default();
        for r in w.registered.values() {
            let n = match r.pod.state {
                crate::model::PodState::Running => &mut pods.running,
                crate::model::PodState::Held => &mut pods.held,
                crate::model::PodState::Failed => &mut pods.failed,
                crate::model::PodState::Leaving => &mut pods.leaving,
            };
            *n = n.saturating_add(1);
        }
        Seen {
            pods,
            live: w.live.len(),
            evicted: w.evicted.len(),
            bound: super::status::configuration_bound(settings, w.live.len()),
            paused: w.paused.as_ref().map(|(p, _)| p.clone()),
            lost: w.lost.len(),
        }
    }
}
