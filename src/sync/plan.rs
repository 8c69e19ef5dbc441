//! Pure leader logic: what a configuration is, whether one is due, and in which order pods get
//! it. No I/O here, so every rule is unit-tested.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};
use tokio::time::{Duration, Instant};

use crate::model::{ClusterMap, Pod};
use crate::spec::{Dependency, Order};

pub use super::seqs::{seqs_to_free, Leavers, SeqPlan};

pub use crate::model::Pods;

/// The hash of a configuration: the pod set (uuids and their JSON minus `state`) and the
/// dependencies. A change of leader alone leaves it as it was, so it causes no reconfiguration.
pub fn config_hash(pods: &Pods, deps: &BTreeMap<String, Pods>) -> String {
    fn view(pods: &Pods) -> BTreeMap<&str, serde_json::Value> {
        pods.iter()
            .map(|(uuid, pod)| {
                let mut v = serde_json::to_value(pod).unwrap_or(serde_json::Value::Null);
                if let Some(o) = v.as_object_mut() {
                    o.remove("state");
                }
                (uuid.as_str(), v)
            })
            .collect()
    }
    let deps: BTreeMap<&str, _> = deps
        .iter()
        .map(|(name, pods)| (name.as_str(), view(pods)))
        .collect();
    let doc = serde_json::json!({ "pods": view(pods), "dependencies": deps });
    // serde_json maps are sorted (no preserve_order feature), so the text is canonical.
    hex::encode(Sha256::digest(doc.to_string().as_bytes()))
}

/// Uuids in `next` and not in `prev` (added), and the reverse (removed), each sorted by seq.
pub fn diff(prev: &Pods, next: &Pods) -> (Vec<String>, Vec<String>) {
    let added = by_seq(next.values().filter(|p| !prev.contains_key(&p.uuid)));
    let removed = by_seq(prev.values().filter(|p| !next.contains_key(&p.uuid)));
    (added, removed)
}

fn by_seq<'a>(pods: impl Iterator<Item = &'a Pod>) -> Vec<String> {
    let mut v: Vec<&Pod> = pods.collect();
    v.sort_by(|a, b| Pod::by_seq(a, b));
    v.into_iter().map(|p| p.uuid.clone()).collect()
}

/// The order `sequential` configures pods in: by seq, or the added ones first (quorum systems
/// want the new members up before the old ones learn about them).
pub fn call_order(pods: &Pods, added: &[String], order: Order) -> Vec<String> {
    let all = by_seq(pods.values());
    match order {
        Order::Seq => all,
        Order::AddedFirst => {
            let mut first: Vec<String> = all.iter().filter(|u| added.contains(u)).cloned().collect();
            first.extend(all.into_iter().filter(|u| !added.contains(u)));
            first
        }
    }
}

/// The map for one configuration by the leader of `epoch`; [`ClusterMap::key`] is set per
/// receiver.
pub fn cluster_map(
    epoch: u64,
    generation: u64,
    prev: &Pods,
    pods: &Pods,
    deps: &BTreeMap<String, Pods>,
) -> ClusterMap {
    let (added, removed) = diff(prev, pods);
    let removed_pods = removed
        .iter()
        .filter_map(|u| prev.get(u).map(|p| (u.clone(), p.clone())))
        .collect();
    ClusterMap {
        version: crate::model::WIRE_VERSION,
        epoch,
        generation,
        key: String::new(),
        pods: pods.clone(),
        added,
        removed,
        removed_pods,
        dependencies: deps.clone(),
    }
}

/// One `depends_on` entry resolved to a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedDep {
    /// The key in the map's `dependencies`: the name as written, or `ns.name` for a wildcard.
    pub name: String,
    /// `<namespace>.<cluster>`.
    pub key: String,
    /// The index of the `depends_on` entry it comes from (for `min`).
    pub entry: usize,
}

/// Whether a `depends_on` name is a pattern (matched against the existing clusters).
pub fn is_pattern(name: &str) -> bool {
    name.contains('*')
}

/// `zookeeper` → `<ns>.zookeeper`, `/ns.name` → `ns.name` (patterns likewise).
pub fn qualify(namespace: &str, written: &str) -> String {
    match written.strip_prefix('/') {
        Some(abs) => abs.to_string(),
        None => format!("{namespace}.{written}"),
    }
}

/// Resolves `depends_on` against the clusters that exist (only patterns need them). The pod's
/// own cluster never matches a pattern.
pub fn resolve(namespace: &str, own_key: &str, deps: &[Dependency], clusters: &[String]) -> Vec<ResolvedDep> {
    let mut out: Vec<ResolvedDep> = Vec::new();
    for (entry, d) in deps.iter().enumerate() {
        let q = qualify(namespace, &d.cluster);
        if is_pattern(&d.cluster) {
            for key in clusters
                .iter()
                .filter(|k| k.as_str() != own_key && crate::glob::matches(&q, k))
            {
                if !out.iter().any(|r| &r.name == key) {
                    out.push(ResolvedDep {
                        name: key.clone(),
                        key: key.clone(),
                        entry,
                    });
                }
            }
        } else if !out.iter().any(|r| r.name == d.cluster) {
            out.push(ResolvedDep {
                name: d.cluster.clone(),
                key: q,
                entry,
            });
        }
    }
    out
}

/// The keys a cluster depends on, as its snapshot publishes them: sorted, once each.
pub fn dependency_keys(resolved: &[ResolvedDep]) -> Vec<String> {
    let keys: BTreeSet<String> = resolved.iter().map(|r| r.key.clone()).collect();
    keys.into_iter().collect()
}

/// A dependency cycle through `own` (SPEC §3: an error), shortest first: `own` depends on `deps`,
/// every other cluster on what its snapshot says (`edges`; a cluster missing there depends on
/// nothing known). Returns the path `[own, ..., own]`. A cycle that does not pass through `own`
/// is its members' to report.
pub fn find_cycle(own: &str, deps: &[String], edges: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    // Breadth first from `own`, remembering how each cluster was reached.
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue: std::collections::VecDeque<&str> = std::collections::VecDeque::new();
    let next = |key: &str| -> &[String] {
        if key == own {
            deps
        } else {
            edges.get(key).map_or(&[], |v| v.as_slice())
        }
    };
    queue.push_back(own);
    while let Some(at) = queue.pop_front() {
        for to in next(at) {
            if to == own {
                // `at` back to `own` through the parents, then reversed and closed.
                let mut path = vec![own.to_string()];
                let mut cur = at;
                path.push(cur.to_string());
                while let Some(&p) = parent.get(cur) {
                    path.push(p.to_string());
                    cur = p;
                }
                path.reverse();
                return Some(path);
            }
            if !parent.contains_key(to.as_str()) {
                parent.insert(to, at);
                queue.push_back(to);
            }
        }
    }
    None
}

/// The first `depends_on` entry whose `min` is not met (its matches together have fewer live
/// pods), with the count found; None when all are met.
pub fn unmet_min<'a>(
    deps: &'a [Dependency],
    resolved: &[ResolvedDep],
    pods: &BTreeMap<String, Pods>,
    on_cycle: &[String],
) -> Option<(&'a Dependency, usize)> {
    deps.iter().enumerate().find_map(|(i, d)| {
        let matched: Vec<&ResolvedDep> = resolved.iter().filter(|r| r.entry == i).collect();
        // Clusters on a dependency cycle would each wait for the other's `min`.
        if !matched.is_empty() && matched.iter().all(|r| on_cycle.contains(&r.key)) {
            return None;
        }
        let n: usize = matched
            .iter()
            .map(|r| pods.get(&r.name).map_or(0, |p| p.len()))
            .sum();
        (n < d.min).then_some((d, n))
    })
}

/// Quiet time before a configuration: `damper` after the last change, never later than
/// `damper_max` after the first one.
#[derive(Debug, Clone, Default)]
pub struct Damper {
    damper: Duration,
    damper_max: Duration,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Damper {
    pub fn new(damper: Duration, damper_max: Duration) -> Damper {
        Damper {
            damper,
            damper_max,
            first: None,
            last: None,
        }
    }

    /// A change was seen at `now`.
    pub fn changed(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// Nothing pending any more (configured, or back to the configured state).
    pub fn clear(&mut self) {
        self.first = None;
        self.last = None;
    }

    /// When to configure; None when nothing is pending.
    pub fn deadline(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        Some((last + self.damper).min(first + self.damper_max))
    }

    /// Retry later: as a fresh change (a veto or a failed `on` waits `damper` again).
    pub fn retry(&mut self, now: Instant) {
        self.clear();
        self.changed(now);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(super) mod tests {
    use super::*;
    use crate::model::PodState;

    pub(in crate::sync) fn pod(uuid: &str, seq: u32) -> Pod {
        Pod {
            uuid: uuid.into(),
            seq,
            cluster: "zk".into(),
            namespace: "default".into(),
            ip: "127.0.0.2".into(),
            host: "127.0.0.2".into(),
            public: "127.0.0.2".into(),
            node: String::new(),
            task: String::new(),
            ports: BTreeMap::from([("2181".to_string(), 2181)]),
            control_port: 8080,
            binding: "local".into(),
            version: "0".into(),
            state: PodState::Running,
            started: 0,
        }
    }

    pub(in crate::sync) fn pods(list: &[(&str, u32)]) -> Pods {
        list.iter().map(|(u, s)| (u.to_string(), pod(u, *s))).collect()
    }

    #[test]
    fn hash_ignores_state_and_sees_pods_and_dependencies() {
        let a = pods(&[("a", 1), ("b", 2)]);
        let none = BTreeMap::new();
        let mut held = a.clone();
        held.get_mut("a").unwrap().state = PodState::Held;
        assert_eq!(config_hash(&a, &none), config_hash(&held, &none));
        assert_ne!(config_hash(&a, &none), config_hash(&pods(&[("a", 1)]), &none));
        let mut moved = a.clone();
        moved.get_mut("b").unwrap().ip = "127.0.0.9".into();
        assert_ne!(config_hash(&a, &none), config_hash(&moved, &none));
        let deps = BTreeMap::from([("zookeeper".to_string(), pods(&[("z", 1)]))]);
        assert_ne!(config_hash(&a, &none), config_hash(&a, &deps));
    }

    #[test]
    fn diff_lists_added_and_removed_by_seq() {
        let prev = pods(&[("a", 1), ("b", 2), ("c", 3)]);
        let next = pods(&[("a", 1), ("d", 5), ("e", 4)]);
        assert_eq!(
            diff(&prev, &next),
            (
                vec!["e".to_string(), "d".to_string()],
                vec!["b".into(), "c".into()]
            )
        );
        let map = cluster_map(3, 7, &prev, &next, &BTreeMap::new());
        assert_eq!(map.generation, 7);
        assert_eq!(map.removed_pods.keys().collect::<Vec<_>>(), ["b", "c"]);
    }

    #[test]
    fn added_first_puts_new_pods_before_the_rest() {
        let p = pods(&[("a", 1), ("b", 2), ("c", 3), ("d", 4)]);
        let added = vec!["d".to_string(), "b".to_string()];
        assert_eq!(call_order(&p, &added, Order::Seq), ["a", "b", "c", "d"]);
        assert_eq!(call_order(&p, &added, Order::AddedFirst), ["b", "d", "a", "c"]);
    }

    #[test]
    fn dependencies_resolve_relative_absolute_and_wildcards() {
        let deps = [
            Dependency {
                cluster: "zookeeper".into(),
                min: 3,
            },
            Dependency {
                cluster: "/prod.db".into(),
                min: 0,
            },
            Dependency {
                cluster: "kafka-*".into(),
                min: 0,
            },
            Dependency {
                cluster: "/*.cache".into(),
                min: 0,
            },
        ];
        let clusters: Vec<String> = [
            "default.kafka-a",
            "default.kafka-b",
            "other.kafka-c",
            "default.web",
            "x.cache",
            "default.cache",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let r = resolve("default", "default.web", &deps, &clusters);
        let names: Vec<(&str, &str)> = r.iter().map(|d| (d.name.as_str(), d.key.as_str())).collect();
        assert_eq!(
            names,
            [
                ("zookeeper", "default.zookeeper"),
                ("/prod.db", "prod.db"),
                ("default.kafka-a", "default.kafka-a"),
                ("default.kafka-b", "default.kafka-b"),
                ("x.cache", "x.cache"),
                ("default.cache", "default.cache"),
            ]
        );
        let all_web = resolve(
            "default",
            "default.web",
            &[Dependency {
                cluster: "*".into(),
                min: 0,
            }],
            &clusters,
        );
        assert!(
            all_web.iter().all(|d| d.key != "default.web"),
            "own cluster never matches"
        );
        // Relative: every other cluster of the namespace.
        assert_eq!(all_web.len(), 3);
    }

    #[test]
    fn min_gates_on_the_sum_of_matches() {
        let deps = [Dependency {
            cluster: "zookeeper".into(),
            min: 3,
        }];
        let resolved = resolve("default", "default.kafka", &deps, &[]);
        let mut found = BTreeMap::from([("zookeeper".to_string(), pods(&[("a", 1), ("b", 2)]))]);
        assert_eq!(unmet_min(&deps, &resolved, &found, &[]).map(|(_, n)| n), Some(2));
        let cycle = ["default.kafka".to_string(), "default.zookeeper".to_string()];
        assert!(
            unmet_min(&deps, &resolved, &found, &cycle).is_none(),
            "a dependency on a cycle does not gate"
        );
        found.insert("zookeeper".into(), pods(&[("a", 1), ("b", 2), ("c", 3)]));
        assert!(unmet_min(&deps, &resolved, &found, &[]).is_none());
    }

    #[test]
    fn cycles_through_the_own_cluster_are_found_shortest_first() {
        let edges = |list: &[(&str, &[&str])]| -> BTreeMap<String, Vec<String>> {
            list.iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect()
        };
        let keys = |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };
        let none = edges(&[]);
        assert_eq!(find_cycle("d.a", &keys(&["d.b"]), &none), None);
        assert_eq!(find_cycle("d.a", &[], &none), None);
        let two = edges(&[("d.b", &["d.a"])]);
        assert_eq!(
            find_cycle("d.a", &keys(&["d.b"]), &two),
            Some(keys(&["d.a", "d.b", "d.a"]))
        );
        let three = edges(&[("d.b", &["d.z", "d.c"]), ("d.c", &["d.a"]), ("d.z", &[])]);
        assert_eq!(
            find_cycle("d.a", &keys(&["d.b"]), &three),
            Some(keys(&["d.a", "d.b", "d.c", "d.a"]))
        );
        // Shortest: a -> c -> a rather than a -> b -> c -> a.
        assert_eq!(
            find_cycle("d.a", &keys(&["d.b", "d.c"]), &three),
            Some(keys(&["d.a", "d.c", "d.a"]))
        );
        assert_eq!(
            find_cycle("d.a", &keys(&["d.a"]), &none),
            Some(keys(&["d.a", "d.a"])),
            "a cluster depending on itself"
        );
        // b and c depend on each other, not on a: theirs to report.
        let beside = edges(&[("d.b", &["d.c"]), ("d.c", &["d.b"])]);
        assert_eq!(find_cycle("d.a", &keys(&["d.b"]), &beside), None);
    }

    #[test]
    fn damper_waits_for_quiet_but_not_past_damper_max() {
        let t0 = Instant::now();
        let mut d = Damper::new(Duration::from_secs(5), Duration::from_secs(12));
        assert_eq!(d.deadline(), None);
        d.changed(t0);
        assert_eq!(d.deadline(), Some(t0 + Duration::from_secs(5)));
        d.changed(t0 + Duration::from_secs(4));
        assert_eq!(d.deadline(), Some(t0 + Duration::from_secs(9)));
        d.changed(t0 + Duration::from_secs(10));
        assert_eq!(d.deadline(), Some(t0 + Duration::from_secs(12)));
        d.clear();
        assert_eq!(d.deadline(), None);
    }
}
