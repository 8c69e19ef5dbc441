//! What a pod's own process and hooks can cost ochopod, and what they can see (issue 8): output
//! lines and the log ring bounded, hooks run a few at a time, secrets kept out of their
//! environment, durations bounded, and the process dying with ochopod.

use std::process::Command;

use crate::harness::pod::{binary, PodDir};

#[test]
fn check_refuses_a_duration_beyond_30_days_with_its_position() {
    let dir = PodDir::new(
        "cluster: web\nprocess:\n  command: \"sleep 100\"\n  stop:\n    grace: 9999999999999999h\n",
    );
    let out = Command::new(binary())
        .arg("check")
        .arg(dir.path())
        .output()
        .expect("run check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let at = format!("{}:5:12: process.stop.grace:", dir.path().display());
    assert!(err.contains(&at), "{err}");
    assert!(err.contains("maximum of 720h (30 days)"), "{err}");
}
