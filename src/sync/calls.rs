//! The leader's side of the control API (SPEC §7): `check`, `off`, `on`, `ok` sent to every pod,
//! and the commands it runs on its own pod (`settings.apply`, `settings.probe`).
//!
//! Every request carries `settings.timeout` and, when a token is set, a signature (never the
//! token: see [`crate::auth`]). Answers are read up to a cap. The HTTP itself is
//! [`crate::control::client`]'s.
//! Fan-outs run at most `settings.parallelism` requests at a time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::delivery::{Body, Outgoing, Takes};
use crate::auth::Signer;
use crate::control::client::Call;
use crate::model::{Action, Pod};

/// What a pod answered.
#[derive(Debug)]
pub enum Answer {
    /// 2xx; for `check`, what the pod says of itself.
    Ok(Reply),
    /// 406: the pod vetoes this configuration (`can_configure`): retry later.
    Veto,
    /// 410: the pod was killed for good: drop it.
    Gone,
    /// 409: the pod applied a later generation than the map's (or has no map to re-apply).
    Stale(CallFailure),
    /// Anything else: timeout, refused, 5xx...
    Failed(CallFailure),
}

/// Why a pod took no part in a phase, as the leader's status and log say it.
#[derive(Debug, thiserror::Error)]
pub enum CallFailure {
    /// No answer: refused, timed out, cut off.
    #[error("{url}: {}", .source.with_causes())]
    Unanswered {
        url: String,
        #[source]
        source: crate::control::client::CallError,
    },
    /// 409: it holds a later map, or none to re-apply.
    #[error("{url}: 409 {body}")]
    Stale { url: String, body: String },
    /// Any other status.
    #[error("{url}: {status} {body}")]
    Status { url: String, status: u16, body: String },
    /// 406 to `on`: its `can_configure` changed its mind after `check`.
    #[error("vetoed `on` (406)")]
    Vetoed,
    /// 410: killed for good.
    #[error("gone (410)")]
    Gone,
}

/// What a 2xx answer to `check` says (nothing for the other calls, or from an older pod).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reply {
    /// What `on` would do to the pod's process (None from an older pod).
    pub action: Option<Action>,
    /// The pod takes maps as deltas, and how (SPEC §7).
    pub takes: Takes,
    /// It asked for the whole map (409 `"need": "full"`) and took it: it did not hold the map
    /// the leader thought.
    pub refetched: bool,
}

/// Sends control requests to pods.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Signs every request when tokens are set (the token itself is never sent).
    signer: Option<Signer>,
    timeout: Duration,
    parallelism: usize,
}

/// At most this much of an error answer is read (a pod's `{"error": ...}` is a line).
const MAX_ERROR_BODY: usize = 8 << 10;

/// Bytes of cluster maps (whole or deltas) this process sent as a leader, all calls together:
/// `ochopod_cluster_map_bytes_sent_total` in `/metrics`.
static MAP_BYTES_SENT: AtomicU64 = AtomicU64::new(0);

/// Bytes of cluster maps (whole or deltas) this process sent as a leader, so far.
pub fn map_bytes_sent() -> u64 {
    MAP_BYTES_SENT.load(Ordering::Relaxed)
}

impl Caller {
    pub fn new(signer: Option<Signer>, timeout: Duration, parallelism: usize) -> Caller {
        Caller {
            signer,
            timeout,
            parallelism: parallelism.max(1),
        }
    }

    /// `POST <path>` to one pod, with its body of `out` when given: a delta, and the whole map
    /// if the pod answers that it needs it (409 `"need": "full"`).
    pub async fn post(&self, pod: &Pod, path: &str, out: Option<&Outgoing>) -> Answer {
        let Some(out) = out else {
            return self.send(pod, path, None).await.0;
        };
        let body = out.body(&pod.uuid);
        let delta = body.delta;
        match self.send(pod, path, Some(body)).await {
            (Answer::Stale(e), true) if delta => {
                tracing::debug!(uuid = %pod.uuid, path, reason = %e, "the pod needs the whole map");
                match self.send(pod, path, Some(out.full(&pod.uuid))).await.0 {
                    Answer::Ok(reply) => Answer::Ok(Reply {
                        refetched: true,
                        ..reply
                    }),
                    answer => answer,
                }
            }
            (answer, _) => answer,
        }
    }

    /// One request; the flag says the answer was a 409 asking for the whole map.
    async fn send(&self, pod: &Pod, path: &str, body: Option<Body>) -> (Answer, bool) {
        let call = match body {
            Some(b) => {
                let n = u64::try_from(b.bytes.len()).unwrap_or(u64::MAX);
                MAP_BYTES_SENT.fetch_add(n, Ordering::Relaxed);
                Call::to(pod, true, path, b.bytes).signed_digest(self.signer.as_ref(), pod, &b.sha256)
            }
            None => Call::to(pod, true, path, Vec::new()).signed(self.signer.as_ref(), pod),
        };
        let url = call.url();
        let r = match call.send(self.timeout, MAX_ERROR_BODY).await {
            Ok(r) => r,
            Err(source) => return (Answer::Failed(CallFailure::Unanswered { url, source }), false),
        };
        let answer = match r.status.as_u16() {
            200..=299 => {
                let v = serde_json::from_str::<serde_json::Value>(&r.text).unwrap_or_default();
                let flag = |name| v.get(name).and_then(serde_json::Value::as_bool) == Some(true);
                Answer::Ok(Reply {
                    action: v
                        .get("action")
                        .and_then(|a| serde_json::from_value(a.clone()).ok()),
                    takes: Takes {
                        deltas: flag("deltas"),
                        inherits: flag("inherits"),
                    },
                    refetched: false,
                })
            }
            406 => Answer::Veto,
            409 => {
                let full = serde_json::from_str::<serde_json::Value>(&r.text)
                    .is_ok_and(|v| v.get("need").and_then(serde_json::Value::as_str) == Some("full"));
                let body = r.text.trim().to_string();
                return (Answer::Stale(CallFailure::Stale { url, body }), full);
            }
            410 => Answer::Gone,
            _ => Answer::Failed(CallFailure::Status {
                url,
                status: r.status.as_u16(),
                body: r.text.trim().to_string(),
            }),
        };
        (answer, false)
    }

    /// `POST <path>` to every pod at once (up to `parallelism` in flight), each with its body of
    /// `out` when given.
    pub async fn fan_out(
        &self,
        pods: &[Pod],
        path: &'static str,
        out: Option<&Arc<Outgoing>>,
    ) -> BTreeMap<String, Answer> {
        let gate = Arc::new(Semaphore::new(self.parallelism));
        let mut set = JoinSet::new();
        for pod in pods {
            let (me, pod, gate, out) = (self.clone(), pod.clone(), gate.clone(), out.cloned());
            set.spawn(async move {
                // The semaphore is never closed, so acquire cannot fail; a failure would only
                // mean running without the limit.
                let _permit = gate.acquire_owned().await.ok();
                let answer = me.post(&pod, path, out.as_deref()).await;
                (pod.uuid, answer)
            });
        }
        let mut out = BTreeMap::new();
        while let Some(r) = set.join_next().await {
            if let Ok((uuid, answer)) = r {
                out.insert(uuid, answer);
            }
        }
        out
    }
}

/// The last non-empty line of a command's output (the probe's status).
pub fn last_line(text: &str) -> Option<String> {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_last_non_empty_line_is_the_status() {
        assert_eq!(last_line("a\nb\n\n  \n").as_deref(), Some("b"));
        assert_eq!(last_line(""), None);
    }
}
