//! Unit tests of pod.yaml loading: the SPEC §3 example, defaults, overrides, and one broken
//! fixture per kind of mistake under tests/fixtures/spec/, each pinned to its exact diagnostics.

#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn fixture(name: &str) -> PathBuf {
    // Relative to the crate root (cargo runs unit tests there), so messages are stable.
    Path::new("tests/fixtures/spec").join(name)
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn load_fixture(name: &str) -> Result<PodSpec, Diagnostics> {
    let path = fixture(name);
    let text = std::fs::read_to_string(&path).unwrap();
    load_with_env(&path, &text, &no_env)
}

/// Loads a broken fixture and returns its diagnostics as printed (`file:line:col: message`).
fn problems(name: &str) -> Vec<String> {
    match load_fixture(name) {
        Ok(_) => panic!("{name} should not load"),
        Err(d) => d.0.iter().map(|d| d.to_string()).collect(),
    }
}

fn load_text(text: &str, env: &[(&str, &str)]) -> Result<PodSpec, Diagnostics> {
    let env: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    load_with_env(Path::new("pods/web.yaml"), text, &|k| env.get(k).cloned())
}

const MINIMAL: &str = "cluster: web\nprocess:\n  command: \"sleep 100\"\n";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn spec_example_parses_to_its_values() {
    let spec = load_fixture("full.yaml").unwrap();
    assert_eq!(spec.cluster, "zookeeper");
    assert_eq!(spec.namespace, "default");
    assert_eq!(spec.key(), "default.zookeeper");
    assert_eq!(spec.dir, Path::new("tests/fixtures/spec"));
    assert_eq!(spec.ports, vec![2181, 2888, 3888]);
    assert!(spec.depends_on.is_empty());

    let s = &spec.settings;
    assert_eq!(s.min_size, 3);
    assert_eq!((s.damper, s.damper_max), (secs(5), secs(60)));
    assert!(!s.sequential);
    assert_eq!(s.order, Order::Seq);
    assert_eq!(s.parallelism, 16);
    assert!(!s.full_shutdown);
    assert_eq!(s.timeout, secs(60));
    assert_eq!(s.evict_after, 3);
    assert_eq!(s.seq_hold, secs(300));
    assert_eq!(s.apply, Some(CommandLine::Shell("...".into())));
    let probe = s.probe.as_ref().unwrap();
    assert_eq!(probe.command, CommandLine::Shell("...".into()));
    assert_eq!(probe.every, secs(60));

    let p = &spec.process;
    assert_eq!(
        p.command,
        CommandLine::Exec(vec![
            "/usr/share/zookeeper/bin/zkServer.sh".into(),
            "start-foreground".into(),
            "conf/zoo.cfg".into()
        ])
    );
    assert_eq!(p.env.get("JVMFLAGS").map(String::as_str), Some("-Xmx256m"));
    assert_eq!(p.cwd.as_deref(), Some("/var/lib/zookeeper"));
    assert!(p.start && !p.strict && !p.linger);
    assert_eq!(p.restart.policy, RestartPolicy::OnFailure);
    assert_eq!((p.restart.backoff, p.restart.max_backoff), (secs(1), secs(30)));
    assert_eq!(p.stop.signal, Signal::SIGTERM);
    assert_eq!((p.stop.grace, p.stop.drain), (secs(10), Duration::ZERO));
    let reload = p.reload.as_ref().unwrap();
    assert!(matches!(reload.action, ReloadAction::Signal(Signal::SIGHUP)));
    assert_eq!(reload.on_failure, ReloadFailure::Restart);

    assert_eq!(spec.templates.len(), 1);
    let t = &spec.templates[0];
    assert_eq!(t.source, Path::new("tests/fixtures/spec/templates/zoo.cfg.hbs"));
    assert!(t.text.starts_with("tickTime=2000\n"));
    assert_eq!(t.dest, "{{env.OCHOPOD_HOME}}/conf/zoo.cfg");
    assert_eq!(t.mode, 0o644);
    assert_eq!(t.write, WriteMode::Always);

    let ready = spec.checks.ready.as_ref().unwrap();
    assert_eq!(ready.command, "echo srvr | nc -w1 {{pod.ip}} 2181 | grep -q Mode");
    assert_eq!((ready.every, ready.timeout), (secs(1), secs(60)));
    let sanity = spec.checks.sanity.as_ref().unwrap();
    assert_eq!(
        sanity.command,
        "echo ruok | nc -w1 {{pod.ip}} 2181 | grep -q imok"
    );
    assert_eq!((sanity.every, sanity.failures), (secs(10), 3));

    let h = &spec.hooks;
    for hook in [
        &h.initialize,
        &h.pre_start,
        &h.can_configure,
        &h.configured,
        &h.signaled,
        &h.tear_down,
        &h.finalize,
    ] {
        assert_eq!(hook.as_deref(), Some("..."));
    }
}

#[test]
fn max_lost_is_a_count_from_zero() {
    let with = |v: &str| load_text(&format!("{MINIMAL}settings: {{ max_lost: {v} }}\n"), &[]);
    assert_eq!(with("0").unwrap().settings.max_lost, Some(0));
    assert_eq!(with("2").unwrap().settings.max_lost, Some(2));
    let e = with("-1").unwrap_err().to_string();
    assert!(
        e.contains("settings.max_lost: expected a number >= 0, found -1"),
        "{e}"
    );
}

#[test]
fn a_minimal_file_gets_the_documented_defaults() {
    let spec = load_text(MINIMAL, &[]).unwrap();
    assert_eq!(spec.namespace, "default");
    assert_eq!(spec.dir, Path::new("pods"));
    assert!(spec.ports.is_empty() && spec.depends_on.is_empty() && spec.templates.is_empty());
    let s = &spec.settings;
    assert_eq!(s.min_size, 1);
    assert_eq!((s.damper, s.damper_max), (secs(5), secs(60)));
    assert!(!s.sequential && !s.full_shutdown);
    assert_eq!(s.order, Order::Seq);
    assert_eq!(s.parallelism, 16);
    assert_eq!(s.timeout, secs(60));
    assert_eq!(s.evict_after, 3);
    assert_eq!(s.max_lost, None, "no safety net unless asked");
    assert_eq!(s.seq_hold, secs(300));
    assert!(s.apply.is_none() && s.probe.is_none());
    let p = &spec.process;
    assert!(p.env.is_empty() && p.cwd.is_none() && p.reload.is_none());
    assert!(p.start && !p.strict && !p.linger);
    assert_eq!(p.restart.policy, RestartPolicy::OnFailure);
    assert_eq!((p.restart.backoff, p.restart.max_backoff), (secs(1), secs(30)));
    assert_eq!(p.stop.signal, Signal::SIGTERM);
    assert_eq!((p.stop.grace, p.stop.drain), (secs(10), Duration::ZERO));
    assert!(spec.checks.ready.is_none() && spec.checks.sanity.is_none());
    assert!(spec.hooks.initialize.is_none() && spec.hooks.finalize.is_none());
}

#[test]
fn section_defaults_fill_what_a_section_leaves_out() {
    let text = "cluster: web\nprocess:\n  command: x\n  reload: { command: \"kill -HUP 1\", on_failure: keep }\n\
                settings: { probe: { command: date } }\ntemplates:\n  - { source: templates/simple.hbs, dest: /tmp/a, mode: 600, write: if-absent }\n\
                checks:\n  ready: { command: ready }\n  sanity: { command: sane }\n";
    // Named as if it lived next to the fixtures, so its template source resolves there.
    let spec = load_with_env(&fixture("inline.yaml"), text, &no_env).unwrap();
    assert_eq!(spec.settings.probe.unwrap().every, secs(60));
    let reload = spec.process.reload.unwrap();
    assert!(matches!(reload.action, ReloadAction::Command(CommandLine::Shell(ref c)) if c == "kill -HUP 1"));
    assert_eq!(reload.on_failure, ReloadFailure::Keep);
    // An unquoted int mode is octal too, as chmod reads it.
    assert_eq!(spec.templates[0].mode, 0o600);
    assert_eq!(spec.templates[0].write, WriteMode::IfAbsent);
    let ready = spec.checks.ready.unwrap();
    assert_eq!((ready.every, ready.timeout), (secs(1), secs(60)));
    let sanity = spec.checks.sanity.unwrap();
    assert_eq!((sanity.every, sanity.failures), (secs(10), 3));
}

#[test]
fn seq_hold_is_a_duration_and_zero_turns_it_off() {
    let with = |v: &str| load_text(&format!("{MINIMAL}settings: {{ seq_hold: {v} }}\n"), &[]);
    assert_eq!(with("10m").unwrap().settings.seq_hold, secs(600));
    assert_eq!(with("0s").unwrap().settings.seq_hold, Duration::ZERO);
    let bad = with("soon").unwrap_err().0[0].to_string();
    assert!(
        bad.ends_with("settings.seq_hold: expected a duration like 500ms, 10s or 2m, found \"soon\""),
        "{bad}"
    );
}

#[test]
fn a_string_command_runs_under_a_shell_and_a_list_is_exec_d() {
    let shell = load_text(
        "cluster: web\nprocess: { command: \"exec nginx -g 'daemon off;'\" }\n",
        &[],
    );
    assert_eq!(
        shell.unwrap().process.command,
        CommandLine::Shell("exec nginx -g 'daemon off;'".into())
    );
    let exec = load_text("cluster: web\nprocess:\n  command:\n    - sleep\n    - 10\n", &[]);
    assert_eq!(
        exec.unwrap().process.command,
        CommandLine::Exec(vec!["sleep".into(), "10".into()])
    );
}

#[test]
fn dependencies_are_names_or_maps_with_a_min() {
    let text =
        "cluster: kafka\ndepends_on:\n  - zookeeper\n  - { cluster: /infra.zk, min: 3 }\n  - \"kafka-*\"\n\
                process: { command: x }\n";
    let spec = load_text(text, &[]).unwrap();
    let deps: Vec<(&str, usize)> = spec
        .depends_on
        .iter()
        .map(|d| (d.cluster.as_str(), d.min))
        .collect();
    assert_eq!(deps, vec![("zookeeper", 0), ("/infra.zk", 3), ("kafka-*", 0)]);
}

#[test]
fn a_wildcard_matching_the_pods_own_cluster_is_a_cycle() {
    let text = "cluster: kafka-a\nnamespace: prod\ndepends_on: [\"kafka-*\", \"/prod.*\", \"/dev.kafka-a\"]\nprocess: { command: x }\n";
    let d = load_text(text, &[]).unwrap_err();
    let found: Vec<(u64, u64)> = d.0.iter().map(|d| (d.line, d.col)).collect();
    assert_eq!(found, vec![(3, 14), (3, 25)]);
    assert!(d.0[0].message.contains("cannot depend on itself"), "{d}");
}

#[test]
fn environment_overrides_cluster_and_namespace() {
    let spec = load_text(MINIMAL, &[("OCHOPOD_CLUSTER", "api"), ("POD_NAMESPACE", "k8s")]).unwrap();
    assert_eq!(spec.key(), "k8s.api");
    let spec = load_text(
        MINIMAL,
        &[("OCHOPOD_NAMESPACE", "mine"), ("POD_NAMESPACE", "k8s")],
    )
    .unwrap();
    assert_eq!(spec.key(), "mine.web");
    // Empty variables count as unset.
    let spec = load_text(MINIMAL, &[("OCHOPOD_CLUSTER", ""), ("OCHOPOD_NAMESPACE", "")]).unwrap();
    assert_eq!(spec.key(), "default.web");
    // The override alone satisfies a missing `cluster`.
    let spec = load_text("process: { command: x }\n", &[("OCHOPOD_CLUSTER", "api")]).unwrap();
    assert_eq!(spec.cluster, "api");
}

#[test]
fn a_bad_override_names_its_variable() {
    let d = load_text(MINIMAL, &[("OCHOPOD_CLUSTER", "Api"), ("POD_NAMESPACE", "a.b")]).unwrap_err();
    let lines: Vec<String> = d.0.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        lines,
        vec![
            "pods/web.yaml:1:1: POD_NAMESPACE (overriding namespace): expected a name of [a-z0-9-]+, found \"a.b\"",
            "pods/web.yaml:1:10: OCHOPOD_CLUSTER (overriding cluster): expected a name of [a-z0-9-]+, found \"Api\"",
        ]
    );
}

#[test]
fn the_override_makes_a_self_dependency() {
    let text = "cluster: web\ndepends_on: [zookeeper]\nprocess: { command: x }\n";
    let d = load_text(text, &[("OCHOPOD_CLUSTER", "zookeeper")]).unwrap_err();
    assert_eq!((d.0[0].line, d.0[0].col), (2, 14));
}

/// One diagnostic is one line of `check`'s output: values from the environment or the file are
/// escaped wherever a message quotes them (found by the property tests: a NUL in
/// OCHOPOD_NAMESPACE came out raw in the self-dependency message).
#[test]
fn messages_escape_control_characters_from_the_environment_and_the_file() {
    let text = "cluster: web\ndepends_on: [\"/*.web\"]\nprocess: { command: x }\n\
                templates: [{ source: \"a\\nb\\u0000\", dest: /tmp/x }]\n";
    let d = load_text(text, &[("OCHOPOD_NAMESPACE", "n\ns\0")]).unwrap_err();
    assert_eq!(d.0.len(), 3, "{d}");
    for diag in &d.0 {
        assert!(!diag.message.contains(['\n', '\0']), "{:?}", diag.message);
    }
    assert!(d.0[1].message.contains("own cluster n\\ns\\0.web"), "{d}");
    assert!(d.0[2].message.contains("cannot read pods/a\\nb\\0:"), "{d}");
}

#[test]
fn an_unreadable_file_is_one_diagnostic_without_position() {
    let d = load(Path::new("tests/fixtures/spec/does-not-exist.yaml")).unwrap_err();
    assert_eq!(d.0.len(), 1);
    assert_eq!((d.0[0].line, d.0[0].col), (0, 0));
    assert!(d.0[0].message.starts_with("cannot read:"), "{d}");
}

/// Each broken fixture with every diagnostic it must produce, exactly.
const BROKEN: &[(&str, &[&str])] = &[
    ("bad-duration.yaml", &["5:12: process.stop.grace: expected a duration like 500ms, 10s or 2m, found \"ten\""]),
    ("huge-duration.yaml", &["5:12: process.stop.grace: \"9999999999999999h\" is longer than the maximum of 720h (30 days)"]),
    ("unknown-key.yaml", &["6:5: unknown key `retries`, expected one of policy, backoff, max_backoff"]),
    ("bad-signal.yaml", &["4:19: process.stop.signal: expected a signal name like TERM, HUP or SIGUSR1, found \"TERMINATE\""]),
    ("empty-command.yaml", &["3:12: process.command: expected a command, found an empty string"]),
    ("empty-list-command.yaml", &["3:12: process.command: expected a command, found an empty list"]),
    ("missing-template.yaml", &["7:13: templates[1].source: cannot read tests/fixtures/spec/templates/nope.hbs: No such file or directory (os error 2)"]),
    ("bad-mode.yaml", &["7:11: templates[0].mode: expected an octal file mode like \"0644\", found \"0999\""]),
    ("bad-cluster-name.yaml", &["1:10: cluster: expected a name of [a-z0-9-]+, found \"Web_Server\""]),
    ("missing-cluster.yaml", &["1:1: cluster: missing, a name of [a-z0-9-]+ is required"]),
    ("bad-policy.yaml", &["4:22: process.restart.policy: expected one of always, on-failure, never, found \"sometimes\""]),
    ("syntax-error.yaml", &["4:6: illegal placement of ':' indicator"]),
    ("reload-both.yaml", &["5:5: process.reload: expected exactly one of `signal` or `command`, found both"]),
    ("dup-ports.yaml", &["2:21: ports[2]: port 8000 is listed twice (first at 2:9)"]),
    ("self-dependency.yaml", &["4:16: depends_on[1]: \"kafka\" names this pod's own cluster default.kafka: a cluster cannot depend on itself"]),
    ("bad-dependency.yaml", &[
        "3:16: depends_on[0]: expected a cluster name like \"zookeeper\", \"/namespace.name\" or a \"*\" pattern, found \"/prod\"",
        "3:30: depends_on[0].min: expected a number >= 0, found -1",
    ]),
    ("many-errors.yaml", &[
        "2:9: ports[0]: expected a port in 1..=65535, found 0",
        "5:15: settings.damper_max (2s) must not be shorter than settings.damper (10s)",
        "6:16: settings.parallelism: expected a number >= 1, found 0",
        "7:10: settings.order: expected one of seq, added-first, found \"random\"",
        "9:12: process.command: the program (first item) is empty",
        "10:40: process.restart.max_backoff (10s) must not be shorter than process.restart.backoff (1m)",
        "12:10: checks.ready.command: missing, a command is required",
        "14:14: hooks.pre_start: expected a command, found an empty string",
    ]),
];

#[test]
fn every_broken_fixture_reports_its_exact_diagnostics() {
    for (name, expected) in BROKEN {
        let prefix = fixture(name).display().to_string();
        let expected: Vec<String> = expected.iter().map(|e| format!("{prefix}:{e}")).collect();
        assert_eq!(problems(name), expected, "in {name}");
    }
}

#[test]
fn every_fixture_file_is_covered_by_a_test() {
    for entry in std::fs::read_dir("tests/fixtures/spec").unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".yaml") {
            assert!(
                name == "full.yaml" || BROKEN.iter().any(|(n, _)| *n == name),
                "{name} is not asserted by any test"
            );
        }
    }
}
