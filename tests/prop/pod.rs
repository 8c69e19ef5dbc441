//! A pod's JSON as the leader, dependents and `ctl` read it from ZooKeeper:
//! `serde_json::from_slice::<Pod>`. Never panics; what it accepts passes `check_pod`, carries no
//! character that means something to a shell or a path, and survives a round trip unchanged;
//! every valid pod (built field by field over each field's whole range) is accepted.

use std::net::IpAddr;

use ochopod::model::Pod;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

use crate::gen::{accepted_pod_invariants, apply, edit, pod_json, valid_pod};

/// Reads `bytes` as a pod znode and checks the properties; `Ok(true)` when accepted.
fn judge(bytes: &[u8]) -> Result<bool, TestCaseError> {
    let Ok(pod) = serde_json::from_slice::<Pod>(bytes) else {
        return Ok(false);
    };
    accepted_pod_invariants("pod", &pod).map_err(TestCaseError::fail)?;
    let again = serde_json::to_vec(&pod)
        .map_err(|e| TestCaseError::fail(format!("cannot serialize {pod:?}: {e}")))?;
    let back = serde_json::from_slice::<Pod>(&again).map_err(|e| {
        TestCaseError::fail(format!(
            "its own JSON is refused: {e}: {}",
            String::from_utf8_lossy(&again)
        ))
    })?;
    prop_assert_eq!(back, pod, "round trip changed the pod");
    Ok(true)
}

/// What the boundary makes of a valid pod: the same, with addresses in their one spelling.
fn canonical(pod: &Pod) -> Pod {
    let spell = |ip: &str| {
        ip.parse::<IpAddr>()
            .map_or_else(|_| ip.to_owned(), |ip| ip.to_string())
    };
    Pod {
        ip: spell(&pod.ip),
        public: spell(&pod.public),
        ..pod.clone()
    }
}

proptest! {
    #![proptest_config(crate::config())]

    #[test]
    fn pod_json_of_random_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        judge(&bytes)?;
    }

    #[test]
    fn corrupted_pod_json_is_refused_or_safe_and_round_trips(pod in pod_json()) {
        let bytes = serde_json::to_vec(&pod).map_err(|e| TestCaseError::fail(e.to_string()))?;
        judge(&bytes)?;
    }

    #[test]
    fn mutated_pod_json_text_is_refused_or_safe_and_round_trips(
        pod in valid_pod(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let text = serde_json::to_string_pretty(&pod).map_err(|e| TestCaseError::fail(e.to_string()))?;
        judge(apply(&text, &edits).as_bytes())?;
    }

    #[test]
    fn valid_pods_are_always_accepted(pod in valid_pod()) {
        let bytes = serde_json::to_vec(&pod).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let read = serde_json::from_slice::<Pod>(&bytes);
        prop_assert!(read.is_ok(), "refused: {:?}\n{}", read, String::from_utf8_lossy(&bytes));
        prop_assert_eq!(read.ok(), Some(canonical(&pod)));
        prop_assert!(judge(&bytes)?);
    }
}

/// Guards against a vacuous property: corrupted pods are sometimes accepted, sometimes refused.
#[test]
fn pod_generator_reaches_both_outcomes() {
    let mut runner = TestRunner::deterministic();
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..300 {
        let v = pod_json().new_tree(&mut runner).expect("a value").current();
        let bytes = serde_json::to_vec(&v).expect("JSON");
        match judge(&bytes).expect("the property holds") {
            true => accepted += 1,
            false => refused += 1,
        }
    }
    eprintln!("pods: {accepted} accepted, {refused} refused");
    assert!(
        accepted >= 60 && refused >= 60,
        "{accepted} accepted, {refused} refused"
    );
}
