//! The leader's persistent watches, each forwarding its events (with the znode's path) into one
//! channel that the leader loop drains into its cache ([`super::cache`]).
//!
//! zookeeper-client 0.11.2 does not restore persistent watches on the server after a
//! reconnection within the same session (its `resend_watches` never sends SetWatches2), and
//! events can be lost across a reconnection anyway (ZOOKEEPER-4698): a watch task that sees the
//! connection come back says so ([`Event::Reconnected`]); the leader adds every watch again
//! ([`Watches::renew`]) and reads its whole cache again. The watches go away with this value.

use std::collections::BTreeSet;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use zookeeper_client as zkc;

use crate::zk::{Client, ZkError};

/// What a watch reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Event {
    /// A znode event: its type and path (from the chroot).
    Node(zkc::EventType, String),
    /// The connection came back: watches must be added again, what they follow read again.
    Reconnected,
}

pub(super) struct Watches {
    /// To the leader loop, which holds the receiving end.
    events: mpsc::UnboundedSender<Event>,
    tasks: JoinSet<()>,
    paths: BTreeSet<(String, bool)>,
}

impl Watches {
    /// No watch yet; events go to `events`.
    pub(super) fn new(events: mpsc::UnboundedSender<Event>) -> Watches {
        Watches {
            events,
            tasks: JoinSet::new(),
            paths: BTreeSet::new(),
        }
    }

    /// Adds a persistent (recursive: of the whole subtree) watch on `path`, once. True when it was
    /// added now: what it follows must be read afresh (nothing reported the changes before it).
    pub(super) async fn add(
        &mut self,
        client: &Client,
        path: &str,
        recursive: bool,
    ) -> Result<bool, ZkError> {
        if self.paths.contains(&(path.to_string(), recursive)) {
            return Ok(false);
        }
        let mode = if recursive {
            zkc::AddWatchMode::PersistentRecursive
        } else {
            zkc::AddWatchMode::Persistent
        };
        let mut w = client
            .watch(path, mode)
            .await
            .map_err(ZkError::op("watching", path))?;
        self.paths.insert((path.to_string(), recursive));
        let events = self.events.clone();
        self.tasks.spawn(async move {
            loop {
                let event = w.changed().await;
                let sent = if event.event_type == zkc::EventType::Session {
                    if event.session_state == zkc::SessionState::SyncConnected {
                        events.send(Event::Reconnected)
                    } else {
                        Ok(())
                    }
                } else {
                    events.send(Event::Node(event.event_type, event.path))
                };
                // A persistent watcher panics if asked again after a terminal session event; a
                // closed channel means the leadership is over.
                let over = event.event_type == zkc::EventType::Session && event.session_state.is_terminated();
                if over || sent.is_err() {
                    break;
                }
            }
        });
        Ok(true)
    }

    /// Drops every watch and adds it again (after a reconnection, see the module). On failure
    /// the ones not added are forgotten: the caller adds what it needs again on its next pass.
    pub(super) async fn renew(&mut self, client: &Client) -> Result<(), ZkError> {
        tracing::info!(watches = self.paths.len(), "connection back: watching again");
        let paths = std::mem::take(&mut self.paths);
        self.tasks.abort_all();
        for (path, recursive) in &paths {
            self.add(client, path, *recursive).await?;
        }
        Ok(())
    }
}
