//! `GET /metrics` in Prometheus text format, built from the published status at each scrape
//! (nothing to update on hot paths, nothing to poll).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::server::Connections;
use super::{error, Api};
use crate::supervise::ProcessState;

/// `conns` is there when the router runs under [`super::server::serve`].
pub async fn metrics(State(api): State<Api>, conns: Option<Extension<Connections>>) -> Response {
    let s = api.supervise.status().borrow().clone();
    let view = api.cluster.borrow().clone();
    let mut registry = Registry::with_prefix("ochopod");
    let counter = |registry: &mut Registry, name: &str, help: &str, value: u64| {
        let c: Counter = Counter::default();
        c.inc_by(value);
        registry.register(name, help, c);
    };
    let gauge = |registry: &mut Registry, name: &str, help: &str, value: i64| {
        let g: Gauge = Gauge::default();
        g.set(value);
        registry.register(name, help, g);
    };
    counter(
        &mut registry,
        "process_restarts",
        "Restarts of the process after it ended on its own",
        s.restarts,
    );
    counter(
        &mut registry,
        "configurations",
        "Cluster maps applied",
        s.configurations,
    );
    gauge(
        &mut registry,
        "process_running",
        "1 when the process runs",
        i64::from(s.process == ProcessState::Running),
    );
    gauge(
        &mut registry,
        "ready",
        "1 when /readyz answers 200",
        i64::from(s.is_ready()),
    );
    gauge(
        &mut registry,
        "generation",
        "Generation of the last applied cluster map",
        i64::try_from(s.generation).unwrap_or(i64::MAX),
    );
    gauge(
        &mut registry,
        "last_exit_code",
        "Exit code of the last run (128+n for signal n; -1 before any)",
        s.last_exit.map(|e| i64::from(e.shell_code())).unwrap_or(-1),
    );
    gauge(
        &mut registry,
        "leader",
        "1 when this pod leads its cluster",
        i64::from(view.role == "leader"),
    );
    gauge(
        &mut registry,
        "zookeeper_connected",
        "1 when the ZooKeeper session is connected",
        i64::from(view.connected),
    );
    gauge(
        &mut registry,
        "rejected_registrations",
        "While leading: znodes under the cluster's pods/ refused as invalid pods (left out of every map)",
        i64::try_from(view.rejected).unwrap_or(i64::MAX),
    );
    if let Some(Extension(conns)) = conns {
        let c = conns.stats();
        counter(
            &mut registry,
            "http_connections_shed",
            "HTTP connections closed at the connection cap (the one waiting longest for its request, or a newcomer when all were busy)",
            c.shed,
        );
        gauge(
            &mut registry,
            "http_connections",
            "HTTP connections open",
            i64::try_from(c.open).unwrap_or(i64::MAX),
        );
        gauge(
            &mut registry,
            "http_connections_max",
            "The HTTP connection cap (a quarter of the soft RLIMIT_NOFILE, within 16..=1024)",
            i64::try_from(c.cap).unwrap_or(i64::MAX),
        );
    }
    let mut text = String::new();
    if let Err(e) = encode(&mut text, &registry) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
