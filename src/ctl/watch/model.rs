//! The watcher's [`Model`] of every cluster (what the layout of SPEC §6 holds, validated) and
//! [`diff`], the [`Event`]s that take one model to the next. Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use crate::model::{Pod, PodState};
use crate::zk::pause::{Pause, PausedBy};

/// A cluster as ZooKeeper has it, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterView {
    /// `<namespace>.<cluster>`.
    pub key: String,
    /// Registered pods by uuid (each valid, SPEC §6, and under its own uuid).
    pub pods: BTreeMap<String, Pod>,
    /// Registrations that are not valid pods: left out of `pods`, named here.
    pub rejected: Vec<Rejected>,
    /// The uuid the lowest election node holds.
    pub leader: Option<String>,
    /// The last configuration, when the cluster has a leader that wrote one.
    pub snapshot: Option<SnapshotView>,
    /// The cluster's pause (`ctl pause`, or its leader for `settings.max_lost`), if paused.
    pub paused: Option<Pause>,
}

/// A registration that is not a valid pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Rejected {
    /// The znode's name under `pods/`.
    pub znode: String,
    pub reason: String,
}

/// What the UI and events need of a snapshot (read leniently: only these fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SnapshotView {
    /// 0: dependencies published, not configured yet.
    pub generation: u64,
    /// The uuids configured, with their seq as the snapshot has it (0 when it has none).
    pub pods: BTreeMap<String, u32>,
    pub depends_on: Vec<String>,
    /// Uuids evicted by the leader.
    pub failed: Vec<String>,
}

impl ClusterView {
    /// The pods dependents count (SPEC §6): in the snapshot, still registered, and running.
    pub fn live(&self) -> usize {
        let Some(s) = &self.snapshot else { return 0 };
        s.pods
            .keys()
            .filter(|u| self.pods.get(*u).is_some_and(|p| p.state.is_live()))
            .count()
    }

    /// A pod's seq: registered, else as the snapshot has it.
    fn seq_of(&self, uuid: &str) -> Option<u32> {
        self.pods
            .get(uuid)
            .map(|p| p.seq)
            .or_else(|| self.snapshot.as_ref()?.pods.get(uuid).copied().filter(|s| *s > 0))
    }
}

/// Every cluster under `/ochopod/clusters`, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Model {
    pub clusters: BTreeMap<String, ClusterView>,
}

/// What changed, in one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A pod znode appeared (or came back with a new run of ochopod).
    Registered {
        seq: u32,
        uuid: String,
        ip: String,
        state: PodState,
    },
    /// A pod znode went away after its pod said it was leaving (SIGTERM, `kill`).
    Left { seq: u32, uuid: String, ip: String },
    /// A pod znode went away without a goodbye: its session expired (a killed container).
    Expired { seq: u32, uuid: String, ip: String },
    /// The pod's state became `held` (an operator `off`).
    Held {
        seq: u32,
        uuid: String,
        ip: String,
        was: PodState,
    },
    /// The pod's state became `failed`.
    Failed {
        seq: u32,
        uuid: String,
        ip: String,
        was: PodState,
    },
    /// The pod's state became `leaving`.
    Leaving {
        seq: u32,
        uuid: String,
        ip: String,
        was: PodState,
    },
    /// The pod's state became `running` again (after an `on`).
    Running {
        seq: u32,
        uuid: String,
        ip: String,
        was: PodState,
    },
    /// The leader wrote a new configuration.
    Configured { generation: u64, seqs: Vec<u32> },
    /// Another pod leads (uuid None: no election node is left).
    Leader {
        seq: Option<u32>,
        uuid: Option<String>,
        ip: Option<String>,
    },
    /// The leader evicted a pod (its snapshot's `failed` grew).
    Evicted { seq: Option<u32>, uuid: String },
    /// The cluster's dependencies as its leader resolved them.
    DependsOn {
        depends_on: Vec<String>,
        added: Vec<String>,
        removed: Vec<String>,
    },
    /// A registration that is not a valid pod (left out of every map).
    Rejected { znode: String, reason: String },
    /// The cluster was paused (or its pause changed hands): its leader configures nothing.
    Paused { by: PausedBy, reason: String },
    /// The pause was lifted.
    Resumed,
}

/// One change, when the watcher saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// RFC 3339, UTC, seconds.
    pub time: String,
    pub cluster: String,
    #[serde(flatten)]
    pub change: Change,
}

/// A new model and how it differs from the last one sent.
#[derive(Debug, Clone)]
pub struct Update {
    pub model: Arc<Model>,
    pub events: Vec<Event>,
}

/// The events that take `old` to `new`. `touched`: uuids whose znode was notified as changed
/// since `old` was read: a pod deleted right after such a change (its `leaving` not seen in
/// between) left, rather than expired.
pub fn diff(old: &Model, new: &Model, touched: &BTreeSet<String>, time: &str) -> Vec<Event> {
    let empty = ClusterView::default();
    let keys: BTreeSet<&String> = old.clusters.keys().chain(new.clusters.keys()).collect();
    let mut events = Vec::new();
    for key in keys {
        let o = old.clusters.get(key).unwrap_or(&empty);
        let n = new.clusters.get(key).unwrap_or(&empty);
        let mut push = |change| {
            events.push(Event {
                time: time.to_string(),
                cluster: key.clone(),
                change,
            })
        };
        // Pods: gone, new, changed; in seq order within each kind.
        let mut gone: Vec<&Pod> = o
            .pods
            .values()
            .filter(|p| !n.pods.contains_key(&p.uuid))
            .collect();
        gone.sort_by(|a, b| Pod::by_seq(a, b));
        for p in gone {
            let (seq, uuid, ip) = (p.seq, p.uuid.clone(), p.ip.clone());
            push(if p.state == PodState::Leaving || touched.contains(&p.uuid) {
                Change::Left { seq, uuid, ip }
            } else {
                Change::Expired { seq, uuid, ip }
            });
        }
        let mut pods: Vec<&Pod> = n.pods.values().collect();
        pods.sort_by(|a, b| Pod::by_seq(a, b));
        for p in pods {
            let (seq, uuid, ip) = (p.seq, p.uuid.clone(), p.ip.clone());
            match o.pods.get(&p.uuid) {
                // A new run under the same uuid (a container restarted on its volume).
                Some(before) if before.started == p.started || p.started == 0 => {
                    if before.state != p.state {
                        let was = before.state;
                        push(match p.state {
                            PodState::Held => Change::Held { seq, uuid, ip, was },
                            PodState::Failed => Change::Failed { seq, uuid, ip, was },
                            PodState::Leaving => Change::Leaving { seq, uuid, ip, was },
                            PodState::Running => Change::Running { seq, uuid, ip, was },
                        });
                    }
                }
                _ => push(Change::Registered {
                    seq,
                    uuid,
                    ip,
                    state: p.state,
                }),
            }
        }
        for r in n.rejected.iter().filter(|r| !o.rejected.contains(r)) {
            push(Change::Rejected {
                znode: r.znode.clone(),
                reason: r.reason.clone(),
            });
        }
        match (&o.paused, &n.paused) {
            (None, Some(p)) => push(Change::Paused {
                by: p.by,
                reason: p.reason.clone(),
            }),
            (Some(was), Some(p)) if was.by != p.by || was.since != p.since => push(Change::Paused {
                by: p.by,
                reason: p.reason.clone(),
            }),
            (Some(_), None) => push(Change::Resumed),
            _ => {}
        }
        if o.leader != n.leader {
            let pod = n.leader.as_ref().and_then(|u| n.pods.get(u));
            push(Change::Leader {
                seq: pod.map(|p| p.seq),
                uuid: n.leader.clone(),
                ip: pod.map(|p| p.ip.clone()),
            });
        }
        let (os, ns) = (
            o.snapshot.clone().unwrap_or_default(),
            n.snapshot.clone().unwrap_or_default(),
        );
        if ns.generation != os.generation && ns.generation > 0 {
            let mut seqs: Vec<u32> = ns.pods.keys().filter_map(|u| n.seq_of(u)).collect();
            seqs.sort_unstable();
            push(Change::Configured {
                generation: ns.generation,
                seqs,
            });
        }
        for uuid in ns.failed.iter().filter(|u| !os.failed.contains(u)) {
            push(Change::Evicted {
                seq: n.seq_of(uuid).or_else(|| o.seq_of(uuid)),
                uuid: uuid.clone(),
            });
        }
        if ns.depends_on != os.depends_on {
            push(Change::DependsOn {
                depends_on: ns.depends_on.clone(),
                added: ns
                    .depends_on
                    .iter()
                    .filter(|d| !os.depends_on.contains(d))
                    .cloned()
                    .collect(),
                removed: os
                    .depends_on
                    .iter()
                    .filter(|d| !ns.depends_on.contains(d))
                    .cloned()
                    .collect(),
            });
        }
    }
    events
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pod(uuid: &str, seq: u32, state: PodState) -> Pod {
        Pod {
            uuid: uuid.into(),
            seq,
            cluster: "zk".into(),
            namespace: "default".into(),
            ip: format!("127.0.0.{}", seq + 1),
            host: "h".into(),
            public: "127.0.0.1".into(),
            control_port: 8080,
            state,
            started: 1,
            ..Pod::default()
        }
    }

    fn model(pods: &[Pod], leader: Option<&str>, snapshot: Option<SnapshotView>) -> Model {
        let view = ClusterView {
            key: "default.zk".into(),
            pods: pods.iter().map(|p| (p.uuid.clone(), p.clone())).collect(),
            rejected: Vec::new(),
            leader: leader.map(str::to_string),
            snapshot,
            paused: None,
        };
        Model {
            clusters: BTreeMap::from([("default.zk".to_string(), view)]),
        }
    }

    fn kinds(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| {
                serde_json::to_value(e).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn the_current_state_reads_as_events() {
        let snap = SnapshotView {
            generation: 3,
            pods: BTreeMap::from([("a".into(), 1), ("b".into(), 2)]),
            depends_on: vec!["default.db".into()],
            failed: vec![],
        };
        let now = model(
            &[pod("b", 2, PodState::Held), pod("a", 1, PodState::Running)],
            Some("a"),
            Some(snap),
        );
        let events = diff(&Model::default(), &now, &BTreeSet::new(), "T");
        assert_eq!(
            kinds(&events),
            ["registered", "registered", "leader", "configured", "depends_on"]
        );
        let json = serde_json::to_value(&events[1]).unwrap();
        assert_eq!(json["seq"], 2);
        assert_eq!(json["state"], "held");
        assert_eq!(json["cluster"], "default.zk");
        assert_eq!(json["time"], "T");
        assert_eq!(
            events[3].change,
            Change::Configured {
                generation: 3,
                seqs: vec![1, 2]
            }
        );
        assert!(diff(&now, &now, &BTreeSet::new(), "T").is_empty());
    }

    #[test]
    fn a_pod_that_said_it_was_leaving_left_others_expired() {
        let before = model(
            &[
                pod("a", 1, PodState::Running),
                pod("b", 2, PodState::Leaving),
                pod("c", 3, PodState::Running),
            ],
            None,
            None,
        );
        let after = model(&[], None, None);
        let events = diff(&before, &after, &BTreeSet::from(["c".to_string()]), "T");
        // b said so; c's znode changed just before it went (its `leaving` was not read in time).
        assert_eq!(kinds(&events), ["expired", "left", "left"]);
    }

    #[test]
    fn state_changes_leaders_evictions_and_dependencies() {
        let s1 = SnapshotView {
            generation: 1,
            pods: BTreeMap::from([("a".into(), 1), ("b".into(), 2)]),
            depends_on: vec!["default.db".into()],
            failed: vec![],
        };
        let s2 = SnapshotView {
            generation: 2,
            pods: BTreeMap::from([("a".into(), 1)]),
            depends_on: vec!["default.kafka".into()],
            failed: vec!["b".into()],
        };
        let before = model(
            &[pod("a", 1, PodState::Running), pod("b", 2, PodState::Running)],
            Some("a"),
            Some(s1),
        );
        let after = model(
            &[pod("a", 1, PodState::Held), pod("b", 2, PodState::Failed)],
            Some("b"),
            Some(s2),
        );
        let events = diff(&before, &after, &BTreeSet::new(), "T");
        assert_eq!(
            kinds(&events),
            ["held", "failed", "leader", "configured", "evicted", "depends_on"]
        );
        assert_eq!(
            events[4].change,
            Change::Evicted {
                seq: Some(2),
                uuid: "b".into()
            }
        );
        assert_eq!(
            events[5].change,
            Change::DependsOn {
                depends_on: vec!["default.kafka".into()],
                added: vec!["default.kafka".into()],
                removed: vec!["default.db".into()],
            }
        );
        // A leader gone, and a generation-0 snapshot (dependencies only) configures nothing.
        let s0 = SnapshotView {
            generation: 0,
            depends_on: vec!["default.kafka".into()],
            ..SnapshotView::default()
        };
        let bare = model(&[pod("a", 1, PodState::Held)], None, Some(s0));
        let events = diff(
            &model(&[pod("a", 1, PodState::Held)], Some("a"), None),
            &bare,
            &BTreeSet::new(),
            "T",
        );
        assert_eq!(kinds(&events), ["leader", "depends_on"]);
        assert_eq!(
            events[0].change,
            Change::Leader {
                seq: None,
                uuid: None,
                ip: None
            }
        );
    }

    #[test]
    fn a_pause_and_its_lifting_are_events() {
        let calm = model(&[], None, None);
        let mut paused = calm.clone();
        let pause = Pause {
            by: PausedBy::Operator,
            since: 1,
            reason: "kernel upgrade".into(),
        };
        if let Some(c) = paused.clusters.get_mut("default.zk") {
            c.paused = Some(pause);
        }
        let on = diff(&calm, &paused, &BTreeSet::new(), "t");
        assert_eq!(kinds(&on), ["paused"]);
        assert_eq!(
            on[0].change,
            Change::Paused {
                by: PausedBy::Operator,
                reason: "kernel upgrade".into()
            }
        );
        assert_eq!(
            kinds(&diff(&paused, &paused, &BTreeSet::new(), "t")),
            Vec::<String>::new()
        );
        assert_eq!(kinds(&diff(&paused, &calm, &BTreeSet::new(), "t")), ["resumed"]);
    }

    #[test]
    fn a_new_run_under_the_same_uuid_registers_again() {
        let mut again = pod("a", 1, PodState::Running);
        again.started = 2;
        let events = diff(
            &model(&[pod("a", 1, PodState::Running)], None, None),
            &model(&[again], None, None),
            &BTreeSet::new(),
            "T",
        );
        assert_eq!(kinds(&events), ["registered"]);
    }
}
