//! How the leader sends a configuration's map to each pod (SPEC §7): whole, or as a delta from
//! the last map the pod applied ([`crate::model::delta`]).
//!
//! Within a leadership the leader remembers, per pod, whether it takes deltas and whether it
//! inherits `added` and `removed` from a delta's base (its `check` answer says so, [`Takes`]),
//! the digest of the map its last `check` accepted and of the last map it applied (its `on`
//! answered 2xx), and keeps the last few maps it sent. A pod holds both maps as bases
//! ([`crate::model::held::Held`]): one whose map is one of those gets a delta (after a `check`
//! of the map itself, an empty one: a first configuration sends each pod the whole map once, at
//! `check`); any other (a new pod that did not answer `check` yet, an older ochopod) gets the
//! whole map, as before. A
//! pod that cannot rebuild the delta answers 409 `"need": "full"` and is sent the whole map then
//! ([`super::calls::Caller::post`]).
//!
//! The part of a body that all pods share is serialized and hashed once per phase; a pod's body
//! is that part with its `key` spliced in at the end, and its sha256 (which the signature covers)
//! is finished from the shared part's hash state: the leader's work per pod is a copy and an HMAC.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::delta::{self, Keyless};
use crate::model::ClusterMap;

/// Maps kept to make deltas from: the last configuration's and a few before it (pods that failed
/// an `on` stay on an older one for a while).
const KEEP_MAPS: usize = 4;

/// What a pod's `check` answer says it takes (SPEC §7).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Takes {
    /// Maps as deltas (`"deltas": true`).
    pub deltas: bool,
    /// Deltas without the `added` and `removed` that are its base's (`"inherits": true`).
    pub inherits: bool,
}

/// What the leader remembers of one pod, within its leadership.
#[derive(Debug, Clone, Default)]
struct Memory {
    /// What its `check` said it takes.
    takes: Takes,
    /// The digest of the map its last `check` accepted (it holds that map as a base).
    checked: Option<String>,
    /// The digest of the last map it applied (`on` answered 2xx).
    applied: Option<String>,
}

/// The leader's memory of what each pod holds, for one leadership.
#[derive(Debug, Default)]
pub(super) struct Delivered {
    pods: HashMap<String, Memory>,
    /// Recent maps by digest, oldest first.
    maps: VecDeque<(String, Arc<ClusterMap>)>,
}

impl Delivered {
    /// The bodies that carry `map` to the pods of `uuids`: a delta for each pod whose last map is
    /// known and kept and that takes deltas, the whole map for the others.
    pub(super) fn prepare<'a>(
        &mut self,
        map: &ClusterMap,
        uuids: impl Iterator<Item = &'a String>,
    ) -> Outgoing {
        let json = Keyless::of(map).to_json();
        let digest = hex::encode(Sha256::digest(&json));
        let full = Arc::new(Encoded::new(json));
        self.keep(&digest, map);
        // By base, and whether the receivers inherit `added` and `removed`.
        let mut deltas: HashMap<(&str, bool), Arc<Encoded>> = HashMap::new();
        let mut per_pod = HashMap::new();
        for uuid in uuids {
            let Some(m) = self.pods.get(uuid).filter(|m| m.takes.deltas) else {
                continue;
            };
            // The map itself if the pod holds it (an empty delta), else the last one it checked,
            // else the one it applied: the most recent has the fewest changes.
            let held = [&m.checked, &m.applied];
            let base = held
                .iter()
                .filter_map(|b| b.as_ref())
                .find(|b| **b == digest)
                .or_else(|| {
                    held.iter()
                        .filter_map(|b| b.as_ref())
                        .find(|b| self.maps.iter().any(|(d, _)| d == *b))
                });
            let Some(base) = base else { continue };
            let inherits = m.takes.inherits;
            let encoded = match deltas.get(&(base.as_str(), inherits)) {
                Some(e) => e.clone(),
                None => {
                    let Some((_, from)) = self.maps.iter().find(|(d, _)| d == base) else {
                        continue;
                    };
                    let mut d = delta::make(from, base, map, &digest);
                    if inherits {
                        d = d.inheriting(from);
                    }
                    let e = Arc::new(Encoded::of(&d));
                    deltas.insert((base.as_str(), inherits), e.clone());
                    e
                }
            };
            per_pod.insert(uuid.clone(), encoded);
        }
        Outgoing {
            digest,
            full,
            per_pod,
        }
    }

    fn keep(&mut self, digest: &str, map: &ClusterMap) {
        if let Some(i) = self.maps.iter().position(|(d, _)| d == digest) {
            // Already kept (the `ok` of the map just sent): latest again.
            if let Some(entry) = self.maps.remove(i) {
                self.maps.push_back(entry);
            }
            return;
        }
        let kept = ClusterMap {
            key: String::new(),
            ..map.clone()
        };
        self.maps.push_back((digest.to_string(), Arc::new(kept)));
        while self.maps.len() > KEEP_MAPS {
            self.maps.pop_front();
        }
    }

    /// The pod's `check` of the map of `out` answered 2xx, saying what it takes (when it takes
    /// deltas, it holds that map as a base).
    pub(super) fn checked(&mut self, uuid: &str, takes: Takes, out: &Outgoing) {
        let m = self.pods.entry(uuid.to_string()).or_default();
        m.takes = takes;
        m.checked = takes.deltas.then(|| out.digest.clone());
    }

    /// The pod applied the map of `out` (its `on` answered 2xx).
    pub(super) fn applied(&mut self, uuid: &str, out: &Outgoing) {
        self.pods.entry(uuid.to_string()).or_default().applied = Some(out.digest.clone());
    }

    /// What the pod holds is unknown (its `on` failed: it may or may not have applied the map).
    pub(super) fn unknown(&mut self, uuid: &str) {
        if let Some(m) = self.pods.get_mut(uuid) {
            m.applied = None;
        }
    }

    /// Forgets the pods not in `keep` (gone from the cluster).
    pub(super) fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.pods.retain(|uuid, _| keep(uuid));
    }
}

/// One phase's bodies: the whole map, and the deltas of the pods that take them.
#[derive(Debug)]
pub struct Outgoing {
    /// The map's digest ([`delta::digest`]).
    digest: String,
    full: Arc<Encoded>,
    per_pod: HashMap<String, Arc<Encoded>>,
}

/// A body for one pod and its hex sha256.
pub struct Body {
    pub bytes: Vec<u8>,
    pub sha256: String,
    /// A delta (the pod may answer that it needs the whole map).
    pub delta: bool,
}

impl Outgoing {
    /// The body for the pod `uuid`: its delta, or the whole map.
    pub fn body(&self, uuid: &str) -> Body {
        match self.per_pod.get(uuid) {
            Some(d) => d.body(uuid, true),
            None => self.full.body(uuid, false),
        }
    }

    /// The whole map for the pod `uuid` (after it asked for it).
    pub fn full(&self, uuid: &str) -> Body {
        self.full.body(uuid, false)
    }

    /// How many pods get a delta.
    pub fn deltas(&self) -> usize {
        self.per_pod.len()
    }
}

/// A JSON object without its `key`, open at the end for it, and the sha256 state after it.
#[derive(Debug)]
struct Encoded {
    /// The object without its closing `}`.
    open: Vec<u8>,
    hashed: Sha256,
}

impl Encoded {
    fn of(value: &impl Serialize) -> Encoded {
        // Maps of strings and numbers: serializing cannot fail.
        Encoded::new(serde_json::to_vec(value).unwrap_or_default())
    }

    /// From an object's JSON (`{...}`, without `key`).
    fn new(mut json: Vec<u8>) -> Encoded {
        if json.last() == Some(&b'}') {
            json.pop();
        }
        let hashed = Sha256::new_with_prefix(&json);
        Encoded { open: json, hashed }
    }

    fn body(&self, key: &str, delta: bool) -> Body {
        // A uuid is `[A-Za-z0-9-]` (model::check), but quote it as JSON all the same.
        let key = serde_json::to_string(key).unwrap_or_else(|_| "\"\"".into());
        // `{}` has nothing before the key.
        let comma = if self.open.len() > 1 { "," } else { "" };
        let tail = format!("{comma}\"key\":{key}}}");
        let mut bytes = Vec::with_capacity(self.open.len().saturating_add(tail.len()));
        bytes.extend_from_slice(&self.open);
        bytes.extend_from_slice(tail.as_bytes());
        let mut h = self.hashed.clone();
        h.update(tail.as_bytes());
        Body {
            bytes,
            sha256: hex::encode(h.finalize()),
            delta,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A pod of the version before `inherits`.
    const DELTAS: Takes = Takes {
        deltas: true,
        inherits: false,
    };
    use crate::model::fixtures::pod;
    use crate::model::Pod;

    fn map(generation: u64, pods: &[u32]) -> ClusterMap {
        ClusterMap {
            version: crate::model::WIRE_VERSION,
            epoch: 3,
            generation,
            pods: pods.iter().map(|&n| (format!("u{n}"), pod(n))).collect(),
            ..ClusterMap::default()
        }
    }

    fn uuids(n: &[u32]) -> Vec<String> {
        n.iter().map(|n| format!("u{n}")).collect()
    }

    #[test]
    fn a_body_is_the_map_with_its_key_and_the_hash_of_its_bytes() {
        let m = map(1, &[1, 2]);
        let out = Delivered::default().prepare(&m, uuids(&[1, 2]).iter());
        let b = out.body("u2");
        assert!(!b.delta);
        assert_eq!(b.sha256, hex::encode(Sha256::digest(&b.bytes)));
        let got: ClusterMap = serde_json::from_slice(&b.bytes).unwrap();
        assert_eq!(
            got,
            ClusterMap {
                key: "u2".into(),
                ..m
            }
        );
    }

    #[test]
    fn pods_that_applied_the_last_map_and_take_deltas_get_one() {
        let mut d = Delivered::default();
        let (a, b) = (map(1, &[1, 2, 3]), map(2, &[1, 2, 3, 4]));
        let first = d.prepare(&a, uuids(&[1, 2, 3]).iter());
        d.checked("u1", DELTAS, &first);
        d.checked("u2", Takes::default(), &first); // an older pod
        d.checked("u3", DELTAS, &first);
        d.applied("u1", &first);
        d.applied("u2", &first);
        // u3's `on` failed: what it applied is unknown, but it holds the map it checked.
        d.applied("u3", &first);
        d.unknown("u3");
        let next = d.prepare(&b, uuids(&[1, 2, 3, 4]).iter());
        assert_eq!(next.deltas(), 2);
        let body = next.body("u1");
        assert!(body.delta && !next.body("u2").delta && next.body("u3").delta);
        assert_eq!(body.sha256, hex::encode(Sha256::digest(&body.bytes)));
        let rebuilt = crate::model::delta::read(
            &body.bytes,
            Some(&ClusterMap {
                key: "u1".into(),
                ..a
            }),
        )
        .unwrap();
        assert_eq!(
            rebuilt,
            ClusterMap {
                key: "u1".into(),
                ..b.clone()
            }
        );
        // The delta is about the one pod added, not the whole map.
        assert!(
            body.bytes.len() * 2 < next.full("u1").bytes.len(),
            "{}",
            String::from_utf8_lossy(&body.bytes)
        );
        // After `on`, the `ok` of the same map is an empty delta from it.
        d.applied("u1", &next);
        let ok = d.prepare(&b, uuids(&[1]).iter());
        let body = ok.body("u1");
        let d: crate::model::delta::Delta = serde_json::from_slice(&body.bytes).unwrap();
        assert_eq!(d.delta, crate::model::delta::Changes::default());
    }

    #[test]
    fn a_first_configuration_sends_the_whole_map_once_at_check() {
        let mut d = Delivered::default();
        let m = map(1, &[1, 2]);
        let check = d.prepare(&m, uuids(&[1, 2]).iter());
        assert_eq!(check.deltas(), 0, "nothing known yet: whole maps");
        d.checked("u1", DELTAS, &check);
        d.checked("u2", Takes::default(), &check); // an older pod
        let on = d.prepare(&m, uuids(&[1, 2]).iter());
        assert_eq!(on.deltas(), 1);
        let body = on.body("u1");
        let delta: crate::model::delta::Delta = serde_json::from_slice(&body.bytes).unwrap();
        assert_eq!(delta.delta, crate::model::delta::Changes::default());
        assert_eq!(delta.base.digest, delta.digest);
        assert!(!on.body("u2").delta);
        // The pod reads it as the map it checked.
        let held = crate::model::held::Held {
            applied: None,
            checked: Some(crate::model::held::Known::new(ClusterMap {
                key: "u1".into(),
                ..m.clone()
            })),
        };
        assert_eq!(
            *held.read(&body.bytes).unwrap(),
            ClusterMap {
                key: "u1".into(),
                ..m
            }
        );
    }

    #[test]
    fn a_pod_that_inherits_gets_deltas_without_the_bases_lists() {
        let mut d = Delivered::default();
        let mut m = map(1, &[1, 2, 3]);
        m.added = uuids(&[1, 2, 3]);
        let check = d.prepare(&m, uuids(&[1, 2, 3]).iter());
        let inherits = Takes {
            deltas: true,
            inherits: true,
        };
        d.checked("u1", inherits, &check);
        d.checked("u2", DELTAS, &check);
        let on = d.prepare(&m, uuids(&[1, 2]).iter());
        let text = |u: &str| String::from_utf8(on.body(u).bytes).unwrap();
        // A first configuration's `on`: the list of every pod added is the checked map's.
        assert!(
            !text("u1").contains("\"added\"") && !text("u1").contains("\"removed\""),
            "{}",
            text("u1")
        );
        assert!(
            text("u2").contains(r#""added":["u1","u2","u3"]"#),
            "{}",
            text("u2")
        );
        let held = crate::model::held::Held {
            applied: None,
            checked: Some(crate::model::held::Known::new(ClusterMap {
                key: "u1".into(),
                ..m.clone()
            })),
        };
        assert_eq!(held.read(&on.body("u1").bytes).unwrap().added, m.added);
        // A change: `added` is the new map's, `removed` (unchanged, empty) is left out.
        d.applied("u1", &on);
        let mut next = map(2, &[1, 2, 3, 4]);
        next.added = uuids(&[4]);
        let out = d.prepare(&next, uuids(&[1]).iter());
        let body = out.body("u1");
        let text = String::from_utf8_lossy(&body.bytes);
        assert!(
            text.contains(r#""added":["u4"]"#) && !text.contains("\"removed\""),
            "{text}"
        );
        let got = held.read(&body.bytes).unwrap();
        assert_eq!((got.added.clone(), got.removed.len()), (uuids(&[4]), 0));
    }

    /// Figures for docs/benchmarks.md: 1,000 pods, one joining. Bytes of a reconfiguration with
    /// whole maps (check, on, ok to each pod) and with deltas, and the leader's CPU for the bodies
    /// of one phase: per pod serialize and hash (before) against shared once, then copy and finish
    /// the hash (after).
    /// `cargo test --release --lib delivery_figures -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn delivery_figures() {
        use std::time::Instant;
        let n = 1000u32;
        let mut all: Vec<u32> = (1..=n).collect();
        let pod_of = |i: u32| Pod {
            uuid: format!("{:08x}-95a1-4b1e-9f38-0b5d3c7a9e11", i),
            ip: format!("10.1.{}.{}", i / 250, i % 250 + 1),
            host: format!("web-{i}.web.default.svc.cluster.local"),
            node: format!("node-{}", i % 40),
            ports: [("9000".to_string(), 9000)].into(),
            version: "0.9.0".into(),
            started: 1_700_000_000_000,
            ..pod(i)
        };
        let map_of = |ids: &[u32], g: u64| ClusterMap {
            pods: ids.iter().map(|&i| (pod_of(i).uuid.clone(), pod_of(i))).collect(),
            ..map(g, &[])
        };
        let a = map_of(&all, 1);
        all.push(n + 1);
        let mut b = map_of(&all, 2);
        b.added = vec![pod_of(n + 1).uuid];
        let uuids: Vec<String> = b.pods.keys().cloned().collect();

        // Before: every body is the map with its key, serialized and hashed per pod.
        let t = Instant::now();
        let mut before = 0usize;
        for u in &uuids {
            let body = serde_json::to_vec(&ClusterMap {
                key: u.clone(),
                ..b.clone()
            })
            .unwrap();
            before += body.len();
            std::hint::black_box(Sha256::digest(&body));
        }
        let per_phase_before = t.elapsed();

        let mut d = Delivered::default();
        let first = d.prepare(&a, uuids.iter());
        for u in uuids.iter().filter(|u| a.pods.contains_key(*u)) {
            d.checked(u, DELTAS, &first);
            d.applied(u, &first);
        }
        // After, whole maps (a first configuration): shared once, then per pod copy and hash.
        let t = Instant::now();
        let out = Delivered::default().prepare(&b, uuids.iter());
        let whole: usize = uuids.iter().map(|u| out.body(u).bytes.len()).sum();
        let per_phase_whole = t.elapsed();
        // After, deltas: check (and on) from the last map, ok an empty delta.
        let t = Instant::now();
        let out = d.prepare(&b, uuids.iter());
        let check: usize = uuids.iter().map(|u| out.body(u).bytes.len()).sum();
        let per_phase_delta = t.elapsed();
        for u in &uuids {
            // The newcomer said at check that it takes deltas, like the others.
            d.checked(u, DELTAS, &out);
            d.applied(u, &out);
        }
        let ok: usize = uuids
            .iter()
            .map(|u| d.prepare(&b, [u].into_iter()).body(u).bytes.len())
            .sum();
        println!("pods {}; one map {} B", uuids.len(), before / uuids.len());
        println!("+1 pod, whole maps: {} B (3 calls x {} B)", 3 * before, before);
        println!(
            "+1 pod, deltas: {} B (check {check} + on {check} + ok {ok})",
            2 * check + ok
        );
        println!("one phase's bodies, before: {per_phase_before:?}; whole maps after: {per_phase_whole:?} ({whole} B); deltas: {per_phase_delta:?}");
    }
}
