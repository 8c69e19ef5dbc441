//! What the supervise loop publishes: [`Status`], on a `watch` channel that anyone reads without
//! waiting (`/info`, `/readyz`, `/metrics`, `Handle::on` waiting for readiness, the runtime
//! waiting for the process to end for good). The actor alone writes it, from its own
//! [`super::step::State`].

use std::collections::BTreeMap;

use serde::Serialize;

use super::child::Exit;
use crate::model::PodState;

/// What the process is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessState {
    /// Not started yet, or stopped by an `off`, or waiting for a restart.
    Stopped,
    Running,
    /// Being stopped: stop signal sent, grace running.
    Terminating,
    /// Ended for good (policy, `kill`); control calls answer 410.
    Dead,
}

/// The supervise loop's state as others see it. Cheap to clone; published on every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub process: ProcessState,
    pub pid: Option<u32>,
    /// The pod's standing in its cluster.
    pub state: PodState,
    /// Restarts after the process ended on its own.
    pub restarts: u64,
    pub last_exit: Option<Exit>,
    /// The generation of the last map applied (0: none yet).
    pub generation: u64,
    /// The epoch of the leader that sent it (0: none yet, or standalone).
    pub epoch: u64,
    /// How many maps were applied.
    pub configurations: u64,
    /// The ready check passed for the current run (true at once when none is declared); false
    /// again once the sanity check spent its budget (`checks.sanity.failures`).
    pub ready: bool,
    /// Consecutive sanity check failures. Within the budget they do not make the pod unready:
    /// `ready` is the only input of [`Status::is_ready`] the sanity check moves.
    pub sanity_failures: u32,
    /// Counts runs of the process; `Handle::on` waits for readiness of the run it started.
    pub incarnation: u64,
    /// A human line about what is happening (`restarting in 2s`, `sanity check failed 3 times`).
    pub status: String,
    /// Dependency name → pods in the last applied map.
    pub dependencies: BTreeMap<String, usize>,
    /// The exit code ochopod should end with, once the process ended for good and the pod does
    /// not linger (read by the runtime).
    pub exit_code: Option<i32>,
}

impl Status {
    pub(super) fn new(process_start: bool) -> Status {
        Status {
            process: ProcessState::Stopped,
            pid: None,
            state: PodState::Running,
            restarts: 0,
            last_exit: None,
            generation: 0,
            epoch: 0,
            configurations: 0,
            ready: false,
            sanity_failures: 0,
            incarnation: 0,
            status: if process_start {
                "waiting for a configuration"
            } else {
                "configured only on an explicit on"
            }
            .to_string(),
            dependencies: BTreeMap::new(),
            exit_code: None,
        }
    }

    /// `/readyz`: running, a configuration applied, the ready check passed (and the sanity
    /// budget not spent, which clears `ready`). A sanity failure within the budget does not
    /// count: readiness would flap with every transient failure, and rolling restarts and load
    /// balancers read it.
    pub fn is_ready(&self) -> bool {
        self.process == ProcessState::Running && self.generation > 0 && self.ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> Status {
        let mut s = Status::new(true);
        s.process = ProcessState::Running;
        s.generation = 1;
        s.ready = true;
        s
    }

    #[test]
    fn sanity_failures_within_the_budget_keep_the_pod_ready() {
        let mut s = running();
        assert!(s.is_ready());
        s.sanity_failures = 2;
        assert!(
            s.is_ready(),
            "a failure within the budget does not flap readiness"
        );
        // The actor clears `ready` in the publish that spends the budget.
        s.ready = false;
        assert!(!s.is_ready());
    }

    #[test]
    fn readiness_needs_a_running_configured_process_past_its_ready_check() {
        for unready in [
            Status {
                ready: false,
                ..running()
            },
            Status {
                generation: 0,
                ..running()
            },
            Status {
                process: ProcessState::Terminating,
                ..running()
            },
        ] {
            assert!(!unready.is_ready(), "{unready:?}");
        }
    }
}
