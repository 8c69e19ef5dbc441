//! The showcase's scripts (templates/zookeeper/zk-seed.sh.hbs and zk-reconfig.sh.hbs), rendered
//! by the real renderer from pods/zookeeper.yaml and run by `sh` against a fake `nc` (a canned
//! answer to `conf`) and a fake `java` (which prints its arguments): every branch, without
//! ZooKeeper and without timing. The end-to-end test (showcase.rs) runs them for real.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ochopod::model::{ClusterMap, Pod, PodState};
use ochopod::render::{fields, Context, Renderer};
use ochopod::spec::{PodSpec, WriteMode};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn pod(seq: u32) -> Pod {
    let ports = [2181, 2888, 3888, 8080].map(|p| (p.to_string(), p)).into();
    Pod {
        uuid: format!("u{seq}"),
        seq,
        cluster: "zookeeper".into(),
        namespace: "default".into(),
        ip: format!("10.0.0.{seq}"),
        host: format!("10.0.0.{seq}"),
        public: format!("10.0.0.{seq}"),
        node: String::new(),
        task: String::new(),
        ports,
        control_port: 8080,
        binding: "explicit".into(),
        version: "test".into(),
        state: PodState::Running,
        started: 0,
    }
}

fn line(seq: u32) -> String {
    format!("server.{seq}=10.0.0.{seq}:2888:3888:participant;10.0.0.{seq}:2181")
}

/// `conf` as a server answers it, for a membership.
fn conf(seqs: &[u32]) -> String {
    let servers: Vec<String> = seqs.iter().map(|&s| line(s)).collect();
    format!(
        "clientPort=2181\nserverId=1\nmembership: \n{}\nversion=100000002",
        servers.join("\n")
    )
}

/// A pod's home with fake `nc` and `java` first on the PATH.
struct Sandbox {
    dir: tempfile::TempDir,
    spec: PodSpec,
    renderer: Renderer,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("fake");
        std::fs::create_dir_all(&fake).unwrap();
        let nc = "#!/bin/sh\ncat >/dev/null\n[ -f \"$FAKE_CONF\" ] || exit 1\ncat \"$FAKE_CONF\"\n";
        std::fs::write(fake.join("nc"), nc).unwrap();
        std::fs::write(fake.join("java"), "#!/bin/sh\necho \"java $*\"\n").unwrap();
        for f in ["nc", "java"] {
            Command::new("chmod")
                .arg("+x")
                .arg(fake.join(f))
                .status()
                .unwrap();
        }
        let path = repo("pods/zookeeper.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let spec = ochopod::spec::load_with_env(&path, &text, &|_| None).unwrap();
        let renderer = Renderer::new(&spec).unwrap();
        Sandbox { dir, spec, renderer }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn file(&self, rel: &str) -> String {
        std::fs::read_to_string(self.home().join(rel)).unwrap_or_default()
    }

    /// What `conf` answers from now on (None: no server answers).
    fn answer(&self, conf: Option<&str>) {
        let f = self.dir.path().join("conf-answer");
        match conf {
            Some(c) => std::fs::write(f, c).unwrap(),
            None => {
                let _ = std::fs::remove_file(f);
            }
        }
    }

    fn context(&self, pods: &[u32], me: u32, added: &[u32]) -> Context {
        let map = ClusterMap {
            version: 1,
            epoch: 1,
            generation: 1,
            key: format!("u{me}"),
            pods: pods.iter().map(|&s| (format!("u{s}"), pod(s))).collect(),
            added: added.iter().map(|s| format!("u{s}")).collect(),
            removed: Vec::new(),
            removed_pods: BTreeMap::new(),
            dependencies: BTreeMap::new(),
        };
        let env = BTreeMap::from([("OCHOPOD_HOME".to_string(), self.home().display().to_string())]);
        Context::new(&self.spec, &map, None, &env).unwrap()
    }

    /// Renders the pod's files as ochopod writes them (`if-absent` ones only when missing);
    /// returns the rendered pre_start hook and apply command.
    fn render(&self, pods: &[u32], me: u32, added: &[u32]) -> (String, String) {
        let ctx = self.context(pods, me, added);
        for f in self.renderer.render_pod(&ctx).unwrap().files {
            if f.write == WriteMode::IfAbsent && f.dest.exists() {
                continue;
            }
            ochopod::render::write_atomic(&f.dest, f.content.as_bytes(), f.mode).unwrap();
        }
        let hook = self.renderer.render_field(fields::PRE_START, &ctx).unwrap();
        let apply = match self.renderer.render_command(fields::APPLY, &ctx).unwrap() {
            ochopod::spec::CommandLine::Shell(s) => s,
            other => panic!("apply is a shell string: {other:?}"),
        };
        (hook, apply)
    }

    /// Runs a rendered shell command; (exit code, stdout + stderr).
    fn run(&self, command: &str) -> (i32, String) {
        let path = format!(
            "{}:{}",
            self.dir.path().join("fake").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .env("PATH", path)
            .env("FAKE_CONF", self.dir.path().join("conf-answer"))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    fn pointer(&self) -> String {
        let cfg = self.file("conf/zoo.cfg");
        let p = cfg
            .lines()
            .find_map(|l| l.strip_prefix("dynamicConfigFile="))
            .unwrap();
        p.rsplit('/').next().unwrap().to_string()
    }
}

#[test]
fn the_first_servers_start_from_a_seed_of_every_pod_and_need_no_reconfig() {
    let s = Sandbox::new();
    let (hook, apply) = s.render(&[1, 2, 3], 1, &[1, 2, 3]);
    assert!(!hook.contains("--join"), "{hook}");
    let seed = s.file("conf/zoo.cfg.dynamic");
    assert_eq!(seed.lines().collect::<Vec<_>>(), [line(1), line(2), line(3)]);
    assert_eq!(s.file("data/myid").trim(), "1");
    let (code, out) = s.run(&hook);
    assert_eq!((code, out.as_str()), (0, ""));
    assert_eq!(s.pointer(), "zoo.cfg.dynamic");
    s.answer(Some(&conf(&[1, 2, 3])));
    let (code, out) = s.run(&apply);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("java"), "nothing to reconfigure: {out}");
}

#[test]
fn a_joiner_is_seeded_with_the_committed_membership_plus_itself() {
    let s = Sandbox::new();
    let (hook, _) = s.render(&[1, 2, 3, 4, 5], 4, &[4, 5]);
    assert!(hook.contains("--join"), "{hook}");
    assert!(
        !s.file("conf/zoo.cfg.dynamic").contains("server."),
        "no seed of its own"
    );
    // Its earlier life (a pod removed, now back on its volume) left configs behind.
    std::fs::write(s.home().join("conf/zoo.cfg.dynamic.500000000"), line(4)).unwrap();
    s.answer(Some(&conf(&[1, 2, 3])));
    let (code, out) = s.run(&hook);
    assert_eq!(code, 0, "{out}");
    let seed = s.file("conf/zoo.cfg.dynamic");
    // Never the other joiner (5) as a participant.
    assert_eq!(
        seed.lines().collect::<Vec<_>>(),
        [line(1), line(2), line(3), line(4)]
    );
    assert_eq!(s.pointer(), "zoo.cfg.dynamic");
    assert!(!s.home().join("conf/zoo.cfg.dynamic.500000000").exists());
}

#[test]
fn a_server_whose_config_lacks_it_is_seeded_again_and_none_starts_without_a_member() {
    let s = Sandbox::new();
    let (_, _) = s.render(&[1, 2, 3, 4], 4, &[4]);
    // As ZooKeeper leaves a joiner that synced and restarted before it was added: pointed at
    // the committed config, which lacks it ("My id 4 not in the peer list").
    let committed = s.home().join("conf/zoo.cfg.dynamic.100000003");
    std::fs::write(&committed, format!("{}\n{}\n{}\n", line(1), line(2), line(3))).unwrap();
    let cfg = s
        .file("conf/zoo.cfg")
        .replace("zoo.cfg.dynamic\n", "zoo.cfg.dynamic.100000003\n");
    std::fs::write(s.home().join("conf/zoo.cfg"), cfg).unwrap();
    let hook = format!("sh {}/bin/zk-seed.sh 10.0.0.1:2181", s.home().display());
    s.answer(None);
    let (code, out) = s.run(&hook);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no live member answered"), "{out}");
    s.answer(Some(&conf(&[1, 2, 3])));
    let (code, out) = s.run(&hook);
    assert_eq!(code, 0, "{out}");
    assert_eq!(s.pointer(), "zoo.cfg.dynamic");
    assert!(s.file("conf/zoo.cfg.dynamic").contains(&line(4)));
}

#[test]
fn a_member_starts_from_zookeepers_newest_config_even_after_a_new_render() {
    let s = Sandbox::new();
    let (hook, _) = s.render(&[1, 2, 3, 4], 1, &[4]);
    // ochopod rendered zoo.cfg again (a new template): its pointer is back on the old seed,
    // while ZooKeeper committed two configs since.
    std::fs::write(s.home().join("conf/zoo.cfg.dynamic"), format!("{}\n", line(1))).unwrap();
    let old = format!("{}\n{}\n{}\n", line(1), line(2), line(3));
    std::fs::write(s.home().join("conf/zoo.cfg.dynamic.100000000"), old).unwrap();
    let new = format!("{}\n{}\n{}\n{}\n", line(1), line(2), line(3), line(4));
    std::fs::write(s.home().join("conf/zoo.cfg.dynamic.20000000a"), new).unwrap();
    std::fs::write(s.home().join("conf/zoo.cfg.dynamic.next"), "").unwrap();
    let (code, out) = s.run(&hook);
    assert_eq!(code, 0, "{out}");
    assert_eq!(s.pointer(), "zoo.cfg.dynamic.20000000a");
}

#[test]
fn the_apply_reconciles_zookeepers_membership_with_the_map() {
    let s = Sandbox::new();
    // 3 left (its pod is gone), 4 and 5 joined; ZooKeeper still has 1, 2, 3 and a 7 nobody knows.
    let (_, apply) = s.render(&[1, 2, 4, 5], 1, &[4, 5]);
    s.answer(Some(&conf(&[1, 2, 3, 7])));
    let (code, out) = s.run(&apply);
    assert_eq!(code, 0, "{out}");
    let call = out.lines().find(|l| l.starts_with("java ")).expect("zkCli runs");
    let want = format!("reconfig -add {},{} -remove 3,7", line(4), line(5));
    assert!(call.ends_with(&want), "{call}");
    assert!(
        call.contains("-server 10.0.0.1:2181,10.0.0.2:2181,10.0.0.4:2181,10.0.0.5:2181"),
        "{call}"
    );
    // Once ZooKeeper has it, a retry does nothing.
    s.answer(Some(&conf(&[1, 2, 4, 5])));
    let (code, out) = s.run(&apply);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("java"), "{out}");
    // No server answers: the apply fails, and the leader retries it.
    s.answer(None);
    let (code, out) = s.run(&apply);
    assert_eq!(code, 1, "{out}");
}
