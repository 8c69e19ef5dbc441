//! Unit tests of the renderer, the context, the helpers and the writes; shared fixtures here.

// Tests may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

mod fixtures;
mod shell;
mod templates;
mod writes;
use crate::model::{ClusterMap, Pod, PodState};
use crate::spec::{
    Check, Checks, Dependency, Hooks, Order, Process, Restart, RestartPolicy, Settings, Signal, Stop,
    TemplateSpec,
};

pub(super) fn spec() -> PodSpec {
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
            rolling: false,
            max_unavailable: 1,
            max_lost: None,
            parallelism: 16,
            full_shutdown: false,
            timeout: Duration::from_secs(60),
            evict_after: 3,
            seq_hold: Duration::from_secs(300),
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

pub(super) fn template(source: &str, text: &str, dest: &str) -> TemplateSpec {
    TemplateSpec {
        source: PathBuf::from(source),
        text: text.into(),
        dest: dest.into(),
        mode: 0o644,
        write: WriteMode::Always,
    }
}

pub(super) fn pod(cluster: &str, seq: u32, ip: &str, ports: &[(u16, u16)]) -> Pod {
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
        started: 0,
    }
}

pub(super) fn by_uuid(pods: Vec<Pod>) -> BTreeMap<String, Pod> {
    pods.into_iter().map(|p| (p.uuid.clone(), p)).collect()
}

/// Three zookeeper pods, seq 3, 1, 2 (so sorting shows), 2888 remapped on seq 2; key seq 2.
pub(super) fn map() -> ClusterMap {
    ClusterMap {
        version: 1,
        epoch: 1,
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

pub(super) fn env() -> BTreeMap<String, String> {
    BTreeMap::from([("OCHOPOD_HOME".to_owned(), "/home/zk".to_owned())])
}

/// Renders `text` as the only template file of `spec`, against `map`.
pub(super) fn render_one(spec: &mut PodSpec, map: &ClusterMap, text: &str) -> Result<String, RenderError> {
    spec.templates = vec![template("templates/t.hbs", text, "/tmp/t")];
    let r = Renderer::new(spec)?;
    let ctx = Context::new(spec, map, None, &env())?;
    Ok(r.render_pod(&ctx)?.files.remove(0).content)
}
pub(super) fn rendered(dir: &Path, content: &str, if_absent: &str) -> Rendered {
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

pub(super) fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}
