//! The supervise actor's decisions, pure: given its [`State`] and an [`Event`], the next state
//! and the [`Effect`]s to carry out. No I/O, no clock, no process: the actor
//! ([`super::actor`]) turns commands, exits, timers and check results into events, carries out
//! the effects (spawn, stop, hooks), and feeds what they lead to back in as events (`Started`,
//! `Stopped`, `Reloaded`, `Finalized`). Unit tests drive it the same way.
//!
//! The pod's rules (SPEC §3 `process`, `checks`; §7 `on`/`off`/`kill`): an operator's `off`
//! holds the pod and the leader's `on` does not release it; an operator's `on` does, and clears
//! `failed`; `process.strict` restarts on every `on`; a changed render reloads when
//! `process.reload` is declared (a failed reload restarts, or not with `on_failure: keep`);
//! after an exit the restart policy decides, with the backoff; a sanity check that spends its
//! budget turns the pod off and marks it failed.

use std::collections::BTreeMap;
use std::time::Duration;

use super::backoff::Backoff;
use super::child::Exit;
use super::status::{ProcessState, Status};
use super::Origin;
use crate::model::PodState;
use crate::spec::{PodSpec, ReloadFailure, RestartPolicy};

/// What the pod.yaml says about the process's life, fixed at start.
#[derive(Debug, Clone)]
pub(super) struct Rules {
    /// `process.start`: the leader's `on` starts the process (else only an operator's does).
    pub start: bool,
    /// `process.strict`: every `on` restarts a running process.
    pub strict: bool,
    /// `process.reload.on_failure`, when a reload is declared.
    pub reload: Option<ReloadFailure>,
    pub policy: RestartPolicy,
    /// `process.linger`: ochopod keeps running after the process ended for good.
    pub linger: bool,
    /// `checks.ready` is declared: a new run is not ready until it passes.
    pub ready_check: bool,
    /// `checks.sanity.failures` (1 when no sanity check is declared).
    pub sanity_budget: u32,
}

impl Rules {
    pub(super) fn of(spec: &PodSpec) -> Rules {
        let p = &spec.process;
        Rules {
            start: p.start,
            strict: p.strict,
            reload: p.reload.as_ref().map(|r| r.on_failure),
            policy: p.restart.policy,
            linger: p.linger,
            ready_check: spec.checks.ready.is_some(),
            sanity_budget: spec.checks.sanity.as_ref().map_or(1, |c| c.failures),
        }
    }
}

/// The actor's own record: what it publishes ([`Status`]) and what it keeps to itself.
#[derive(Debug, Clone)]
pub(super) struct State {
    /// Published as is after every step.
    pub shown: Status,
    /// The process should run (false before the first `on`, after an `off`, with `start: false`).
    pub enabled: bool,
    /// The restart delays' streak.
    pub backoff: Backoff,
}

impl State {
    pub(super) fn new(rules: &Rules, backoff: Backoff) -> State {
        State {
            shown: Status::new(rules.start),
            enabled: false,
            backoff,
        }
    }

    fn running(&self) -> bool {
        self.shown.process == ProcessState::Running
    }
}

/// Why the actor stops the process: what follows once it is stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum StopFor {
    Off(Origin),
    Kill,
    Restart(&'static str),
    /// The sanity check failed this many times in a row.
    SanitySpent(u32),
    Shutdown,
}

/// Why `hooks.finalize` runs: what the pod becomes once it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FinalFor {
    Killed,
    /// The process ended for good (restart policy): its exit and how it is described.
    Ended {
        exit: Exit,
        what: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Event {
    /// A map was rendered and written (`changed`: its render differs from the last).
    Applied {
        origin: Origin,
        changed: bool,
        generation: u64,
        epoch: u64,
        dependencies: BTreeMap<String, usize>,
    },
    Off(Origin),
    Kill,
    Leave,
    Shutdown,
    /// The backoff elapsed.
    RestartDue,
    /// The process was spawned.
    Started {
        pid: u32,
    },
    /// `initialize`, `pre_start` or the spawn failed: counts as a run that exited with `code`.
    StartFailed {
        code: i32,
        why: String,
    },
    /// The process ended on its own after `ran_for`.
    Exited {
        exit: Exit,
        ran_for: Duration,
    },
    /// A [`Effect::Stop`] is done; `exit` is None when nothing was running.
    Stopped {
        exit: Option<Exit>,
        stop: StopFor,
    },
    /// A [`Effect::Reload`] is done.
    Reloaded {
        ok: bool,
    },
    /// A [`Effect::Finalize`] is done.
    Finalized(FinalFor),
    /// The ready check passed for this incarnation.
    Ready(u64),
    /// A sanity check result for this incarnation.
    Sanity(u64, bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Effect {
    /// Run `initialize` and `pre_start`, spawn the process → `Started` or `StartFailed`.
    Start,
    /// Cancel the checks, run `tear_down`, the stop signal, grace, KILL → `Stopped`.
    Stop(StopFor),
    /// The reload signal or command → `Reloaded`.
    Reload,
    /// `hooks.finalize` → `Finalized`.
    Finalize(FinalFor),
    /// Start again after this delay → `RestartDue`.
    RestartAfter(Duration),
    CancelRestart,
    CancelChecks,
    /// Start the checks of this run: the ready check, or the sanity check when none.
    SpawnChecks(u64),
    /// Start the sanity check of this run (its ready check passed).
    SpawnSanity(u64),
}

/// One transition: changes `state` and says what to do.
pub(super) fn step(state: &mut State, rules: &Rules, event: Event) -> Vec<Effect> {
    let s = &mut state.shown;
    match event {
        Event::Applied {
            origin,
            changed,
            generation,
            epoch,
            dependencies,
        } => {
            let held = s.state == PodState::Held;
            s.generation = generation;
            s.epoch = epoch;
            s.configurations = s.configurations.saturating_add(1);
            s.dependencies = dependencies;
            if origin == Origin::Operator && matches!(s.state, PodState::Held | PodState::Failed) {
                s.state = PodState::Running;
            }
            if origin == Origin::Operator {
                state.enabled = true;
            } else if held {
                // The leader skips held pods; if its `on` crossed an operator's `off`, the hold wins.
                return Vec::new();
            } else if rules.start {
                state.enabled = true;
            }
            if !state.enabled {
                s.status = "configured; waiting for an explicit on (start: false)".into();
                return Vec::new();
            }
            if !state.running() {
                state.backoff.reset();
                return vec![Effect::CancelRestart, Effect::Start];
            }
            if rules.strict {
                restart(state, "strict: every on restarts")
            } else if !changed {
                tracing::info!("configuration unchanged: the process keeps running");
                Vec::new()
            } else if rules.reload.is_some() {
                vec![Effect::Reload]
            } else {
                restart(state, "configuration changed")
            }
        }
        Event::Off(origin) => {
            if origin == Origin::Operator {
                s.state = PodState::Held;
            }
            state.enabled = false;
            let mut effects = vec![Effect::CancelRestart];
            effects.extend(stop(state, StopFor::Off(origin)));
            effects
        }
        Event::Kill => {
            state.enabled = false;
            let mut effects = vec![Effect::CancelRestart];
            effects.extend(stop(state, StopFor::Kill));
            effects
        }
        Event::Leave => {
            s.state = PodState::Leaving;
            s.status = "leaving".into();
            Vec::new()
        }
        Event::Shutdown => stop(state, StopFor::Shutdown),
        Event::RestartDue => {
            if state.enabled && !state.running() {
                vec![Effect::Start]
            } else {
                Vec::new()
            }
        }
        Event::Started { pid } => {
            s.process = ProcessState::Running;
            s.pid = Some(pid);
            s.incarnation = s.incarnation.wrapping_add(1);
            s.ready = !rules.ready_check;
            s.sanity_failures = 0;
            s.status = if s.ready {
                "running".into()
            } else {
                "running; waiting for the ready check".into()
            };
            vec![Effect::SpawnChecks(s.incarnation)]
        }
        Event::StartFailed { code, why } => {
            let exit = Exit {
                code: Some(code),
                signal: None,
            };
            after_exit(state, rules, exit, Duration::ZERO, why)
        }
        Event::Exited { exit, ran_for } => after_exit(state, rules, exit, ran_for, describe(exit)),
        Event::Stopped { exit, stop } => {
            if let Some(exit) = exit {
                s.process = ProcessState::Stopped;
                s.pid = None;
                s.last_exit = Some(exit);
                s.status = "stopped".into();
            }
            match stop {
                StopFor::Off(origin) => {
                    s.status = format!(
                        "off ({})",
                        if origin == Origin::Operator {
                            "held by an operator"
                        } else {
                            "by the leader"
                        }
                    );
                    Vec::new()
                }
                StopFor::Kill => vec![Effect::Finalize(FinalFor::Killed)],
                StopFor::Restart(_) => {
                    state.backoff.reset();
                    if state.enabled {
                        vec![Effect::Start]
                    } else {
                        Vec::new()
                    }
                }
                StopFor::SanitySpent(failures) => {
                    s.state = PodState::Failed;
                    s.sanity_failures = failures;
                    s.status = format!("sanity check failed {failures} times in a row: off, marked failed");
                    Vec::new()
                }
                StopFor::Shutdown => Vec::new(),
            }
        }
        Event::Reloaded { ok } => {
            // A reload that failed restarts, unless told to keep the process as it is. The
            // process may have died meanwhile: the restart then starts it again at once (the
            // stop collects its exit), while with `keep` its exit goes to the restart policy.
            if !ok && rules.reload == Some(ReloadFailure::Restart) && state.running() {
                restart(state, "reload failed")
            } else {
                Vec::new()
            }
        }
        Event::Finalized(FinalFor::Killed) => {
            s.process = ProcessState::Dead;
            s.status = "killed".into();
            s.exit_code = (!rules.linger).then_some(0);
            Vec::new()
        }
        Event::Finalized(FinalFor::Ended { exit, what }) => {
            s.process = ProcessState::Dead;
            s.pid = None;
            s.ready = false;
            s.last_exit = Some(exit);
            s.exit_code = (!rules.linger).then(|| exit.shell_code());
            s.status = format!("process ended for good: {what}");
            Vec::new()
        }
        Event::Ready(n) if n == s.incarnation && s.process == ProcessState::Running => {
            tracing::info!("ready check passed");
            s.ready = true;
            s.status = "running".into();
            vec![Effect::SpawnSanity(n)]
        }
        Event::Sanity(n, ok) if n == s.incarnation && s.process == ProcessState::Running => {
            let failures = if ok {
                0
            } else {
                s.sanity_failures.saturating_add(1)
            };
            let spent = failures >= rules.sanity_budget.max(1);
            // Unready in the same publish as the count that spends the budget, so that no
            // reader sees the pod ready with its budget spent.
            s.sanity_failures = failures;
            if !spent {
                if !ok {
                    tracing::warn!(failures, budget = rules.sanity_budget, "sanity check failed");
                }
                return Vec::new();
            }
            s.ready = false;
            tracing::error!(failures, "sanity check failed too often: turning the pod off");
            state.enabled = false;
            let mut effects = vec![Effect::CancelRestart];
            effects.extend(stop(state, StopFor::SanitySpent(failures)));
            effects
        }
        // A check result of a run that no longer exists.
        Event::Ready(_) | Event::Sanity(..) => Vec::new(),
    }
}

/// Stops the process (when it runs: `Terminating` meanwhile), then `stop` says what follows.
fn stop(state: &mut State, stop: StopFor) -> Vec<Effect> {
    if state.running() {
        state.shown.process = ProcessState::Terminating;
        state.shown.ready = false;
    }
    vec![Effect::Stop(stop)]
}

fn restart(state: &mut State, why: &'static str) -> Vec<Effect> {
    tracing::info!(reason = why, "restarting the process");
    stop(state, StopFor::Restart(why))
}

/// The restart policy after a run (or a failed start): restart after the backoff, or end for
/// good once `hooks.finalize` ran.
fn after_exit(state: &mut State, rules: &Rules, exit: Exit, ran_for: Duration, what: String) -> Vec<Effect> {
    let done = match rules.policy {
        RestartPolicy::Always => false,
        RestartPolicy::OnFailure => exit.success(),
        RestartPolicy::Never => true,
    };
    if done {
        state.enabled = false;
        return vec![
            Effect::CancelChecks,
            Effect::Finalize(FinalFor::Ended { exit, what }),
        ];
    }
    let delay = state.backoff.next_delay(ran_for);
    let s = &mut state.shown;
    s.process = ProcessState::Stopped;
    s.pid = None;
    s.ready = false;
    s.last_exit = Some(exit);
    s.restarts = s.restarts.saturating_add(1);
    s.status = format!("{what}; restarting in {}", crate::spec::format_duration(delay));
    vec![Effect::CancelChecks, Effect::RestartAfter(delay)]
}

fn describe(exit: Exit) -> String {
    match (exit.code, exit.signal) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "ended".into(),
    }
}

#[cfg(test)]
#[path = "step_tests.rs"]
mod tests;
