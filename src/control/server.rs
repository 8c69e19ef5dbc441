//! The HTTP server under the control API: our own accept loop over hyper, so that slow or
//! excess connections cannot take the pod down (SPEC §7).
//!
//! Why not `axum::serve`: it reads headers with no deadline and accepts without a limit. The
//! port, the supervised process and its hooks share one file-descriptor table (the child is
//! spawned by this process), so a few hundred clients that each send half a request used every
//! fd: `/healthz` stopped answering (a liveness probe then kills the pod) and restarts failed
//! with "Too many open files".
//!
//! The limits, per connection:
//! - **Headers**: a request's headers must arrive within [`HEADER_TIMEOUT`], counted from the
//!   accept or from the previous answer; hyper closes the connection otherwise. So this is also
//!   the idle keep-alive timeout.
//! - **Body**: the body must arrive within [`BODY_TIMEOUT`] of the headers; a late body fails
//!   the handler's read (a 4xx) and the connection closes. What the handler does next is not
//!   timed: `/control/on` may wait for readiness as long as `checks.ready.timeout` says.
//!
//! And for the pod: at most [`connection_cap`] connections, a quarter of the soft
//! `RLIMIT_NOFILE` between [`MIN_CONNECTIONS`] and [`MAX_CONNECTIONS`], which leaves most fds to
//! the child, its hooks and ZooKeeper. A connection is either *waiting* (for a request's
//! headers: just accepted, or idle between requests) or *busy* (headers read, answer being
//! made). A newcomer at the cap closes the connection that has waited longest (a slowloris, an
//! idle keep-alive) and takes its place; when every connection is busy, the newcomer itself is
//! closed. Refusing newcomers instead would let a flood of half-requests lock the liveness probe
//! out; shedding the oldest waiter lets a probe, whose headers come at once, through. Both are
//! counted in `ochopod_http_connections_shed` (`/metrics`).
//!
//! Shutdown: when the token fires, the listener closes; a connection waiting for a request
//! closes at once, one answering finishes its answer and closes (hyper's graceful shutdown), and
//! [`serve`] returns when all are gone. The runtime bounds that wait.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::http::Request;
use axum::{BoxError, Router};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Time a client has to send a request's headers (also the idle keep-alive timeout).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has, after its headers, to send the body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bounds of the connection cap, whatever the fd limit says.
pub const MIN_CONNECTIONS: usize = 16;
pub const MAX_CONNECTIONS: usize = 1024;
/// Pause after an accept error that is not about one connection (out of fds, of memory), so a
/// full table does not turn the loop into a busy spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The connection cap for this process: a quarter of the soft fd limit, within bounds.
pub fn connection_cap() -> usize {
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((soft, _hard)) => cap_for(soft),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read RLIMIT_NOFILE; assuming 1024");
            cap_for(1024)
        }
    }
}

fn cap_for(soft_limit: u64) -> usize {
    usize::try_from(soft_limit / 4)
        .unwrap_or(MAX_CONNECTIONS)
        .clamp(MIN_CONNECTIONS, MAX_CONNECTIONS)
}

/// What `/metrics` reports about connections.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub open: usize,
    pub cap: usize,
    pub shed: u64,
}

/// The open connections and what each is doing. The accept loop admits (and sheds); each
/// connection's task marks itself busy or waiting and removes itself when it ends. A router
/// extension, so `/metrics` can read it.
#[derive(Clone)]
pub struct Connections(Arc<Mutex<Table>>);

struct Table {
    cap: usize,
    next: u64,
    open: HashMap<u64, Entry>,
    shed: u64,
}

struct Entry {
    /// Since when it waits for a request's headers; `None` while a request is being answered.
    waiting_since: Option<Instant>,
    /// Held by the connection's task, which drops the connection (closing its socket) when cancelled.
    close: CancellationToken,
}

impl Connections {
    pub fn new(cap: usize) -> Connections {
        Connections(Arc::new(Mutex::new(Table {
            cap,
            next: 0,
            open: HashMap::new(),
            shed: 0,
        })))
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // Nothing panics while holding the lock; a poisoned table is still consistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn stats(&self) -> Stats {
        let t = self.table();
        Stats {
            open: t.open.len(),
            cap: t.cap,
            shed: t.shed,
        }
    }

    /// Makes room for a connection accepted `now`: its id and close token, or `None` when every
    /// connection is busy (the newcomer is then closed).
    fn admit(&self, now: Instant) -> Option<(u64, CancellationToken)> {
        let mut t = self.table();
        if t.open.len() >= t.cap {
            t.shed = t.shed.saturating_add(1);
            let oldest = t
                .open
                .iter()
                .filter_map(|(id, e)| e.waiting_since.map(|since| (since, *id)))
                .min();
            let (_, id) = oldest?;
            if let Some(e) = t.open.remove(&id) {
                e.close.cancel();
            }
        }
        let id = t.next;
        t.next = t.next.wrapping_add(1);
        let close = CancellationToken::new();
        t.open.insert(
            id,
            Entry {
                waiting_since: Some(now),
                close: close.clone(),
            },
        );
        Some((id, close))
    }

    /// The connection's headers are in: it no longer counts as waiting.
    fn busy(&self, id: u64) {
        if let Some(e) = self.table().open.get_mut(&id) {
            e.waiting_since = None;
        }
    }

    /// The answer is made (`now`): the connection waits for its next request.
    fn waiting(&self, id: u64, now: Instant) {
        if let Some(e) = self.table().open.get_mut(&id) {
            e.waiting_since = Some(now);
        }
    }

    fn is_waiting(&self, id: u64) -> bool {
        self.table()
            .open
            .get(&id)
            .is_some_and(|e| e.waiting_since.is_some())
    }

    fn remove(&self, id: u64) {
        self.table().open.remove(&id);
    }
}

/// Serves `router` on `listener` until `shutdown` fires, then drains (see the module doc).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let conns = Connections::new(connection_cap());
    let router = router.layer(axum::Extension(conns.clone()));
    tracing::debug!(
        cap = conns.stats().cap,
        header_timeout_s = HEADER_TIMEOUT.as_secs_f64(),
        body_timeout_s = BODY_TIMEOUT.as_secs_f64(),
        "HTTP limits"
    );
    let tasks = TaskTracker::new();
    // Reaching the cap is worth one line; each closure after it is only counted.
    let mut warned = false;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) if is_connection_error(&e) => {
                tracing::debug!(error = %e, "accept failed for one connection");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let Some((id, close)) = conns.admit(Instant::now()) else {
            tracing::debug!(%peer, "every connection is busy; closing the newcomer");
            continue;
        };
        if !warned && conns.stats().shed > 0 {
            warned = true;
            tracing::warn!(
                cap = conns.stats().cap,
                "HTTP connection cap reached: closing the connections that wait longest (counted in ochopod_http_connections_shed)"
            );
        }
        tasks.spawn(connection(
            stream,
            router.clone(),
            conns.clone(),
            id,
            close,
            shutdown.clone(),
        ));
    }
    // Stop accepting: the port closes now, while the connections drain.
    drop(listener);
    tasks.close();
    tasks.wait().await;
    Ok(())
}

/// Errors about one connection (it went away before we took it), not about the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

/// Serves one connection until it ends, is shed (`close`), or drains on `shutdown`.
async fn connection(
    stream: TcpStream,
    router: Router,
    conns: Connections,
    id: u64,
    close: CancellationToken,
    shutdown: CancellationToken,
) {
    let tower = TowerToHyperService::new(router);
    let service = {
        let conns = conns.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            // hyper calls the service once the headers are read.
            conns.busy(id);
            let answer =
                hyper::service::Service::call(&tower, req.map(|body| DeadlineBody::new(body, BODY_TIMEOUT)));
            let conns = conns.clone();
            async move {
                let answer = answer.await;
                conns.waiting(id, Instant::now());
                answer
            }
        })
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        // Shed by the accept loop: dropping the connection closes its socket.
        _ = close.cancelled() => Ok(()),
        // Nothing in flight: close now rather than wait for half-sent headers (an answer is
        // flushed in the poll that made it, unless its client stopped reading). Otherwise
        // finish the answer, then close.
        _ = shutdown.cancelled() => if conns.is_waiting(id) {
            Ok(())
        } else {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    conns.remove(id);
    match ended {
        Ok(()) => {}
        Err(e) if e.is_timeout() => tracing::debug!("connection closed: headers too slow, or idle"),
        Err(e) => tracing::debug!(error = %e, "connection ended with an error"),
    }
}

/// A request body that must end within a time limit ([`BODY_TIMEOUT`]) of the headers.
pub struct DeadlineBody<B> {
    inner: B,
    limit: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<B> DeadlineBody<B> {
    pub fn new(inner: B, limit: Duration) -> DeadlineBody<B> {
        DeadlineBody {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

/// The body did not arrive in time: the handler's read fails with this (a 400), and hyper
/// closes the connection since the body was not read to its end.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {limit:?}")]
pub struct BodyTimeout {
    pub limit: Duration,
}

impl<B> Body for DeadlineBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimeout { limit: this.limit }.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_is_a_quarter_of_the_fd_limit_within_bounds() {
        assert_eq!(cap_for(256), 64);
        assert_eq!(cap_for(1024), 256);
        assert_eq!(cap_for(20), MIN_CONNECTIONS);
        assert_eq!(cap_for(1 << 20), MAX_CONNECTIONS);
        assert_eq!(cap_for(u64::MAX), MAX_CONNECTIONS);
    }

    #[test]
    fn at_the_cap_the_longest_waiting_connection_is_shed() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let conns = Connections::new(3);
        let (a, close_a) = conns.admit(at(0)).expect("room");
        let (b, close_b) = conns.admit(at(1)).expect("room");
        let (c, close_c) = conns.admit(at(2)).expect("room");
        // a is busy (headers in), so b has waited longest.
        conns.busy(a);
        let (d, close_d) = conns.admit(at(3)).expect("b makes room");
        assert!(close_b.is_cancelled());
        assert!(!close_a.is_cancelled() && !close_c.is_cancelled() && !close_d.is_cancelled());
        assert_eq!(conns.stats().open, 3);
        assert_eq!(conns.stats().shed, 1);
        // b's task ends later and removes itself: harmless.
        conns.remove(b);
        assert_eq!(conns.stats().open, 3);
        // Everyone busy: the newcomer is refused, nobody else is closed.
        conns.busy(c);
        conns.busy(d);
        assert!(conns.admit(at(4)).is_none());
        assert!(!close_a.is_cancelled() && !close_c.is_cancelled() && !close_d.is_cancelled());
        assert_eq!(conns.stats().shed, 2);
        // a answered and waits for its next request: it is the one to go next.
        conns.waiting(a, at(5));
        assert!(conns.admit(at(6)).is_some());
        assert!(close_a.is_cancelled());
        assert!(!close_c.is_cancelled() && !close_d.is_cancelled());
    }

    /// A body that never sends anything.
    struct Stalled;

    impl Body for Stalled {
        type Data = axum::body::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_body_that_does_not_arrive_in_time_is_an_error() {
        let limit = Duration::from_millis(50);
        let start = Instant::now();
        let mut body = DeadlineBody::new(Stalled, limit);
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        let err = frame.expect("an error, not the end").expect_err("timed out");
        assert!(err.is::<BodyTimeout>(), "{err}");
        assert!(start.elapsed() >= limit);
    }

    #[tokio::test]
    async fn a_body_in_time_passes_through() {
        let mut body = DeadlineBody::new(axum::body::Body::from("map"), BODY_TIMEOUT);
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx))
            .await
            .expect("a frame")
            .expect("data");
        assert_eq!(frame.into_data().ok().as_deref(), Some(&b"map"[..]));
    }
}
