//! A mirror of one directory's children, kept from watch events instead of read again whole.
//!
//! The leader holds one per directory it follows (its cluster's `pods/` and `seqs/`, each
//! dependency's `pods/`), each fed by the events of a persistent recursive watch on that
//! directory. An event names its znode: only that child is read again (created or changed: one
//! `get_data`) or dropped (deleted: no read), so a change costs O(1) requests whatever the size
//! of the cluster.
//!
//! The whole directory is read again (list, then every child, pipelined) only when the mirror is
//! [`Mirror::invalidate`]d: when it is new (its watch was just added), after a reconnection
//! (events can be lost across one, ZOOKEEPER-4698, and the watches are added again), after a
//! failed read, and when the directory itself was created or deleted. Each child is decoded as it
//! is read (the decoder is where its data is validated), never trusted from an earlier read of
//! another znode.
//!
//! No task of its own: the owner routes each event to [`Mirror::event`], then calls
//! [`Mirror::refresh`] before it looks at [`Mirror::entries`].

use std::collections::{BTreeMap, BTreeSet};

use zookeeper_client as zkc;

use super::{Client, ZkError};

/// What one watch event asks of a mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read this child again.
    Read(String),
    /// This child is gone.
    Drop(String),
    /// Read the whole directory again.
    Full,
    /// Not about this directory's children.
    Ignore,
}

/// The pure part: what an event of type `kind` on `path` means for the children of `dir`.
pub fn action(dir: &str, kind: zkc::EventType, path: &str) -> Action {
    if path == dir {
        return match kind {
            zkc::EventType::NodeCreated
            | zkc::EventType::NodeDeleted
            | zkc::EventType::NodeChildrenChanged => Action::Full,
            _ => Action::Ignore,
        };
    }
    let Some(rest) = path.strip_prefix(dir).and_then(|r| r.strip_prefix('/')) else {
        return Action::Ignore;
    };
    // A grandchild (nothing ochopod writes) says nothing about the child's own data.
    if rest.is_empty() || rest.contains('/') {
        return Action::Ignore;
    }
    match kind {
        zkc::EventType::NodeCreated | zkc::EventType::NodeDataChanged => Action::Read(rest.to_string()),
        zkc::EventType::NodeDeleted => Action::Drop(rest.to_string()),
        _ => Action::Ignore,
    }
}

/// Decodes one child from its name, data and stat; None leaves it out.
pub type Decode<T> = fn(&str, &[u8], &zkc::Stat) -> Option<T>;

/// The children of one directory, as last read, and what must be read again.
pub struct Mirror<T> {
    dir: String,
    decode: Decode<T>,
    /// The children followed, by name (see [`Mirror::only`]).
    names: fn(&str) -> bool,
    entries: BTreeMap<String, T>,
    /// Children named by events since the last refresh.
    dirty: BTreeSet<String>,
    /// Everything must be read again.
    stale: bool,
}

impl<T> Mirror<T> {
    /// A mirror of `dir`, empty and stale: the first refresh reads it whole.
    pub fn new(dir: String, decode: Decode<T>) -> Mirror<T> {
        Mirror {
            dir,
            decode,
            names: |_| true,
            entries: BTreeMap::new(),
            dirty: BTreeSet::new(),
            stale: true,
        }
    }

    /// Follows only the children whose name `names` accepts: the others are never read, nor
    /// kept (the claim tickets under `seqs/`, which come and go with every registration).
    pub fn only(mut self, names: fn(&str) -> bool) -> Mirror<T> {
        self.names = names;
        self
    }

    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The next refresh reads the whole directory.
    pub fn invalidate(&mut self) {
        self.stale = true;
    }

    /// Whether the next refresh has anything to read.
    pub fn is_fresh(&self) -> bool {
        !self.stale && self.dirty.is_empty()
    }

    /// Takes one watch event into account; true when it concerned this directory.
    pub fn event(&mut self, kind: zkc::EventType, path: &str) -> bool {
        match action(&self.dir, kind, path) {
            Action::Read(name) | Action::Drop(name) if !(self.names)(&name) => {}
            Action::Read(name) => {
                self.dirty.insert(name);
            }
            Action::Drop(name) => {
                self.dirty.remove(&name);
                self.entries.remove(&name);
            }
            Action::Full => self.stale = true,
            Action::Ignore => return false,
        }
        true
    }

    /// The children as last read, by name.
    pub fn entries(&self) -> &BTreeMap<String, T> {
        &self.entries
    }

    /// Reads what events (or staleness) asked for; returns how many requests that took. On an
    /// error the mirror is stale: the next refresh reads it whole.
    pub async fn refresh(&mut self, client: &Client) -> Result<u64, ZkError> {
        let r = self.try_refresh(client).await;
        if r.is_err() {
            self.stale = true;
        }
        r
    }

    async fn try_refresh(&mut self, client: &Client) -> Result<u64, ZkError> {
        let mut requests = 0u64;
        let names: Vec<String> = if self.stale {
            requests = 1;
            // The events until now are covered by the full read.
            self.dirty.clear();
            match client.list_children(&self.dir).await {
                Ok(mut n) => {
                    n.retain(|name| (self.names)(name));
                    self.entries.retain(|name, _| n.contains(name));
                    n
                }
                Err(zkc::Error::NoNode) => {
                    self.entries.clear();
                    Vec::new()
                }
                Err(e) => return Err(ZkError::op("listing", &self.dir)(e)),
            }
        } else {
            std::mem::take(&mut self.dirty).into_iter().collect()
        };
        let paths: Vec<String> = names.iter().map(|n| format!("{}/{n}", self.dir)).collect();
        // Pipelined: every read is sent before the first answer is awaited.
        let reads: Vec<_> = paths.iter().map(|p| client.get_data(p)).collect();
        requests = requests.saturating_add(u64::try_from(reads.len()).unwrap_or(u64::MAX));
        for ((name, path), read) in names.into_iter().zip(&paths).zip(reads) {
            match read.await {
                Ok((data, stat)) => match (self.decode)(&name, &data, &stat) {
                    Some(v) => {
                        self.entries.insert(name, v);
                    }
                    None => {
                        self.entries.remove(&name);
                    }
                },
                // Gone since the listing or the event: its deletion event follows, or came.
                Err(zkc::Error::NoNode) => {
                    self.entries.remove(&name);
                }
                Err(e) => return Err(ZkError::op("reading", path)(e)),
            }
        }
        self.stale = false;
        Ok(requests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zkc::EventType::*;

    #[test]
    fn an_event_on_a_child_reads_or_drops_that_child_only() {
        let dir = "/ochopod/clusters/a.b/pods";
        assert_eq!(
            action(dir, NodeCreated, &format!("{dir}/u1")),
            Action::Read("u1".into())
        );
        assert_eq!(
            action(dir, NodeDataChanged, &format!("{dir}/u1")),
            Action::Read("u1".into())
        );
        assert_eq!(
            action(dir, NodeDeleted, &format!("{dir}/u1")),
            Action::Drop("u1".into())
        );
        // The directory itself appearing or vanishing: everything again.
        assert_eq!(action(dir, NodeCreated, dir), Action::Full);
        assert_eq!(action(dir, NodeDeleted, dir), Action::Full);
        assert_eq!(action(dir, NodeDataChanged, dir), Action::Ignore);
        // Not a child: a sibling with the same prefix, a grandchild, another directory.
        assert_eq!(action(dir, NodeCreated, &format!("{dir}x/u1")), Action::Ignore);
        assert_eq!(action(dir, NodeCreated, &format!("{dir}/u1/x")), Action::Ignore);
        assert_eq!(
            action(dir, NodeCreated, "/ochopod/clusters/a.b/seqs/1"),
            Action::Ignore
        );
        assert_eq!(action(dir, NodeCreated, &format!("{dir}/")), Action::Ignore);
    }

    fn mirror() -> Mirror<u8> {
        let mut m = Mirror::new("/d".into(), |_, d, _| d.first().copied());
        m.stale = false;
        m.entries.insert("a".into(), 1);
        m.entries.insert("b".into(), 2);
        m
    }

    #[test]
    fn events_mark_children_and_deletions_drop_them_without_a_read() {
        let mut m = mirror();
        assert!(m.is_fresh());
        assert!(m.event(NodeDataChanged, "/d/a"));
        assert!(m.event(NodeDeleted, "/d/b"));
        assert!(!m.event(NodeDataChanged, "/e/a"));
        assert_eq!(m.dirty, BTreeSet::from(["a".to_string()]));
        assert_eq!(m.entries.keys().collect::<Vec<_>>(), ["a"]);
        // Created then deleted before a refresh: nothing left to read.
        m.event(NodeCreated, "/d/c");
        m.event(NodeDeleted, "/d/c");
        assert_eq!(m.dirty.len(), 1);
        // Deleted then created again: read.
        m.event(NodeDeleted, "/d/a");
        m.event(NodeCreated, "/d/a");
        assert!(m.dirty.contains("a") && !m.is_fresh());
        m.event(NodeDeleted, "/d");
        assert!(m.stale);
    }

    #[test]
    fn children_not_followed_are_neither_read_nor_kept() {
        let mut m = mirror().only(|name| name != "ticket");
        assert!(m.event(NodeCreated, "/d/ticket"), "about this directory");
        assert!(m.event(NodeDeleted, "/d/ticket"));
        assert!(m.is_fresh(), "nothing to read");
        assert!(m.event(NodeCreated, "/d/c"));
        assert!(!m.is_fresh());
    }
}
