//! Which seqs a configuration frees and which it keeps reserved (SPEC §4), and who was seen
//! leaving: pure, unit-tested. Used by `configure` (the snapshot transaction frees them) and by
//! the leader loop and the lost-pods safety net ([`Leavers`]).

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Duration;

use crate::model::PodState;
use crate::model::Pods;
use crate::zk::cluster::{HeldSeq, Registered};
use crate::zk::snapshot::Reservation;

/// What a configuration does with the seqs whose holder is neither in it nor registered (a held
/// or failed pod keeps its seq while registered): frees them, or keeps them reserved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeqPlan {
    /// To delete in the snapshot transaction.
    pub free: Vec<HeldSeq>,
    /// The snapshot's `reserved`.
    pub reserved: BTreeMap<u32, Reservation>,
}

/// The fate of the seqs of pods gone (SPEC §4). A pod seen `leaving` left: its seq is free. One
/// that vanished otherwise (its session expired: a partition, a frozen VM) keeps its seq reserved
/// for its uuid until `hold` after the first configuration without it, so a newcomer takes
/// another one and the pod back within the hold gets its own; the first configuration after
/// that frees it. `hold` 0 frees them all at once. A reservation is dropped once its seq is no
/// longer held by its uuid for a pod gone (the pod is back, or the seq was taken back), and one
/// further away than `hold` (written by somebody else) is brought back to `hold` from now.
pub fn seqs_to_free(
    held: &[HeldSeq],
    configured: &Pods,
    registered: &BTreeSet<String>,
    left: &Leavers,
    reserved: &BTreeMap<u32, Reservation>,
    now_ms: u64,
    hold: Duration,
) -> SeqPlan {
    let hold_ms = u64::try_from(hold.as_millis()).unwrap_or(u64::MAX);
    let latest = now_ms.saturating_add(hold_ms);
    let mut plan = SeqPlan::default();
    let gone = held
        .iter()
        .filter(|h| !configured.contains_key(&h.uuid) && !registered.contains(&h.uuid));
    for h in gone {
        if hold.is_zero() || left.0.contains(&h.uuid) {
            plan.free.push(h.clone());
            continue;
        }
        let until = match reserved.get(&h.seq) {
            Some(r) if r.uuid == h.uuid => r.until.min(latest),
            _ => latest,
        };
        if until <= now_ms {
            plan.free.push(h.clone());
        } else {
            let uuid = h.uuid.clone();
            plan.reserved.insert(h.seq, Reservation { uuid, until });
        }
    }
    plan
}

/// The uuids this leadership saw registered as `leaving`, gone since or not: what tells a pod
/// that left from one that vanished ([`seqs_to_free`], and the lost-pods safety net). A pod registered again in another state
/// is forgotten, and so is one that holds no seq any more. A new leader starts empty: a pod that
/// left before it ever saw it `leaving` counts as vanished (its seq is only held longer).
#[derive(Debug, Default)]
pub struct Leavers(BTreeSet<String>);

impl Leavers {
    /// One read of the cluster: its registrations and its held seqs.
    pub fn saw(&mut self, registered: &BTreeMap<String, Registered>, held: &[HeldSeq]) {
        for r in registered.values() {
            match r.pod.state {
                PodState::Leaving => self.0.insert(r.pod.uuid.clone()),
                _ => self.0.remove(&r.pod.uuid),
            };
        }
        self.0.retain(|u| held.iter().any(|h| &h.uuid == u));
    }

    /// Whether `uuid` was seen leaving (and still holds its seq).
    pub fn contains(&self, uuid: &str) -> bool {
        self.0.contains(uuid)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::Pod;
    use crate::sync::plan::tests::{pod, pods};

    #[test]
    fn frees_seqs_of_pods_neither_configured_nor_registered() {
        let held = |seq, uuid: &str| HeldSeq {
            seq,
            uuid: uuid.into(),
            version: 0,
        };
        let all = [held(1, "a"), held(2, "b"), held(3, "c")];
        let configured = pods(&[("a", 1)]);
        let registered = BTreeSet::from(["b".to_string()]);
        let none = BTreeMap::new();
        // `seq_hold: 0s`: freed at once, whether the pod left or vanished.
        let plan = seqs_to_free(
            &all,
            &configured,
            &registered,
            &Leavers::default(),
            &none,
            1000,
            Duration::ZERO,
        );
        assert_eq!(plan.free, [held(3, "c")]);
        assert!(plan.reserved.is_empty());
    }

    fn reserved(list: &[(u32, &str, u64)]) -> BTreeMap<u32, Reservation> {
        list.iter()
            .map(|(seq, uuid, until)| {
                let r = Reservation {
                    uuid: uuid.to_string(),
                    until: *until,
                };
                (*seq, r)
            })
            .collect()
    }

    #[test]
    fn a_seq_lost_by_expiry_is_reserved_for_the_hold_then_freed() {
        let held = |seq, uuid: &str| HeldSeq {
            seq,
            uuid: uuid.into(),
            version: 7,
        };
        let all = [held(1, "a"), held(2, "b"), held(3, "c")];
        let configured = pods(&[("b", 2), ("c", 3)]);
        let registered: BTreeSet<String> = ["b".to_string(), "c".to_string()].into();
        let hold = Duration::from_secs(300);
        let none = BTreeMap::new();
        let left = Leavers::default();
        // `a` vanished without leaving: its seq is kept, until 5 min after this configuration.
        let plan = seqs_to_free(&all, &configured, &registered, &left, &none, 1000, hold);
        assert!(plan.free.is_empty());
        assert_eq!(plan.reserved, reserved(&[(1, "a", 301_000)]));
        // The next configurations keep the reservation as it is...
        let again = seqs_to_free(
            &all,
            &configured,
            &registered,
            &left,
            &plan.reserved,
            60_000,
            hold,
        );
        assert_eq!(again, plan);
        // ... and the first one after it frees the seq.
        let after = seqs_to_free(
            &all,
            &configured,
            &registered,
            &left,
            &plan.reserved,
            301_000,
            hold,
        );
        assert_eq!(after.free, [held(1, "a")]);
        assert!(after.reserved.is_empty());
        // Back under its uuid: registered again, nothing to free or reserve.
        let back: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
        let plan2 = seqs_to_free(&all, &configured, &back, &left, &plan.reserved, 2000, hold);
        assert_eq!(plan2, SeqPlan::default());
        // Taken back by another uuid (a StatefulSet ordinal on a new volume): a fresh hold for it.
        let taken = [held(1, "z"), held(2, "b"), held(3, "c")];
        let plan3 = seqs_to_free(
            &taken,
            &configured,
            &registered,
            &left,
            &plan.reserved,
            2000,
            hold,
        );
        assert_eq!(plan3.reserved, reserved(&[(1, "z", 302_000)]));
        // An entry further away than the hold (not written by a leader) is brought back to it.
        let far = reserved(&[(1, "a", u64::MAX)]);
        let plan4 = seqs_to_free(&all, &configured, &registered, &left, &far, 2000, hold);
        assert_eq!(plan4.reserved, reserved(&[(1, "a", 302_000)]));
        // A seq_hold turned to 0 frees the reserved ones at the next configuration.
        let zero = seqs_to_free(
            &all,
            &configured,
            &registered,
            &left,
            &plan.reserved,
            2000,
            Duration::ZERO,
        );
        assert_eq!((zero.free, zero.reserved.len()), (vec![held(1, "a")], 0));
    }

    #[test]
    fn a_pod_seen_leaving_frees_its_seq_at_once() {
        let reg = |uuid: &str, state| Registered {
            pod: Pod {
                state,
                ..pod(uuid, 1)
            },
            czxid: 1,
        };
        let held = |seq, uuid: &str| HeldSeq {
            seq,
            uuid: uuid.into(),
            version: 0,
        };
        let all = [held(1, "a"), held(2, "b")];
        let mut left = Leavers::default();
        let registered = BTreeMap::from([
            ("a".to_string(), reg("a", PodState::Leaving)),
            ("b".to_string(), reg("b", PodState::Running)),
        ]);
        left.saw(&registered, &all);
        // Then `a` is gone.
        let registered = BTreeMap::from([("b".to_string(), reg("b", PodState::Running))]);
        left.saw(&registered, &all);
        let names: BTreeSet<String> = registered.keys().cloned().collect();
        let configured = pods(&[("b", 2)]);
        let hold = Duration::from_secs(300);
        let plan = seqs_to_free(&all, &configured, &names, &left, &BTreeMap::new(), 0, hold);
        assert_eq!((plan.free, plan.reserved.len()), (vec![held(1, "a")], 0));
        // Back and running: forgotten (a later expiry reserves its seq).
        let back = BTreeMap::from([("a".to_string(), reg("a", PodState::Running))]);
        left.saw(&back, &all);
        assert!(left.0.is_empty());
        // Seen leaving, then its seq freed: forgotten too.
        left.saw(
            &BTreeMap::from([("b".to_string(), reg("b", PodState::Leaving))]),
            &all,
        );
        left.saw(&BTreeMap::new(), &all[..1]);
        assert!(left.0.is_empty());
    }
}
