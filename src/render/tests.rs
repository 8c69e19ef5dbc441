//! Unit tests of the renderer, the context, the helpers and the writes.

// Tests may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::model::{ClusterMap, Pod, PodState};
use crate::spec::{
    Check, Checks, Dependency, Hooks, Order, Process, Restart, RestartPolicy, Settings, Signal,
    Stop, TemplateSpec,
};

fn spec() -> PodSpec {
    PodSpec {
        path: PathBuf::from("pods/zk.yaml"),
        dir: PathBuf::from("pods"),
        cluster: "zookeeper".into(),
        namespace: "default".into(),
        ports: vec![2181, 2888, 3888],
        depends_on: vec![],
        settings: Settings {
            min_size: 1,
            damper: Duration::from_secs(5),
            damper_max: Duration::from_secs(60),
            sequential: false,
            order: Order::Seq,
            parallelism: 16,
            full_shutdown: false,
            timeout: Duration::from_secs(60),
            evict_after: 3,
            apply: None,
            probe: None,
        },
        process: Process {
            command: CommandLine::Exec(vec!["/bin/echo".into(), "{{pod.seq}}".into()]),
            env: BTreeMap::new(),
            cwd: None,
            start: true,
            restart: Restart {
                policy: RestartPolicy::OnFailure,
                backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(30),
            },
            stop: Stop {
                signal: Signal::SIGTERM,
                grace: Duration::from_secs(10),
                drain: Duration::ZERO,
            },
            reload: None,
            strict: false,
            linger: false,
        },
        templates: vec![],
        checks: Checks::default(),
        hooks: Hooks::default(),
    }
}

fn template(source: &str, text: &str, dest: &str) -> TemplateSpec {
    TemplateSpec {
        source: PathBuf::from(source),
        text: text.into(),
        dest: dest.into(),
        mode: 0o644,
        write: WriteMode::Always,
    }
}

fn pod(cluster: &str, seq: u32, ip: &str, ports: &[(u16, u16)]) -> Pod {
    Pod {
        uuid: format!("{cluster}-{seq}"),
        seq,
        cluster: cluster.into(),
        namespace: "default".into(),
        ip: ip.into(),
        host: ip.into(),
        public: ip.into(),
        node: String::new(),
        task: String::new(),
        ports: ports.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        control_port: 8080,
        binding: "explicit".into(),
        version: "0".into(),
        state: PodState::Running,
    }
}

fn by_uuid(pods: Vec<Pod>) -> BTreeMap<String, Pod> {
    pods.into_iter().map(|p| (p.uuid.clone(), p)).collect()
}

/// Three zookeeper pods, seq 3, 1, 2 (so sorting shows), 2888 remapped on seq 2; key seq 2.
fn map() -> ClusterMap {
    ClusterMap {
        generation: 7,
        key: "zookeeper-2".into(),
        pods: by_uuid(vec![
            pod(
                "zookeeper",
                3,
                "10.0.0.3",
                &[(2181, 2181), (2888, 2888), (3888, 3888)],
            ),
            pod(
                "zookeeper",
                1,
                "10.0.0.1",
                &[(2181, 2181), (2888, 2888), (3888, 3888)],
            ),
            pod(
                "zookeeper",
                2,
                "10.0.0.2",
                &[(2181, 2181), (2888, 31001), (3888, 3888)],
            ),
        ]),
        added: vec!["zookeeper-3".into()],
        removed: vec![],
        removed_pods: BTreeMap::new(),
        dependencies: BTreeMap::new(),
    }
}

fn env() -> BTreeMap<String, String> {
    BTreeMap::from([("OCHOPOD_HOME".to_owned(), "/home/zk".to_owned())])
}

/// Renders `text` as the only template file of `spec`, against `map`.
fn render_one(spec: &mut PodSpec, map: &ClusterMap, text: &str) -> Result<String, RenderError> {
    spec.templates = vec![template("templates/t.hbs", text, "/tmp/t")];
    let r = Renderer::new(spec)?;
    let ctx = Context::new(spec, map, None, &env())?;
    Ok(r.render_pod(&ctx)?.files.remove(0).content)
}

#[test]
fn html_escaping_is_off() {
    let mut env = env();
    env.insert("X".into(), "<&>\"'".into());
    let mut s = spec();
    s.templates = vec![template("t.hbs", "a={{env.X}} b={{{env.X}}}", "/tmp/t")];
    let r = Renderer::new(&s).unwrap();
    let ctx = Context::new(&s, &map(), None, &env).unwrap();
    assert_eq!(
        r.render_pod(&ctx).unwrap().files[0].content,
        "a=<&>\"' b=<&>\"'"
    );
}

#[test]
fn missing_variable_is_an_error_naming_file_line_and_column() {
    let mut s = spec();
    let e = render_one(&mut s, &map(), "ok\nport={{pod.nope}}\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "templates/t.hbs:2:6: `pod.nope` is not in the context (strict mode)"
    );
}

#[test]
fn missing_variable_in_an_inline_template_names_the_pod_yaml_field() {
    let mut s = spec();
    s.process
        .env
        .insert("JVMFLAGS".into(), "-Dx={{pod.typo}}".into());
    let r = Renderer::new(&s).unwrap();
    let ctx = Context::new(&s, &map(), None, &env()).unwrap();
    let e = r.render_pod(&ctx).unwrap_err();
    assert_eq!(
        e.to_string(),
        "pods/zk.yaml: process.env.JVMFLAGS:1:5: `pod.typo` is not in the context (strict mode)"
    );
}

#[test]
fn syntax_error_names_file_line_and_column() {
    let mut s = spec();
    s.templates = vec![template(
        "templates/zoo.cfg.hbs",
        "a\nb {{#each x}}\n",
        "/tmp/t",
    )];
    let e = Renderer::new(&s).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("templates/zoo.cfg.hbs:"), "{msg}");
    match e {
        RenderError::Template { line, .. } => assert!(line.is_some(), "{msg}"),
        other => panic!("{other}"),
    }
}

#[test]
fn if_on_a_missing_value_is_silently_false_even_in_strict_mode() {
    // Documented gap of handlebars' strict mode (see the module doc).
    let mut s = spec();
    assert_eq!(
        render_one(&mut s, &map(), "{{#if pod.typo}}yes{{else}}no{{/if}}").unwrap(),
        "no"
    );
}

#[test]
fn context_has_the_shape_of_spec_section_4() {
    let mut s = spec();
    s.depends_on = vec![Dependency {
        cluster: "kafka".into(),
        min: 1,
    }];
    let ctx = Context::new(&s, &map(), None, &env()).unwrap();
    let v = ctx.as_json();
    assert_eq!(v["pod"]["uuid"], "zookeeper-2");
    assert_eq!(v["pod"]["seq"], 2);
    assert_eq!(v["pod"]["index"], 1);
    assert_eq!(
        v["pod"]["ports"],
        json!({"2181": 2181, "2888": 31001, "3888": 3888})
    );
    assert_eq!(v["pod"]["control_port"], 8080);
    for k in ["ip", "host", "public", "node", "task"] {
        assert!(v["pod"][k].is_string(), "pod.{k}");
    }
    let c = &v["cluster"];
    assert_eq!(c["name"], "zookeeper");
    assert_eq!(c["namespace"], "default");
    assert_eq!(c["key"], "default.zookeeper");
    assert_eq!(c["size"], 3);
    assert_eq!(c["generation"], 7);
    let seqs: Vec<_> = c["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["seq"].clone())
        .collect();
    assert_eq!(seqs, vec![json!(1), json!(2), json!(3)]);
    let idx: Vec<_> = c["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["index"].clone())
        .collect();
    assert_eq!(idx, vec![json!(0), json!(1), json!(2)]);
    assert_eq!(c["added"][0]["seq"], 3);
    assert_eq!(c["added"][0]["index"], 2);
    assert_eq!(c["removed"], json!([]));
    assert_eq!(v["dependencies"], json!({"kafka": {"size": 0, "pods": []}}));
    assert_eq!(v["env"], json!({"OCHOPOD_HOME": "/home/zk"}));
}

#[test]
fn context_needs_the_receiver_in_the_map() {
    let mut m = map();
    m.key = "someone-else".into();
    let e = Context::new(&spec(), &m, None, &env()).unwrap_err();
    assert!(matches!(e, RenderError::NotInMap { .. }), "{e}");
}

#[test]
fn removed_pods_come_from_the_map_then_from_the_previous_map() {
    let previous = {
        let mut m = map();
        m.pods
            .insert("zookeeper-5".into(), pod("zookeeper", 5, "10.0.0.5", &[]));
        m
    };
    let mut m = map();
    m.removed = vec!["zookeeper-5".into(), "zookeeper-4".into(), "unknown".into()];
    m.removed_pods = by_uuid(vec![pod("zookeeper", 4, "10.0.0.4", &[])]);
    let ctx = Context::new(&spec(), &m, Some(&previous), &env()).unwrap();
    let removed = ctx.as_json()["cluster"]["removed"]
        .as_array()
        .unwrap()
        .clone();
    let ips: Vec<_> = removed.iter().map(|p| p["ip"].as_str().unwrap()).collect();
    assert_eq!(ips, vec!["10.0.0.4", "10.0.0.5"]);
    assert!(removed[0].get("index").is_none());

    let mut s = spec();
    let out = render_one(&mut s, &m, "{{#each cluster.removed}}-{{seq}}{{/each}}");
    assert_eq!(out.unwrap(), "-4");
    // render_one builds its own context without `previous`: only the map's removed pods.
    s.templates = vec![template(
        "t.hbs",
        "{{#each cluster.removed}}-{{seq}}{{/each}}",
        "/tmp/t",
    )];
    let r = Renderer::new(&s).unwrap();
    assert_eq!(r.render_pod(&ctx).unwrap().files[0].content, "-4-5");
}

fn kafka_map() -> ClusterMap {
    let mut m = map();
    m.dependencies.insert(
        "zookeeper".into(),
        by_uuid(vec![
            pod("zookeeper", 2, "10.0.1.2", &[(2181, 31181)]),
            pod("zookeeper", 1, "10.0.1.1", &[(2181, 2181)]),
        ]),
    );
    m
}

#[test]
fn grep_lists_a_dependency_as_ip_and_remapped_port_by_seq() {
    let mut s = spec();
    let out = render_one(&mut s, &kafka_map(), "zk={{grep \"zookeeper\" 2181}}").unwrap();
    assert_eq!(out, "zk=10.0.1.1:2181,10.0.1.2:31181");
}

#[test]
fn grep_on_an_unknown_dependency_or_port_is_an_error() {
    let mut s = spec();
    let e = render_one(&mut s, &kafka_map(), "{{grep \"zk\" 2181}}").unwrap_err();
    assert_eq!(
        e.to_string(),
        "templates/t.hbs:1:1: grep: unknown dependency \"zk\" (known: zookeeper)"
    );
    let e = render_one(&mut s, &kafka_map(), "{{grep \"zookeeper\" 2182}}").unwrap_err();
    assert!(e.to_string().contains("does not serve port 2182"), "{e}");
}

#[test]
fn port_gives_a_pods_remapped_port() {
    let mut s = spec();
    let t = "{{#each cluster.pods}}server.{{seq}}={{ip}}:{{port this 2888}}:{{port this 3888}}\n{{/each}}";
    assert_eq!(
        render_one(&mut s, &map(), t).unwrap(),
        "server.1=10.0.0.1:2888:3888\nserver.2=10.0.0.2:31001:3888\nserver.3=10.0.0.3:2888:3888\n"
    );
    assert_eq!(
        render_one(&mut s, &map(), "{{port pod 2888}}").unwrap(),
        "31001"
    );
    let e = render_one(&mut s, &map(), "\n  {{port pod 9999}}").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("templates/t.hbs:2:3: port: pod seq 2"),
        "{e}"
    );
    let e = render_one(&mut s, &map(), "{{port pod.nope 2888}}").unwrap_err();
    assert!(e.to_string().contains("pod.nope"), "{e}");
}

#[test]
fn dep_gives_the_dependency_object() {
    let mut s = spec();
    let t = "{{#with (dep \"zookeeper\")}}{{size}}:{{#each pods}}{{ip}}:{{port this 2181}};{{/each}}{{/with}}";
    assert_eq!(
        render_one(&mut s, &kafka_map(), t).unwrap(),
        "2:10.0.1.1:2181;10.0.1.2:31181;"
    );
    let e = render_one(&mut s, &kafka_map(), "{{#with (dep \"nope\")}}{{/with}}").unwrap_err();
    assert!(e.to_string().contains("unknown dependency \"nope\""), "{e}");
}

#[test]
fn render_pod_renders_command_env_cwd_and_relative_dests() {
    let mut s = spec();
    s.process.command = CommandLine::Shell("exec zk --id {{pod.seq}}".into());
    s.process.env.insert("MYID".into(), "{{pod.seq}}".into());
    s.process.cwd = Some("{{env.OCHOPOD_HOME}}".into());
    s.templates = vec![template(
        "t.hbs",
        "{{cluster.size}}",
        "conf/{{pod.seq}}.cfg",
    )];
    s.hooks.pre_start = Some("echo {{pod.ip}}".into());
    let r = Renderer::new(&s).unwrap();
    let ctx = Context::new(&s, &map(), None, &env()).unwrap();
    let out = r.render_pod(&ctx).unwrap();
    assert_eq!(out.command, CommandLine::Shell("exec zk --id 2".into()));
    assert_eq!(out.env["MYID"], "2");
    assert_eq!(out.cwd.as_deref(), Some("/home/zk"));
    assert_eq!(out.files[0].dest, PathBuf::from("/home/zk/conf/2.cfg"));
    assert_eq!(
        r.render_field(fields::PRE_START, &ctx).unwrap(),
        "echo 10.0.0.2"
    );
    assert!(matches!(
        r.render_field(fields::TEAR_DOWN, &ctx),
        Err(RenderError::UnknownField { .. })
    ));
    assert_eq!(
        r.render_command(fields::PROCESS, &ctx).unwrap(),
        CommandLine::Shell("exec zk --id 2".into())
    );
}

#[test]
fn renderer_can_be_shared_between_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Renderer>();
    shareable::<RenderState>();
}

#[test]
fn rendered_prints_files_then_the_process() {
    let mut r = rendered(Path::new("/x"), "a=1", "");
    r.cwd = Some("/x".into());
    r.env.insert("K".into(), "v".into());
    assert_eq!(
        r.to_string(),
        "==> /x/conf/zoo.cfg (0640, always) <==\na=1\n\
         ==> /x/conf/zoo.cfg.dynamic (0644, if-absent) <==\n\
         ==> process <==\ncommand: [\"zk\"]\ncwd: /x\nenv: K=v\n"
    );
}

#[test]
fn two_templates_on_one_dest_are_an_error() {
    let mut s = spec();
    s.templates = vec![
        template("a.hbs", "a", "/tmp/x"),
        template("b.hbs", "b", "/tmp/x"),
    ];
    let r = Renderer::new(&s).unwrap();
    let ctx = Context::new(&s, &map(), None, &env()).unwrap();
    let e = r.render_pod(&ctx).unwrap_err();
    assert_eq!(e.to_string(), "b.hbs: renders to /tmp/x, as a.hbs does");
}

fn rendered(dir: &Path, content: &str, if_absent: &str) -> Rendered {
    Rendered {
        files: vec![
            RenderedFile {
                dest: dir.join("conf/zoo.cfg"),
                content: content.into(),
                mode: 0o640,
                write: WriteMode::Always,
            },
            RenderedFile {
                dest: dir.join("conf/zoo.cfg.dynamic"),
                content: if_absent.into(),
                mode: 0o644,
                write: WriteMode::IfAbsent,
            },
        ],
        command: CommandLine::Exec(vec!["zk".into()]),
        env: BTreeMap::new(),
        cwd: None,
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn apply_detects_changes_against_its_own_last_render_not_the_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let state_dir = tmp.path().join("state");
    let zoo = tmp.path().join("conf/zoo.cfg");
    let dynamic = tmp.path().join("conf/zoo.cfg.dynamic");

    let mut st = RenderState::open(&state_dir, "u-1").unwrap();
    assert!(
        st.apply(&rendered(tmp.path(), "a", "servers=1")).unwrap(),
        "first render"
    );
    assert_eq!(std::fs::read_to_string(&zoo).unwrap(), "a");
    assert_eq!(mode(&zoo), 0o640);
    assert_eq!(std::fs::read_to_string(&dynamic).unwrap(), "servers=1");

    // The process rewrites its dynamic file, someone edits zoo.cfg: not ochopod's concern.
    std::fs::write(&dynamic, "servers=1,2 (by zk)").unwrap();
    std::fs::write(&zoo, "edited").unwrap();
    let mut st = RenderState::open(&state_dir, "u-1").unwrap();
    assert!(
        !st.apply(&rendered(tmp.path(), "a", "servers=1")).unwrap(),
        "same render"
    );
    assert_eq!(std::fs::read_to_string(&zoo).unwrap(), "edited");

    // A new render of the if-absent file alone changes nothing and keeps the process's file.
    assert!(!st
        .apply(&rendered(tmp.path(), "a", "servers=1,2,3"))
        .unwrap());
    assert_eq!(
        std::fs::read_to_string(&dynamic).unwrap(),
        "servers=1,2 (by zk)"
    );

    // Missing on disk though unchanged: written again, still "unchanged".
    std::fs::remove_file(&zoo).unwrap();
    std::fs::remove_file(&dynamic).unwrap();
    assert!(!st
        .apply(&rendered(tmp.path(), "a", "servers=1,2,3"))
        .unwrap());
    assert_eq!(std::fs::read_to_string(&zoo).unwrap(), "a");
    assert_eq!(std::fs::read_to_string(&dynamic).unwrap(), "servers=1,2,3");

    assert!(
        st.apply(&rendered(tmp.path(), "b", "servers=1,2,3"))
            .unwrap(),
        "content"
    );
    assert_eq!(std::fs::read_to_string(&zoo).unwrap(), "b");
    let mut r = rendered(tmp.path(), "b", "servers=1,2,3");
    r.env.insert("X".into(), "1".into());
    assert!(st.differs(&r));
    assert!(st.apply(&r).unwrap(), "env");
    r.files[0].mode = 0o600;
    assert!(st.apply(&r).unwrap(), "mode");
    assert_eq!(mode(&zoo), 0o600);
    assert_eq!(st.last_digest(), Some(r.digest()));

    // Another pod's state is its own.
    let mut other = RenderState::open(&state_dir, "u-2").unwrap();
    assert!(other.apply(&r).unwrap());
    assert!(RenderState::open(&state_dir, "../x").is_err());
}

#[test]
fn digest_follows_content() {
    let d = Path::new("/x");
    assert_eq!(
        rendered(d, "a", "b").digest(),
        rendered(d, "a", "b").digest()
    );
    assert_ne!(
        rendered(d, "a", "b").digest(),
        rendered(d, "a", "c").digest()
    );
    assert_eq!(rendered(d, "a", "b").digest().len(), 64);
}

#[test]
fn write_atomic_sets_the_mode_and_leaves_no_temp_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("a/b/file");
    write_atomic(&dest, b"one", 0o751).unwrap();
    assert_eq!(mode(&dest), 0o751);
    write_atomic(&dest, b"two", 0o600).unwrap();
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "two");
    assert_eq!(mode(&dest), 0o600);
    let names: Vec<_> = std::fs::read_dir(dest.parent().unwrap()).unwrap().collect();
    assert_eq!(names.len(), 1);
    // A folder in the way fails with the path named, and leaves nothing behind.
    let e = write_atomic(tmp.path().join("a/b").as_path(), b"x", 0o644).unwrap_err();
    assert!(e.to_string().contains("a/b"), "{e}");
    assert_eq!(std::fs::read_dir(tmp.path().join("a")).unwrap().count(), 1);
}

const ZOO_CFG: &str = "tickTime=2000
dataDir={{env.OCHOPOD_HOME}}/data
clientPort={{port pod 2181}}
{{#each cluster.pods}}
server.{{seq}}={{ip}}:{{port this 2888}}:{{port this 3888}}
{{/each}}
";

#[test]
fn sample_map_renders_a_zoo_cfg() {
    let mut s = spec();
    s.templates = vec![template(
        "templates/zoo.cfg.hbs",
        ZOO_CFG,
        "{{env.OCHOPOD_HOME}}/zoo.cfg",
    )];
    let m = sample_map(&s);
    assert_eq!(m.pods.len(), 3);
    let r = Renderer::new(&s).unwrap();
    let ctx = Context::new(&s, &m, None, &env()).unwrap();
    let out = r.render_pod(&ctx).unwrap();
    assert_eq!(
        out.files[0].content,
        "tickTime=2000\ndataDir=/home/zk/data\nclientPort=2181\n\
         server.1=10.0.0.1:2888:3888\nserver.2=10.0.0.2:2888:3888\nserver.3=10.0.0.3:2888:3888\n"
    );
    assert_eq!(ctx.as_json()["pod"]["seq"], 1);
    assert_eq!(ctx.as_json()["cluster"]["removed"][0]["seq"], 4);
    assert!(check(&s, &BTreeMap::new()).is_empty());
}

#[test]
fn check_lists_every_problem_and_tolerates_unknown_dependency_ports() {
    let mut s = spec();
    s.depends_on = vec![
        Dependency {
            cluster: "zookeeper".into(),
            min: 3,
        },
        Dependency {
            cluster: "/infra.kafka-*".into(),
            min: 1,
        },
    ];
    s.templates = vec![
        template(
            "ok.hbs",
            "{{grep \"zookeeper\" 2181}} {{env.UNSET_HERE}}",
            "/tmp/ok",
        ),
        template("bad.hbs", "{{#if}}", "/tmp/bad"),
        template("typo.hbs", "x\n{{cluster.sise}}", "/tmp/typo"),
    ];
    s.hooks.configured = Some("echo {{port pod 9999}}".into());
    s.checks.ready = Some(Check {
        command: "nc {{pod.ip}} {{port pod 2181}}".into(),
        every: Duration::from_secs(1),
        timeout: Duration::from_secs(60),
        failures: 1,
    });
    let errors: Vec<String> = check(&s, &BTreeMap::new())
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].starts_with("bad.hbs:1:"), "{errors:#?}");
    assert_eq!(
        errors[1],
        "typo.hbs:2:1: `cluster.sise` is not in the context (strict mode)"
    );
    assert!(
        errors[2].starts_with("pods/zk.yaml: hooks.configured:1:6: port:"),
        "{errors:#?}"
    );

    let m = sample_map(&s);
    assert!(m.dependencies.contains_key("zookeeper"));
    assert!(m.dependencies.contains_key("infra.kafka-sample"));
    assert_eq!(m.dependencies["zookeeper"].len(), 3);
}

/// Bind-mounts a file over another inside a user+mount namespace (`unshare -rm`, no privileges
/// needed where user namespaces are enabled) by re-running this very test there: rename onto a
/// mount point fails with EBUSY, so the write must happen in place, through to the mounted file.
#[test]
fn write_atomic_writes_in_place_over_a_mount_point() {
    const NAME: &str = "render::tests::write_atomic_writes_in_place_over_a_mount_point";
    if std::env::var_os("OCHOPOD_TEST_IN_USERNS").is_none() {
        let out = std::process::Command::new("unshare")
            .arg("-rm")
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env("OCHOPOD_TEST_IN_USERNS", "1")
            .output()
            .expect("unshare (util-linux) runs this test in a user namespace");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "in `unshare -rm` (user namespaces must be enabled): {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    use nix::mount::{mount, MsFlags};
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("configmap");
    let dest = tmp.path().join("conf/zoo.cfg");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::write(&source, "old").unwrap();
    std::fs::write(&dest, "").unwrap();
    mount(
        Some(&source),
        &dest,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "old");

    write_atomic(&dest, b"new", 0o640).unwrap();
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "new");
    assert_eq!(
        std::fs::read_to_string(&source).unwrap(),
        "new",
        "written through the mount"
    );
    assert_eq!(mode(&dest), 0o640);
    let left: Vec<_> = std::fs::read_dir(dest.parent().unwrap()).unwrap().collect();
    assert_eq!(left.len(), 1, "no temp file left behind");
}
