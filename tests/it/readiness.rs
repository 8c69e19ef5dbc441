//! Readiness does not flap (issue 9.6): a sanity check failing now and then, within its budget,
//! leaves `/readyz` and `/info`'s `ready` alone; spending the budget still turns them off.

use std::time::{Duration, Instant};

use crate::harness::pod::{Pod, PodDir, PodOptions};

const T: Duration = Duration::from_secs(20);

/// Every other run of this sanity check fails (the count it keeps in `count` is odd), so it never
/// fails twice in a row: well within `failures: 3`.
const FLAKY: &str = r#"
cluster: flaky
process:
  command: ["sleep", "60"]
checks:
  sanity:
    command: 'n=$(cat {{sh env.OCHOPOD_HOME}}/count 2>/dev/null || echo 0); echo $((n + 1)) > {{sh env.OCHOPOD_HOME}}/count; [ $((n % 2)) -eq 0 ]'
    every: 100ms
    failures: 3
"#;

/// How many times the sanity check ran. The check rewrites the file in place, so a read may
/// land between its truncation and its write: ask again.
async fn runs(pod: &Pod) -> u64 {
    crate::harness::eventually(T, "a sanity run count", || async {
        std::fs::read_to_string(pod.home_file("count"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
    })
    .await
}

#[tokio::test]
async fn sanity_failures_within_the_budget_do_not_flap_readyz() {
    let dir = PodDir::new(FLAKY);
    let pod = Pod::start(&dir, PodOptions::default());
    pod.wait_info("ready", T, |i| i["ready"] == true).await;
    let first = runs(&pod).await;

    // Sample until the check has failed twice its budget (`failures: 3`) since: failures that
    // added up instead of starting over would have spent it by then.
    const FAILURES: u64 = 6;
    let deadline = Instant::now() + T;
    let (mut samples, mut unready) = (0u32, Vec::new());
    let mut failed = 0;
    while failed < FAILURES {
        assert!(
            Instant::now() < deadline,
            "the sanity check failed only {failed} times in {T:?}"
        );
        let (code, body) = pod.get("/readyz").await;
        let info = pod.info().await;
        samples += 1;
        if code != 200 || info["ready"] != true {
            unready.push(format!("/readyz {code} {body}; /info ready {}", info["ready"]));
        }
        if info["pod_state"] != "running" {
            unready.push(format!("pod {}: {}", info["pod_state"], info["status"]));
            break; // a spent budget stops the checks: the count would never get there
        }
        failed = runs(&pod).await.saturating_sub(first) / 2;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        unready.is_empty(),
        "{} of {samples} samples unready while {failed} sanity failures stayed within the budget: {unready:#?}",
        unready.len()
    );
    assert_eq!(pod.info().await["pod_state"], "running");
}

#[tokio::test]
async fn a_spent_sanity_budget_makes_the_pod_unready() {
    let dir = PodDir::new(
        r#"
cluster: sick
process:
  command: ["sleep", "60"]
checks:
  sanity: { command: "test ! -f {{sh env.OCHOPOD_HOME}}/sick", every: 100ms, failures: 2 }
"#,
    );
    let pod = Pod::start(&dir, PodOptions::default());
    pod.wait_info("ready", T, |i| i["ready"] == true).await;
    std::fs::write(pod.home_file("sick"), "").expect("touch");
    let info = pod.wait_info("unready", T, |i| i["ready"] == false).await;
    assert_eq!(pod.get("/readyz").await.0, 503, "{info}");
    let info = pod.wait_info("failed", T, |i| i["pod_state"] == "failed").await;
    assert_eq!(info["ready"], false);
}
