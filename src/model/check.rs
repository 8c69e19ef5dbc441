//! Validation of pods and maps as they are deserialized (see the module doc of [`super`]).
//!
//! The rules are strict on purpose: every value here may end up in a shell command, a path or a
//! config file, so none of them may carry a quote, a slash, a space, a newline or any other
//! control character unless its type makes that impossible (an IP address).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

use super::{ClusterMap, Pod, PodState};

/// The largest seq a pod may claim (or be given): far beyond any cluster, small enough for any
/// `myid` or `broker.id`.
pub const MAX_SEQ: u32 = 1_000_000;

/// At most this many ports per pod (container ports plus the control port).
const MAX_PORTS: usize = 64;

/// Why a pod or a map was refused: the field and what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct Invalid {
    pub field: String,
    pub problem: String,
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

/// A pod's JSON as it arrives, before [`check_pod`].
#[derive(Deserialize)]
pub(super) struct RawPod {
    uuid: String,
    seq: u32,
    cluster: String,
    namespace: String,
    ip: String,
    host: String,
    public: String,
    #[serde(default)]
    node: String,
    #[serde(default)]
    task: String,
    ports: BTreeMap<String, u16>,
    control_port: u16,
    #[serde(default)]
    binding: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    state: PodState,
    #[serde(default)]
    started: u64,
}

impl TryFrom<RawPod> for Pod {
    type Error = Invalid;

    fn try_from(r: RawPod) -> Result<Pod, Invalid> {
        let pod = Pod {
            uuid: r.uuid,
            seq: r.seq,
            cluster: r.cluster,
            namespace: r.namespace,
            ip: r.ip,
            host: r.host,
            public: r.public,
            node: r.node,
            task: r.task,
            ports: r.ports,
            control_port: r.control_port,
            binding: r.binding,
            version: r.version,
            state: r.state,
            started: r.started,
        };
        check_pod(&pod)?;
        Ok(Pod {
            // One spelling of an address (`::1`, not `0:0:0:0:0:0:0:1`), so that comparisons and
            // hashes agree.
            ip: canonical_ip(pod.ip),
            public: canonical_ip(pod.public),
            ..pod
        })
    }
}

/// IPv6 in its shortest spelling; IPv4 as it is (a dotted quad parses only in its one spelling).
fn canonical_ip(text: String) -> String {
    match text.parse::<IpAddr>() {
        Ok(ip @ IpAddr::V6(_)) => ip.to_string(),
        _ => text,
    }
}

/// Checks every field of a pod (SPEC §6): what the leader, dependents and `ctl` read from
/// ZooKeeper, what a map carries, and this pod's own identity at start.
pub fn check_pod(p: &Pod) -> Result<(), Invalid> {
    uuid("uuid", &p.uuid)?;
    if p.seq > MAX_SEQ {
        return Err(invalid("seq", format!("{} is above {MAX_SEQ}", p.seq)));
    }
    name("cluster", &p.cluster)?;
    name("namespace", &p.namespace)?;
    ip("ip", &p.ip)?;
    ip("public", &p.public)?;
    if p.host.parse::<IpAddr>().is_err() {
        dns_name("host", &p.host)?;
    }
    word("node", &p.node, 253, &['.', '-', '_'])?;
    word("task", &p.task, 256, &['.', '-', '_', ':', '@'])?;
    word("binding", &p.binding, 32, &['-'])?;
    word("version", &p.version, 64, &['.', '-', '+'])?;
    if p.ports.len() > MAX_PORTS {
        return Err(invalid("ports", format!("more than {MAX_PORTS} ports")));
    }
    for (container, &port) in &p.ports {
        let field = || format!("ports.{}", printable(container));
        match container.parse::<u16>() {
            Ok(n) if n > 0 && n.to_string() == *container => {}
            _ => {
                return Err(invalid(
                    field(),
                    "a container port must be a number from 1 to 65535",
                ))
            }
        }
        if port == 0 {
            return Err(invalid(field(), "port 0"));
        }
    }
    if p.control_port == 0 {
        return Err(invalid("control_port", "port 0"));
    }
    Ok(())
}

/// A map is valid when every pod in it is (done by their own deserialization), each is filed
/// under its own uuid, and every other name is a uuid or a dependency name.
pub(super) fn check_map(m: &ClusterMap) -> Result<(), Invalid> {
    uuid("key", &m.key)?;
    let filed = |field: &str, pods: &BTreeMap<String, Pod>| -> Result<(), Invalid> {
        for (key, pod) in pods {
            if *key != pod.uuid {
                return Err(invalid(
                    format!("{field}.{}", printable(key)),
                    format!("holds the pod {}", pod.uuid),
                ));
            }
        }
        Ok(())
    };
    filed("pods", &m.pods)?;
    filed("removed_pods", &m.removed_pods)?;
    for u in m.added.iter().chain(&m.removed) {
        uuid("added/removed", u)?;
    }
    for (dep, pods) in &m.dependencies {
        // As written in depends_on (`db`, `/ns.db`), or the `ns.name` a wildcard matched.
        let bare = dep.strip_prefix('/').unwrap_or(dep);
        if bare.is_empty() {
            return Err(invalid("dependencies", "an empty name"));
        }
        word("dependencies", bare, 256, &['.', '-'])?;
        filed(&format!("dependencies.{dep}"), pods)?;
    }
    Ok(())
}

/// A cluster map as it arrives, before [`check_map`].
#[derive(Deserialize)]
pub(super) struct RawMap {
    #[serde(default)]
    version: u32,
    #[serde(default)]
    epoch: u64,
    generation: u64,
    key: String,
    pods: BTreeMap<String, Pod>,
    #[serde(default)]
    added: Vec<String>,
    #[serde(default)]
    removed: Vec<String>,
    #[serde(default)]
    removed_pods: BTreeMap<String, Pod>,
    #[serde(default)]
    dependencies: BTreeMap<String, BTreeMap<String, Pod>>,
}

impl TryFrom<RawMap> for ClusterMap {
    type Error = Invalid;

    fn try_from(r: RawMap) -> Result<ClusterMap, Invalid> {
        let map = ClusterMap {
            version: r.version,
            epoch: r.epoch,
            generation: r.generation,
            key: r.key,
            pods: r.pods,
            added: r.added,
            removed: r.removed,
            removed_pods: r.removed_pods,
            dependencies: r.dependencies,
        };
        check_map(&map)?;
        Ok(map)
    }
}

/// Whether `text` can be a pod's uuid (same rules as a pod's `uuid` field): for uuids kept elsewhere than in a pod.
pub fn is_uuid(text: &str) -> bool {
    uuid("uuid", text).is_ok()
}

/// `[A-Za-z0-9-]`, 1 to 64 characters: a uuid, or any id another tool gives a pod.
fn uuid(field: &str, text: &str) -> Result<(), Invalid> {
    if text.is_empty() {
        return Err(invalid(field, "empty"));
    }
    word(field, text, 64, &['-'])
}

/// A cluster or namespace name: `[a-z0-9-]+` as in the pod.yaml (SPEC §3).
fn name(field: &str, text: &str) -> Result<(), Invalid> {
    let ok = !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    match ok {
        true => Ok(()),
        false => Err(invalid(
            field,
            format!("expected a name of [a-z0-9-]+, found {}", printable(text)),
        )),
    }
}

fn ip(field: &str, text: &str) -> Result<(), Invalid> {
    match text.parse::<IpAddr>() {
        Ok(_) => Ok(()),
        Err(_) => Err(invalid(
            field,
            format!("expected an IP address, found {}", printable(text)),
        )),
    }
}

/// A DNS name: dot-separated labels of `[A-Za-z0-9_-]`, 1 to 63 each, not starting or ending
/// with `-`, at most 253 in all.
fn dns_name(field: &str, text: &str) -> Result<(), Invalid> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let name = text.strip_suffix('.').unwrap_or(text);
    match !name.is_empty() && text.len() <= 253 && name.split('.').all(label_ok) {
        true => Ok(()),
        false => Err(invalid(
            field,
            format!("expected an IP address or a DNS name, found {}", printable(text)),
        )),
    }
}

/// ASCII letters, digits and the few `extra` punctuation marks; at most `max` bytes; may be empty.
/// Never only dots (`..` in a path) nor starting with `-` (an option to a command).
fn word(field: &str, text: &str, max: usize, extra: &[char]) -> Result<(), Invalid> {
    // Compared byte by byte below: right for ASCII marks only.
    debug_assert!(extra.iter().all(char::is_ascii));
    if text.len() > max {
        return Err(invalid(field, format!("longer than {max} characters")));
    }
    if text.starts_with('-') || (!text.is_empty() && text.bytes().all(|b| b == b'.')) {
        return Err(invalid(
            field,
            format!("{} cannot start with '-' or be only dots", printable(text)),
        ));
    }
    match text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || extra.contains(&char::from(b)))
    {
        true => Ok(()),
        false => Err(invalid(
            field,
            format!(
                "{} has a character outside [A-Za-z0-9{}]",
                printable(text),
                extra.iter().collect::<String>()
            ),
        )),
    }
}

/// A value quoted for a log line or an error: control characters escaped, long ones cut.
fn printable(text: &str) -> String {
    let cut: String = text.chars().take(80).collect();
    let more = if cut.len() < text.len() { "..." } else { "" };
    format!("{:?}{more}", cut)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn good() -> Value {
        json!({
            "uuid": "5f0c6a52-95a1-4b1e-9f38-0b5d3c7a9e11", "seq": 2, "cluster": "zookeeper",
            "namespace": "default", "ip": "127.0.0.2", "host": "zk-1.zk.default.svc", "public": "10.0.0.1",
            "ports": {"2181": 2181, "8080": 31000}, "control_port": 31000,
            "binding": "kubernetes", "version": "0.1.0", "state": "running", "started": 1
        })
    }

    fn with(field: &str, value: Value) -> Result<Pod, serde_json::Error> {
        let mut v = good();
        v[field] = value;
        serde_json::from_value::<Pod>(v)
    }

    #[test]
    fn a_well_formed_pod_passes_and_unknown_fields_are_ignored() {
        let mut v = good();
        v["added_by_a_newer_version"] = json!({"x": 1});
        let pod: Pod = serde_json::from_value(v).unwrap();
        assert_eq!(pod.seq, 2);
        assert!(with("host", json!("127.0.0.9")).is_ok());
        assert!(with("ip", json!("::1")).is_ok());
    }

    #[test]
    fn hostile_values_are_refused_with_the_field_named() {
        let cases = [
            (
                "ip",
                json!("127.0.0.99/?;touch${IFS}/tmp/x;#"),
                "ip: expected an IP address",
            ),
            ("ip", json!("127.0.0.1\nserver.9=evil"), "ip:"),
            ("public", json!("localhost"), "public:"),
            (
                "host",
                json!("../../escaped"),
                "host: expected an IP address or a DNS name",
            ),
            ("host", json!("a b"), "host:"),
            ("host", json!("-lead.example"), "host:"),
            ("uuid", json!("../x"), "uuid:"),
            ("uuid", json!(""), "uuid: empty"),
            ("cluster", json!("Zoo"), "cluster:"),
            ("namespace", json!("a.b"), "namespace:"),
            ("node", json!("n1;reboot"), "node:"),
            ("task", json!("t\u{7}"), "task:"),
            ("version", json!("1.0 $(id)"), "version:"),
            ("node", json!(".."), "node:"),
            ("task", json!("-rf"), "task:"),
            ("seq", json!(MAX_SEQ + 1), "seq:"),
            ("control_port", json!(0), "control_port: port 0"),
            ("ports", json!({"x": 1}), "ports.\"x\""),
            ("ports", json!({"080": 1}), "ports."),
            ("ports", json!({"80": 0}), "port 0"),
        ];
        for (field, value, expected) in cases {
            let e = with(field, value.clone()).unwrap_err().to_string();
            assert!(e.contains(expected), "{field}={value}: {e}");
        }
    }

    #[test]
    fn addresses_are_kept_in_one_spelling() {
        let pod = with("ip", json!("0:0:0:0:0:0:0:1")).unwrap();
        assert_eq!(pod.ip, "::1");
        // IPv4 is kept as written: it parses in one spelling only (no leading zeros).
        assert_eq!(with("ip", json!("10.0.0.1")).unwrap().ip, "10.0.0.1");
        for other in ["010.0.0.1", "10.0.0.01", "10.0.0.1 ", "10.0.1"] {
            assert!(with("ip", json!(other)).is_err(), "{other}");
        }
    }

    #[test]
    fn a_map_must_file_each_pod_under_its_own_uuid() {
        let pod = good();
        let uuid = pod["uuid"].as_str().unwrap().to_string();
        let map = |pods: Value, key: &str| {
            serde_json::from_value::<ClusterMap>(json!({"generation": 1, "key": key, "pods": pods}))
                .map_err(|e| e.to_string())
        };
        let ok = map(json!({ uuid.clone(): pod.clone() }), &uuid).unwrap();
        assert_eq!((ok.version, ok.epoch), (0, 0), "older leaders send neither");
        let e = map(json!({ "other": pod.clone() }), &uuid).unwrap_err();
        assert!(e.contains("pods.\"other\": holds the pod"), "{e}");
        let e = map(json!({ uuid.clone(): pod }), "a/b").unwrap_err();
        assert!(e.contains("key:"), "{e}");
        let extra = serde_json::from_value::<ClusterMap>(
            json!({"generation": 1, "key": uuid, "pods": {}, "future_field": [1, 2]}),
        );
        assert!(extra.is_ok(), "unknown map fields are ignored: {extra:?}");
    }
}
