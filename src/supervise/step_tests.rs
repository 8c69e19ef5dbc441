//! The supervise actor's transitions, driven event by event as the actor drives them: each
//! effect that leads somewhere is answered with the event the actor would feed back.

use super::*;

fn rules() -> Rules {
    Rules {
        start: true,
        strict: false,
        reload: None,
        policy: RestartPolicy::Always,
        linger: false,
        ready_check: false,
        sanity_budget: 1,
    }
}

fn state(rules: &Rules) -> State {
    State::new(
        rules,
        Backoff::new(Duration::from_secs(1), Duration::from_secs(8)),
    )
}

fn applied(origin: Origin, changed: bool, generation: u64) -> Event {
    Event::Applied {
        origin,
        changed,
        generation,
        epoch: 1,
        dependencies: BTreeMap::new(),
    }
}

fn code(c: i32) -> Exit {
    Exit {
        code: Some(c),
        signal: None,
    }
}

/// A pod whose process runs after the leader's first `on` (pid 100, incarnation 1).
fn running(rules: &Rules) -> State {
    let mut st = state(rules);
    assert_eq!(
        step(&mut st, rules, applied(Origin::Leader, true, 1)),
        [Effect::CancelRestart, Effect::Start]
    );
    assert_eq!(
        step(&mut st, rules, Event::Started { pid: 100 }),
        [Effect::SpawnChecks(1)]
    );
    assert_eq!(st.shown.process, ProcessState::Running);
    st
}

#[test]
fn a_held_pod_ignores_the_leaders_on_until_an_operator_releases_it() {
    let r = rules();
    let mut st = running(&r);
    let effects = step(&mut st, &r, Event::Off(Origin::Operator));
    assert_eq!(
        effects,
        [
            Effect::CancelRestart,
            Effect::Stop(StopFor::Off(Origin::Operator))
        ]
    );
    assert_eq!(st.shown.process, ProcessState::Terminating);
    step(
        &mut st,
        &r,
        Event::Stopped {
            exit: Some(code(143)),
            stop: StopFor::Off(Origin::Operator),
        },
    );
    assert_eq!(st.shown.state, PodState::Held);
    assert_eq!(st.shown.status, "off (held by an operator)");

    // The leader's `on` crossed the operator's `off`: the map is applied, the hold wins.
    assert_eq!(step(&mut st, &r, applied(Origin::Leader, true, 2)), []);
    assert_eq!(st.shown.generation, 2);
    assert_eq!(st.shown.state, PodState::Held);
    assert_eq!(st.shown.process, ProcessState::Stopped);
    assert_eq!(st.shown.status, "off (held by an operator)");
    assert!(!st.enabled);

    // An operator's `on` releases it and starts the process.
    let effects = step(&mut st, &r, applied(Origin::Operator, false, 2));
    assert_eq!(effects, [Effect::CancelRestart, Effect::Start]);
    assert_eq!(st.shown.state, PodState::Running);
}

#[test]
fn the_leaders_off_does_not_hold_the_pod() {
    let r = rules();
    let mut st = running(&r);
    step(&mut st, &r, Event::Off(Origin::Leader));
    step(
        &mut st,
        &r,
        Event::Stopped {
            exit: Some(code(0)),
            stop: StopFor::Off(Origin::Leader),
        },
    );
    assert_eq!(st.shown.state, PodState::Running);
    assert_eq!(st.shown.status, "off (by the leader)");
    assert_eq!(
        step(&mut st, &r, applied(Origin::Leader, false, 2)),
        [Effect::CancelRestart, Effect::Start]
    );
}

#[test]
fn a_crash_during_a_reload_that_fails_restarts_the_process_at_once() {
    let r = Rules {
        reload: Some(ReloadFailure::Restart),
        ..rules()
    };
    let mut st = running(&r);
    assert_eq!(
        step(&mut st, &r, applied(Origin::Leader, true, 2)),
        [Effect::Reload]
    );
    // The process died while the reload command ran; the actor has not seen the exit yet.
    let effects = step(&mut st, &r, Event::Reloaded { ok: false });
    assert_eq!(effects, [Effect::Stop(StopFor::Restart("reload failed"))]);
    // The stop collects the crash's exit; the process starts again without a backoff.
    let effects = step(
        &mut st,
        &r,
        Event::Stopped {
            exit: Some(code(3)),
            stop: StopFor::Restart("reload failed"),
        },
    );
    assert_eq!(effects, [Effect::Start]);
    assert_eq!(st.shown.last_exit, Some(code(3)));
    assert_eq!(st.shown.restarts, 0, "a restart ochopod chose is not a crash");
    step(&mut st, &r, Event::Started { pid: 101 });
    assert_eq!(st.shown.incarnation, 2);
}

#[test]
fn with_on_failure_keep_a_failed_reload_leaves_the_process_and_a_crash_to_the_restart_policy() {
    let r = Rules {
        reload: Some(ReloadFailure::Keep),
        ..rules()
    };
    let mut st = running(&r);
    assert_eq!(
        step(&mut st, &r, applied(Origin::Leader, true, 2)),
        [Effect::Reload]
    );
    assert_eq!(step(&mut st, &r, Event::Reloaded { ok: false }), []);
    assert_eq!(st.shown.process, ProcessState::Running);
    assert_eq!(st.shown.pid, Some(100));
    // It crashed during the reload: the restart policy takes it from there, with the backoff.
    let effects = step(
        &mut st,
        &r,
        Event::Exited {
            exit: code(3),
            ran_for: Duration::ZERO,
        },
    );
    assert_eq!(
        effects,
        [Effect::CancelChecks, Effect::RestartAfter(Duration::from_secs(1))]
    );
    assert_eq!(st.shown.restarts, 1);
    assert_eq!(st.shown.status, "exited with code 3; restarting in 1s");
}

#[test]
fn strict_restarts_on_every_on_even_an_unchanged_one() {
    let r = Rules {
        strict: true,
        reload: Some(ReloadFailure::Restart),
        ..rules()
    };
    let mut st = running(&r);
    let effects = step(&mut st, &r, applied(Origin::Leader, false, 2));
    assert_eq!(
        effects,
        [Effect::Stop(StopFor::Restart("strict: every on restarts"))]
    );
    // Without strict, the same `on` keeps the process.
    let r = rules();
    let mut st = running(&r);
    assert_eq!(step(&mut st, &r, applied(Origin::Leader, false, 2)), []);
    assert_eq!(st.shown.process, ProcessState::Running);
}

#[test]
fn a_changed_render_without_reload_restarts() {
    let r = rules();
    let mut st = running(&r);
    assert_eq!(
        step(&mut st, &r, applied(Origin::Leader, true, 2)),
        [Effect::Stop(StopFor::Restart("configuration changed"))]
    );
}

#[test]
fn start_false_waits_for_an_operators_on() {
    let r = Rules {
        start: false,
        ..rules()
    };
    let mut st = state(&r);
    assert_eq!(step(&mut st, &r, applied(Origin::Leader, true, 1)), []);
    assert_eq!(
        st.shown.status,
        "configured; waiting for an explicit on (start: false)"
    );
    assert_eq!(
        step(&mut st, &r, applied(Origin::Operator, false, 1)),
        [Effect::CancelRestart, Effect::Start]
    );
}

#[test]
fn restart_policies_decide_after_an_exit() {
    for (policy, exit, for_good) in [
        (RestartPolicy::Always, code(0), false),
        (RestartPolicy::OnFailure, code(0), true),
        (RestartPolicy::OnFailure, code(1), false),
        (RestartPolicy::Never, code(1), true),
    ] {
        let r = Rules { policy, ..rules() };
        let mut st = running(&r);
        let effects = step(
            &mut st,
            &r,
            Event::Exited {
                exit,
                ran_for: Duration::ZERO,
            },
        );
        let ends = matches!(effects.last(), Some(Effect::Finalize(_)));
        assert_eq!(ends, for_good, "{policy:?} after {exit:?}: {effects:?}");
        if let Some(Effect::Finalize(f)) = effects.last().cloned() {
            step(&mut st, &r, Event::Finalized(f));
            assert_eq!(st.shown.process, ProcessState::Dead);
            assert_eq!(st.shown.exit_code, Some(exit.shell_code()));
            assert!(!st.enabled);
        }
    }
}

#[test]
fn the_backoff_grows_with_quick_crashes_and_a_restart_due_starts_again() {
    let r = rules();
    let mut st = running(&r);
    let mut delays = Vec::new();
    for pid in 101..104 {
        let effects = step(
            &mut st,
            &r,
            Event::Exited {
                exit: code(1),
                ran_for: Duration::ZERO,
            },
        );
        delays.push(effects[1].clone());
        assert_eq!(step(&mut st, &r, Event::RestartDue), [Effect::Start]);
        step(&mut st, &r, Event::Started { pid });
    }
    assert_eq!(
        delays,
        [1, 2, 4].map(|s| Effect::RestartAfter(Duration::from_secs(s)))
    );
    assert_eq!(st.shown.restarts, 3);
}

#[test]
fn a_failed_start_counts_as_an_exit() {
    let r = Rules {
        policy: RestartPolicy::Never,
        linger: true,
        ..rules()
    };
    let mut st = state(&r);
    step(&mut st, &r, applied(Origin::Leader, true, 1));
    let effects = step(
        &mut st,
        &r,
        Event::StartFailed {
            code: 127,
            why: "cannot spawn the process: no such file".into(),
        },
    );
    let Some(Effect::Finalize(f)) = effects.last().cloned() else {
        panic!("{effects:?}")
    };
    step(&mut st, &r, Event::Finalized(f));
    assert_eq!(
        st.shown.status,
        "process ended for good: cannot spawn the process: no such file"
    );
    assert_eq!(st.shown.exit_code, None, "linger: ochopod stays");
}

#[test]
fn kill_stops_finalizes_and_ends_with_0_unless_lingering() {
    for (linger, code) in [(false, Some(0)), (true, None)] {
        let r = Rules { linger, ..rules() };
        let mut st = running(&r);
        assert_eq!(
            step(&mut st, &r, Event::Kill),
            [Effect::CancelRestart, Effect::Stop(StopFor::Kill)]
        );
        let effects = step(
            &mut st,
            &r,
            Event::Stopped {
                exit: Some(self::code(143)),
                stop: StopFor::Kill,
            },
        );
        assert_eq!(effects, [Effect::Finalize(FinalFor::Killed)]);
        step(&mut st, &r, Event::Finalized(FinalFor::Killed));
        assert_eq!(st.shown.process, ProcessState::Dead);
        assert_eq!(st.shown.exit_code, code);
    }
}

#[test]
fn the_sanity_budget_turns_the_pod_off_and_marks_it_failed() {
    let r = Rules {
        sanity_budget: 2,
        ready_check: true,
        ..rules()
    };
    let mut st = running(&r);
    assert!(!st.shown.ready);
    assert_eq!(step(&mut st, &r, Event::Ready(1)), [Effect::SpawnSanity(1)]);
    assert!(st.shown.ready);
    assert_eq!(step(&mut st, &r, Event::Sanity(1, false)), []);
    assert!(st.shown.ready, "within the budget");
    // A result of an earlier run changes nothing.
    assert_eq!(step(&mut st, &r, Event::Sanity(0, false)), []);
    assert_eq!(st.shown.sanity_failures, 1);
    let effects = step(&mut st, &r, Event::Sanity(1, false));
    assert_eq!(
        effects,
        [Effect::CancelRestart, Effect::Stop(StopFor::SanitySpent(2))]
    );
    assert!(!st.shown.ready);
    step(
        &mut st,
        &r,
        Event::Stopped {
            exit: Some(code(143)),
            stop: StopFor::SanitySpent(2),
        },
    );
    assert_eq!(st.shown.state, PodState::Failed);
    assert_eq!(
        st.shown.status,
        "sanity check failed 2 times in a row: off, marked failed"
    );
    // It stays off (the leader leaves failed pods out of its maps) until an operator's `on`.
    assert!(!st.enabled);
    assert_eq!(
        step(&mut st, &r, applied(Origin::Operator, false, 1)),
        [Effect::CancelRestart, Effect::Start]
    );
    assert_eq!(st.shown.state, PodState::Running);
}

#[test]
fn a_stale_ready_result_is_dropped() {
    let r = Rules {
        ready_check: true,
        ..rules()
    };
    let mut st = running(&r);
    step(&mut st, &r, Event::Off(Origin::Leader));
    step(
        &mut st,
        &r,
        Event::Stopped {
            exit: Some(code(0)),
            stop: StopFor::Off(Origin::Leader),
        },
    );
    step(&mut st, &r, applied(Origin::Leader, false, 2));
    step(&mut st, &r, Event::Started { pid: 101 });
    assert_eq!(step(&mut st, &r, Event::Ready(1)), []);
    assert!(!st.shown.ready);
    assert_eq!(step(&mut st, &r, Event::Ready(2)), [Effect::SpawnSanity(2)]);
}
