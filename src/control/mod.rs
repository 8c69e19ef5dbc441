//! The control loop: the pod's HTTP API (SPEC §7).
//!
//! It owns nothing: reads come from the `watch` channels the other loops publish (process status,
//! cluster role), and every change is a request to the loop that owns the state (supervise for
//! the process, sync for the ZooKeeper session). The server ([`server`]) bounds how long a client
//! may take to send a request and how many connections are open; it stops accepting with the
//! shutdown token and lets requests in flight finish.
//!
//! Every answer is JSON, errors included (`{"error": "..."}`): malformed JSON and oversized
//! bodies are 4xx before any handler runs, so bad input changes nothing.

pub mod client;
mod handlers;
mod metrics;
pub mod server;

use std::time::Instant;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::logs::LogRing;
use crate::model::Pod;
use crate::supervise;

/// Largest request body accepted (a cluster map of thousands of pods fits easily).
pub const MAX_BODY: usize = 16 << 20;

/// What the sync loop says about the pod's place in its cluster (published by the runtime).
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    /// `standalone`, `connecting`, `follower` or `leader`.
    pub role: String,
    /// The leader's or the connection's status line.
    pub status: String,
    /// The pod's seq once claimed (0 before).
    pub seq: u32,
    pub connected: bool,
    /// While leading: registrations refused as invalid.
    pub rejected: usize,
    /// While leading: the cluster and its configurations as the leader sees them (`/metrics`).
    #[serde(skip)]
    pub leader: Option<crate::sync::LeaderStats>,
}

/// Everything the handlers read or ask.
#[derive(Clone)]
pub struct Api {
    pub supervise: supervise::Handle,
    pub cluster: watch::Receiver<ClusterView>,
    /// The sync loop holds the receiver; `None` when standalone (`/reset` is then a 409).
    pub reset: Option<mpsc::Sender<()>>,
    pub me: Pod,
    /// Checks signed and bearer requests; None: no token set, no authentication.
    pub auth: Option<crate::auth::Verifier>,
    pub ring: LogRing,
    pub started: Instant,
}

/// The router, with authentication, body limit and JSON fallbacks.
pub fn router(api: Api) -> Router {
    let open = Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(metrics::metrics));
    let guarded = Router::new()
        .route("/info", get(handlers::info))
        .route("/log", get(handlers::log))
        .route("/control/check", post(handlers::check))
        .route("/control/on", post(handlers::on))
        .route("/control/off", post(handlers::off))
        .route("/control/ok", post(handlers::ok))
        .route("/control/signal", post(handlers::signal))
        .route("/control/kill", post(handlers::kill))
        .route("/reset", post(handlers::reset))
        .route_layer(axum::middleware::from_fn_with_state(
            api.clone(),
            handlers::authenticate,
        ));
    open.merge(guarded)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

/// Serves the API on `listener` until `shutdown` fires, with the limits of [`server`].
pub async fn serve(listener: TcpListener, api: Api, shutdown: CancellationToken) -> std::io::Result<()> {
    server::serve(listener, router(api), shutdown).await
}

/// A JSON error answer.
pub fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(serde_json::json!({ "error": message.to_string() }))).into_response()
}
