//! The leader's decision, pure: whether a configuration is due (the hash of the live pods and
//! dependencies against the snapshot's, `min_size` and `min` gates, the damper, a pause), what
//! the status line says meanwhile, and whether this pod should lead at all.

use std::time::Duration;

use tokio::time::Instant;

use super::plan::{self, Damper};
use super::world::World;
use crate::spec::PodSpec;
use crate::zk::pause::{Pause, PausedBy};

/// Why this pod should hand the leadership over, if it should: it is registered but not in the
/// live set (held, failed, leaving, evicted) while another pod is.
pub(super) fn resignation(uuid: &str, w: &World) -> Option<String> {
    let mine = w.registered.get(uuid)?;
    if w.live.contains_key(uuid) || w.live.is_empty() {
        return None;
    }
    Some(match mine.pod.state.is_live() {
        true => "this pod was evicted".to_string(),
        false => format!("this pod is {:?}", mine.pod.state).to_lowercase(),
    })
}

/// `seq 3 (<uuid>), ...` for the evicted pods.
fn evicted_names(w: &World) -> String {
    let name = |uuid: &String| match w.registered.get(uuid) {
        Some(r) => format!("seq {} ({uuid})", r.pod.seq),
        None => uuid.clone(),
    };
    w.evicted.iter().map(name).collect::<Vec<_>>().join(", ")
}

/// The leader's pending change and the words for it.
#[derive(Default)]
pub(super) struct Pending {
    pub damper: Damper,
    /// The hash last seen, to tell a new change from the same one seen again.
    seen: Option<String>,
    /// Why the last attempt failed, until one succeeds or the cluster is back as configured.
    failure: Option<String>,
    /// The probe's last line, shown while nothing else is going on.
    pub probe: Option<String>,
    /// An attempt failed after pods got its map: reconfigure even if the pods are back to the
    /// snapshot's (they are not configured as it says any more).
    dirty: bool,
}

impl Pending {
    pub(super) fn new(damper: Duration, damper_max: Duration) -> Pending {
        Pending {
            damper: Damper::new(damper, damper_max),
            ..Pending::default()
        }
    }

    /// Updates the damper from a fresh view of the world; returns the status line, which names
    /// the rejected registrations whatever else it says.
    pub(super) fn decide(&mut self, spec: &PodSpec, w: &World, now: Instant) -> String {
        let mut line = self.decide_line(spec, w, now);
        if let Some(path) = &w.cycle {
            // An error in the pod.yamls, said first; the cluster's own membership is configured
            // anyway (a cycle's `min` gates are not enforced: they would wait for each other).
            line = format!("dependency cycle: {}; {line}", path.join(" -> "));
        }
        if w.rejected.is_empty() {
            return line;
        }
        const SHOWN: usize = 3;
        let mut names: Vec<String> = w
            .rejected
            .iter()
            .take(SHOWN)
            .map(|r| format!("{:?} ({})", r.name, r.reason))
            .collect();
        if w.rejected.len() > SHOWN {
            names.push(format!("and {} more", w.rejected.len() - SHOWN));
        }
        format!("{line}; rejected registrations: {}", names.join(", "))
    }

    fn decide_line(&mut self, spec: &PodSpec, w: &World, now: Instant) -> String {
        let changed = self.seen.as_deref() != Some(w.hash.as_str());
        self.seen = Some(w.hash.clone());
        if let Some((pause, _)) = &w.paused {
            // Nothing is configured while paused; once resumed, a change waits `damper` afresh.
            self.damper.clear();
            return self.paused_line(spec, w, pause);
        }
        let snapshot = w.snapshot.as_ref().map(|(s, _)| s);
        if let Some(s) = snapshot.filter(|s| s.hash == w.hash && !self.dirty) {
            self.damper.clear();
            self.failure = None;
            let line = match &self.probe {
                Some(line) => line.clone(),
                None => format!("configured: {} pods, generation {}", s.pods.len(), s.generation),
            };
            return match w.evicted.is_empty() {
                true => line,
                false => format!("{line}; evicted: {}", evicted_names(w)),
            };
        }
        // Generation 0 only publishes `depends_on`: the first configuration is still to come.
        if !snapshot.is_some_and(|s| s.is_configured()) {
            let min = spec.settings.min_size;
            if w.live.len() < min {
                self.damper.clear();
                return format!("waiting for min_size: {}/{min} pods", w.live.len());
            }
            let on_cycle = w.cycle.as_deref().unwrap_or_default();
            if let Some((d, n)) = plan::unmet_min(&spec.depends_on, &w.resolved, &w.deps, on_cycle) {
                self.damper.clear();
                return format!("waiting for dependency {}: {n}/{} pods", d.cluster, d.min);
            }
        }
        if changed || self.damper.deadline().is_none() {
            self.damper.changed(now);
        }
        let wait = self
            .damper
            .deadline()
            .map(|d| d.saturating_duration_since(now))
            .unwrap_or_default();
        let wait = crate::spec::format_duration(Duration::from_millis(wait.as_millis() as u64));
        match &self.failure {
            Some(f) => format!("configuration failed: {f}; retrying in {wait}"),
            None => format!("change pending: configuring {} pods in {wait}", w.live.len()),
        }
    }

    /// `paused by an operator since <time>: <reason>; <what waits>`.
    fn paused_line(&self, spec: &PodSpec, w: &World, pause: &Pause) -> String {
        let mut parts = vec![pause.describe()];
        match (pause.by, spec.settings.max_lost) {
            (PausedBy::Leader, Some(max)) => parts.push(format!(
                "resumes by itself once at most {max} are lost, or on `ochopod ctl resume`"
            )),
            _ if !w.lost.is_empty() => parts.push(format!("lost: {}", super::lost::names(w, &w.lost))),
            _ => {}
        }
        let snapshot = w.snapshot.as_ref().map(|(s, _)| s).filter(|s| s.is_configured());
        parts.push(match snapshot {
            Some(s) if s.hash == w.hash && !self.dirty => {
                format!("configured: {} pods, generation {}", s.pods.len(), s.generation)
            }
            Some(s) => format!(
                "not configuring {} live pods (generation {} has {})",
                w.live.len(),
                s.generation,
                s.pods.len()
            ),
            None => format!("not configuring {} live pods (none configured yet)", w.live.len()),
        });
        parts.join("; ")
    }

    pub(super) fn done(&mut self) {
        self.damper.clear();
        self.failure = None;
        self.dirty = false;
    }

    /// A veto or a failure waits `damper` again.
    pub(super) fn failed(&mut self, why: String, partial: bool, now: Instant) {
        self.damper.retry(now);
        self.failure = Some(why);
        self.dirty |= partial;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(super) mod tests {
    use std::path::Path;

    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{Pod, PodState};
    use crate::sync::plan::Pods;
    use crate::zk::cluster::{HeldSeq, Registered};
    use crate::zk::snapshot::Snapshot;

    fn spec(yaml: &str) -> PodSpec {
        crate::spec::load_with_env(Path::new("pod.yaml"), yaml, &|_| None).unwrap()
    }

    /// Pod `a` has seq 1, `b` seq 2...
    fn pod(uuid: &str, state: PodState) -> Pod {
        let seq = u32::from(uuid.as_bytes()[0] - b'a') + 1;
        Pod {
            uuid: uuid.to_string(),
            seq,
            state,
            ..Pod::default()
        }
    }

    /// Pods by uuid and state, and the uuids of the last configuration (generation 4).
    pub(in crate::sync) fn world(pods: &[(&str, PodState)], snapshot: Option<&[&str]>) -> World {
        let registered: BTreeMap<String, Registered> = pods
            .iter()
            .map(|(u, state)| {
                (
                    u.to_string(),
                    Registered {
                        pod: pod(u, *state),
                        czxid: 1,
                    },
                )
            })
            .collect();
        let live: Pods = registered
            .values()
            .filter(|r| r.pod.state.is_live())
            .map(|r| (r.pod.uuid.clone(), r.pod.clone()))
            .collect();
        let deps = BTreeMap::new();
        let hash = plan::config_hash(&live, &deps);
        let snapshot = snapshot.map(|uuids| {
            let pods: Pods = uuids
                .iter()
                .map(|u| (u.to_string(), pod(u, PodState::Running)))
                .collect();
            let hash = plan::config_hash(&pods, &deps);
            (
                Snapshot {
                    generation: 4,
                    hash,
                    pods,
                    ..Snapshot::default()
                },
                0,
            )
        });
        // Every pod registered or configured holds its seq, as in ZooKeeper.
        let mut holders: Vec<&String> = registered.keys().collect();
        if let Some((s, _)) = &snapshot {
            holders.extend(s.pods.keys().filter(|u| !registered.contains_key(*u)));
        }
        let held = holders
            .into_iter()
            .map(|u| HeldSeq {
                seq: u32::from(u.as_bytes()[0] - b'a') + 1,
                uuid: u.clone(),
                version: 0,
            })
            .collect();
        World {
            registered,
            live,
            deps,
            resolved: Vec::new(),
            snapshot,
            held,
            hash,
            depends_on: Vec::new(),
            cycle: None,
            evicted: Vec::new(),
            rejected: Vec::new(),
            dependencies: BTreeMap::new(),
            paused: None,
            lost: Vec::new(),
        }
    }

    fn pending(spec: &PodSpec) -> Pending {
        Pending {
            damper: Damper::new(spec.settings.damper, spec.settings.damper_max),
            ..Pending::default()
        }
    }

    const R: PodState = PodState::Running;

    #[test]
    fn min_size_gates_only_the_first_configuration() {
        let s = spec("cluster: c\nsettings: { min_size: 3, damper: 1s }\nprocess: { command: 'true' }\n");
        let mut p = pending(&s);
        let now = Instant::now();
        let w = world(&[("a", R), ("b", R)], None);
        assert_eq!(p.decide(&s, &w, now), "waiting for min_size: 2/3 pods");
        assert_eq!(p.damper.deadline(), None);
        // Configured once with 3: dropping to 2 is a change like any other.
        let w = world(&[("a", R), ("b", R)], Some(&["a", "b", "c"]));
        assert!(p
            .decide(&s, &w, now)
            .starts_with("change pending: configuring 2 pods in 1s"));
        assert_eq!(p.damper.deadline(), Some(now + Duration::from_secs(1)));
    }

    #[test]
    fn back_to_the_snapshot_cancels_the_pending_change() {
        // A leader's reset: its pod vanishes, then registers again before the damper is over.
        let s = spec("cluster: c\nsettings: { damper: 5s }\nprocess: { command: 'true' }\n");
        let mut p = pending(&s);
        let now = Instant::now();
        let snap = Some(&["a", "b"][..]);
        assert_eq!(
            p.decide(&s, &world(&[("a", R), ("b", R)], snap), now),
            "configured: 2 pods, generation 4"
        );
        p.decide(&s, &world(&[("b", R)], snap), now);
        assert!(p.damper.deadline().is_some());
        let later = now + Duration::from_secs(1);
        assert_eq!(
            p.decide(&s, &world(&[("a", R), ("b", R)], snap), later),
            "configured: 2 pods, generation 4"
        );
        assert_eq!(p.damper.deadline(), None, "no reconfiguration");
    }

    #[test]
    fn a_partial_failure_forces_the_next_attempt_even_back_at_the_snapshot() {
        let s = spec("cluster: c\nsettings: { damper: 1s }\nprocess: { command: 'true' }\n");
        let mut p = pending(&s);
        let now = Instant::now();
        let w = world(&[("a", R), ("b", R)], Some(&["a", "b"]));
        p.failed("c failed on".into(), true, now);
        assert!(p
            .decide(&s, &w, now)
            .starts_with("configuration failed: c failed on; retrying in 1s"));
        assert!(p.damper.deadline().is_some());
        p.done();
        assert_eq!(p.decide(&s, &w, now), "configured: 2 pods, generation 4");
        // A veto (nothing applied) does not.
        p.failed("vetoed".into(), false, now);
        assert_eq!(p.decide(&s, &w, now), "configured: 2 pods, generation 4");
    }

    #[test]
    fn a_dependency_cycle_is_reported_and_the_members_still_configured() {
        let s = spec("cluster: a\nsettings: { damper: 1s }\nprocess: { command: 'true' }\n");
        let mut p = pending(&s);
        let now = Instant::now();
        let mut w = world(&[("a", R)], None);
        assert!(p.decide(&s, &w, now).starts_with("change pending"));
        w.cycle = Some(vec!["default.a".into(), "default.b".into(), "default.a".into()]);
        let line = p.decide(&s, &w, now);
        assert!(
            line.starts_with("dependency cycle: default.a -> default.b -> default.a; change pending"),
            "{line}"
        );
        assert!(p.damper.deadline().is_some(), "its own membership is configured");
    }

    #[test]
    fn a_snapshot_of_generation_0_still_gates_on_min_size() {
        let s = spec("cluster: c\nsettings: { min_size: 3, damper: 1s }\nprocess: { command: 'true' }\n");
        let mut p = pending(&s);
        let mut w = world(&[("a", R)], None);
        w.snapshot = Some((
            Snapshot {
                depends_on: vec!["default.zk".into()],
                ..Snapshot::default()
            },
            0,
        ));
        assert_eq!(p.decide(&s, &w, Instant::now()), "waiting for min_size: 1/3 pods");
    }

    #[test]
    fn the_status_at_rest_names_the_evicted_pods() {
        let s = spec("cluster: c\nprocess: { command: 'true' }\n");
        let mut p = pending(&s);
        let mut w = world(&[("a", R), ("b", R), ("c", R)], Some(&["a", "b"]));
        // `c` evicted: not live, so the configuration is the snapshot's.
        w.live.remove("c");
        w.hash = plan::config_hash(&w.live, &w.deps);
        w.evicted = vec!["c".into()];
        assert_eq!(
            p.decide(&s, &w, Instant::now()),
            "configured: 2 pods, generation 4; evicted: seq 3 (c)"
        );
    }

    fn pause(by: PausedBy, reason: &str) -> Option<(Pause, i32)> {
        Some((
            Pause {
                by,
                since: 1_796_165_201_000,
                reason: reason.into(),
            },
            0,
        ))
    }

    #[test]
    fn a_paused_cluster_configures_nothing_until_resumed() {
        let s = spec("cluster: c\nsettings: { damper: 1s, max_lost: 1 }\nprocess: { command: 'true' }\n");
        let mut p = pending(&s);
        let now = Instant::now();
        // A newcomer waits while an operator's pause lasts.
        let mut w = world(&[("a", R), ("b", R), ("c", R)], Some(&["a", "b"]));
        w.paused = pause(PausedBy::Operator, "kernel upgrade");
        assert_eq!(
            p.decide(&s, &w, now),
            "paused by an operator since 2026-12-01T22:46:41Z: kernel upgrade; \
             not configuring 3 live pods (generation 4 has 2)"
        );
        assert_eq!(p.damper.deadline(), None, "nothing is due");
        // Resumed: the change waits the damper, as any other.
        w.paused = None;
        assert!(p
            .decide(&s, &w, now)
            .starts_with("change pending: configuring 3 pods in 1s"));
        assert_eq!(p.damper.deadline(), Some(now + Duration::from_secs(1)));
        // The leader's own pause names the lost pods (its reason) and says how it ends.
        let mut w = world(&[("a", R)], Some(&["a", "b", "c"]));
        w.paused = pause(PausedBy::Leader, "lost 2 pods");
        w.lost = vec!["b".into(), "c".into()];
        assert_eq!(
            p.decide(&s, &w, now),
            "paused by the leader since 2026-12-01T22:46:41Z: lost 2 pods; resumes by itself once \
             at most 1 are lost, or on `ochopod ctl resume`; not configuring 1 live pods (generation 4 has 3)"
        );
        assert_eq!(p.damper.deadline(), None);
        // An operator's pause at rest names the losses it holds back.
        w.paused = pause(PausedBy::Operator, "");
        assert_eq!(
            p.decide(&s, &w, now),
            "paused by an operator since 2026-12-01T22:46:41Z; lost: seq 2 (b), seq 3 (c); \
             not configuring 1 live pods (generation 4 has 3)"
        );
        let mut w = world(&[("a", R), ("b", R)], Some(&["a", "b"]));
        w.paused = pause(PausedBy::Operator, "x");
        assert_eq!(
            p.decide(&s, &w, now),
            "paused by an operator since 2026-12-01T22:46:41Z: x; configured: 2 pods, generation 4"
        );
    }

    #[test]
    fn a_leader_that_is_not_live_hands_over_to_a_live_pod() {
        let w = world(&[("a", PodState::Held), ("b", R)], None);
        assert_eq!(resignation("a", &w).as_deref(), Some("this pod is held"));
        assert_eq!(resignation("b", &w), None);
        let alone = world(&[("a", PodState::Leaving)], None);
        assert_eq!(resignation("a", &alone), None, "nobody else could lead");
    }
}
