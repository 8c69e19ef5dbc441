//! `ochopod check` on a pod.yaml that reads a dependency's ports (issue 9.4): the real binary,
//! no flags, exits 0; the same templates asking for a port the pod itself does not serve still
//! fail.

use std::path::Path;
use std::process::Command;

use crate::harness::pod::binary;

fn check(path: &Path) -> (Option<i32>, String) {
    let out = Command::new(binary())
        .arg("check")
        .arg(path)
        .output()
        .expect("run check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn check_passes_a_pod_yaml_reading_its_dependency_ports() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/render/app-db.yaml");
    let (code, text) = check(&fixture);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ok"), "{text}");
}

#[test]
fn check_still_fails_an_own_port_the_pod_does_not_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pod.yaml");
    std::fs::write(
        &path,
        "cluster: app\nports: [8000]\ndepends_on: [{ cluster: db }]\n\
         process:\n  command: \"exec app {{grep \\\"db\\\" 5432}} {{lookup pod.ports \\\"5432\\\"}}\"\n",
    )
    .expect("write pod.yaml");
    let (code, text) = check(&path);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("process.command:1:"), "{text}");
}
