//! Who the leader leaves out of a configuration for failing (SPEC §3 `evict_after`): a pod
//! answering 410 at once, one failing `on` `evict_after` times, for as long as it keeps the same
//! registration. Shared by the configuration round ([`super::configure`]), its failure report
//! ([`super::stop`]) and the leader's cache, which seeds it from the snapshot.

use std::collections::{BTreeMap, HashMap};

use super::plan::Pods;
use super::world::World;
use crate::zk::cluster::Registered;

/// Pods left out: gone (410) or failing `on` `evict_after` times, for as long as they keep the
/// same registration (a new znode, i.e. a new czxid, gives them another chance). A new leader
/// starts from the snapshot's `failed` ([`Evictions::seed`]).
#[derive(Default)]
pub(super) struct Evictions {
    failures: HashMap<String, (i64, u32)>,
    seeded: bool,
}

impl Evictions {
    /// Once per leadership: the pods the last configuration recorded as evicted stay evicted in
    /// their current registration (the uuid is all the snapshot keeps).
    pub(super) fn seed(&mut self, failed: &[String], registered: &BTreeMap<String, Registered>, limit: u32) {
        if std::mem::replace(&mut self.seeded, true) {
            return;
        }
        for uuid in failed {
            if let Some(r) = registered.get(uuid) {
                self.fail(r, limit);
            }
        }
    }

    pub(super) fn count(&self, r: &Registered) -> u32 {
        match self.failures.get(&r.pod.uuid) {
            Some((czxid, n)) if *czxid == r.czxid => *n,
            _ => 0,
        }
    }

    pub(super) fn fail(&mut self, r: &Registered, by: u32) -> u32 {
        let n = self.count(r).saturating_add(by);
        self.failures.insert(r.pod.uuid.clone(), (r.czxid, n));
        n
    }

    pub(super) fn succeed(&mut self, uuid: &str) {
        self.failures.remove(uuid);
    }
}

/// The registered, running pods left out of `pods` as evicted, by seq.
pub(super) fn evicted(w: &World, pods: &Pods, evictions: &Evictions, evict_after: u32) -> Vec<String> {
    let mut out: Vec<&Registered> = w
        .registered
        .values()
        .filter(|r| r.pod.state.is_live() && !pods.contains_key(&r.pod.uuid))
        .filter(|r| evictions.count(r) >= evict_after.max(1))
        .collect();
    out.sort_by_key(|r| (r.pod.seq, r.pod.uuid.clone()));
    out.into_iter().map(|r| r.pod.uuid.clone()).collect()
}

/// A pod as logs and statuses name it: `seq N (uuid)`, or its uuid when it is not in `pods`.
pub(super) fn name(pods: &Pods, uuid: &str) -> String {
    pods.get(uuid)
        .map_or_else(|| uuid.to_string(), |p| format!("seq {} ({uuid})", p.seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Pod;

    fn reg(uuid: &str, czxid: i64) -> Registered {
        Registered {
            pod: Pod {
                uuid: uuid.into(),
                ..Pod::default()
            },
            czxid,
        }
    }

    #[test]
    fn a_new_leader_keeps_the_snapshots_evictions_for_the_current_registration() {
        let registered = BTreeMap::from([("c".to_string(), reg("c", 5)), ("d".to_string(), reg("d", 6))]);
        let mut e = Evictions::default();
        e.seed(&["c".into(), "gone".into()], &registered, 3);
        assert_eq!(e.count(&reg("c", 5)), 3);
        assert_eq!(e.count(&reg("d", 6)), 0);
        // Once per leadership: the leader's own snapshots do not add up.
        e.seed(&["c".into()], &registered, 3);
        assert_eq!(e.count(&reg("c", 5)), 3);
        // Registered again (a new znode): another chance.
        assert_eq!(e.count(&reg("c", 7)), 0);
    }
}
