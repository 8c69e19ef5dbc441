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

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::logs::LogRing;
use crate::model::held::Known;
use crate::model::Pod;
use crate::supervise;
use crate::sync::{Role, SyncStatus};

/// Largest request body accepted (a cluster map of thousands of pods fits easily).
pub const MAX_BODY: usize = 16 << 20;

/// The name `/info` gives the pod's role (`state`): `standalone` without a sync loop.
fn role_name(sync: Option<&SyncStatus>) -> &'static str {
    match sync.map(|s| s.role) {
        None => "standalone",
        Some(Role::Connecting) => "connecting",
        Some(Role::Follower) => "follower",
        Some(Role::Leader) => "leader",
    }
}

/// The leader's view of its cluster, while this pod leads (`None` otherwise).
fn leading(sync: Option<&SyncStatus>) -> Option<&crate::sync::LeaderStats> {
    sync.filter(|s| s.role == Role::Leader).map(|s| &s.leader)
}

impl Api {
    /// The sync loop's status now, cloned out of its watch (`None` when standalone).
    fn sync_status(&self) -> Option<SyncStatus> {
        self.sync.as_ref().map(|rx| rx.borrow().clone())
    }
}

/// Everything the handlers read or ask.
#[derive(Clone)]
pub struct Api {
    pub supervise: supervise::Handle,
    /// What the sync loop publishes (its actor holds the sender); `None` when standalone.
    pub sync: Option<watch::Receiver<SyncStatus>>,
    /// The sync loop holds the receiver; `None` when standalone (`/reset` is then a 409).
    pub reset: Option<mpsc::Sender<()>>,
    pub me: Pod,
    /// Checks signed and bearer requests; None: no token set, no authentication.
    pub auth: Option<crate::auth::Verifier>,
    pub ring: LogRing,
    pub started: Instant,
    /// The map of the last `check` this pod accepted: a base the leader may name for the deltas
    /// of that configuration's `on` and `ok` (SPEC §7).
    pub checked: Checked,
}

/// The map of the last accepted `check`, with its digest ([`Known`]). It lives here, not in the
/// supervise actor: it is only a base to read the next bodies against, it changes nothing the pod
/// runs, and its one writer is the `check` handler; the actor stays the one owner of the applied
/// map. Concurrent `check`s: the last one wins, and a delta from the other is a 409 `need: full`.
#[derive(Clone, Default)]
pub struct Checked(Arc<Mutex<Option<Known>>>);

impl Checked {
    pub fn get(&self) -> Option<Known> {
        // A poisoned lock only means a handler panicked between two plain stores: the value is whole.
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, map: Known) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(map);
    }
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
        .layer(axum::middleware::from_fn(traced))
        .with_state(api)
}

/// Each call is a span (`control`) with its method and path, then the status it answered: what
/// handlers and the supervise loop log while answering is attached to the call.
async fn traced(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let span = tracing::info_span!(
        "control",
        method = %request.method(),
        path = request.uri().path(),
        status = tracing::field::Empty
    );
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("status", status);
    tracing::debug!(parent: &span, status, "answered");
    response
}

/// Serves the API on `listener` until `shutdown` fires, with the limits of [`server`].
pub async fn serve(listener: TcpListener, api: Api, shutdown: CancellationToken) -> std::io::Result<()> {
    server::serve(listener, router(api), shutdown).await
}

/// A JSON error answer.
pub fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(serde_json::json!({ "error": message.to_string() }))).into_response()
}
