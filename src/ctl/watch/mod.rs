//! The live view of every cluster, shared by `ctl events` and `ctl ui`: one ZooKeeper session,
//! one persistent recursive watch on `/ochopod/clusters`, an in-memory [`Model`] of what the
//! layout of SPEC §6 holds, and the [`Event`]s between two successive models.
//!
//! ```text
//!  ZooKeeper ──(AddWatch PERSISTENT_RECURSIVE /ochopod/clusters)──▶ watch task ──▶ batch of paths
//!                                                                                   │ dirty clusters
//!                                                                                   ▼
//!              Update { model, events } ◀── diff(old, new) ◀── re-read the dirty clusters (pipelined)
//! ```
//!
//! Owns its session (a `Discovery`, renewed after an expiry) and the task that forwards the
//! watch's notifications. Emits [`Update`]s over a bounded channel to ONE consumer (the events
//! printer, or the UI's state actor that fans out to viewers); a slow consumer slows the watcher
//! down instead of losing events. Stops when that consumer drops its receiver.
//!
//! Why a re-read of the whole cluster and not of the one znode: a notification says only that a
//! path changed, and the data may have changed again since; reading the cluster (about one round
//! trip: every read is sent before the first is awaited) gives a consistent enough picture, and
//! notifications coming in meanwhile mark it dirty again.
//!
//! ZooKeeper 3.8 has AddWatch; ZOOKEEPER-4466: one session should not hold a one-shot and a
//! persistent watch on the same path, so this session only ever holds the one persistent watch
//! (its reads do not watch). zookeeper-client 0.11.2 does not re-add persistent watches after a
//! reconnection within the same session, so on `SyncConnected` the watch is added again and
//! everything re-read (changes while disconnected were not notified).
//!
//! What ZooKeeper cannot tell, and so no event says: when a configuration *started* and how long
//! it took (the leader writes the snapshot once, when it is done); pauses (not in this layout).

mod model;
mod read;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use zookeeper_client as zkc;

use super::discover::{Discovery, CLUSTERS};
use super::CtlError;
use crate::backoff::Backoff;
pub use model::{diff, Change, ClusterView, Event, Model, Rejected, SnapshotView, Update};
pub use read::read_model;
use read::{refresh, Dirty};

/// Starts the watcher; its first [`Update`] holds the whole model and, as events, the current
/// state (every pod registered, the leaders, the last configurations).
pub fn spawn(zk: Discovery) -> mpsc::Receiver<Update> {
    let (tx, rx) = mpsc::channel(64);
    let span = tracing::info_span!("watch", zk = zk.connect_string());
    tokio::spawn(tracing::Instrument::instrument(run(zk, tx), span));
    rx
}

/// How one session ended.
enum End {
    /// The consumer is gone: stop.
    Closed,
    /// The session is over (expired, closed): open another.
    Lost(String),
}

async fn run(zk: Discovery, tx: mpsc::Sender<Update>) {
    let mut model = Model::default();
    let mut sent = false;
    loop {
        match session(&zk, &mut model, &mut sent, &tx).await {
            End::Closed => return,
            End::Lost(why) => {
                eprintln!("ochopod ctl: ZooKeeper session lost ({why}); opening a new one");
                let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
                loop {
                    tokio::select! {
                        _ = tx.closed() => return,
                        _ = tokio::time::sleep(backoff.next_wait()) => {}
                    }
                    match zk.renew().await {
                        Ok(()) => break,
                        Err(e) => eprintln!("ochopod ctl: {e}; retrying"),
                    }
                }
            }
        }
    }
}

/// Adds the one persistent recursive watch; its notifications go to `events`, until the
/// session ends or the returned task is aborted.
async fn add_watch(
    zk: &Discovery,
    client: &zkc::Client,
    events: mpsc::UnboundedSender<zkc::WatchedEvent>,
) -> Result<tokio::task::JoinHandle<()>, CtlError> {
    let mut watcher = client
        .watch(CLUSTERS, zkc::AddWatchMode::PersistentRecursive)
        .await
        .map_err(zk.op("watching", CLUSTERS))?;
    Ok(tokio::spawn(async move {
        loop {
            let event = watcher.changed().await;
            // A persistent watcher panics if asked again after a terminal session event.
            let last = event.event_type == zkc::EventType::Session && event.session_state.is_terminated();
            if events.send(event).is_err() || last {
                return;
            }
        }
    }))
}

fn is_session_lost(e: &CtlError) -> bool {
    matches!(e, CtlError::Zk { source, .. } if crate::zk::is_final(source))
}

/// Serves one session: watch, read, diff, send, until the session or the consumer ends.
/// `sent`: whether the first update went out (it goes even when there is nothing at all).
async fn session(zk: &Discovery, model: &mut Model, sent: &mut bool, tx: &mpsc::Sender<Update>) -> End {
    let client = zk.client();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut dirty = Dirty {
        all: true,
        ..Dirty::default()
    };
    // Added before the first read, so that nothing changes unseen between the two.
    let mut task: Option<tokio::task::JoinHandle<()>> = None;
    let mut retry_at: Option<tokio::time::Instant> = None;
    let result = loop {
        if task.is_none() {
            match add_watch(zk, &client, events_tx.clone()).await {
                Ok(t) => task = Some(t),
                Err(e) if is_session_lost(&e) => break End::Lost(e.to_string()),
                Err(e) => {
                    eprintln!("ochopod ctl: {e}; retrying");
                    retry_at = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                }
            }
        }
        if task.is_some() && !dirty.is_empty() && retry_at.is_none() {
            match refresh(zk, &client, model, &dirty).await {
                Ok(next) => {
                    let changes = diff(
                        model,
                        &next,
                        &dirty.touched,
                        &crate::clock::rfc3339(SystemTime::now()),
                    );
                    let changed = next != *model;
                    *model = next;
                    dirty = Dirty::default();
                    if (!*sent || changed)
                        && tx
                            .send(Update {
                                model: Arc::new(model.clone()),
                                events: changes,
                            })
                            .await
                            .is_err()
                    {
                        break End::Closed;
                    }
                    *sent = true;
                }
                Err(e) if is_session_lost(&e) => break End::Lost(e.to_string()),
                // Connection loss: the reconnection is notified (SyncConnected) and re-reads
                // everything; the timer covers an error that will not be.
                Err(e) => {
                    eprintln!("ochopod ctl: {e}; retrying");
                    retry_at = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                }
            }
        }
        let first = tokio::select! {
            _ = tx.closed() => break End::Closed,
            e = events.recv() => e,
            _ = sleep_until(retry_at) => { retry_at = None; continue; }
        };
        // Coalesce: everything already notified goes into one read.
        let mut batch: Vec<zkc::WatchedEvent> = first.into_iter().collect();
        while let Ok(e) = events.try_recv() {
            batch.push(e);
        }
        let mut lost = None;
        for e in batch {
            if e.event_type == zkc::EventType::Session {
                match e.session_state {
                    zkc::SessionState::SyncConnected | zkc::SessionState::ConnectedReadOnly => {
                        // The server forgot the watch (see the module doc): add it, read all.
                        if let Some(t) = task.take() {
                            t.abort();
                        }
                        dirty.all = true;
                        retry_at = None;
                    }
                    s if s.is_terminated() => lost = Some(format!("{s:?}")),
                    _ => {}
                }
            } else {
                dirty.note(&e.path, e.event_type);
            }
        }
        if let Some(why) = lost {
            break End::Lost(why);
        }
    };
    if let Some(t) = task {
        t.abort();
    }
    result
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Whether a cluster key is selected by the command line's patterns (none: the namespace).
pub fn selected(key: &str, patterns: &[String], namespace: &str) -> bool {
    if patterns.is_empty() {
        return crate::glob::matches(&super::key_pattern("*", namespace), key);
    }
    patterns
        .iter()
        .any(|p| crate::glob::matches(&super::key_pattern(p, namespace), key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_follows_ctl_patterns() {
        assert!(selected("default.zk", &[], "default"));
        assert!(!selected("prod.zk", &[], "default"));
        assert!(selected("prod.zk", &["prod.*".into()], "default"));
        assert!(selected("default.kafka", &["k*".into()], "default"));
    }
}
