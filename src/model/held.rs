//! The maps a pod holds to read deltas against (SPEC §7), each with its digest computed once.
//!
//! A delta names its base by digest, and the map it rebuilds by digest. Hashing a map is O(N)
//! (its JSON serialized and hashed): done per request, a pod of a cluster of 1,000 pays it for
//! every `check`, `on` and `ok`. So a pod keeps each map it holds as a [`Known`]: the map and its
//! digest, computed at most once (a map rebuilt from a delta gets the digest it was checked
//! against; a whole map's is computed the first time a delta names it). A pod holds two:
//! the map it applied (`on`), and the map its last `check` carried, which the leader may name as
//! the base of that configuration's `on` and `ok` ([`Held`]). An empty delta from a held map to
//! itself (what the leader sends at `on` and `ok` once `check` carried the map) is that map:
//! nothing rebuilt, nothing hashed.

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use super::delta::{self, Body, Delta, DeltaError};
use super::ClusterMap;

/// A map and its digest ([`delta::digest`]), computed once, shared by every clone.
#[derive(Debug, Clone)]
pub struct Known(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    map: ClusterMap,
    digest: OnceLock<String>,
}

impl Known {
    /// A map whose digest is computed the first time it is asked for.
    pub fn new(map: ClusterMap) -> Known {
        Known(Arc::new(Inner {
            map,
            digest: OnceLock::new(),
        }))
    }

    /// A map whose digest is already known (a map rebuilt and checked against it).
    fn digested(map: ClusterMap, digest: String) -> Known {
        Known(Arc::new(Inner {
            map,
            digest: OnceLock::from(digest),
        }))
    }

    pub fn map(&self) -> &ClusterMap {
        &self.0.map
    }

    /// [`delta::digest`] of the map (it does not cover `key`).
    pub fn digest(&self) -> &str {
        self.0.digest.get_or_init(|| delta::digest(&self.0.map))
    }

    /// The same map with `key` set (a copy when it differs; the digest goes along, it does not
    /// cover `key`).
    pub fn with_key(mut self, key: &str) -> Known {
        if self.0.map.key == key {
            return self;
        }
        if let Some(only) = Arc::get_mut(&mut self.0) {
            only.map.key = key.to_string();
            return self;
        }
        let mut map = self.0.map.clone();
        map.key = key.to_string();
        Known(Arc::new(Inner {
            map,
            digest: self.0.digest.clone(),
        }))
    }

    /// The map without `key`, for a store that several receivers share (the swarm simulator's).
    pub fn without_key(self) -> Known {
        self.with_key("")
    }

    /// Whether both are the same held copy.
    pub fn ptr_eq(&self, other: &Known) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Deref for Known {
    type Target = ClusterMap;

    fn deref(&self) -> &ClusterMap {
        &self.0.map
    }
}

/// What a pod holds to read a body against: the map it applied, and the map its last `check`
/// carried (a base the leader may name for that configuration's `on` and `ok`).
#[derive(Debug, Clone, Default)]
pub struct Held {
    pub applied: Option<Known>,
    pub checked: Option<Known>,
}

/// A body read: the map it stands for, and the body's `key` (the held map it names may carry
/// another: see [`Held::resolve`]).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub map: Known,
    pub key: String,
}

impl Held {
    fn held(&self) -> impl Iterator<Item = &Known> {
        self.checked.iter().chain(self.applied.iter())
    }

    /// The held map a delta names as its base: generation first, then the digest.
    fn base(&self, d: &Delta) -> Option<&Known> {
        self.held()
            .find(|k| k.generation == d.base.generation && k.digest() == d.base.digest)
    }

    /// The map a body stands for: a whole map as it is; a delta rebuilt from the held map it
    /// names (409 `need: full` when there is none, or the result has another digest than the
    /// body's). An empty delta from a held map to itself is that map, shared, not rebuilt. The
    /// returned map's `key` may differ from the body's (a store shared by several receivers
    /// keeps maps without one): [`Resolved::key`] is the body's.
    pub fn resolve(&self, bytes: &[u8]) -> Result<Resolved, DeltaError> {
        let d = match delta::parse(bytes)? {
            Body::Full(map) => {
                let key = map.key.clone();
                return Ok(Resolved {
                    map: Known::new(map),
                    key,
                });
            }
            Body::Delta(d) => d,
        };
        let Some(base) = self.base(&d) else {
            return Err(match self.held().next() {
                None => DeltaError::NoBase,
                Some(have) => DeltaError::OtherBase {
                    have: have.generation,
                    got: d.base.generation,
                    digest: d.base.digest.chars().take(64).collect(),
                },
            });
        };
        if d.base.digest == d.digest && same_map(base, &d) {
            return Ok(Resolved {
                map: base.clone(),
                key: d.key,
            });
        }
        let map = delta::rebuild_from(base, &d)?;
        Ok(Resolved {
            key: d.key,
            map: Known::digested(map, d.digest),
        })
    }

    /// The map a body stands for ([`Held::resolve`]), with the body's `key`.
    pub fn read(&self, bytes: &[u8]) -> Result<Known, DeltaError> {
        let r = self.resolve(bytes)?;
        Ok(r.map.with_key(&r.key))
    }
}

/// Whether `d` takes `base` to `base` itself: no change, and the body's own fields as the base's
/// (then the rebuilt map would be `base`, and its digest `base`'s).
fn same_map(base: &ClusterMap, d: &Delta) -> bool {
    d.delta.own.pods.is_empty()
        && d.delta.own.gone.is_empty()
        && d.delta.dependencies.is_empty()
        && d.delta.dependencies_gone.is_empty()
        && (d.version, d.epoch, d.generation) == (base.version, base.epoch, base.generation)
        && d.added.as_ref().is_none_or(|a| *a == base.added)
        && d.removed.as_ref().is_none_or(|r| *r == base.removed)
        && d.removed_pods == base.removed_pods
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::delta::{make, DIGESTS};
    use crate::model::fixtures::pod;
    use crate::model::Pod;

    fn map(generation: u64, own: &[u32]) -> ClusterMap {
        ClusterMap {
            version: crate::model::WIRE_VERSION,
            epoch: 7,
            generation,
            key: "u1".into(),
            pods: own.iter().map(|&n| (format!("u{n}"), pod(n))).collect(),
            dependencies: BTreeMap::new(),
            ..ClusterMap::default()
        }
    }

    /// The body a leader sends `u1` to take it from `base` to `to`.
    fn body(base: &ClusterMap, to: &ClusterMap) -> Vec<u8> {
        let mut d = make(base, &delta::digest(base), to, &delta::digest(to));
        d.key = "u1".into();
        serde_json::to_vec(&d).unwrap()
    }

    /// Maps hashed on this thread while `f` runs.
    fn digests<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let before = DIGESTS.with(|n| n.get());
        let out = f();
        (out, DIGESTS.with(|n| n.get()) - before)
    }

    #[test]
    fn an_empty_delta_to_a_held_map_is_that_map_hashed_once() {
        let m = map(1, &[1, 2, 3]);
        let (on, ok) = (body(&m, &m), body(&m, &m));
        // `check` carried the whole map: read, not hashed yet.
        let (checked, n) = digests(|| Held::default().read(&serde_json::to_vec(&m).unwrap()).unwrap());
        assert_eq!(n, 0);
        let held = Held {
            applied: None,
            checked: Some(checked.clone()),
        };
        // `on`: the base's digest, once; the map is the held copy, not rebuilt.
        let (got, n) = digests(|| held.read(&on).unwrap());
        assert_eq!(n, 1);
        assert!(got.ptr_eq(&checked));
        // `ok`, and as the applied map: nothing hashed again.
        let held = Held {
            applied: Some(got),
            checked: Some(checked.clone()),
        };
        let (got, n) = digests(|| held.read(&ok).unwrap());
        assert_eq!(n, 0);
        assert!(got.ptr_eq(&checked));
        assert_eq!(*got, m);
    }

    #[test]
    fn a_rebuilt_map_keeps_the_digest_it_was_checked_against() {
        let (a, b, c) = (map(1, &[1, 2]), map(2, &[1, 2, 3]), map(3, &[1, 3]));
        let (ab, bc) = (body(&a, &b), body(&b, &c));
        let held = Held {
            applied: Some(Known::new(a.clone())),
            checked: None,
        };
        // The base hashed once (it was never), the rebuilt map once to check it.
        let (got, n) = digests(|| held.read(&ab).unwrap());
        assert_eq!((n, &*got), (2, &b));
        let held = Held {
            applied: held.applied,
            checked: Some(got),
        };
        // Both held maps' digests are known now: only the new map is hashed.
        let (got, n) = digests(|| held.read(&bc).unwrap());
        assert_eq!((n, &*got), (1, &c));
        // A delta from the applied map (a) reads too: the base is picked by digest among both.
        let (_, n) = digests(|| held.read(&ab).unwrap());
        assert_eq!(n, 1);
    }

    #[test]
    fn a_delta_from_a_map_not_held_asks_for_the_whole_map() {
        let (a, b) = (map(1, &[1, 2]), map(2, &[1, 2, 3]));
        let d = body(&a, &b);
        let e = Held::default().read(&d).unwrap_err();
        assert!(matches!(e, DeltaError::NoBase), "{e}");
        let held = Held {
            applied: Some(Known::new(b.clone())),
            checked: Some(Known::new(map(1, &[1, 3]))),
        };
        let e = held.read(&d).unwrap_err();
        assert!(e.needs_full() && matches!(e, DeltaError::OtherBase { .. }), "{e}");
        // An empty delta that names a held map but changes its fields is rebuilt, and checked.
        let mut same = serde_json::from_slice::<Delta>(&body(&b, &b)).unwrap();
        same.added = Some(vec!["u3".into()]);
        let e = held.read(&serde_json::to_vec(&same).unwrap()).unwrap_err();
        assert!(matches!(e, DeltaError::Differs { .. }), "{e}");
        // Another key: the held map, copied with the body's key (then refused by admission).
        same.added = Some(vec![]);
        same.key = "u2".into();
        let r = held.resolve(&serde_json::to_vec(&same).unwrap()).unwrap();
        assert!(r.map.ptr_eq(held.applied.as_ref().unwrap()) && r.key == "u2");
        let got = held.read(&serde_json::to_vec(&same).unwrap()).unwrap();
        assert_eq!(got.key, "u2");
        assert_eq!(got.digest(), delta::digest(&b));
    }

    /// Figures for docs/benchmarks.md: what one pod of 1,000 spends on the bodies of a first
    /// configuration (`check` whole, then an empty delta) and of one pod joining (a delta);
    /// medians of 101 runs.
    /// `cargo test --release --lib held_figures -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn held_figures() {
        use std::time::{Duration, Instant};
        fn median(mut f: impl FnMut()) -> Duration {
            let mut t: Vec<Duration> = (0..101)
                .map(|_| {
                    let at = Instant::now();
                    f();
                    at.elapsed()
                })
                .collect();
            t.sort();
            t[50]
        }
        let big = |i: u32| Pod {
            uuid: format!("{i:08x}-95a1-4b1e-9f38-0b5d3c7a9e11"),
            ip: format!("10.1.{}.{}", i / 250, i % 250 + 1),
            public: format!("10.1.{}.{}", i / 250, i % 250 + 1),
            host: format!("web-{i}.web.default.svc.cluster.local"),
            ports: [("9000".to_string(), 9000), ("8080".to_string(), 8080)].into(),
            version: "0.9.0".into(),
            started: 1_700_000_000_000,
            ..pod(i)
        };
        let map_of = |n: u32, g: u64| ClusterMap {
            generation: g,
            key: big(1).uuid,
            pods: (1..=n).map(|i| (big(i).uuid, big(i))).collect(),
            added: (1..=n).map(|i| big(i).uuid).collect(),
            ..ClusterMap::default()
        };
        let (a, b) = (map_of(1000, 1), map_of(1001, 2));
        let whole = serde_json::to_vec(&a).unwrap();
        let read_whole = median(|| {
            std::hint::black_box(Held::default().read(&whole).unwrap());
        });
        let hash = median(|| {
            std::hint::black_box(delta::digest(&a));
        });
        let held = Held {
            applied: Some(Known::new(a.clone())),
            checked: None,
        };
        let body = |to: &ClusterMap, inherit: bool| {
            let mut d = make(&a, &delta::digest(&a), to, &delta::digest(to));
            if inherit {
                d = d.inheriting(&a);
            }
            d.key = a.key.clone();
            serde_json::to_vec(&d).unwrap()
        };
        let _ = held.read(&body(&a, false)).unwrap();
        let (empty, inherited, join) = (body(&a, false), body(&a, true), body(&b, true));
        let read_empty = median(|| {
            std::hint::black_box(held.read(&empty).unwrap());
        });
        let read_inherited = median(|| {
            std::hint::black_box(held.read(&inherited).unwrap());
        });
        let read_join = median(|| {
            std::hint::black_box(held.read(&join).unwrap());
        });
        println!(
            "whole map of 1,000 pods, {} B: read {read_whole:?}; its digest {hash:?}",
            whole.len()
        );
        println!(
            "empty delta {} B: {read_empty:?}; inheriting {} B: {read_inherited:?}; one pod joining {} B: {read_join:?}",
            empty.len(),
            inherited.len(),
            join.len()
        );
    }
}
