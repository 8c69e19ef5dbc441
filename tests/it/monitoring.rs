//! Monitoring that ships (deploy/monitoring): a live leader's `/metrics` passes
//! `promtool check metrics`; the alert rules pass `promtool check rules` and their unit tests, one
//! firing and one quiet case per alert; the rules and the Grafana dashboard ask only for metrics
//! that `/metrics` exposes, in PromQL that promtool parses.
//!
//! promtool comes with Debian's `prometheus` package (scripts/deps installs it). Without it these
//! tests fail and say so: they never pass by skipping.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::cluster::{pod_yaml, start, Member, PEERS, T};
use crate::harness::eventually;
use crate::harness::zk::ZkServer;

fn monitoring(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/monitoring")
        .join(rel)
}

/// promtool from the PATH, or a failure that names the package.
fn promtool() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("promtool"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "promtool not found in PATH: install Debian's `prometheus` package \
                 (scripts/deps does: apt-get install prometheus)"
            )
        })
}

/// Runs promtool in deploy/monitoring with `args`, `stdin` on its standard input.
fn run_promtool(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(promtool())
        .args(args)
        .current_dir(monitoring(""))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().expect("promtool output")
}

fn assert_promtool(args: &[&str], stdin: &str) {
    let out = run_promtool(args, stdin);
    assert!(
        out.status.success(),
        "promtool {}: {}\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sample names of a text exposition (`ochopod_x_total`, not the family `ochopod_x`).
fn exposed(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

/// The metric names a PromQL expression selects: what is left once strings, label matchers,
/// ranges, grouping lists, function calls and keywords are taken out.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Strings, `{...}` and `[...]` out, each replaced by a space.
    let mut flat = String::new();
    let mut chars = expr.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => drop(chars.next()),
                        '"' => break,
                        _ => {}
                    }
                }
                flat.push(' ');
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                for c in chars.by_ref() {
                    if c == close {
                        break;
                    }
                }
                flat.push(' ');
            }
            c => flat.push(c),
        }
    }
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let mut rest = flat.as_str();
    let mut grouping = false;
    while let Some(start) = rest.find(|c: char| ident(c) || c == '(' || c == '$') {
        rest = &rest[start..];
        if rest.starts_with('(') {
            rest = &rest[1..];
            if grouping {
                // `by (a, b)`: labels, not metrics.
                let end = rest.find(')').unwrap_or(rest.len());
                rest = &rest[end..];
                grouping = false;
            }
            continue;
        }
        let sigil = rest.starts_with('$');
        let end = rest[1..].find(|c: char| !ident(c)).map_or(rest.len(), |i| i + 1);
        let word = &rest[..end];
        rest = &rest[end..];
        let call = rest.trim_start().starts_with('(');
        grouping = matches!(
            word,
            "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
        );
        // Aggregations may have their `by (...)` before their parenthesis.
        let keyword = grouping
            || matches!(
                word,
                "and"
                    | "or"
                    | "unless"
                    | "bool"
                    | "offset"
                    | "atan2"
                    | "sum"
                    | "min"
                    | "max"
                    | "avg"
                    | "group"
                    | "stddev"
                    | "stdvar"
                    | "count"
                    | "count_values"
                    | "bottomk"
                    | "topk"
                    | "quantile"
                    | "limitk"
            );
        let number = word.starts_with(|c: char| c.is_ascii_digit());
        if !(sigil || call || keyword || number) {
            names.insert(word.to_string());
        }
    }
    names
}

/// A one-pod cluster through a real ZooKeeper, led by its pod, configured once.
async fn leading_pod(zk: &ZkServer) -> Member {
    let pod = start(
        zk,
        pod_yaml("mon", "web", "settings: { damper: 100ms }", PEERS),
        None,
    );
    pod.wait_info("leading, configured", T, |i| {
        i["state"] == "leader" && i["generation"].as_u64() >= Some(1)
    })
    .await;
    pod
}

async fn scrape(pod: &Member, accept: Option<&str>) -> (String, String) {
    let mut req = pod.client.get(pod.url("/metrics"));
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = req.send().await.expect("GET /metrics");
    assert_eq!(resp.status(), 200);
    let kind = resp.headers()["content-type"].to_str().unwrap().to_string();
    (kind, resp.text().await.unwrap())
}

/// Every `expr` of the dashboard, and the metric selector of every `label_values(...)` query.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                for (k, v) in o {
                    match (k.as_str(), v) {
                        ("expr", Value::String(e)) => out.push(e.clone()),
                        ("definition", Value::String(q)) if q.starts_with("label_values(") => {
                            let inner = &q["label_values(".len()..];
                            out.push(inner[..inner.rfind(',').unwrap()].to_string());
                        }
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

fn rule_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(monitoring("ochopod.rules.yml")).unwrap();
    let rules: Value = serde_saphyr::from_str(&text).unwrap();
    rules["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["expr"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn metric_names_are_what_an_expression_selects() {
    let e = r#"time() - max by (a, b) (x_seconds{a=~"$ns"}) * on (instance) group_left (uuid) y_info
               unless ignoring(state) increase(z_total[$__rate_interval]) > 0"#;
    let want: BTreeSet<String> = ["x_seconds", "y_info", "z_total"].map(String::from).into();
    assert_eq!(metric_names(e), want);
}

#[tokio::test]
async fn a_leaders_metrics_pass_promtool_and_hold_every_metric_the_rules_and_dashboard_use() {
    let zk = ZkServer::start();
    let pod = leading_pod(&zk).await;
    // The text format (what curl gets), once the leader has published its first configuration.
    let (kind, text) = eventually(T, "the leader's configuration metrics", || async {
        let (kind, text) = scrape(&pod, None).await;
        text.contains("ochopod_cluster_last_success_timestamp_seconds{")
            .then_some((kind, text))
    })
    .await;
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    assert_promtool(&["check", "metrics"], &text);
    let labels = r#"ochopod_namespace="mon",ochopod_cluster="web""#;
    for line in [
        format!("ochopod_leader{{{labels}}} 1"),
        format!("ochopod_cluster_live_pods{{{labels}}} 1"),
        format!("ochopod_cluster_min_size{{{labels}}} 1"),
        format!("ochopod_cluster_pods{{{labels},state=\"running\"}} 1"),
        format!("ochopod_cluster_last_configuration_success{{{labels}}} 1"),
        format!("ochopod_cluster_configuring{{{labels}}} 0"),
        format!("ochopod_pod_state{{{labels},state=\"running\"}} 1"),
        format!("ochopod_process_state{{{labels},state=\"running\"}} 1"),
    ] {
        assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
    }
    let attempts = format!("ochopod_cluster_configuration_attempts_total{{{labels},result=\"success\"}} ");
    assert!(
        text.lines().any(|l| l
            .strip_prefix(&attempts)
            .is_some_and(|n| n.parse::<u64>().unwrap() >= 1)),
        "{text}"
    );

    // What Prometheus asks for: OpenMetrics, the same samples.
    let (kind, open) = scrape(
        &pod,
        Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
    )
    .await;
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert!(open.contains("# UNIT ochopod_cluster_last_configuration_duration_seconds seconds"));
    let names = exposed(&text);
    assert_eq!(exposed(&open), names);

    // The rules and the dashboard use nothing else, and each query parses.
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(monitoring("ochopod-dashboard.json")).unwrap())
            .expect("the dashboard is JSON");
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() > 10, "{queries:?}");
    let mut recording = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in queries.iter().chain(&rule_exprs()).enumerate() {
        let used = metric_names(q);
        assert!(!used.is_empty(), "no metric in {q:?}");
        let missing: Vec<_> = used.difference(&names).collect();
        assert!(
            missing.is_empty(),
            "{q:?} uses {missing:?}, which /metrics does not expose:\n{text}"
        );
        // Grafana's variables as Prometheus would see them once Grafana substituted them.
        let promql = q.replace("$__rate_interval", "1m").replace('$', "");
        recording.push_str(&format!(
            "      - record: query_{i}\n        expr: {}\n",
            serde_json::to_string(&promql).unwrap()
        ));
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), recording).unwrap();
    assert_promtool(&["check", "rules", file.path().to_str().unwrap()], "");
}

/// The value of the sample `series` (name and labels exactly as exposed), if there is one.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

#[tokio::test]
async fn the_leader_reports_failed_then_successful_configurations() {
    let zk = ZkServer::start();
    let gate = tempfile::tempdir().unwrap();
    let open = gate.path().join("open");
    let dir = pod_yaml("mon2", "web", "settings: { damper: 100ms }", PEERS);
    let text = std::fs::read_to_string(dir.path()).unwrap().replace(
        "hooks:\n",
        &format!("hooks:\n  can_configure: \"test -e {}\"\n", open.display()),
    );
    std::fs::write(dir.path(), text).unwrap();
    let pod = start(&zk, dir, None);
    pod.info().await;
    let l = r#"ochopod_namespace="mon2",ochopod_cluster="web""#;
    let attempts =
        |result: &str| format!("ochopod_cluster_configuration_attempts_total{{{l},result=\"{result}\"}}");
    // Vetoed: the leader's last configuration failed, none succeeded.
    let text = eventually(T, "a failed configuration in /metrics", || async {
        let (_, text) = scrape(&pod, None).await;
        (value(&text, &attempts("failure")) >= Some(1.0)).then_some(text)
    })
    .await;
    assert_eq!(
        value(
            &text,
            &format!("ochopod_cluster_last_configuration_success{{{l}}}")
        ),
        Some(0.0),
        "{text}"
    );
    assert_eq!(value(&text, &attempts("success")), Some(0.0), "{text}");
    assert_eq!(
        value(
            &text,
            &format!("ochopod_cluster_last_success_timestamp_seconds{{{l}}}")
        ),
        None,
        "{text}"
    );
    assert!(value(
        &text,
        &format!("ochopod_cluster_last_configuration_duration_seconds{{{l}}}")
    )
    .is_some());
    assert_eq!(
        value(&text, &format!("ochopod_cluster_live_pods{{{l}}}")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            &format!("ochopod_cluster_configuration_timeout_seconds{{{l}}}")
        ),
        Some(180.0),
        "3 rounds of 60s\n{text}"
    );

    std::fs::write(&open, "").unwrap();
    let text = eventually(T, "a successful configuration in /metrics", || async {
        let (_, text) = scrape(&pod, None).await;
        (value(&text, &attempts("success")) == Some(1.0)).then_some(text)
    })
    .await;
    assert_eq!(
        value(
            &text,
            &format!("ochopod_cluster_last_configuration_success{{{l}}}")
        ),
        Some(1.0),
        "{text}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let at = value(
        &text,
        &format!("ochopod_cluster_last_success_timestamp_seconds{{{l}}}"),
    )
    .unwrap();
    assert!((now - 60.0..=now + 1.0).contains(&at), "{at} vs now {now}");
}

#[test]
fn alert_rules_pass_promtool_and_every_alert_is_tested_firing_and_quiet() {
    assert_promtool(&["check", "rules", "ochopod.rules.yml"], "");
    assert_promtool(&["test", "rules", "ochopod.tests.yml"], "");
    let text = std::fs::read_to_string(monitoring("ochopod.rules.yml")).unwrap();
    let rules: Value = serde_saphyr::from_str(&text).unwrap();
    let tests: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(monitoring("ochopod.tests.yml")).unwrap()).unwrap();
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
        .collect();
    let alerts: Vec<&str> = rules["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["alert"].as_str().unwrap())
        .collect();
    assert!(alerts.len() >= 8, "{alerts:?}");
    for alert in alerts {
        let of = |firing: bool| {
            cases.iter().any(|c| {
                c["alertname"] == alert && c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()) == firing
            })
        };
        assert!(of(true), "{alert}: no test where it fires");
        assert!(of(false), "{alert}: no test where it stays quiet");
    }
}
