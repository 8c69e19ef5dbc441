//! The lost-pods safety net (`settings.max_lost`, SPEC §3), pure: which pods of the last
//! configuration vanished without leaving, and whether the leader should pause its cluster or
//! lift its own pause.
//!
//! A pod is lost when the snapshot (the last configuration) has it, it is no longer registered,
//! and this leader never saw it `leaving` (a SIGTERM marks the pod `leaving` before it
//! deregisters; with `stop.drain` the leader always sees it, since the pod waits for a
//! configuration without it). ZooKeeper does not tell an expired session from a deleted node, so
//! the memory of who was seen leaving is what tells a loss from a departure; it lasts one
//! leadership (a successor counts a pod that left while nobody led as lost).
//!
//! More than `max_lost` lost: the leader pauses the cluster (a pause `by: leader`) instead of
//! configuring the survivors; once at most `max_lost` are lost again (they came back, same
//! uuid), it lifts its own pause. An operator's pause is never lifted here. An operator who
//! lifts a pause (`ochopod ctl resume`) accepts the losses seen at that moment: they no longer
//! count, and the leader configures the survivors.

use std::collections::BTreeSet;

use super::plan::Leavers;
use super::world::World;
use crate::zk::pause::PausedBy;

/// What the leader does about the pause node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NetAction {
    /// Pause the cluster, for this reason.
    Pause(String),
    /// Lift the leader's pause, read at this version.
    Resume(i32),
}

/// The net's memory for one leadership (who was seen leaving is the leader's [`Leavers`], shared
/// with the seq reservations).
#[derive(Debug, Default)]
pub(super) struct SafetyNet {
    /// Losses an operator accepted by resuming the cluster.
    accepted: BTreeSet<String>,
    /// Who had paused the cluster at the last look; None before the first.
    last: Option<Option<PausedBy>>,
    /// This leader is lifting its own pause: the pause's end is not an operator's resume.
    lifting: bool,
}

/// How many lost pods a status line or a reason names; the rest are counted.
const NAMED: usize = 3;

/// `seq 2 (<uuid>), seq 3 (<uuid>)` for pods of the snapshot.
pub(super) fn names(w: &World, uuids: &[String]) -> String {
    let snapshot = w.snapshot.as_ref().map(|(s, _)| s);
    let mut out: Vec<String> = uuids
        .iter()
        .take(NAMED)
        .map(|u| match snapshot.and_then(|s| s.pods.get(u)) {
            Some(p) => format!("seq {} ({u})", p.seq),
            None => u.clone(),
        })
        .collect();
    if uuids.len() > NAMED {
        out.push(format!("and {} more", uuids.len() - NAMED));
    }
    out.join(", ")
}

impl SafetyNet {
    /// Looks at the world as just read (`leavers` already updated from it): the lost pods (by
    /// seq), and what to do about the pause.
    pub(super) fn look(
        &mut self,
        w: &World,
        leavers: &Leavers,
        max_lost: Option<usize>,
    ) -> (Vec<String>, Option<NetAction>) {
        let configured = w.snapshot.as_ref().map(|(s, _)| s).filter(|s| s.is_configured());
        let mut gone: Vec<(u32, String)> = configured
            .map(|s| {
                s.pods
                    .values()
                    .filter(|p| !w.registered.contains_key(&p.uuid) && !leavers.contains(&p.uuid))
                    .map(|p| (p.seq, p.uuid.clone()))
                    .collect()
            })
            .unwrap_or_default();
        gone.sort();
        let now = w.paused.as_ref().map(|(p, _)| p.by);
        if now.is_none() {
            if matches!(self.last, Some(Some(_))) && !self.lifting {
                // Resumed by somebody else than this leader: an operator accepts the losses.
                self.accepted.extend(gone.iter().map(|(_, u)| u.clone()));
                if !gone.is_empty() {
                    tracing::info!(
                        accepted = gone.len(),
                        "resumed by an operator: the lost pods no longer count"
                    );
                }
            }
            self.lifting = false;
        }
        self.last = Some(now);
        // Only what the last configuration or the registrations still name is worth keeping.
        let known =
            |u: &String| w.registered.contains_key(u) || configured.is_some_and(|s| s.pods.contains_key(u));
        self.accepted.retain(known);
        let lost: Vec<String> = gone
            .into_iter()
            .map(|(_, u)| u)
            .filter(|u| !self.accepted.contains(u))
            .collect();
        let within = max_lost.is_none_or(|max| lost.len() <= max);
        let act = match (&w.paused, max_lost) {
            (Some((p, version)), _) if p.by == PausedBy::Leader && within => {
                self.lifting = true;
                Some(NetAction::Resume(*version))
            }
            (None, Some(max)) if !within => Some(NetAction::Pause(format!(
                "lost {} pods of generation {} (more than max_lost {max}): {}",
                lost.len(),
                configured.map_or(0, |s| s.generation),
                names(w, &lost)
            ))),
            _ => None,
        };
        (lost, act)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::PodState;
    use crate::sync::decide::tests::world;
    use crate::zk::pause::Pause;

    const R: PodState = PodState::Running;

    /// One read of the world, as the leader does it: the leavers, then the net.
    fn look(
        net: &mut SafetyNet,
        leavers: &mut Leavers,
        w: &World,
        max_lost: Option<usize>,
    ) -> (Vec<String>, Option<NetAction>) {
        leavers.saw(&w.registered, &w.held);
        net.look(w, leavers, max_lost)
    }

    fn paused(w: &mut World, by: PausedBy) {
        w.paused = Some((
            Pause {
                by,
                since: 0,
                reason: "r".into(),
            },
            7,
        ));
    }

    #[test]
    fn more_lost_than_max_lost_pauses_and_their_return_resumes() {
        let (mut net, mut leavers) = (SafetyNet::default(), Leavers::default());
        let snap = Some(&["a", "b", "c"][..]);
        let (lost, act) = look(
            &mut net,
            &mut leavers,
            &world(&[("a", R), ("b", R), ("c", R)], snap),
            Some(1),
        );
        assert!(lost.is_empty() && act.is_none());
        // One lost: within the net, the leader configures the survivors as usual.
        let (lost, act) = look(
            &mut net,
            &mut leavers,
            &world(&[("a", R), ("b", R)], snap),
            Some(1),
        );
        assert_eq!((lost, act), (vec!["c".to_string()], None));
        // Two: paused, naming them.
        let (lost, act) = look(&mut net, &mut leavers, &world(&[("a", R)], snap), Some(1));
        assert_eq!(lost, ["b", "c"]);
        assert_eq!(
            act,
            Some(NetAction::Pause(
                "lost 2 pods of generation 4 (more than max_lost 1): seq 2 (b), seq 3 (c)".into()
            ))
        );
        let mut w = world(&[("a", R)], snap);
        paused(&mut w, PausedBy::Leader);
        assert_eq!(
            look(&mut net, &mut leavers, &w, Some(1)).1,
            None,
            "paused already"
        );
        // One comes back (same uuid): the leader lifts its own pause, and its end is no resume
        // by an operator (the other loss still counts).
        let mut w = world(&[("a", R), ("c", R)], snap);
        paused(&mut w, PausedBy::Leader);
        assert_eq!(
            look(&mut net, &mut leavers, &w, Some(1)).1,
            Some(NetAction::Resume(7))
        );
        let (lost, act) = look(
            &mut net,
            &mut leavers,
            &world(&[("a", R), ("c", R)], snap),
            Some(1),
        );
        assert_eq!((lost, act), (vec!["b".to_string()], None));
    }

    #[test]
    fn pods_seen_leaving_are_not_lost() {
        let (mut net, mut leavers) = (SafetyNet::default(), Leavers::default());
        let snap = Some(&["a", "b", "c"][..]);
        look(
            &mut net,
            &mut leavers,
            &world(
                &[("a", R), ("b", PodState::Leaving), ("c", PodState::Leaving)],
                snap,
            ),
            Some(0),
        );
        let (lost, act) = look(&mut net, &mut leavers, &world(&[("a", R)], snap), Some(0));
        assert!(lost.is_empty() && act.is_none(), "{lost:?} {act:?}");
    }

    #[test]
    fn an_operators_pause_is_never_lifted_and_a_resume_accepts_the_losses() {
        let (mut net, mut leavers) = (SafetyNet::default(), Leavers::default());
        let snap = Some(&["a", "b", "c"][..]);
        let mut w = world(&[("a", R)], snap);
        paused(&mut w, PausedBy::Operator);
        let (lost, act) = look(&mut net, &mut leavers, &w, Some(5));
        assert_eq!((lost.len(), act), (2, None), "within max_lost, still paused");
        // `ctl resume`: the two losses are accepted, the survivors get configured.
        let (lost, act) = look(&mut net, &mut leavers, &world(&[("a", R)], snap), Some(1));
        assert_eq!((lost, act), (Vec::<String>::new(), None));
        // ...and so after the leader's own pause.
        let (mut net, mut leavers) = (SafetyNet::default(), Leavers::default());
        let mut w = world(&[("a", R)], snap);
        paused(&mut w, PausedBy::Leader);
        assert_eq!(look(&mut net, &mut leavers, &w, Some(1)).1, None);
        let (lost, act) = look(&mut net, &mut leavers, &world(&[("a", R)], snap), Some(1));
        assert_eq!((lost, act), (Vec::<String>::new(), None));
    }

    #[test]
    fn without_max_lost_the_leader_lifts_a_leftover_pause_of_its_own() {
        let (mut net, mut leavers) = (SafetyNet::default(), Leavers::default());
        let mut w = world(&[("a", R)], Some(&["a", "b", "c"]));
        assert_eq!(
            look(&mut net, &mut leavers, &w, None).1,
            None,
            "never pauses by itself"
        );
        paused(&mut w, PausedBy::Leader);
        assert_eq!(
            look(&mut net, &mut leavers, &w, None).1,
            Some(NetAction::Resume(7))
        );
    }

    #[test]
    fn before_a_first_configuration_nothing_is_lost() {
        let (mut net, mut leavers) = (SafetyNet::default(), Leavers::default());
        let (lost, act) = look(&mut net, &mut leavers, &world(&[("a", R)], None), Some(0));
        assert!(lost.is_empty() && act.is_none());
    }
}
