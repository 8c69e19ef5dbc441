//! The pod.yaml files of `tests/fixtures/render/`, loaded by the real spec loader, checked and
//! rendered: ZooKeeper with dynamic reconfiguration, Kafka depending on it, an app reading its
//! database's port every way a template can.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;

fn load(name: &str) -> PodSpec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/render")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let no_overrides = |_: &str| None;
    crate::spec::load_with_env(&path, &text, &no_overrides).unwrap_or_else(|d| panic!("{d}"))
}

fn home(dir: &Path) -> BTreeMap<String, String> {
    BTreeMap::from([("OCHOPOD_HOME".to_owned(), dir.display().to_string())])
}

#[test]
fn fixtures_pass_check() {
    for name in ["zookeeper.yaml", "kafka.yaml", "app-db.yaml"] {
        let errors: Vec<String> = check(&load(name), &BTreeMap::new())
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:#?}");
    }
}

#[test]
fn zookeeper_fixture_renders_and_reconfigures() {
    let spec = load("zookeeper.yaml");
    let tmp = tempfile::tempdir().unwrap();
    let env = home(tmp.path());
    let zk = |seq: u32| {
        pod(
            "zookeeper",
            seq,
            &format!("10.0.0.{seq}"),
            &[(2181, 2181), (2888, 2888), (3888, 3888)],
        )
    };
    let first = ClusterMap {
        generation: 1,
        key: "zookeeper-1".into(),
        pods: by_uuid(vec![zk(1), zk(2), zk(3)]),
        added: vec!["zookeeper-1".into(), "zookeeper-2".into(), "zookeeper-3".into()],
        ..ClusterMap::default()
    };
    let r = Renderer::new(&spec).unwrap();
    let ctx = Context::new(&spec, &first, None, &env).unwrap();
    let out = r.render_pod(&ctx).unwrap();
    assert_eq!(out.cwd.as_deref(), Some(tmp.path().to_str().unwrap()));
    assert_eq!(out.env["ZOO_MY_ID"], "1");
    assert_eq!(out.files[0].dest, tmp.path().join("conf/zoo.cfg"));
    assert_eq!(
        out.files[1].content,
        "server.1=10.0.0.1:2888:3888;2181\nserver.2=10.0.0.2:2888:3888;2181\nserver.3=10.0.0.3:2888:3888;2181\n"
    );
    let mut state = RenderState::open(&tmp.path().join("state"), "zookeeper-1").unwrap();
    assert!(state.apply(&out).unwrap());
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("data/myid")).unwrap(),
        "1\n"
    );
    assert_eq!(mode(&tmp.path().join("data/myid")), 0o600);

    // Pod 4 joins, pod 3 leaves: the static files are the same, the dynamic file is ZooKeeper's
    // now, so nothing changed for this pod; the leader's apply command carries the difference.
    let mut second = first.clone();
    second.generation = 2;
    second.pods.remove("zookeeper-3");
    second.pods.insert("zookeeper-4".into(), zk(4));
    second.added = vec!["zookeeper-4".into()];
    second.removed = vec!["zookeeper-3".into()];
    let ctx = Context::new(&spec, &second, Some(&first), &env).unwrap();
    let out = r.render_pod(&ctx).unwrap();
    assert!(
        !state.apply(&out).unwrap(),
        "only the if-absent file's render changed"
    );
    assert!(std::fs::read_to_string(tmp.path().join("conf/zoo.cfg.dynamic"))
        .unwrap()
        .contains("server.3="));
    assert_eq!(
        r.render_command(fields::APPLY, &ctx).unwrap(),
        CommandLine::Shell(
            "zkCli.sh -server 10.0.0.1:2181 reconfig  -add server.4=10.0.0.4:2888:3888;2181  -remove 3"
                .into()
        )
    );
    assert_eq!(
        r.render_field(fields::READY, &ctx).unwrap(),
        "echo srvr | nc -w1 10.0.0.1 2181 | grep -q Mode"
    );
}

#[test]
fn kafka_fixture_finds_zookeeper() {
    let spec = load("kafka.yaml");
    let mut map = ClusterMap {
        generation: 3,
        key: "kafka-1".into(),
        pods: by_uuid(vec![pod("kafka", 1, "10.0.2.1", &[(9092, 31092)])]),
        ..ClusterMap::default()
    };
    map.dependencies.insert(
        "zookeeper".into(),
        by_uuid(vec![
            pod("zookeeper", 2, "10.0.1.2", &[(2181, 2181)]),
            pod("zookeeper", 1, "10.0.1.1", &[(2181, 2181)]),
        ]),
    );
    let r = Renderer::new(&spec).unwrap();
    let ctx = Context::new(&spec, &map, None, &home(Path::new("/k"))).unwrap();
    let out = r.render_pod(&ctx).unwrap();
    assert_eq!(out.files[0].dest, PathBuf::from("/k/server.properties"));
    assert_eq!(
        out.files[0].content,
        "broker.id=1\nlisteners=PLAINTEXT://10.0.2.1:9092\nadvertised.listeners=PLAINTEXT://10.0.2.1:31092\n\
         zookeeper.connect=10.0.1.1:2181,10.0.1.2:2181/kafka\n# 2 zookeeper pods\n"
    );
    assert_eq!(
        out.command,
        CommandLine::Shell("exec kafka-server-start.sh /k/server.properties".into())
    );
}

/// The sample `db` pods `check` renders against serve the port the templates ask for, so the
/// path and `lookup` forms (which no helper can make lenient) find it too; before, they failed
/// `check` with "a value is missing from the context".
#[test]
fn check_samples_dependency_ports_the_templates_name() {
    let spec = load("app-db.yaml");
    let sample = sample_map(&spec);
    let db = &sample.dependencies["db"];
    assert_eq!(db.len(), 3);
    for p in db.values() {
        assert_eq!(p.ports.get("5432"), Some(&5432), "{p:?}");
        assert!(!p.ports.contains_key("0"), "{p:?}");
    }
    // Only numbers inside {{...}} that stand alone and can be ports: not `v0`, `PORT2` or 0.
    let mut s = spec.clone();
    s.process.env.insert(
        "X".into(),
        "v0 {{env.PORT2}} {{#if (eq pod.seq 0)}}{{/if}} {{lookup ports \"6379\"}}".into(),
    );
    let first = &sample_map(&s).dependencies["db"]["00000000-0000-4000-0001-000000000001"];
    let ports: Vec<String> = first.ports.keys().cloned().collect();
    assert_eq!(ports, ["5432", "6379", "8000", "8080"]);
}

#[test]
fn app_db_fixture_renders_against_real_ports() {
    let spec = load("app-db.yaml");
    let mut map = ClusterMap {
        generation: 1,
        key: "app-1".into(),
        pods: by_uuid(vec![pod("app", 1, "10.0.3.1", &[(8000, 8000)])]),
        ..ClusterMap::default()
    };
    map.dependencies.insert(
        "db".into(),
        by_uuid(vec![
            pod("db", 2, "10.0.1.2", &[(5432, 31432)]),
            pod("db", 1, "10.0.1.1", &[(5432, 5432)]),
        ]),
    );
    let r = Renderer::new(&spec).unwrap();
    let ctx = Context::new(&spec, &map, None, &home(Path::new("/a"))).unwrap();
    let out = r.render_pod(&ctx).unwrap();
    assert_eq!(
        out.files[0].content,
        "backends=10.0.1.1:5432,10.0.1.2:31432\nall=10.0.1.1:5432,10.0.1.2:31432\n\
         replica.1=10.0.1.1:5432\nreplica.2=10.0.1.2:31432\n"
    );
    assert_eq!(out.env["DB_PRIMARY"], "10.0.1.1:5432");
}
