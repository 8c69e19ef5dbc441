//! `GET /metrics`, built from the published status at each scrape (nothing to update on hot
//! paths, nothing to poll): the Prometheus text format (0.0.4), or OpenMetrics 1.0 when the
//! scraper asks for it (`Accept: application/openmetrics-text`, as Prometheus does).
//!
//! Every metric carries the pod's `ochopod_namespace` and `ochopod_cluster` labels, so that rules
//! aggregate per cluster without joins. Not `namespace` and `cluster`: Kubernetes scrape
//! configurations add a `namespace` target label of their own and `cluster` is a common external
//! label; a clash would rename ours to `exported_*` and break every rule. The metrics of a
//! cluster as a whole (`ochopod_cluster_*`) come from its leader alone. Written by hand: two
//! families of plain values do not need a registry, and the crates at hand speak only one of
//! the two formats.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::server::Connections;
use super::Api;
use crate::model::PodState;
use crate::supervise::ProcessState;

/// `conns` is there when the router runs under [`super::server::serve`].
pub async fn metrics(
    State(api): State<Api>,
    conns: Option<Extension<Connections>>,
    headers: HeaderMap,
) -> Response {
    let format = if headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
    {
        Format::OpenMetrics
    } else {
        Format::Text
    };
    let mut x = exposition(&api);
    if let Some(Extension(conns)) = conns {
        let c = conns.stats();
        x.counter(
            "ochopod_http_connections_shed",
            "HTTP connections closed at the connection cap (the one waiting longest for its request, or a newcomer when all were busy)",
            c.shed,
        );
        x.gauge("ochopod_http_connections", "HTTP connections open", c.open as f64);
        x.gauge(
            "ochopod_http_connections_max",
            "The HTTP connection cap (a quarter of the soft RLIMIT_NOFILE, within 16..=1024)",
            c.cap as f64,
        );
    }
    let text = x.encode(format);
    ([(header::CONTENT_TYPE, format.content_type())], text).into_response()
}

/// Every metric of the pod, with their values now.
fn exposition(api: &Api) -> Exposition {
    let s = api.supervise.status().borrow().clone();
    let sync = api.sync_status();
    let sync = sync.as_ref();
    let me = &api.me;
    let mut x = Exposition::new(vec![
        ("ochopod_namespace", me.namespace.clone()),
        ("ochopod_cluster", me.cluster.clone()),
    ]);
    let seq = sync.map(|v| v.seq).filter(|&seq| seq > 0).unwrap_or(me.seq);
    x.family(
        "ochopod_pod_info",
        "The pod's identity: uuid, seq (0 until claimed), ochopod version; always 1",
        Kind::Gauge,
        None,
        vec![(
            vec![
                ("uuid", me.uuid.clone()),
                ("seq", seq.to_string()),
                ("version", me.version.clone()),
            ],
            1.0,
        )],
    );
    x.states(
        "ochopod_pod_state",
        "The pod's state in its cluster (pod_state in /info): 1 for the current one",
        &[
            ("running", s.state == PodState::Running),
            ("held", s.state == PodState::Held),
            ("failed", s.state == PodState::Failed),
            ("leaving", s.state == PodState::Leaving),
        ],
    );
    x.states(
        "ochopod_process_state",
        "The process's state (process in /info): 1 for the current one",
        &[
            ("stopped", s.process == ProcessState::Stopped),
            ("running", s.process == ProcessState::Running),
            ("terminating", s.process == ProcessState::Terminating),
            ("dead", s.process == ProcessState::Dead),
        ],
    );
    x.counter(
        "ochopod_process_restarts",
        "Restarts of the process after it ended on its own",
        s.restarts,
    );
    x.counter("ochopod_configurations", "Cluster maps applied", s.configurations);
    x.gauge(
        "ochopod_process_running",
        "1 when the process runs",
        flag(s.process == ProcessState::Running),
    );
    x.gauge("ochopod_ready", "1 when /readyz answers 200", flag(s.is_ready()));
    x.gauge(
        "ochopod_generation",
        "Generation of the last applied cluster map",
        s.generation as f64,
    );
    x.gauge(
        "ochopod_last_exit_code",
        "Exit code of the last run (128+n for signal n; -1 before any)",
        s.last_exit.map_or(-1.0, |e| f64::from(e.shell_code())),
    );
    // A standalone pod has no cluster to lead and no session: no series that would read as
    // "leaderless" or "disconnected".
    if let Some(v) = sync {
        x.gauge(
            "ochopod_leader",
            "1 when this pod leads its cluster (absent when standalone)",
            flag(v.role == crate::sync::Role::Leader),
        );
        x.gauge(
            "ochopod_zookeeper_connected",
            "1 when the ZooKeeper session is connected (absent when standalone)",
            flag(v.connected),
        );
    }
    x.gauge(
        "ochopod_rejected_registrations",
        "While leading: znodes under the cluster's pods/ refused as invalid pods (left out of every map)",
        sync.map_or(0, |v| v.rejected) as f64,
    );
    if let Some(l) = super::leading(sync) {
        leader_metrics(&mut x, l);
    }
    x
}

/// The cluster as its leader sees it, and its configurations.
fn leader_metrics(x: &mut Exposition, l: &crate::sync::LeaderStats) {
    let p = l.pods;
    x.family(
        "ochopod_cluster_pods",
        "Leader only: registered pods of the cluster by pod state",
        Kind::Gauge,
        None,
        [
            ("running", p.running),
            ("held", p.held),
            ("failed", p.failed),
            ("leaving", p.leaving),
        ]
        .into_iter()
        .map(|(state, n)| (vec![("state", state.to_string())], n as f64))
        .collect(),
    );
    x.gauge(
        "ochopod_cluster_live_pods",
        "Leader only: pods a configuration includes (running, not evicted)",
        l.live as f64,
    );
    x.gauge(
        "ochopod_cluster_evicted_pods",
        "Leader only: running pods left out after failing settings.evict_after times",
        l.evicted as f64,
    );
    x.gauge(
        "ochopod_cluster_paused",
        "Leader only: 1 while the cluster is paused (by an operator, or by the leader for settings.max_lost): nothing is configured",
        flag(l.paused.is_some()),
    );
    x.gauge(
        "ochopod_cluster_lost_pods",
        "Leader only: pods of the last configuration that vanished without leaving (settings.max_lost)",
        l.lost as f64,
    );
    x.gauge(
        "ochopod_cluster_min_size",
        "Leader only: settings.min_size",
        l.min_size as f64,
    );
    x.gauge(
        "ochopod_cluster_configuring",
        "Leader only: 1 while a configuration runs",
        flag(l.configuring.is_some()),
    );
    x.seconds(
        "ochopod_cluster_configuration_running_seconds",
        "Leader only: how long the configuration under way has run (0 when none)",
        l.configuring.map_or(0.0, |t| t.elapsed().as_secs_f64()),
    );
    x.seconds(
        "ochopod_cluster_configuration_timeout_seconds",
        "Leader only: the longest a configuration of the live pods may take (settings.timeout per round of calls)",
        l.bound.as_secs_f64(),
    );
    if let Some((took, ok)) = l.last {
        x.seconds(
            "ochopod_cluster_last_configuration_duration_seconds",
            "Leader only: how long the last configuration that ended took",
            took.as_secs_f64(),
        );
        x.gauge(
            "ochopod_cluster_last_configuration_success",
            "Leader only: 1 when the last configuration that ended succeeded, 0 when it failed",
            flag(ok),
        );
    }
    if let Some(at) = l.last_success {
        let unix = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        x.seconds(
            "ochopod_cluster_last_success_timestamp_seconds",
            "Leader only: when this leader last configured the cluster successfully (unix time)",
            unix,
        );
    }
    x.counter(
        "ochopod_cluster_map_bytes_sent",
        "Leader only: bytes of cluster maps (whole or as deltas) this pod sent to the pods while leading",
        crate::sync::calls::map_bytes_sent(),
    );
    x.family(
        "ochopod_cluster_configuration_attempts",
        "Configurations this pod ran while leading, by result",
        Kind::Counter,
        None,
        vec![
            (vec![("result", "success".into())], l.succeeded as f64),
            (vec![("result", "failure".into())], l.failed as f64),
        ],
    );
    x.family(
        "ochopod_zk_reads",
        "Leader only: ZooKeeper read requests this pod made while leading, to follow its cluster and dependencies",
        Kind::Counter,
        None,
        vec![(vec![], l.zk_reads as f64)],
    );
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// The Prometheus text format, version 0.0.4.
    Text,
    /// OpenMetrics 1.0.
    OpenMetrics,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

type Labels = Vec<(&'static str, String)>;

struct Family {
    /// Without `_total` for a counter; ending in `_<unit>` when it has a unit.
    name: &'static str,
    help: &'static str,
    kind: Kind,
    unit: Option<&'static str>,
    samples: Vec<(Labels, f64)>,
}

/// Metric families with labels common to all, encoded in either format.
struct Exposition {
    common: Labels,
    families: Vec<Family>,
}

impl Exposition {
    fn new(common: Labels) -> Exposition {
        Exposition {
            common,
            families: Vec::new(),
        }
    }

    fn family(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        unit: Option<&'static str>,
        samples: Vec<(Labels, f64)>,
    ) {
        self.families.push(Family {
            name,
            help,
            kind,
            unit,
            samples,
        });
    }

    fn gauge(&mut self, name: &'static str, help: &'static str, value: f64) {
        self.family(name, help, Kind::Gauge, None, vec![(Vec::new(), value)]);
    }

    /// A gauge in seconds (`name` ends in `_seconds`).
    fn seconds(&mut self, name: &'static str, help: &'static str, value: f64) {
        self.family(
            name,
            help,
            Kind::Gauge,
            Some("seconds"),
            vec![(Vec::new(), value)],
        );
    }

    fn counter(&mut self, name: &'static str, help: &'static str, value: u64) {
        self.family(name, help, Kind::Counter, None, vec![(Vec::new(), value as f64)]);
    }

    /// One series per state, labelled `state`, 1 for the current one (a state set).
    fn states(&mut self, name: &'static str, help: &'static str, states: &[(&str, bool)]) {
        let samples = states
            .iter()
            .map(|(state, on)| (vec![("state", state.to_string())], flag(*on)))
            .collect();
        self.family(name, help, Kind::Gauge, None, samples);
    }

    fn encode(&self, format: Format) -> String {
        let mut out = String::new();
        for f in &self.families {
            // The text format names a counter's family with its `_total`; OpenMetrics without.
            let sample = match f.kind {
                Kind::Counter => format!("{}_total", f.name),
                Kind::Gauge => f.name.to_string(),
            };
            let family = match format {
                Format::Text => sample.as_str(),
                Format::OpenMetrics => f.name,
            };
            let kind = match f.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            // Writing to a String cannot fail.
            let _ = writeln!(
                out,
                "# HELP {family} {}.",
                escape(f.help, format == Format::OpenMetrics)
            );
            let _ = writeln!(out, "# TYPE {family} {kind}");
            if let (Some(unit), Format::OpenMetrics) = (f.unit, format) {
                let _ = writeln!(out, "# UNIT {family} {unit}");
            }
            for (labels, value) in &f.samples {
                out.push_str(&sample);
                out.push('{');
                for (i, (k, v)) in self.common.iter().chain(labels).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape(v, true));
                }
                let _ = writeln!(out, "}} {}", number(*value));
            }
        }
        if format == Format::OpenMetrics {
            out.push_str("# EOF\n");
        }
        out
    }
}

/// Escapes `\` and newlines (and `"` in label values and OpenMetrics help).
fn escape(text: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Exposition {
        let mut x = Exposition::new(vec![
            ("ochopod_namespace", "ns".into()),
            ("ochopod_cluster", "a\"b\\c\nd".into()),
        ]);
        x.counter("ochopod_things", "Things done", 3);
        x.seconds("ochopod_wait_seconds", "How long", 1.5);
        x.states("ochopod_state", "State", &[("on", true), ("off", false)]);
        x
    }

    #[test]
    fn the_text_format_names_counters_with_their_total_and_escapes_label_values() {
        let text = sample().encode(Format::Text);
        let labels = r#"ochopod_namespace="ns",ochopod_cluster="a\"b\\c\nd""#;
        assert_eq!(
            text,
            format!(
                "# HELP ochopod_things_total Things done.\n# TYPE ochopod_things_total counter\n\
                 ochopod_things_total{{{labels}}} 3\n\
                 # HELP ochopod_wait_seconds How long.\n# TYPE ochopod_wait_seconds gauge\n\
                 ochopod_wait_seconds{{{labels}}} 1.5\n\
                 # HELP ochopod_state State.\n# TYPE ochopod_state gauge\n\
                 ochopod_state{{{labels},state=\"on\"}} 1\nochopod_state{{{labels},state=\"off\"}} 0\n"
            )
        );
    }

    #[test]
    fn openmetrics_names_counter_families_without_total_gives_units_and_ends_with_eof() {
        let text = sample().encode(Format::OpenMetrics);
        assert!(
            text.contains("# TYPE ochopod_things counter\nochopod_things_total{"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE ochopod_wait_seconds gauge\n# UNIT ochopod_wait_seconds seconds\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
