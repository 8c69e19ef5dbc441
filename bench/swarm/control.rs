//! A simulated pod's control API: what the leader calls, answered as a real pod would (SPEC §7),
//! without a process behind it.
//!
//! Every map body goes through [`crate::decode::decode`] (the crate's validating types) and the
//! same admission as `supervise::admit`: addressed to this pod, of its cluster, not older than
//! the applied map (409). `check` answers `start` before the first `on` (a real pod's process
//! starts with its first map) and `keep` after: nothing it renders changes. It says
//! `"deltas": true` and holds, as a real pod, the map it applied and the one its last `check`
//! carried (see decode.rs). One listener per pod, served until its token is cancelled.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ochopod::model::held::{Held, Known};
use ochopod::model::ClusterMap;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::decode::decode;
use crate::pod::{Shared, SimPod};
use crate::tracker::Seen;

/// A real pod's body limit (control::MAX_BODY).
const MAX_BODY: usize = 16 << 20;

#[derive(Clone)]
struct Ctx {
    pod: Arc<SimPod>,
    shared: Arc<Shared>,
}

/// Serves `pod`'s control API on `listener` until `stop`.
pub fn serve(
    listener: tokio::net::TcpListener,
    pod: Arc<SimPod>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let app = Router::new()
        .route("/healthz", get(|| async { Json(json!({ "ok": true })) }))
        .route("/readyz", get(readyz))
        .route("/info", get(info))
        .route("/control/check", post(check))
        .route("/control/off", post(off))
        .route("/control/on", post(on))
        .route("/control/ok", post(ok))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Ctx { pod, shared });
    tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
        if let Err(e) = served.await {
            tracing::warn!(error = %e, "control listener");
        }
    });
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    Refusal(status, message.to_string(), false).into_response()
}

/// A request refused: its status and the `{"error": ...}` message; `need_full` adds
/// `"need": "full"` (a delta this pod cannot rebuild, as a real pod answers it).
struct Refusal(StatusCode, String, bool);

impl Refusal {
    fn need_full(message: String) -> Refusal {
        Refusal(StatusCode::CONFLICT, message, true)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.1 });
        if self.2 {
            body["need"] = json!("full");
        }
        (self.0, Json(body)).into_response()
    }
}

fn done() -> Response {
    Json(json!({ "ok": true })).into_response()
}

impl Ctx {
    /// Counts the body, decodes it against the maps this pod holds, and admits it; None for an
    /// empty body (an operator's call). The map is a shared copy without `key` when the body
    /// named a held one.
    fn map(&self, route: usize, body: &Bytes) -> Result<Option<Known>, Refusal> {
        self.shared.traffic.add(route, body.len());
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let held = {
            let a = self.pod.applied();
            Held {
                applied: a.last.clone(),
                checked: a.checked.clone(),
            }
        };
        let got = decode(body, &held).map_err(|e| match e.needs_full() {
            true => Refusal::need_full(e.to_string()),
            false => Refusal(StatusCode::BAD_REQUEST, e.to_string(), false),
        })?;
        self.admit(&got.map, &got.key)?;
        Ok(Some(got.map))
    }

    /// `supervise::admit`: the pod's own map (the body's `key`), of its cluster, not older than
    /// the applied one.
    fn admit(&self, map: &ClusterMap, key: &str) -> Result<(), Refusal> {
        let me = &self.pod.me;
        if key != me.uuid {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                format!("the map is addressed to {key:?}, this pod is {}", me.uuid),
                false,
            ));
        }
        match map.pods.get(key) {
            None => {
                return Err(Refusal(
                    StatusCode::BAD_REQUEST,
                    "the map's key is not one of its pods".into(),
                    false,
                ))
            }
            Some(p) if p.cluster != me.cluster || p.namespace != me.namespace => {
                return Err(Refusal(
                    StatusCode::BAD_REQUEST,
                    "the map is for another cluster".into(),
                    false,
                ))
            }
            Some(_) => {}
        }
        let have = self.pod.applied().version;
        let got = (map.epoch, map.generation);
        if got < have {
            return Err(Refusal(
                StatusCode::CONFLICT,
                format!("stale map: have {have:?}, got {got:?}"),
                false,
            ));
        }
        Ok(())
    }
}

async fn readyz(State(c): State<Ctx>) -> Response {
    let a = c.pod.applied();
    if a.version.1 > 0 && !a.held {
        return Json(json!({ "ready": true })).into_response();
    }
    let reason = if a.held {
        "process stopped"
    } else {
        "not configured yet"
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "ready": false, "reasons": [reason] })),
    )
        .into_response()
}

async fn info(State(c): State<Ctx>) -> Response {
    let a = c.pod.applied();
    let running = a.version.1 > 0 && !a.held;
    let mut body = serde_json::to_value(&c.pod.me).unwrap_or_else(|_| json!({}));
    if let Some(obj) = body.as_object_mut() {
        let me = &c.pod.me;
        obj.insert("key".into(), json!(format!("{}.{}", me.namespace, me.cluster)));
        obj.insert("pod_state".into(), json!(if a.held { "held" } else { "running" }));
        obj.insert("state".into(), json!("follower"));
        obj.insert(
            "status".into(),
            json!(if running { "running" } else { "stopped" }),
        );
        obj.insert(
            "process".into(),
            json!(if running { "running" } else { "stopped" }),
        );
        obj.insert("generation".into(), json!(a.version.1));
        obj.insert("ready".into(), json!(running));
        obj.insert("paused".into(), json!(null));
        obj.insert("simulated".into(), json!(true));
    }
    Json(body).into_response()
}

async fn check(State(c): State<Ctx>, body: Bytes) -> Response {
    match c.map(0, &body) {
        Ok(Some(map)) => {
            // Held as a base for this configuration's `on` and `ok`, as a real pod holds it.
            let map = c.shared.maps.intern(map);
            let mut a = c.pod.applied();
            a.checked = Some(map);
            let action = if a.last.is_some() && !a.held {
                "keep"
            } else {
                "start"
            };
            Json(json!({ "ok": true, "action": action, "deltas": true, "inherits": true })).into_response()
        }
        Ok(None) => error(StatusCode::BAD_REQUEST, "check needs a cluster map"),
        Err(r) => r.into_response(),
    }
}

/// The leader's `off` (`full_shutdown`) carries its map and holds nothing; an operator's holds.
async fn off(State(c): State<Ctx>, body: Bytes) -> Response {
    match c.map(1, &body) {
        Ok(Some(_)) => done(),
        Ok(None) => {
            c.pod.applied().held = true;
            done()
        }
        Err(r) => r.into_response(),
    }
}

async fn on(State(c): State<Ctx>, body: Bytes) -> Response {
    let map = match c.map(2, &body) {
        Ok(map) => map,
        Err(r) => return r.into_response(),
    };
    let mut a = c.pod.applied();
    match map {
        Some(map) => {
            let version = (map.epoch, map.generation);
            // The same map again (a retried `on`) may arrive: admission allows it.
            if version >= a.version {
                drop(a);
                let map = c.shared.maps.intern(map);
                let mut a = c.pod.applied();
                a.version = a.version.max(version);
                a.last = Some(map);
                a.held = false;
            }
            done()
        }
        None if a.last.is_none() => error(StatusCode::CONFLICT, "no map to re-apply"),
        None => {
            a.held = false;
            done()
        }
    }
}

/// The configuration is complete cluster-wide: what the swarm times.
async fn ok(State(c): State<Ctx>, body: Bytes) -> Response {
    match c.map(3, &body) {
        Ok(Some(map)) => {
            let seen = Seen {
                version: (map.epoch, map.generation),
                pods: map.pods.len(),
                at: Instant::now(),
            };
            c.shared.tracker.ok(c.pod.idx, seen);
            done()
        }
        Ok(None) => done(),
        Err(r) => r.into_response(),
    }
}
