//! The template context of SPEC §4, and the sample cluster `ochopod check` renders against.
//!
//! Receives a [`PodSpec`], a [`ClusterMap`] (plus the last applied one, for removed pods) and the
//! pod's environment; emits one JSON value. Pure: no I/O.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

use super::RenderError;
use crate::model::{ClusterMap, Pod, PodState};
use crate::spec::PodSpec;

/// The JSON context of SPEC §4:
///
/// ```text
/// pod:          the receiver's Pod JSON + index (its rank by seq in this configuration, from 0)
/// cluster:      { name, namespace, key, size, generation, pods: [pod + index, by seq],
///                 added: [pod + index, by seq], removed: [pod, by seq] }
/// dependencies: { <name>: { size, pods: [pod + index, by seq] } }
/// env:          { <the pod's environment> }
/// ```
///
/// Removed pods have no `index`: they are not part of this configuration. Every non-wildcard
/// `depends_on` entry is present, with `size: 0` when the map has no pods for it, so `grep` on a
/// declared dependency yields an empty string rather than an error.
///
/// Held as handlebars' own context, built once: `Registry::render` would copy the whole value
/// (every pod of the map) for each template it renders.
#[derive(Debug, Clone)]
pub struct Context(handlebars::Context);

impl PartialEq for Context {
    fn eq(&self, other: &Context) -> bool {
        self.as_json() == other.as_json()
    }
}

impl Context {
    /// Builds the context for the receiver `map.key`. `previous` is the last map this pod
    /// applied: removed pods missing from `map.removed_pods` are looked up there (and skipped
    /// when unknown to both, since nothing could be rendered for them).
    pub fn new(
        spec: &PodSpec,
        map: &ClusterMap,
        previous: Option<&ClusterMap>,
        env: &BTreeMap<String, String>,
    ) -> Result<Context, RenderError> {
        let me = map
            .me()
            .ok_or_else(|| RenderError::NotInMap { key: map.key.clone() })?;
        let ranked = map.pods_by_seq();
        // By uuid: a first configuration's `added` is every pod.
        let rank: HashMap<&str, usize> = ranked
            .iter()
            .enumerate()
            .map(|(i, p)| (p.uuid.as_str(), i))
            .collect();
        let index_of = |uuid: &str| rank.get(uuid).copied();
        let pods: Vec<Value> = ranked
            .iter()
            .enumerate()
            .map(|(i, p)| pod_json(p, Some(i)))
            .collect();

        let mut added: Vec<&Pod> = map.added.iter().filter_map(|u| map.pods.get(u)).collect();
        added.sort_by(|a, b| Pod::by_seq(a, b));
        let added: Vec<Value> = added
            .into_iter()
            .map(|p| pod_json(p, index_of(&p.uuid)))
            .collect();

        let mut removed: Vec<&Pod> = map
            .removed
            .iter()
            .filter_map(|u| {
                map.removed_pods
                    .get(u)
                    .or_else(|| previous.and_then(|m| m.pods.get(u)))
            })
            .collect();
        removed.sort_by(|a, b| Pod::by_seq(a, b));
        let removed: Vec<Value> = removed.into_iter().map(|p| pod_json(p, None)).collect();

        let mut dependencies = Map::new();
        for dep in spec.depends_on.iter().filter(|d| !d.cluster.contains('*')) {
            dependencies.insert(dep.cluster.clone(), json!({ "size": 0, "pods": [] }));
        }
        for (name, members) in &map.dependencies {
            let mut ranked: Vec<&Pod> = members.values().collect();
            ranked.sort_by(|a, b| Pod::by_seq(a, b));
            let pods: Vec<Value> = ranked
                .iter()
                .enumerate()
                .map(|(i, p)| pod_json(p, Some(i)))
                .collect();
            dependencies.insert(name.clone(), json!({ "size": pods.len(), "pods": pods }));
        }

        Ok(Context(handlebars::Context::from(json!({
            "pod": pod_json(me, index_of(&me.uuid)),
            "cluster": {
                "name": spec.cluster,
                "namespace": spec.namespace,
                "key": spec.key(),
                "size": pods.len(),
                "generation": map.generation,
                "pods": pods,
                "added": added,
                "removed": removed,
            },
            "dependencies": dependencies,
            "env": env,
        }))))
    }

    /// The context as templates see it.
    pub fn as_json(&self) -> &Value {
        self.0.data()
    }

    /// The context as handlebars takes it.
    pub(super) fn handlebars(&self) -> &handlebars::Context {
        &self.0
    }
}

/// A pod as templates see it: every field of its JSON (SPEC §6), plus `index` when given.
fn pod_json(pod: &Pod, index: Option<usize>) -> Value {
    let ports: Map<String, Value> = pod
        .ports
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(*v)))
        .collect();
    let state = match pod.state {
        PodState::Running => "running",
        PodState::Held => "held",
        PodState::Failed => "failed",
        PodState::Leaving => "leaving",
    };
    let mut v = json!({
        "uuid": pod.uuid,
        "seq": pod.seq,
        "cluster": pod.cluster,
        "namespace": pod.namespace,
        "ip": pod.ip,
        "host": pod.host,
        "public": pod.public,
        "node": pod.node,
        "task": pod.task,
        "ports": ports,
        "control_port": pod.control_port,
        "binding": pod.binding,
        "version": pod.version,
        "state": state,
    });
    if let (Some(i), Some(obj)) = (index, v.as_object_mut()) {
        obj.insert("index".to_owned(), Value::from(i));
    }
    v
}

/// The control port of sample pods.
const SAMPLE_CONTROL_PORT: u16 = 8080;

/// A sample configuration for `ochopod check`: 3 pods (seq 1..3 on 10.0.0.1..3, serving every
/// declared port and the control port, unremapped), the receiver being seq 1; seq 3 was just
/// added and a 4th pod (10.0.0.4) just removed, so templates over `cluster.added` and
/// `cluster.removed` are exercised too. Each `depends_on` entry gets 3 pods on 10.0.N.1..3
/// (wildcards become `<ns>.<pattern with * as "sample">`). A dependency's real ports are unknown
/// here, so its sample pods serve the control port and every number written inside a `{{...}}`
/// of the spec's templates (see `literal_ports`): `{{grep "db" 5432}}`, `{{port this 5432}}`,
/// `{{lookup ports "5432"}}` and `{{ports.[5432]}}` all find it. A port computed at render time
/// is tolerated by the check renderer instead (see [`super::check`]).
pub fn sample_map(spec: &PodSpec) -> ClusterMap {
    let mut ports: BTreeMap<String, u16> = spec.ports.iter().map(|p| (p.to_string(), *p)).collect();
    ports.insert(SAMPLE_CONTROL_PORT.to_string(), SAMPLE_CONTROL_PORT);
    let own = |seq: u32| {
        sample_pod(
            format!("00000000-0000-4000-8000-{seq:012}"),
            seq,
            &spec.cluster,
            &spec.namespace,
            format!("10.0.0.{seq}"),
            ports.clone(),
        )
    };
    let pods: BTreeMap<String, Pod> = (1..=3).map(own).map(|p| (p.uuid.clone(), p)).collect();
    let gone = own(4);
    let key = own(1).uuid;
    let added = vec![own(3).uuid];

    let mut dependencies = BTreeMap::new();
    for (k, dep) in spec.depends_on.iter().enumerate() {
        let (name, namespace, cluster) = sample_dependency(&dep.cluster, &spec.namespace);
        let mut served: BTreeMap<String, u16> = literal_ports(spec)
            .into_iter()
            .map(|p| (p.to_string(), p))
            .collect();
        served.insert(SAMPLE_CONTROL_PORT.to_string(), SAMPLE_CONTROL_PORT);
        let members: BTreeMap<String, Pod> = (1..=3u32)
            .map(|seq| {
                sample_pod(
                    format!("00000000-0000-4000-{:04}-{seq:012}", k + 1),
                    seq,
                    &cluster,
                    &namespace,
                    format!("10.0.{}.{seq}", k + 1),
                    served.clone(),
                )
            })
            .map(|p| (p.uuid.clone(), p))
            .collect();
        dependencies.insert(name, members);
    }

    ClusterMap {
        version: crate::model::WIRE_VERSION,
        epoch: 1,
        generation: 2,
        key,
        pods,
        added,
        removed: vec![gone.uuid.clone()],
        removed_pods: BTreeMap::from([(gone.uuid.clone(), gone)]),
        dependencies,
    }
}

/// Every number from 1 to 65535 written inside a `{{...}}` of the spec's templates, as a whole
/// token (not part of a name like `env.PORT2`): the ports its templates may ask a dependency for.
/// Over-inclusive on purpose (`{{#if (eq pod.seq 1)}}` adds port 1): a sample dependency pod
/// serving one port too many costs nothing, one too few fails a valid pod.yaml.
fn literal_ports(spec: &PodSpec) -> std::collections::BTreeSet<u16> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut ports = std::collections::BTreeSet::new();
    for text in super::template_texts(spec) {
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            let inner = &rest[open + 2..];
            let close = inner.find("}}").unwrap_or(inner.len());
            let expr = &inner[..close];
            rest = &inner[close..];
            let mut start = None;
            let mut previous = ' ';
            // A sentinel space at the end closes a trailing run.
            for (i, c) in expr.char_indices().chain([(expr.len(), ' ')]) {
                match (start, c.is_ascii_digit()) {
                    (None, true) if !word(previous) => start = Some(i),
                    (Some(s), false) => {
                        if !word(c) {
                            let port = expr[s..i].parse::<u16>().ok().filter(|p| *p > 0);
                            ports.extend(port);
                        }
                        start = None;
                    }
                    _ => {}
                }
                previous = c;
            }
        }
    }
    ports
}

/// (context name, namespace, cluster) of a sample dependency written `written` in depends_on.
fn sample_dependency(written: &str, namespace: &str) -> (String, String, String) {
    let absolute = written.strip_prefix('/');
    let path = absolute.unwrap_or(written).replace('*', "sample");
    let (ns, cluster) = match path.split_once('.') {
        Some((ns, c)) => (ns.to_owned(), c.to_owned()),
        None => (namespace.to_owned(), path.clone()),
    };
    let name = if written.contains('*') {
        format!("{ns}.{cluster}")
    } else {
        written.to_owned()
    };
    (name, ns, cluster)
}

fn sample_pod(
    uuid: String,
    seq: u32,
    cluster: &str,
    namespace: &str,
    ip: String,
    ports: BTreeMap<String, u16>,
) -> Pod {
    Pod {
        uuid,
        seq,
        cluster: cluster.to_owned(),
        namespace: namespace.to_owned(),
        host: ip.clone(),
        public: ip.clone(),
        ip,
        node: format!("node-{seq}"),
        task: String::new(),
        ports,
        control_port: SAMPLE_CONTROL_PORT,
        binding: "sample".to_owned(),
        version: crate::VERSION.to_owned(),
        state: PodState::Running,
        started: 0,
    }
}

/// `base` plus a placeholder `<NAME>` for every `env.NAME` the spec's templates mention that
/// `base` lacks: `ochopod check` runs where the pod's variables (set by Kubernetes, Marathon or
/// `ochopod up`) are usually absent, and a missing variable there says nothing about production.
pub fn sample_env(spec: &PodSpec, base: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut env = base.clone();
    for text in super::template_texts(spec) {
        let mut rest = text;
        while let Some(at) = rest.find("env.") {
            let preceded = rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            rest = &rest[at + 4..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..end];
            // ochopod's secrets get no placeholder: they are never in `env`, and check says so.
            if !preceded && !name.is_empty() && !env.contains_key(name) && !crate::spec::is_secret_env(name) {
                env.insert(name.to_owned(), format!("<{name}>"));
            }
        }
    }
    env
}
