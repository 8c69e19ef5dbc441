//! Route handlers. Each turns a request into a question for a loop and its answer into JSON.

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::{error, Api};
use crate::auth::{Denied, Pending};
use crate::model::held::{self, Known};
use crate::supervise::{ControlError, Origin};

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let status = match &self {
            ControlError::Gone => StatusCode::GONE,
            ControlError::Stale { .. } | ControlError::NoMap => StatusCode::CONFLICT,
            ControlError::BadMap(_) => StatusCode::BAD_REQUEST,
            ControlError::Vetoed { .. } => StatusCode::NOT_ACCEPTABLE,
            ControlError::NotReady(_) => StatusCode::GATEWAY_TIMEOUT,
            ControlError::Run(_)
            | ControlError::Render(_)
            | ControlError::ClusterFile(_)
            | ControlError::NotStarted { .. }
            | ControlError::StoppedWhileStarting { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ControlError::NotDeclared { .. } => StatusCode::NOT_IMPLEMENTED,
        };
        error(status, self)
    }
}

fn done(result: Result<(), ControlError>) -> Response {
    match result {
        Ok(()) => Json(json!({ "ok": true })).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Bodies being read at once, all requests together, in KiB: with the per-request limit
/// ([`super::MAX_BODY`]) this bounds what a flood of large requests can make the pod hold.
const BODY_BUDGET_KIB: usize = 64 << 10;

static BODY_BUDGET: std::sync::OnceLock<Semaphore> = std::sync::OnceLock::new();

/// Reserves room for the request's body in [`BODY_BUDGET_KIB`]: its `Content-Length`, or the
/// limit for a chunked one. 413 when it says more than the limit, 503 while the budget is spent.
fn reserve_body(headers: &HeaderMap) -> Result<SemaphorePermit<'static>, Box<Response>> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bytes = match declared {
        Some(n) if n > super::MAX_BODY as u64 => {
            return Err(Box::new(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {} bytes", super::MAX_BODY),
            )))
        }
        Some(n) => usize::try_from(n).unwrap_or(super::MAX_BODY),
        // Chunked: as much as the limit. Neither header: no body (HTTP/1.1).
        None if headers.contains_key(header::TRANSFER_ENCODING) => super::MAX_BODY,
        None => 0,
    };
    let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
    let budget = BODY_BUDGET.get_or_init(|| Semaphore::new(BODY_BUDGET_KIB));
    budget.try_acquire_many(kib).map_err(|_| {
        Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many large requests at once; retry later",
        ))
    })
}

/// Lets a request through when it is signed with one of the tokens, or carries one as a bearer
/// token (see [`crate::auth`]); every guarded route goes through here. Everything that does not
/// need the body is checked first, so a caller without the token is refused before the pod reads
/// what it sends; a body is read only within the pod's budget for bodies in flight.
pub async fn authenticate(State(api): State<Api>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let header = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let refused = |e: Denied| match e {
        Denied::Busy => error(StatusCode::SERVICE_UNAVAILABLE, e),
        e => {
            tracing::warn!(method = %parts.method, path = parts.uri.path(), reason = %e, "control request refused");
            error(StatusCode::UNAUTHORIZED, e)
        }
    };
    let pending = match &api.auth {
        None => None,
        Some(v) => match v.precheck(header(header::AUTHORIZATION), header(header::HOST)) {
            Ok(Pending::Bearer) => None,
            Ok(Pending::Signed(p)) => Some((v, p)),
            Err(e) => return refused(e),
        },
    };
    let permit = match reserve_body(&parts.headers) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let body = match pending {
        // The handler reads the body, within the limit and the reservation.
        None => body,
        Some((verifier, p)) => {
            let bytes = match axum::body::to_bytes(body, super::MAX_BODY).await {
                Ok(b) => b,
                Err(_) => {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("the body is over {} bytes, or was cut short", super::MAX_BODY),
                    )
                }
            };
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            if let Err(e) = verifier.finish(p, parts.method.as_str(), path, &bytes) {
                return refused(e);
            }
            Body::from(bytes)
        }
    };
    let response = next.run(Request::from_parts(parts, body)).await;
    drop(permit);
    response
}

/// A body that is empty (None) or a cluster map, whole or as a delta from a map the pod holds
/// (the applied one, or its last `check`'s: [`held::Held`]); anything else is a 4xx. A delta
/// this pod cannot rebuild is a 409 with `"need": "full"`: the leader sends the whole map.
fn parse_map(api: &Api, body: Result<Bytes, BytesRejection>) -> Result<Option<Known>, Box<Response>> {
    let body = body.map_err(|r| Box::new(error(r.status(), r.body_text())))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let held = held::Held {
        applied: api.supervise.last_map(),
        checked: api.checked.get(),
    };
    held.read(&body).map(Some).map_err(|e| {
        Box::new(if e.needs_full() {
            let message = e.to_string();
            let answer = json!({ "error": message, "need": "full" });
            (StatusCode::CONFLICT, Json(answer)).into_response()
        } else {
            error(StatusCode::BAD_REQUEST, with_sources(&e))
        })
    })
}

/// An error and its sources, `: `-separated.
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

pub async fn healthz() -> Response {
    Json(json!({ "ok": true })).into_response()
}

pub async fn readyz(State(api): State<Api>) -> Response {
    let s = api.supervise.status().borrow().clone();
    if s.is_ready() {
        return Json(json!({ "ready": true })).into_response();
    }
    let mut reasons = Vec::new();
    if s.process != crate::supervise::ProcessState::Running {
        reasons.push(format!("process {:?}", s.process).to_lowercase());
    }
    if s.generation == 0 {
        reasons.push("not configured yet".to_string());
    }
    if !s.ready {
        reasons.push("ready check not passed".to_string());
    }
    if s.sanity_failures > 0 {
        reasons.push(format!("{} sanity check failure(s)", s.sanity_failures));
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "ready": false, "reasons": reasons })),
    )
        .into_response()
}

pub async fn info(State(api): State<Api>) -> Response {
    let s = api.supervise.status().borrow().clone();
    let sync = api.sync_status();
    let sync = sync.as_ref();
    let role = super::role_name(sync);
    let mut me = api
        .supervise
        .last_map()
        .and_then(|m| m.me().cloned())
        .unwrap_or_else(|| api.me.clone());
    if let Some(seq) = sync.map(|v| v.seq).filter(|&seq| seq > 0) {
        me.seq = seq;
    }
    me.state = s.state;
    let cluster_status = sync.map_or("", |v| v.status.as_str());
    let mut body = serde_json::to_value(&me).unwrap_or_else(|_| json!({}));
    if let Some(obj) = body.as_object_mut() {
        obj.insert("key".into(), json!(format!("{}.{}", me.namespace, me.cluster)));
        obj.insert("pod_state".into(), json!(s.state));
        obj.insert("state".into(), json!(role));
        obj.insert(
            "status".into(),
            json!(match super::leading(sync) {
                Some(_) if !cluster_status.is_empty() => cluster_status,
                _ => s.status.as_str(),
            }),
        );
        obj.insert("cluster_status".into(), json!(cluster_status));
        // The leader's alone: followers do not read the pause (null there, as when not paused).
        let paused = super::leading(sync).and_then(|l| l.paused.as_ref());
        obj.insert("paused".into(), json!(paused));
        obj.insert("connected".into(), json!(sync.is_some_and(|v| v.connected)));
        obj.insert("process".into(), json!(s.process));
        obj.insert("pid".into(), json!(s.pid));
        obj.insert("restarts".into(), json!(s.restarts));
        obj.insert("last_exit".into(), json!(s.last_exit));
        obj.insert("generation".into(), json!(s.generation));
        obj.insert("configurations".into(), json!(s.configurations));
        obj.insert("ready".into(), json!(s.is_ready()));
        obj.insert("dependencies".into(), json!(s.dependencies));
        obj.insert("uptime_s".into(), json!(api.started.elapsed().as_secs()));
    }
    Json(body).into_response()
}

#[derive(Deserialize)]
pub struct LogQuery {
    lines: Option<usize>,
}

pub async fn log(
    State(api): State<Api>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return error(StatusCode::BAD_REQUEST, "lines must be a non-negative integer");
    };
    Json(json!({ "lines": api.ring.tail(q.lines.unwrap_or(100)) })).into_response()
}

pub async fn check(State(api): State<Api>, body: Result<Bytes, BytesRejection>) -> Response {
    match parse_map(&api, body) {
        Ok(Some(map)) => match api.supervise.check(&map).await {
            // `deltas`: this pod takes maps as deltas (SPEC §7), from this map too; `inherits`:
            // deltas without the `added` and `removed` that are their base's.
            Ok(action) => {
                api.checked.set(map);
                Json(json!({ "ok": true, "action": action, "deltas": true, "inherits": true }))
                    .into_response()
            }
            Err(e) => e.into_response(),
        },
        Ok(None) => error(StatusCode::BAD_REQUEST, "check needs a cluster map"),
        Err(r) => *r,
    }
}

pub async fn on(State(api): State<Api>, body: Result<Bytes, BytesRejection>) -> Response {
    match parse_map(&api, body) {
        Ok(Some(map)) => done(api.supervise.on(Some(map), Origin::Leader).await),
        Ok(None) => done(api.supervise.on(None, Origin::Operator).await),
        Err(r) => *r,
    }
}

/// The leader's `off` (`full_shutdown`) carries its map, which must be addressed to this pod
/// and not older than the applied one; an operator's is bare and holds the pod.
pub async fn off(State(api): State<Api>, body: Result<Bytes, BytesRejection>) -> Response {
    let origin = match parse_map(&api, body) {
        Err(r) => return *r,
        Ok(Some(map)) => match api.supervise.admits(&map) {
            Ok(()) => Origin::Leader,
            Err(e) => return e.into_response(),
        },
        Ok(None) => Origin::Operator,
    };
    done(api.supervise.off(origin).await)
}

/// The configuration is complete; the leader's carries its map (checked as for `off`).
pub async fn ok(State(api): State<Api>, body: Result<Bytes, BytesRejection>) -> Response {
    let map = match parse_map(&api, body) {
        Ok(map) => map,
        Err(r) => return *r,
    };
    if let Some(Err(e)) = map.as_ref().map(|m| api.supervise.admits(m)) {
        return e.into_response();
    }
    done(api.supervise.ok().await)
}

pub async fn signal(State(api): State<Api>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) => return error(r.status(), r.body_text()),
    };
    if !body.iter().all(u8::is_ascii_whitespace) {
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&body) {
            return error(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}"));
        }
    }
    match api.supervise.signal(body.to_vec()).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn kill(State(api): State<Api>) -> Response {
    done(api.supervise.kill().await)
}

pub async fn reset(State(api): State<Api>) -> Response {
    match &api.reset {
        Some(tx) => match tx.send(()).await {
            Ok(()) => Json(json!({ "ok": true })).into_response(),
            Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the sync loop is not running"),
        },
        None => error(
            StatusCode::CONFLICT,
            "standalone pod: there is no ZooKeeper session to reset",
        ),
    }
}
