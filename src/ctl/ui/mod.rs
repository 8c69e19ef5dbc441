//! `ochopod ctl ui`: a read-only web page of the clusters, live.
//!
//! ```text
//!  watch (ZooKeeper) ──Update──▶ state actor ──/info (signed, bounded, once per change)──▶ pods
//!                                    │ Published (JSON serialized once per change)
//!                                    ▼
//!  browser ◀── GET / (page, app.js, app.css: in the binary, no CDN)
//!          ◀── GET /api/model, GET /api/events (SSE: the model on each change)
//!          ◀── GET /api/log?cluster=K&uuid=U&lines=N (proxied to the pod, signed here)
//! ```
//!
//! Owns the HTTP listener, served by the control API's own accept loop
//! ([`crate::control::server::serve`]: header and body deadlines, a connection cap); the watcher and the state actor run beside it and stop with the
//! command. Nothing here writes: no route changes ZooKeeper or calls a pod's `/control`. The
//! token signs the server's calls to pods and never reaches a browser.
//!
//! Every value on the page comes from ZooKeeper or from pods (untrusted): the page puts them in
//! with `textContent` and SVG attributes, never as markup, and the Content-Security-Policy
//! allows only this server's own script and style. Bound to 127.0.0.1 by default (the page shows
//! logs, to whoever reaches the port); on a loopback address the `Host` header must be a
//! loopback name too, so that a web page elsewhere cannot read this one through DNS rebinding.

mod state;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::context::Ctx;
use super::http::{Caller, Request as PodRequest};
use super::{watch as live, CtlError, EXIT_OK};
use state::Published;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// At most this many log lines per request.
const MAX_LINES: usize = 1000;

/// What the handlers share.
#[derive(Clone)]
struct App {
    /// Published by the state actor.
    view: watch::Receiver<Arc<Published>>,
    caller: Caller,
    request_timeout: Duration,
    /// Whether the `Host` header must name a loopback address.
    loopback: bool,
}

/// Serves the page until interrupted.
pub async fn run(
    ctx: Ctx,
    patterns: Vec<String>,
    listen: SocketAddr,
    refresh: Duration,
    parallelism: usize,
) -> Result<i32, CtlError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| CtlError::Listen {
            address: listen,
            source,
        })?;
    let address = listener.local_addr().unwrap_or(listen);
    let connect = ctx.zk.connect_string().to_string();
    let namespace = ctx.namespace.clone();
    let settings = state::Settings {
        caller: ctx.caller.clone(),
        parallelism,
        request_timeout: ctx.request_timeout,
        refresh,
        // No argument: every cluster of every namespace (the page filters).
        selected: Box::new(move |key| patterns.is_empty() || live::selected(key, &patterns, &namespace)),
        zk: connect.clone(),
    };
    let app = App {
        view: state::spawn(settings, live::spawn(ctx.zk)),
        caller: ctx.caller,
        request_timeout: ctx.request_timeout,
        loopback: address.ip().is_loopback(),
    };
    eprintln!("ochopod ctl ui: serving http://{address}/ (ZooKeeper at {connect})");
    let router = Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/app.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route("/api/model", get(model))
        .route("/api/events", get(events))
        .route("/api/log", get(log))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such page") })
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app);
    // The pod's own accept loop (control::server): headers within 5 s, a body within 30 s, a
    // connection cap that sheds the connection waiting longest; `axum::serve` has none of them,
    // so a few hundred half-sent requests would hold every fd of this process. An SSE stream
    // counts as waiting once its headers are sent: the first to go at the cap. No shutdown but
    // the process's: ctl ends on Ctrl-C as before.
    let span = tracing::info_span!("ui", %address, zk = %connect);
    crate::control::server::serve(listener, router, CancellationToken::new())
        .instrument(span)
        .await
        .map_err(|source| CtlError::Listen { address, source })?;
    Ok(EXIT_OK)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// Whether a `Host` header names this machine's loopback (`localhost`, `127.x.y.z`, `[::1]`,
/// with or without a port).
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Refuses foreign `Host` headers on a loopback listener; adds the headers that keep the page
/// to itself (no framing, no inline script, no sniffing, no caching of data).
async fn guard(State(app): State<App>, req: Request, next: Next) -> Response {
    if app.loopback {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !loopback_host(host) {
            return error(
                StatusCode::FORBIDDEN,
                "this page answers only to loopback host names (see docs/operations.md)",
            );
        }
    }
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn model(State(app): State<App>) -> Response {
    let json = app.view.borrow().json.clone();
    if json.is_empty() {
        return Json(json!({"version": 0, "loading": true, "clusters": [], "events": []})).into_response();
    }
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}

/// The model as server-sent events: one `model` message now (once there is one), then one per
/// change. A slow viewer skips to the latest.
async fn events(
    State(app): State<App>,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    let stream = futures_util::stream::unfold((app.view, true), |(mut rx, first)| async move {
        if !first {
            rx.changed().await.ok()?;
        }
        loop {
            let json = rx.borrow_and_update().json.clone();
            if !json.is_empty() {
                return Some((Ok(SseEvent::default().event("model").data(json)), (rx, false)));
            }
            rx.changed().await.ok()?;
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[derive(Deserialize)]
struct LogQuery {
    cluster: String,
    uuid: String,
    lines: Option<usize>,
}

/// A pod's last lines, fetched (signed) from the pod the model names: the browser chooses a pod
/// of the page, never an address.
async fn log(
    State(app): State<App>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected ?cluster=KEY&uuid=UUID[&lines=N]",
        );
    };
    let pod = {
        let view = app.view.borrow();
        view.model
            .clusters
            .get(&q.cluster)
            .and_then(|c| c.pods.get(&q.uuid))
            .map(|p| state::target(&q.cluster, p))
    };
    let Some(target) = pod else {
        return error(StatusCode::NOT_FOUND, "no such pod on this page");
    };
    let lines = q.lines.unwrap_or(100).min(MAX_LINES);
    let req = PodRequest::get(format!("/log?lines={lines}"), app.request_timeout);
    match app.caller.call(&target, &req).await {
        Ok(answer) => Json(json!({"pod": target.name(), "lines": answer["lines"]})).into_response(),
        Err(failure) => error(StatusCode::BAD_GATEWAY, &failure.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_host_names_pass() {
        for ok in [
            "localhost",
            "localhost:8070",
            "127.0.0.1:8070",
            "127.3.4.5",
            "[::1]:8070",
            "[::1]",
        ] {
            assert!(loopback_host(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example",
            "evil.example:8070",
            "10.0.0.1:8070",
            "127.0.0.1.evil.example",
            "[::2]:1",
        ] {
            assert!(!loopback_host(bad), "{bad}");
        }
    }
}
