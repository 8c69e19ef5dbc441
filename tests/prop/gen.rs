//! Strategies shared by the properties: hostile strings and numbers, JSON values of any shape,
//! valid pods built field by field, corruptions of them, and edits of a text (insert, delete,
//! replace, swap lines) that turn a valid file into a nearly valid one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ochopod::model::{Pod, PodState, MAX_SEQ};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Map, Value};

/// Characters an attacker would pick (controls, quotes, shell and path metacharacters, unicode
/// that looks like something else), mixed with plain ones so that near-valid strings come up.
pub fn nasty_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => any::<char>(),
        4 => prop::sample::select(vec![
            '\0', '\n', '\r', '\t', '\u{7}', '\u{1b}', '\u{7f}', '\u{85}', '\u{a0}', '\u{2028}',
            '\u{feff}', '\u{202e}', '"', '\'', '`', '$', '(', ')', ';', '|', '&', '<', '>', '/',
            '\\', ' ', '.', '*', '?', '#', '~', '{', '}', '[', ']', ':', '%', '@', '=', ',', '-',
            '_', '!', '+', 'é', 'ß', '中', '😀', 'İ', '\u{212a}',
        ]),
        4 => prop::char::range('a', 'z'),
        2 => prop::char::range('0', '9'),
        1 => prop::char::range('A', 'Z'),
    ]
}

/// Strings worth trying in any field: known attacks, near-misses of valid values, random runs.
pub fn nasty_string() -> BoxedStrategy<String> {
    let known = prop::sample::select(vec![
        "",
        ".",
        "..",
        "../../escaped",
        "/etc/passwd",
        "a/b",
        "127.0.0.1",
        "::1",
        "0:0:0:0:0:0:0:1",
        "::ffff:10.0.0.1",
        "127.0.0.99/?;touch${IFS}/tmp/x;#",
        "1.2.3.4; rm -rf /",
        "10.0.0.1\nserver.9=evil",
        "10.0.0.1 ",
        " 10.0.0.1",
        "fe80::1%eth0",
        "[::1]",
        "127.000.000.001",
        "0127.0.0.1",
        "1.2.3",
        "256.1.1.1",
        "localhost",
        "a b",
        "-lead.example",
        "lead-.example",
        "zk-1.zk.default.svc",
        "zk-1.zk.default.svc.",
        "a..b",
        "$(id)",
        "`id`",
        "'; id; '",
        "\"quoted\"",
        "{{pod.ip}}",
        "{{> x}}",
        "\u{0}",
        "x\u{0}y",
        "2181",
        "02181",
        "+2181",
        "65536",
        "0",
        "running",
        "RUNNING",
        "zookeeper",
        "default",
        "default.zookeeper",
        "/default.zookeeper",
        "Zoo",
    ])
    .prop_map(str::to_owned);
    prop_oneof![
        3 => known,
        3 => prop::collection::vec(nasty_char(), 0..24).prop_map(String::from_iter),
        2 => chars(LOWER_DIGIT_DASH, 1, 70),
        1 => chars(WORD_DOT, 60, 300),
        1 => (valid_ip(), nasty_string_tail()).prop_map(|(ip, tail)| format!("{ip}{tail}")),
        1 => (nasty_string_tail(), valid_ip()).prop_map(|(head, ip)| format!("{head}{ip}")),
    ]
    .boxed()
}

fn nasty_string_tail() -> impl Strategy<Value = String> {
    prop::collection::vec(nasty_char(), 1..6).prop_map(String::from_iter)
}

/// Numbers at and around every limit a field has, and any number at all.
pub fn nasty_number() -> BoxedStrategy<Value> {
    prop_oneof![
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        // `json!` turns NaN and the infinities into null, which is a shape worth trying too.
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(vec![
            0u64,
            1,
            65_535,
            65_536,
            u64::from(u16::MAX),
            u64::from(MAX_SEQ),
            u64::from(MAX_SEQ) + 1,
            u64::from(u32::MAX),
            u64::from(u32::MAX) + 1,
            u64::MAX - 1,
            u64::MAX,
        ])
        .prop_map(Value::from),
        Just(json!(-1)),
        Just(json!(1.5)),
    ]
    .boxed()
}

/// Any JSON value, nested a few levels, with hostile leaves.
pub fn any_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        nasty_number(),
        nasty_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(nasty_string(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

const LOWER_DIGIT_DASH: &str = "abcdefghijklmnopqrstuvwxyz0123456789-";
const ALNUM_DASH: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-";
const ALNUM_UNDERSCORE: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_";
const DNS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
const WORD_DOT: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";
const TASK: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@-";
const VERSION: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.+-";

/// A string of `min` to `max` characters of the ASCII `set`, short ones more often (regex
/// strategies would do, at several times the cost per value).
fn chars(set: &'static str, min: usize, max: usize) -> BoxedStrategy<String> {
    let pick = move || prop::sample::select(set.as_bytes()).prop_map(char::from);
    let short = min..=max.min(min + 12);
    prop_oneof![
        3 => prop::collection::vec(pick(), short),
        1 => prop::collection::vec(pick(), min..=max),
    ]
    .prop_map(String::from_iter)
    .boxed()
}

/// An IP address in any of its spellings: canonical, or IPv6 written out in full.
pub fn valid_ip() -> BoxedStrategy<String> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| Ipv4Addr::from(b).to_string()),
        any::<[u8; 16]>().prop_map(|b| Ipv6Addr::from(b).to_string()),
        any::<[u16; 8]>().prop_map(|s| { s.iter().map(|x| format!("{x:x}")).collect::<Vec<_>>().join(":") }),
        any::<[u8; 4]>().prop_map(|b| Ipv4Addr::from(b).to_ipv6_mapped().to_string()),
        Just("127.0.0.1".to_owned()),
        Just("::1".to_owned()),
    ]
    .boxed()
}

/// A DNS name as `host` accepts it: labels of `[A-Za-z0-9_-]`, not starting or ending with `-`.
fn dns_name() -> BoxedStrategy<String> {
    let edge = || prop::sample::select(ALNUM_UNDERSCORE.as_bytes()).prop_map(char::from);
    let label = (edge(), chars(DNS, 0, 20), edge(), any::<bool>()).prop_map(|(a, mid, z, one)| {
        if one {
            a.to_string()
        } else {
            format!("{a}{mid}{z}")
        }
    });
    (prop::collection::vec(label, 1..5), any::<bool>())
        .prop_map(|(labels, dot)| {
            let name = labels.join(".");
            if dot {
                format!("{name}.")
            } else {
                name
            }
        })
        .boxed()
}

/// Container ports: the ones the shipped pod.yaml files use (so renders can succeed) and others.
fn container_port() -> impl Strategy<Value = u16> {
    prop_oneof![
        3 => prop::sample::select(vec![2181u16, 2888, 3888, 9092, 9000, 8080]),
        1 => 1..=u16::MAX,
    ]
}

/// A word field as valid pods have them: not starting with `-` (an option to a command), not
/// only dots (a path component).
fn word(mut text: String) -> String {
    if text.starts_with('-') {
        text.replace_range(..1, "x");
    }
    if !text.is_empty() && text.bytes().all(|b| b == b'.') {
        text.replace_range(..1, "x");
    }
    text
}

/// A pod that [`ochopod::model::check_pod`] must accept: every field drawn from its whole
/// valid range, addresses in any spelling.
pub fn valid_pod() -> BoxedStrategy<Pod> {
    let ids = (
        chars(ALNUM_DASH, 1, 64),
        0..=MAX_SEQ,
        chars(LOWER_DIGIT_DASH, 1, 63),
        chars(LOWER_DIGIT_DASH, 1, 63),
        valid_ip(),
        prop_oneof![valid_ip(), dns_name()],
        valid_ip(),
    );
    let rest = (
        chars(WORD_DOT, 0, 253),
        chars(TASK, 0, 256),
        chars(ALNUM_DASH, 0, 32),
        chars(VERSION, 0, 64),
        prop::collection::btree_map(container_port(), 1..=u16::MAX, 0..8),
        1..=u16::MAX,
        prop::sample::select(vec![
            PodState::Running,
            PodState::Held,
            PodState::Failed,
            PodState::Leaving,
        ]),
        any::<u64>(),
    );
    (ids, rest)
        .prop_map(
            |(
                (uuid, seq, cluster, namespace, ip, host, public),
                (node, task, binding, version, ports, control_port, state, started),
            )| Pod {
                uuid: word(uuid),
                seq,
                cluster,
                namespace,
                ip,
                host,
                public,
                node: word(node),
                task: word(task),
                ports: ports.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
                control_port,
                binding: word(binding),
                version: word(version),
                state,
                started,
            },
        )
        .boxed()
}

/// The fields of a pod's JSON, for corruptions to pick from.
const POD_FIELDS: &[&str] = &[
    "uuid",
    "seq",
    "cluster",
    "namespace",
    "ip",
    "host",
    "public",
    "node",
    "task",
    "ports",
    "control_port",
    "binding",
    "version",
    "state",
    "started",
];

/// One change to a JSON object: a field set to a hostile value, removed, or added.
#[derive(Debug, Clone)]
pub enum Corruption {
    Set(Index, Value),
    Remove(Index),
    /// A field no ochopod knows (a newer version's, or garbage).
    Extra(String, Value),
    /// A hostile key in the `ports` map.
    Port(String, Value),
}

fn corruption() -> BoxedStrategy<Corruption> {
    prop_oneof![
        3 => (any::<Index>(), nasty_string().prop_map(Value::String))
            .prop_map(|(i, v)| Corruption::Set(i, v)),
        2 => (any::<Index>(), nasty_number()).prop_map(|(i, v)| Corruption::Set(i, v)),
        1 => (any::<Index>(), any_json()).prop_map(|(i, v)| Corruption::Set(i, v)),
        1 => any::<Index>().prop_map(Corruption::Remove),
        1 => (nasty_string(), any_json()).prop_map(|(k, v)| Corruption::Extra(k, v)),
        1 => (nasty_string(), prop_oneof![nasty_number(), any_json()])
            .prop_map(|(k, v)| Corruption::Port(k, v)),
    ]
    .boxed()
}

/// 0 to 3 corruptions, none about half the time, so that accepted values are common too.
pub fn corruptions() -> BoxedStrategy<Vec<Corruption>> {
    prop_oneof![
        1 => Just(Vec::new()),
        1 => prop::collection::vec(corruption(), 1..4),
    ]
    .boxed()
}

/// Applies `corruptions` to a pod's JSON object (one of [`POD_FIELDS`] for `Set`/`Remove`).
pub fn corrupt(pod: &mut Value, corruptions: &[Corruption]) {
    let Some(obj) = pod.as_object_mut() else {
        return;
    };
    for c in corruptions {
        match c {
            Corruption::Set(i, v) => {
                obj.insert(i.get(POD_FIELDS).to_string(), v.clone());
            }
            Corruption::Remove(i) => {
                obj.remove(*i.get(POD_FIELDS));
            }
            Corruption::Extra(k, v) => {
                obj.insert(k.clone(), v.clone());
            }
            Corruption::Port(k, v) => {
                if let Some(ports) = obj.get_mut("ports").and_then(Value::as_object_mut) {
                    ports.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

/// A pod's JSON: valid, then corrupted (or not).
pub fn pod_json() -> BoxedStrategy<Value> {
    (valid_pod(), corruptions())
        .prop_map(|(pod, cs)| {
            let mut v = serde_json::to_value(&pod).unwrap_or(Value::Null);
            corrupt(&mut v, &cs);
            v
        })
        .boxed()
}

/// Dependency names as a leader writes them, and hostile ones.
fn dependency_name() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "zookeeper",
            "default.zookeeper",
            "/default.zookeeper",
            "kafka",
        ])
        .prop_map(str::to_owned),
        1 => nasty_string(),
    ]
    .boxed()
}

/// A cluster map (SPEC §7) as JSON: pods filed under their uuid (mostly), the receiver's key
/// among them (mostly), added/removed/removed_pods/dependencies drawn from the same pods, then
/// map-level corruptions.
pub fn map_json() -> BoxedStrategy<Value> {
    // Mostly sound pods, so that whole maps are accepted (and rendered) often enough.
    let member = || {
        prop_oneof![
            3 => valid_pod().prop_map(|p| serde_json::to_value(p).unwrap_or(Value::Null)),
            1 => pod_json(),
        ]
    };
    let pods = prop::collection::vec(member(), 0..5);
    let removed_pods = prop::collection::vec(member(), 0..3);
    let deps = prop::collection::vec((dependency_name(), prop::collection::vec(member(), 0..4)), 0..3);
    let top = (
        prop_oneof![4 => (0u64..=3).prop_map(Value::from), 1 => nasty_number()],
        prop_oneof![4 => (0u64..=1000).prop_map(Value::from), 1 => nasty_number()],
        prop_oneof![4 => (0u64..=1000).prop_map(Value::from), 1 => nasty_number()],
        any::<Index>(),
        prop_oneof![8 => Just(None), 1 => nasty_string().prop_map(Some)],
    );
    let lists = (
        prop::collection::vec(any::<Index>(), 0..4),
        prop::collection::vec(any::<Index>(), 0..3),
        prop_oneof![8 => Just(None), 1 => nasty_string().prop_map(Some)],
        prop::collection::vec((nasty_string(), any_json()), 0..2),
        prop_oneof![12 => Just(None), 1 => (any::<Index>(), nasty_string()).prop_map(Some)],
    );
    (pods, removed_pods, deps, top, lists)
        .prop_map(
            |(pods, removed_pods, deps, (version, epoch, generation, me, bad_key), lists)| {
                let (added, removed, bad_uuid, extra, misfiled) = lists;
                let uuid_of = |p: &Value| p.get("uuid").and_then(Value::as_str).unwrap_or("").to_owned();
                let filed = |pods: &[Value]| -> Map<String, Value> {
                    pods.iter().map(|p| (uuid_of(p), p.clone())).collect()
                };
                let uuids: Vec<String> = pods.iter().map(uuid_of).collect();
                let pick = |i: &Index| (!uuids.is_empty()).then(|| uuids[i.index(uuids.len())].clone());
                let key = bad_key
                    .or_else(|| pick(&me))
                    .unwrap_or_else(|| "nobody".to_owned());
                let mut added: Vec<Value> = added.iter().filter_map(pick).map(Value::String).collect();
                let removed_uuids: Vec<Value> = removed_pods
                    .iter()
                    .map(uuid_of)
                    .chain(removed.iter().filter_map(pick))
                    .map(Value::String)
                    .collect();
                if let Some(u) = bad_uuid {
                    added.push(Value::String(u));
                }
                let mut pods_obj = filed(&pods);
                if let Some((i, wrong)) = misfiled {
                    if !uuids.is_empty() {
                        if let Some(p) = pods_obj.remove(&uuids[i.index(uuids.len())]) {
                            pods_obj.insert(wrong, p);
                        }
                    }
                }
                let dependencies: Map<String, Value> = deps
                    .iter()
                    .map(|(name, members)| (name.clone(), Value::Object(filed(members))))
                    .collect();
                let mut map = json!({
                    "version": version,
                    "epoch": epoch,
                    "generation": generation,
                    "key": key,
                    "pods": pods_obj,
                    "added": added,
                    "removed": removed_uuids,
                    "removed_pods": filed(&removed_pods),
                    "dependencies": dependencies,
                });
                if let Some(obj) = map.as_object_mut() {
                    for (k, v) in extra {
                        obj.insert(k, v);
                    }
                }
                map
            },
        )
        .boxed()
}

/// One edit of a text. Positions are [`Index`]es, resolved against the text as it is when the
/// edit is applied.
#[derive(Debug, Clone)]
pub enum Edit {
    Insert(Index, String),
    Delete(Index, usize),
    Replace(Index, char),
    SwapLines(Index, Index),
    DuplicateLine(Index),
    DeleteLine(Index),
    /// A new line `<indent><key>: <value>` after a line.
    InsertLine(Index, usize, String, String),
}

/// Applies `edits` in order; character positions, so the text stays valid UTF-8.
pub fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        match e {
            Edit::Insert(at, s) => {
                let at = at.index(chars.len() + 1);
                chars.splice(at..at, s.chars());
            }
            Edit::Delete(at, n) if !chars.is_empty() => {
                let at = at.index(chars.len());
                let end = (at + n).min(chars.len());
                chars.drain(at..end);
            }
            Edit::Replace(at, c) if !chars.is_empty() => {
                let at = at.index(chars.len());
                chars[at] = *c;
            }
            Edit::SwapLines(a, b) => {
                let mut lines = lines_of(&chars);
                let (a, b) = (a.index(lines.len()), b.index(lines.len()));
                lines.swap(a, b);
                chars = lines.join("\n").chars().collect();
            }
            Edit::DuplicateLine(at) => {
                let mut lines = lines_of(&chars);
                let at = at.index(lines.len());
                lines.insert(at, lines[at].clone());
                chars = lines.join("\n").chars().collect();
            }
            Edit::DeleteLine(at) => {
                let mut lines = lines_of(&chars);
                lines.remove(at.index(lines.len()));
                chars = lines.join("\n").chars().collect();
            }
            Edit::InsertLine(at, indent, key, value) => {
                let mut lines = lines_of(&chars);
                let at = at.index(lines.len() + 1);
                lines.insert(at, format!("{}{key}: {value}", " ".repeat(*indent)));
                chars = lines.join("\n").chars().collect();
            }
            Edit::Delete(..) | Edit::Replace(..) => {}
        }
    }
    chars.into_iter().collect()
}

/// The lines of `chars` (at least one, possibly empty).
fn lines_of(chars: &[char]) -> Vec<String> {
    let text: String = chars.iter().collect();
    text.split('\n').map(str::to_owned).collect()
}

/// Pieces of YAML and JSON syntax and values that stress a parser or a validator.
fn fragment() -> BoxedStrategy<String> {
    let syntax = prop::sample::select(vec![
        "\n",
        ": ",
        "- ",
        "{",
        "}",
        "[",
        "]",
        ",",
        "&a ",
        "*a",
        "!!binary ",
        "!!str ",
        "!!int ",
        "!custom ",
        "<<: *a",
        "? ",
        "|",
        ">-",
        "'",
        "\"",
        "#",
        "\t",
        "\\",
        "\\u0000",
        "\r\n",
        "9999999999999999h",
        "18446744073709551616",
        "18446744073709551615",
        "-9223372036854775809",
        "-1",
        "1e999",
        "-0",
        "0x10",
        "0o777",
        "0644",
        "08",
        ".inf",
        ".nan",
        "~",
        "null",
        "yes",
        "%YAML 1.2\n---\n",
        "\n---\n",
        "\n...\n",
        "\u{feff}",
        "\u{0}",
        "\u{85}",
        "\u{2028}",
        "😀",
        "{{",
        "}}",
        "{{#each",
        "{{/each}}",
        "{{> hooks.pre_start}}",
        "{{#*inline \"a\"}}{{> a}}{{/inline}}{{> a}}",
        "\"\\x",
    ])
    .prop_map(str::to_owned);
    prop_oneof![
        4 => syntax,
        2 => nasty_string(),
        1 => any_json().prop_map(|v| v.to_string()),
        1 => deep_nesting(),
    ]
    .boxed()
}

/// Brackets or mappings nested very deep: a recursive parser's stack is the target.
pub fn deep_nesting() -> BoxedStrategy<String> {
    (1usize..3000, 0..3u8)
        .prop_map(|(n, kind)| match kind {
            0 => format!("{}{}", "[".repeat(n), "]".repeat(n)),
            1 => format!("{}1{}", "{a: ".repeat(n), "}".repeat(n)),
            _ => "[".repeat(n),
        })
        .boxed()
}

/// YAML scalars for the values of new lines.
fn yaml_value() -> BoxedStrategy<String> {
    prop_oneof![
        2 => prop::sample::select(vec![
            "9999999999999999h", "18446744073709551615ms", "0", "0s", "-1s", "1.5s", "10", "70000",
            "-1", "18446744073709551616", "true", "~", "[]", "{}", "[1, 2]", "{cluster: x}",
            "\"\"", "''", "|\n  a\n  b", "TERM", "KILL", "SIGSTOP", "NOPE", "0777", "99999",
            "always", "if-absent", "added-first", "\"{{pod.ip}}\"", "\"{{#each}}\"",
        ])
        .prop_map(str::to_owned),
        1 => any_json().prop_map(|v| v.to_string()),
        1 => nasty_string(),
        1 => deep_nesting(),
    ]
    .boxed()
}

/// Keys of pod.yaml at every level, and others.
fn yaml_key() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "cluster", "namespace", "ports", "depends_on", "settings", "min_size", "damper",
            "damper_max", "sequential", "order", "parallelism", "full_shutdown", "timeout",
            "evict_after", "apply", "probe", "every", "process", "command", "env", "cwd", "start",
            "restart", "policy", "backoff", "max_backoff", "stop", "signal", "grace", "drain",
            "reload", "on_failure", "strict", "linger", "templates", "source", "dest", "mode",
            "write", "checks", "ready", "sanity", "failures", "hooks", "initialize", "pre_start",
            "can_configure", "configured", "signaled", "tear_down", "finalize", "min", "<<",
        ])
        .prop_map(str::to_owned),
        1 => nasty_string(),
    ]
    .boxed()
}

/// One edit, weighted towards the ones that keep a file nearly valid.
pub fn edit() -> BoxedStrategy<Edit> {
    prop_oneof![
        3 => (any::<Index>(), fragment()).prop_map(|(i, s)| Edit::Insert(i, s)),
        2 => (any::<Index>(), 1usize..20).prop_map(|(i, n)| Edit::Delete(i, n)),
        2 => (any::<Index>(), nasty_char()).prop_map(|(i, c)| Edit::Replace(i, c)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        1 => any::<Index>().prop_map(Edit::DuplicateLine),
        1 => any::<Index>().prop_map(Edit::DeleteLine),
        3 => (any::<Index>(), 0usize..9, yaml_key(), yaml_value())
            .prop_map(|(i, n, k, v)| Edit::InsertLine(i, n, k, v)),
    ]
    .boxed()
}

/// The characters no pod field may carry once accepted: a control character or anything that
/// means something to a shell, a path or a config file. (`.`, `-`, `_`, `:` and `@` are allowed
/// where their field allows them: hosts, IPv6 addresses, task ids.)
pub fn forbidden(c: char) -> bool {
    c.is_control()
        || c.is_whitespace()
        || matches!(
            c,
            '/' | '\\'
                | '"'
                | '\''
                | '`'
                | ';'
                | '$'
                | '|'
                | '&'
                | '<'
                | '>'
                | '('
                | ')'
                | '*'
                | '?'
                | '['
                | ']'
                | '{'
                | '}'
                | '~'
                | '#'
                | '!'
                | '='
                | ','
                | '%'
        )
        || !c.is_ascii()
}

/// Asserts what every accepted pod guarantees to the code past the boundary; `Err` names the
/// broken promise.
pub fn accepted_pod_invariants(where_: &str, p: &Pod) -> Result<(), String> {
    for (field, value) in [("ip", &p.ip), ("public", &p.public)] {
        if value.parse::<IpAddr>().is_err() {
            return Err(format!("{where_}.{field} = {value:?} is not an IP address"));
        }
    }
    let fields = [
        ("uuid", &p.uuid),
        ("cluster", &p.cluster),
        ("namespace", &p.namespace),
        ("ip", &p.ip),
        ("host", &p.host),
        ("public", &p.public),
        ("node", &p.node),
        ("task", &p.task),
        ("binding", &p.binding),
        ("version", &p.version),
    ];
    for (field, value) in fields.iter().copied().chain(p.ports.keys().map(|k| ("ports", k))) {
        if let Some(c) = value.chars().find(|c| forbidden(*c)) {
            return Err(format!("{where_}.{field} = {value:?} holds {c:?}"));
        }
    }
    if p.uuid.is_empty() || p.cluster.is_empty() || p.namespace.is_empty() || p.host.is_empty() {
        return Err(format!("{where_}: an identity field is empty: {p:?}"));
    }
    if p.host.contains("..") {
        return Err(format!("{where_}.host = {:?} has an empty label", p.host));
    }
    if p.control_port == 0 || p.ports.values().any(|&v| v == 0) || p.seq > MAX_SEQ {
        return Err(format!("{where_}: a port is 0 or seq out of range: {p:?}"));
    }
    ochopod::model::check_pod(p).map_err(|e| format!("{where_}: check_pod refuses it: {e}"))
}
