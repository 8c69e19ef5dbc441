//! Every example in pods/ passes `ochopod check`, and the hello world runs to completion.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::pod::{binary, read, Pod, PodOptions};

fn repo(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn every_example_pod_yaml_passes_check() {
    let mut seen = 0;
    for entry in std::fs::read_dir(repo("pods")).expect("pods/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let out = Command::new(binary())
            .arg("check")
            .arg(&path)
            .output()
            .expect("run check");
        assert!(
            out.status.success(),
            "{}: {}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        seen += 1;
    }
    assert!(seen >= 1, "pods/ has examples");
}

#[test]
fn every_template_is_used_by_an_example() {
    let mut pods = String::new();
    for entry in std::fs::read_dir(repo("pods")).expect("pods/").flatten() {
        pods.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    let mut stack = vec![repo("templates")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("templates/").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(repo(""))
                .expect("in repo")
                .display()
                .to_string();
            assert!(
                pods.contains(&rel),
                "{rel} is not used by any pods/*.yaml: dead example"
            );
        }
    }
}

#[tokio::test]
async fn the_hello_world_renders_runs_and_exits_zero() {
    let dir = crate::harness::pod::PodDir::new("");
    let pod_yaml = repo("pods/shell.yaml");
    let mut pod = Pod::start_file(&pod_yaml, &dir, PodOptions::default());
    assert_eq!(pod.wait_exit(Duration::from_secs(30)).await, 0);
    let hello = read(&pod.home_file("hello.txt"));
    assert!(hello.starts_with("hello from pod #1 ("), "{hello}");
    assert!(hello.contains("the cluster has 1 pod(s):"), "{hello}");
}

#[test]
fn check_reports_every_problem_with_its_position_and_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pod.yaml");
    std::fs::write(
        &path,
        "cluster: Bad_Name\nprocess:\n  command: \"\"\n  stop: { grace: ten }\n",
    )
    .expect("write");
    let err = check_fails(&path);
    let p = path.display();
    assert!(err.contains(&format!("{p}:1:10: ")), "{err}");
    assert!(err.contains(&format!("{p}:3:12: ")), "{err}");
    assert!(err.contains(&format!("{p}:4:18: ")), "{err}");
}

#[test]
fn check_catches_a_template_typo() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("t.hbs"), "ok {{pod.ip}}\nbad {{pod.nope}}\n").expect("write");
    let path = dir.path().join("pod.yaml");
    std::fs::write(
        &path,
        "cluster: typo\nprocess:\n  command: \"true\"\ntemplates:\n  - source: t.hbs\n    dest: /tmp/x\n",
    )
    .expect("write");
    let err = check_fails(&path);
    assert!(err.contains("t.hbs:2:"), "{err}");
    assert!(err.contains("pod.nope"), "{err}");
}

/// Runs `ochopod check`, asserts it exits 2, and returns what it printed on stderr.
fn check_fails(path: &Path) -> String {
    let out = Command::new(binary())
        .arg("check")
        .arg(path)
        .output()
        .expect("run check");
    assert_eq!(out.status.code(), Some(2));
    String::from_utf8_lossy(&out.stderr).into_owned()
}
