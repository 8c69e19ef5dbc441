//! The deployment examples under deploy/ cannot run here (no Docker, Kubernetes or Marathon):
//! these tests keep them parseable and consistent with the pods they deploy.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use serde_json::Value;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn text(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The container ports pods/zookeeper.yaml declares, plus the control port.
fn zookeeper_ports() -> Vec<u64> {
    let spec = ochopod::spec::load_with_env(
        &repo("pods/zookeeper.yaml"),
        &text("pods/zookeeper.yaml"),
        &|_| None,
    )
    .unwrap();
    let mut ports: Vec<u64> = spec.ports.iter().map(|&p| u64::from(p)).collect();
    ports.push(8080);
    ports
}

#[test]
fn the_statefulset_gives_each_pod_its_identity_and_a_coordination_zookeeper() {
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text("deploy/kubernetes/zookeeper.yaml")).unwrap();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Service", "StatefulSet"]);
    let (service, set) = (&docs[0], &docs[1]);
    assert_eq!(
        service["spec"]["clusterIP"], "None",
        "headless: one DNS name per pod"
    );
    assert_eq!(set["spec"]["serviceName"], service["metadata"]["name"]);
    assert_eq!(
        set["spec"]["podManagementPolicy"], "Parallel",
        "OrderedReady would wait for a first pod that is ready only with min_size pods"
    );
    let pod = &set["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let env = |name: &str| {
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("env {name}"))
            .clone()
    };
    assert_eq!(
        env("POD_IP")["valueFrom"]["fieldRef"]["fieldPath"],
        "status.podIP"
    );
    assert_eq!(
        env("POD_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert!(env("OCHOPOD_ZK")["value"].as_str().unwrap().contains(":2181"));
    assert_eq!(env("OCHOPOD_PORT")["value"], "8080");
    let ports: Vec<u64> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, zookeeper_ports());
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], 8080);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/var/lib/zookeeper");
    // The drain (30s) and the grace (10s) must fit before the kubelet's SIGKILL.
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() > 40);
}

#[test]
fn the_marathon_app_runs_the_same_pods_on_fixed_host_ports() {
    let app: Value = serde_json::from_str(&text("deploy/marathon/zookeeper.json")).unwrap();
    assert_eq!(app["container"]["docker"]["image"], "ochopod/zookeeper:latest");
    assert_eq!(app["networks"][0]["mode"], "host");
    assert_eq!(app["requirePorts"], true);
    let ports: Vec<u64> = app["portDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, zookeeper_ports());
    assert!(app["env"]["OCHOPOD_ZK"].as_str().unwrap().contains(":2181"));
    assert_eq!(app["healthChecks"][0]["path"], "/healthz");
    assert_eq!(app["readinessChecks"][0]["path"], "/readyz");
    assert!(app["taskKillGracePeriodSeconds"].as_u64().unwrap() > 40);
}

#[test]
fn the_zookeeper_image_takes_ochopod_from_the_base_image_and_copies_what_exists() {
    let dockerfile = text("deploy/zookeeper/Dockerfile");
    let lines: Vec<&str> = dockerfile
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    assert!(
        lines.iter().any(|l| l.starts_with("FROM debian:")),
        "{dockerfile}"
    );
    assert!(dockerfile.contains(" zookeeper "), "installs Debian's zookeeper");
    assert!(
        lines.contains(&"COPY --from=ochopod/base /usr/local/bin/ochopod /usr/local/bin/ochopod"),
        "{dockerfile}"
    );
    let base = text("Dockerfile.base");
    assert!(base.contains("COPY --from=build /ochopod /usr/local/bin/ochopod"));
    // Every other COPY names a path of the repository (the build context is its root).
    let mut copied = 0;
    for l in lines
        .iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let src = l.split_whitespace().nth(1).unwrap();
        assert!(repo(src).exists(), "{l}: {src} is not in the repository");
        copied += 1;
    }
    assert!(copied >= 2, "the pod.yaml and its templates");
    assert!(dockerfile.contains("OCHOPOD_POD=/etc/ochopod/pods/zookeeper.yaml"));
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/ochopod\", \"run\"]"));
}

#[test]
fn the_base_image_builds_with_build_rs_whose_link_options_make_the_pod_lighter() {
    // Without it in the build context cargo builds without it, silently: a bigger binary.
    let base = text("Dockerfile.base");
    assert!(
        base.lines()
            .any(|l| l.starts_with("COPY ") && l.split_whitespace().any(|w| w == "build.rs")),
        "{base}"
    );
    assert!(repo("build.rs").exists());
}
