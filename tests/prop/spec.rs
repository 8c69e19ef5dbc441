//! pod.yaml, `ochopod check`'s path: `spec::load_with_env`, then, when the file is accepted,
//! `render::check` (every template compiled and rendered against the sample cluster).
//!
//! Inputs: random bytes; the valid pod.yaml files of the repository (shipped pods, spec and
//! render fixtures) with random edits; pod.yaml files generated key by key with values of every
//! type. Whatever the input: no panic; a refused file has at least one diagnostic, and every
//! diagnostic is `file:line:col: message` with a line and column inside the text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{json, Map, Value};

use crate::gen::{any_json, apply, edit, nasty_string, Edit};

/// Every valid pod.yaml of the repository, with its path (templates are read next to it).
fn bases() -> &'static [(PathBuf, String)] {
    static BASES: OnceLock<Vec<(PathBuf, String)>> = OnceLock::new();
    BASES.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut out = Vec::new();
        for dir in ["pods", "tests/fixtures/spec", "tests/fixtures/render"] {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
                .unwrap_or_else(|e| panic!("{dir}: {e}"))
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
                .collect();
            paths.sort();
            for p in paths {
                let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                out.push((p, text));
            }
        }
        assert!(
            out.len() >= 10,
            "the pod.yaml files to mutate were not found: {out:?}"
        );
        out
    })
}

/// The number of lines of `text` as a YAML parser counts them (`\n`, `\r\n` and a lone `\r`
/// each end one).
fn line_count(text: &str) -> u64 {
    let breaks = text
        .replace("\r\n", "\n")
        .chars()
        .filter(|c| matches!(c, '\n' | '\r'))
        .count();
    u64::try_from(breaks).unwrap_or(u64::MAX).saturating_add(1)
}

/// Whether the spec loader accepted the text (for the coverage test).
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Accepted,
    Refused,
}

/// Loads `text` as the pod.yaml at `path` with `env` for the overrides and checks the
/// properties; renders an accepted one as `ochopod check` does.
fn judge(path: &Path, text: &str, env: &BTreeMap<String, String>) -> Result<Outcome, TestCaseError> {
    let lookup = |k: &str| env.get(k).cloned();
    match ochopod::spec::load_with_env(path, text, &lookup) {
        Ok(spec) => {
            // Errors are fine (a mutated template may not compile); a panic is not.
            let _ = ochopod::render::check(&spec, &BTreeMap::new());
            Ok(Outcome::Accepted)
        }
        Err(diags) => {
            prop_assert!(!diags.0.is_empty(), "refused without a diagnostic");
            let lines = line_count(text);
            for d in &diags.0 {
                let shown = d.to_string();
                prop_assert!(d.line >= 1 && d.col >= 1, "unpositioned: {shown}");
                prop_assert!(
                    d.line <= lines + 1,
                    "line {} past the end of a text of {lines} lines: {shown}",
                    d.line
                );
                prop_assert_eq!(&d.file, path);
                let prefix = format!("{}:{}:{}: ", path.display(), d.line, d.col);
                prop_assert!(shown.starts_with(&prefix), "not file:line:col: message: {shown}");
                prop_assert!(!d.message.trim().is_empty(), "empty message: {shown}");
                // One diagnostic is one line of `check`'s output: the user's input is escaped.
                prop_assert!(
                    !d.message.contains(char::is_control),
                    "control character in: {shown:?}"
                );
            }
            Ok(Outcome::Refused)
        }
    }
}

/// The overrides of SPEC §3, now and then set to anything.
fn overrides() -> impl Strategy<Value = BTreeMap<String, String>> {
    let var = prop::sample::select(vec!["OCHOPOD_CLUSTER", "OCHOPOD_NAMESPACE", "POD_NAMESPACE"]);
    prop_oneof![
        3 => Just(BTreeMap::new()),
        1 => prop::collection::btree_map(var.prop_map(str::to_owned), nasty_string(), 1..3),
    ]
}

/// A valid pod.yaml of the repository and 1 edit (most often) to 8.
fn mutated_base() -> impl Strategy<Value = (usize, String, Vec<Edit>)> {
    let edits = prop_oneof![
        2 => prop::collection::vec(edit(), 1..2),
        1 => prop::collection::vec(edit(), 1..8),
    ];
    (any::<Index>(), edits).prop_map(|(i, edits)| {
        let at = i.index(bases().len());
        let text = apply(&bases()[at].1, &edits);
        (at, text, edits)
    })
}

/// How far a generated pod.yaml strays. `Clean` keeps every value in its valid shape and mostly
/// in its valid range, so that the validator's own checks run and some files pass; `Wild` puts
/// anything anywhere (and mostly stops at the first error serde finds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Clean,
    Wild,
}

/// A key that may be absent: in `Wild` mode, also anything at all or a hostile string.
fn slot(mode: Mode, valid: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Option<Value>> {
    match mode {
        Mode::Clean => prop_oneof![6 => valid.prop_map(Some), 1 => Just(None)].boxed(),
        Mode::Wild => prop_oneof![
            8 => valid.prop_map(Some),
            1 => Just(None),
            1 => any_json().prop_map(Some),
            1 => nasty_string().prop_map(|s| Some(Value::String(s))),
        ]
        .boxed(),
    }
}

/// A key that is required: always there when `Clean`.
fn required(mode: Mode, valid: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Option<Value>> {
    match mode {
        Mode::Clean => valid.prop_map(Some).boxed(),
        Mode::Wild => slot(mode, valid),
    }
}

/// An object of the present keys.
fn object(fields: Vec<(&'static str, Option<Value>)>) -> Value {
    let m: Map<String, Value> = fields
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect();
    Value::Object(m)
}

fn duration(mode: Mode) -> BoxedStrategy<Value> {
    let s = match mode {
        Mode::Clean => "[1-9][0-9]{0,2}(ms|s|m)".boxed(),
        Mode::Wild => prop_oneof![
            4 => "(0|[1-9][0-9]{0,3})(ms|s|m|h)",
            1 => "[0-9]{1,25}(ms|s|m|h)?",
            1 => Just("9999999999999999h".to_owned()),
            1 => Just("0".to_owned()),
        ]
        .boxed(),
    };
    s.prop_map(Value::String).boxed()
}

fn int(mode: Mode) -> BoxedStrategy<Value> {
    match mode {
        Mode::Clean => (1i64..50).prop_map(Value::from).boxed(),
        Mode::Wild => prop_oneof![
            4 => (0i64..100).prop_map(Value::from),
            1 => any::<i64>().prop_map(Value::from),
            1 => any::<u64>().prop_map(Value::from),
        ]
        .boxed(),
    }
}

/// One of `valid`; in `Wild` mode, one of `invalid` too.
fn word(
    mode: Mode,
    valid: &'static [&'static str],
    invalid: &'static [&'static str],
) -> BoxedStrategy<Value> {
    let options: Vec<&'static str> = match mode {
        Mode::Clean => valid.to_vec(),
        Mode::Wild => valid.iter().chain(invalid).copied().collect(),
    };
    prop::sample::select(options)
        .prop_map(|s| Value::String(s.to_owned()))
        .boxed()
}

fn bool_value() -> BoxedStrategy<Value> {
    any::<bool>().prop_map(Value::Bool).boxed()
}

/// One template text: it compiles or not, renders or not.
fn text(mode: Mode) -> BoxedStrategy<String> {
    const GOOD: &[&str] = &[
        "echo",
        "{{pod.ip}}",
        "{{sh pod.ip}}",
        "{{cluster.size}}",
        "{{#each cluster.pods}}{{ip}} {{/each}}",
        "{{port pod 2181}}",
        "{{grep \"zookeeper\" 2181}}",
        "{{env.HOME}}",
        "{{nope}}",
    ];
    const BAD: &[&str] = &[
        "",
        " ",
        "{{",
        "{{#if}}",
        "{{> hooks.pre_start}}",
        "{{#*inline \"a\"}}{{> a}}{{/inline}}{{> a}}",
    ];
    match mode {
        Mode::Clean => prop::sample::select(GOOD).prop_map(str::to_owned).boxed(),
        Mode::Wild => prop_oneof![
            3 => prop::sample::select([GOOD, BAD].concat()).prop_map(str::to_owned),
            1 => nasty_string(),
        ]
        .boxed(),
    }
}

/// A shell command (hooks, checks), an env value, a cwd: one template string.
fn shell(mode: Mode) -> BoxedStrategy<Value> {
    text(mode).prop_map(Value::String).boxed()
}

/// A command: a string (run by `sh -c`) or a list of strings (exec'd).
fn command(mode: Mode) -> BoxedStrategy<Value> {
    let parts = match mode {
        Mode::Clean => 1..4,
        Mode::Wild => 0..4,
    };
    prop_oneof![
        shell(mode),
        prop::collection::vec(text(mode), parts).prop_map(|v| json!(v)),
    ]
    .boxed()
}

fn name(mode: Mode) -> BoxedStrategy<Value> {
    let s = match mode {
        Mode::Clean => "[a-z][a-z0-9-]{0,11}".boxed(),
        Mode::Wild => prop_oneof![
            4 => "[a-z0-9-]{1,12}",
            1 => "/[a-z*-]{1,6}\\.[a-z*-]{1,6}",
            1 => "[a-z]{1,4}\\*",
        ]
        .boxed(),
    };
    s.prop_map(Value::String).boxed()
}

fn settings(m: Mode) -> BoxedStrategy<Value> {
    (
        (
            slot(m, int(m)),
            slot(m, duration(m)),
            slot(m, duration(m)),
            slot(m, bool_value()),
        ),
        (
            slot(m, word(m, &["seq", "added-first"], &["random"])),
            slot(m, int(m)),
            slot(m, duration(m)),
            slot(m, int(m)),
        ),
        (
            slot(
                m,
                required(m, command(m)).prop_map(|c| object(vec![("command", c)])),
            ),
            slot(
                m,
                (required(m, command(m)), slot(m, duration(m)))
                    .prop_map(|(c, e)| object(vec![("command", c), ("every", e)])),
            ),
        ),
    )
        .prop_map(
            |((min, damper, damper_max, seq), (order, par, timeout, evict), (apply, probe))| {
                object(vec![
                    ("min_size", min),
                    ("damper", damper),
                    ("damper_max", damper_max),
                    ("sequential", seq),
                    ("order", order),
                    ("parallelism", par),
                    ("timeout", timeout),
                    ("evict_after", evict),
                    ("apply", apply),
                    ("probe", probe),
                ])
            },
        )
        .boxed()
}

fn process(m: Mode) -> BoxedStrategy<Value> {
    let signal = || word(m, &["TERM", "hup", "SIGKILL", "USR1"], &["NOPE", "SIGSTOP", ""]);
    let restart = (
        slot(m, word(m, &["always", "on-failure", "never"], &["sometimes"])),
        slot(m, duration(m)),
        slot(m, duration(m)),
    )
        .prop_map(|(p, b, mb)| object(vec![("policy", p), ("backoff", b), ("max_backoff", mb)]));
    let stop = (slot(m, signal()), slot(m, duration(m)), slot(m, duration(m)))
        .prop_map(|(s, g, d)| object(vec![("signal", s), ("grace", g), ("drain", d)]));
    let on_failure = || slot(m, word(m, &["restart", "keep"], &["explode"]));
    let reload = match m {
        // Exactly one of signal and command.
        Mode::Clean => prop_oneof![
            (signal(), on_failure()).prop_map(|(s, f)| object(vec![("signal", Some(s)), ("on_failure", f)])),
            (command(m), on_failure())
                .prop_map(|(c, f)| object(vec![("command", Some(c)), ("on_failure", f)])),
        ]
        .boxed(),
        Mode::Wild => (slot(m, signal()), slot(m, command(m)), on_failure())
            .prop_map(|(s, c, f)| object(vec![("signal", s), ("command", c), ("on_failure", f)]))
            .boxed(),
    };
    let env = prop::collection::btree_map("[A-Z_]{1,8}", shell(m), 0..3).prop_map(|e| json!(e));
    (
        required(m, command(m)),
        slot(m, env),
        slot(m, shell(m)),
        slot(m, restart),
        slot(m, stop),
        slot(m, reload),
        slot(m, bool_value()),
    )
        .prop_map(|(command, env, cwd, restart, stop, reload, strict)| {
            object(vec![
                ("command", command),
                ("env", env),
                ("cwd", cwd),
                ("restart", restart),
                ("stop", stop),
                ("reload", reload),
                ("strict", strict),
            ])
        })
        .boxed()
}

fn template(m: Mode) -> BoxedStrategy<Value> {
    let source = word(
        m,
        &[
            "templates/simple.hbs",
            "templates/zoo.cfg.hbs",
            "../render/templates/zoo.cfg.hbs",
        ],
        &["templates/missing.hbs", "templates", ""],
    );
    let dest = word(
        m,
        &[
            "{{env.OCHOPOD_HOME}}/a.cfg",
            "conf/{{pod.seq}}.cfg",
            "/tmp/x",
            "{{pod.host}}.cfg",
        ],
        &["../x", "{{", ""],
    );
    let mode = prop_oneof![
        4 => word(m, &["0644", "0755", "644", "0o600"], &["0888", "17777", "rw"]),
        1 => int(m),
    ];
    (
        required(m, source),
        required(m, dest),
        slot(m, mode),
        slot(m, word(m, &["always", "if-absent"], &["never"])),
    )
        .prop_map(|(s, d, mode, w)| object(vec![("source", s), ("dest", d), ("mode", mode), ("write", w)]))
        .boxed()
}

fn checks(m: Mode) -> BoxedStrategy<Value> {
    let check = (
        required(m, shell(m)),
        slot(m, duration(m)),
        slot(m, duration(m)),
        slot(m, int(m)),
    );
    let ready = check
        .clone()
        .prop_map(|(c, e, t, _)| object(vec![("command", c), ("every", e), ("timeout", t)]));
    let sanity = check.prop_map(|(c, e, _, f)| object(vec![("command", c), ("every", e), ("failures", f)]));
    (slot(m, ready), slot(m, sanity))
        .prop_map(|(r, s)| object(vec![("ready", r), ("sanity", s)]))
        .boxed()
}

fn hooks(m: Mode) -> BoxedStrategy<Value> {
    // A hook is a shell string, never a list.
    let hook = || {
        slot(
            m,
            command(m).prop_map(|c| if c.is_array() { Value::from("echo") } else { c }),
        )
    };
    (hook(), hook(), hook(), hook(), hook(), hook(), hook())
        .prop_map(|(a, b, c, d, e, f, g)| {
            object(vec![
                ("initialize", a),
                ("pre_start", b),
                ("can_configure", c),
                ("configured", d),
                ("signaled", e),
                ("tear_down", f),
                ("finalize", g),
            ])
        })
        .boxed()
}

/// A pod.yaml built key by key, written as block YAML; clean or wild, half the time each.
fn generated_pod_yaml() -> impl Strategy<Value = String> {
    prop_oneof![pod_yaml(Mode::Clean), pod_yaml(Mode::Wild)]
}

fn pod_yaml(m: Mode) -> BoxedStrategy<String> {
    let port = match m {
        Mode::Clean => (1i64..65536).prop_map(Value::from).boxed(),
        Mode::Wild => prop_oneof![4 => (1i64..65536).prop_map(Value::from), 1 => int(m)].boxed(),
    };
    let dep = prop_oneof![
        name(m),
        (required(m, name(m)), slot(m, int(m)))
            .prop_map(|(c, min)| object(vec![("cluster", c), ("min", min)])),
    ];
    let extra = match m {
        Mode::Clean => Just(Vec::new()).boxed(),
        Mode::Wild => prop::collection::vec((nasty_string(), any_json()), 0..2).boxed(),
    };
    (
        (required(m, name(m)), slot(m, name(m))),
        slot(m, prop::collection::vec(port, 0..5).prop_map(Value::Array)),
        slot(m, prop::collection::vec(dep, 0..3).prop_map(Value::Array)),
        slot(m, settings(m)),
        required(m, process(m)),
        slot(m, prop::collection::vec(template(m), 0..3).prop_map(Value::Array)),
        (slot(m, checks(m)), slot(m, hooks(m))),
        extra,
    )
        .prop_map(
            |((cluster, namespace), ports, deps, settings, process, templates, (checks, hooks), extra)| {
                let mut pod = object(vec![
                    ("cluster", cluster),
                    ("namespace", namespace),
                    ("ports", ports),
                    ("depends_on", deps),
                    ("settings", settings),
                    ("process", process),
                    ("templates", templates),
                    ("checks", checks),
                    ("hooks", hooks),
                ]);
                if let Some(obj) = pod.as_object_mut() {
                    obj.extend(extra);
                }
                serde_saphyr::to_string(&pod).unwrap_or_else(|_| pod.to_string())
            },
        )
        .boxed()
}

proptest! {
    #![proptest_config(crate::config())]

    #[test]
    fn pod_yaml_of_random_bytes_never_panics_and_is_positioned(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let text = String::from_utf8_lossy(&bytes);
        judge(Path::new("pods/random.yaml"), &text, &BTreeMap::new())?;
    }

    #[test]
    fn mutated_pod_yaml_never_panics_and_is_positioned(
        (at, text, _edits) in mutated_base(),
        env in overrides(),
    ) {
        judge(&bases()[at].0, &text, &env)?;
    }

    #[test]
    fn generated_pod_yaml_never_panics_and_is_positioned(
        text in generated_pod_yaml(),
        edits in prop::collection::vec(edit(), 0..3),
        env in overrides(),
    ) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spec/generated.yaml");
        judge(&path, &apply(&text, &edits), &env)?;
    }
}

/// Guards against a vacuous property: the generators must produce files the loader accepts as
/// well as files it refuses (a generator that only makes garbage would test only the parser).
#[test]
fn spec_generators_reach_both_outcomes() {
    let mut runner = TestRunner::deterministic();
    let mut count = |strategy: BoxedStrategy<(PathBuf, String)>| {
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..200 {
            let (path, text) = strategy.new_tree(&mut runner).expect("a value").current();
            match judge(&path, &text, &BTreeMap::new()).expect("the property holds") {
                Outcome::Accepted => accepted += 1,
                Outcome::Refused => refused += 1,
            }
        }
        (accepted, refused)
    };
    let mutated = mutated_base()
        .prop_map(|(at, text, _)| (bases()[at].0.clone(), text))
        .boxed();
    let (accepted, refused) = count(mutated);
    eprintln!("mutated pod.yaml: {accepted} accepted, {refused} refused");
    assert!(
        accepted >= 10 && refused >= 10,
        "mutated: {accepted} accepted, {refused} refused"
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spec/generated.yaml");
    let generated = generated_pod_yaml().prop_map(move |t| (path.clone(), t)).boxed();
    let (accepted, refused) = count(generated);
    eprintln!("generated pod.yaml: {accepted} accepted, {refused} refused");
    assert!(
        accepted >= 5 && refused >= 10,
        "generated: {accepted} accepted, {refused} refused"
    );
}
