//! Calling pods: the control API of SPEC §7 over HTTP, many pods at once.
//!
//! Receives [`Target`]s and a request (sent by [`crate::control::client`]); emits each pod's JSON
//! answer or a [`Failure`] that says what a user can do about it (which address did not answer, a
//! token problem, the pod's own error message). Requests run in parallel up to a limit, each with
//! its own timeout; nothing outlives the command.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::discover::Target;
use crate::auth::Signer;
use crate::control::client::{Call, CallError};

/// At most this much of a pod's answer is read (`/log` of many lines is the largest).
const MAX_ANSWER: usize = 8 << 20;

/// Why a call to one pod failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Nothing answered at the address (refused, unreachable, reset).
    #[error("no answer from {address}: {reason}")]
    Unreachable { address: String, reason: String },
    #[error("no answer from {address} within {after:?}")]
    Timeout { address: String, after: Duration },
    #[error("401 from {address}: {message} (pass the pods' token with --token or OCHOPOD_TOKEN)")]
    Unauthorized { address: String, message: String },
    /// The pod answered with an error status; `message` is its `{"error": ...}`.
    #[error("{status} from {address}: {message}")]
    Status {
        address: String,
        status: u16,
        message: String,
    },
    /// Anything else ctl itself decided (a bad answer, a check that did not pass).
    #[error("{0}")]
    Other(String),
}

/// A request to a pod's control API.
#[derive(Debug, Clone)]
pub struct Request {
    pub post: bool,
    pub path: String,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
}

impl Request {
    pub fn get(path: impl Into<String>, timeout: Duration) -> Request {
        Request {
            post: false,
            path: path.into(),
            body: None,
            timeout,
        }
    }

    /// A POST with an empty body unless one is given: an empty `/control/on` or `/control/off`
    /// is an operator's (SPEC §7), which is what ctl always is.
    pub fn post(path: impl Into<String>, body: Option<Vec<u8>>, timeout: Duration) -> Request {
        Request {
            post: true,
            path: path.into(),
            body,
            timeout,
        }
    }
}

/// The client side of the control API, cheap to clone into tasks.
#[derive(Clone)]
pub struct Caller {
    /// Signs every request when a token is given (the token itself is never sent).
    signer: Option<Signer>,
    /// At most this many requests in flight.
    parallelism: usize,
}

impl Caller {
    pub fn new(signer: Option<Signer>, parallelism: usize) -> Caller {
        Caller {
            signer,
            parallelism: parallelism.max(1),
        }
    }

    /// One call; the pod's JSON answer on a 2xx.
    pub async fn call(&self, target: &Target, req: &Request) -> Result<Value, Failure> {
        let address = target.address();
        let body = req.body.clone().unwrap_or_default();
        let response = Call::to(&target.pod, req.post, &req.path, body)
            .signed(self.signer.as_ref(), &target.pod)
            .send(req.timeout, MAX_ANSWER)
            .await
            .map_err(|e| transport(&address, &e))?;
        let status = response.status.as_u16();
        let body: Value = serde_json::from_str(&response.text).unwrap_or(Value::String(response.text));
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let message = match &body {
            Value::Object(o) => match o.get("error") {
                Some(Value::String(s)) => s.clone(),
                _ => body.to_string(),
            },
            Value::String(s) if !s.is_empty() => s.clone(),
            _ => "(no message)".to_string(),
        };
        Err(if status == 401 {
            Failure::Unauthorized { address, message }
        } else {
            Failure::Status {
                address,
                status,
                message,
            }
        })
    }

    /// Sends the same request to every target in parallel (bounded); answers in the targets' order.
    pub async fn call_each(&self, targets: &[Target], req: Request) -> Vec<(Target, Result<Value, Failure>)> {
        self.each(targets, move |caller, t| {
            let req = req.clone();
            async move { caller.call(&t, &req).await }
        })
        .await
    }

    /// Runs `work` for every target in parallel (bounded); results in the targets' order.
    pub async fn each<T, F, Fut>(&self, targets: &[Target], work: F) -> Vec<(Target, Result<T, Failure>)>
    where
        T: Send + 'static,
        F: Fn(Caller, Target) -> Fut,
        Fut: Future<Output = Result<T, Failure>> + Send + 'static,
    {
        let permits = Arc::new(Semaphore::new(self.parallelism));
        let mut set = JoinSet::new();
        for (i, target) in targets.iter().enumerate() {
            let job = work(self.clone(), target.clone());
            let permits = permits.clone();
            set.spawn(async move {
                // The semaphore is never closed, so acquiring only waits.
                let _permit = permits.acquire_owned().await;
                (i, job.await)
            });
        }
        let mut results: Vec<Option<Result<T, Failure>>> = (0..targets.len()).map(|_| None).collect();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((i, r)) => results[i] = Some(r),
                // A panicking task is a bug in ctl; its pod is reported as failed below.
                Err(e) => eprintln!("ochopod ctl: internal error: {e}"),
            }
        }
        targets
            .iter()
            .cloned()
            .zip(results)
            .map(|(t, r)| {
                let r = r.unwrap_or_else(|| Err(Failure::Other("the request task failed".into())));
                (t, r)
            })
            .collect()
    }
}

/// A transport error in words a user can act on.
fn transport(address: &str, e: &CallError) -> Failure {
    match e {
        CallError::Timeout(after) => Failure::Timeout {
            address: address.to_string(),
            after: *after,
        },
        // The innermost cause says why (`Connection refused (os error 111)`).
        _ => Failure::Unreachable {
            address: address.to_string(),
            reason: e.cause(),
        },
    }
}
