//! Map deltas (SPEC §7): a cluster map sent as what changed since a map its receiver holds.
//!
//! Every configuration carries the map to every pod, three or four times (`check`, `off`, `on`,
//! `ok`). Sent whole, that is O(N) bytes per pod and O(N²) per configuration. A pod that applied
//! the leader's last map gets only the pods added, changed and gone since ([`Delta`]); it
//! rebuilds the whole map from its own ([`rebuild`], or [`super::held::Held::read`], which hashes each map it
//! holds once) and checks the result against the digest the
//! leader sent ([`digest`]: sha256 of the map's JSON without `key`, the same bytes on both sides
//! since every collection in a map is ordered). When it does not hold the base map, or the result
//! differs, it asks for the whole map ([`DeltaError::needs_full`]: a 409 with `"need": "full"`),
//! and nothing changes.
//!
//! What comes in is untrusted: a delta's pods and names are validated as they are deserialized,
//! like a full map's, the rebuilt map goes through the same checks, and its size is capped.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::check::{check_map, Invalid};
use super::{ClusterMap, Pod};

#[cfg(test)]
thread_local! {
    /// How many maps this thread hashed ([`digest`]): what the tests of [`Held`] count.
    pub(super) static DIGESTS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Pods, dependencies' pods and removed pods in a rebuilt map, all together, at most: more than a
/// full map can carry within the control API's body limit.
pub const MAX_PODS: usize = 200_000;

/// The base a delta applies to: the receiver's last map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    pub generation: u64,
    /// [`digest`] of the base map.
    pub digest: String,
}

/// The pods of one collection (the cluster, or one dependency) added or changed, and gone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodChanges {
    /// uuid → the pod as it is now (added or changed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pods: BTreeMap<String, Pod>,
    /// uuids no longer there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gone: Vec<String>,
}

impl PodChanges {
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty() && self.gone.is_empty()
    }

    fn len(&self) -> usize {
        self.pods.len().saturating_add(self.gone.len())
    }
}

/// What changed in the pods and dependencies from the base map to the new one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// The cluster's own pods.
    #[serde(flatten)]
    pub own: PodChanges,
    /// Dependency name → its pods' changes (a new dependency: all its pods).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dependencies: BTreeMap<String, PodChanges>,
    /// Dependencies no longer in the map.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies_gone: Vec<String>,
}

/// A map body sent as a delta (SPEC §7): the new map's own fields, the base it applies to, the
/// changes, and the new map's digest. `key` is the receiver's uuid, as in a full map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    pub version: u32,
    pub epoch: u64,
    pub generation: u64,
    /// Empty while the leader builds it: set per receiver.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    pub base: Base,
    pub delta: Changes,
    /// The new map's `added` and `removed`; absent: the base's (a leader leaves them out only
    /// for a pod that said `"inherits": true`, [`Delta::inheriting`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub removed_pods: BTreeMap<String, Pod>,
    /// [`digest`] of the map it rebuilds.
    pub digest: String,
}

/// A map body as it arrives: a whole map, or a delta (it has `base`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Full(ClusterMap),
    Delta(Delta),
}

/// Why a body was not turned into a map.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// Not JSON, or not the shape of a map or a delta, or a pod in it is invalid.
    #[error("the body is not a cluster map")]
    Malformed(#[source] serde_json::Error),
    /// A delta, and this pod holds no map.
    #[error("a map delta, and this pod holds no map: send the full map")]
    NoBase,
    /// A delta for another base than the map this pod holds.
    #[error(
        "a map delta from generation {got} ({digest}), this pod holds generation {have}: send the full map"
    )]
    OtherBase { have: u64, got: u64, digest: String },
    /// The rebuilt map is not the one the leader meant.
    #[error("the map rebuilt from the delta has digest {got}, the leader's is {want}: send the full map")]
    Differs { got: String, want: String },
    /// The rebuilt map is not a valid map.
    #[error("the map rebuilt from the delta is invalid")]
    Invalid(#[from] Invalid),
    #[error("the map rebuilt from the delta holds more than {MAX_PODS} pods")]
    TooLarge,
}

impl DeltaError {
    /// Whether the sender should send the full map instead (409 `"need": "full"`); else the body
    /// itself is wrong (400).
    pub fn needs_full(&self) -> bool {
        matches!(
            self,
            DeltaError::NoBase | DeltaError::OtherBase { .. } | DeltaError::Differs { .. }
        )
    }
}

/// The map without its `key`: what [`digest`] covers, and what a leader serializes once per
/// configuration for all its receivers. Field order and skips as [`ClusterMap`]'s own.
#[derive(Serialize)]
pub struct Keyless<'a> {
    version: u32,
    epoch: u64,
    generation: u64,
    pods: &'a BTreeMap<String, Pod>,
    added: &'a [String],
    removed: &'a [String],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    removed_pods: &'a BTreeMap<String, Pod>,
    dependencies: &'a BTreeMap<String, BTreeMap<String, Pod>>,
}

impl<'a> Keyless<'a> {
    pub fn of(m: &'a ClusterMap) -> Keyless<'a> {
        Keyless {
            version: m.version,
            epoch: m.epoch,
            generation: m.generation,
            pods: &m.pods,
            added: &m.added,
            removed: &m.removed,
            removed_pods: &m.removed_pods,
            dependencies: &m.dependencies,
        }
    }

    /// The JSON bytes [`digest`] hashes.
    pub fn to_json(&self) -> Vec<u8> {
        // Strings, integers and maps with string keys: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The map's digest: hex sha256 of its JSON without `key` ([`Keyless`]).
pub fn digest(map: &ClusterMap) -> String {
    #[cfg(test)]
    DIGESTS.with(|n| n.set(n.get().saturating_add(1)));
    // Streamed into the hash through a buffer: no copy of the whole map's JSON (hundreds of kB
    // at a thousand pods), the same bytes as `to_json`.
    let mut out = std::io::BufWriter::with_capacity(16 << 10, HashWriter(Sha256::new()));
    // Strings, integers and maps with string keys, into a writer that cannot fail; were it to,
    // the bytes hashed would be `to_json`'s, as a leader's.
    let streamed = serde_json::to_writer(&mut out, &Keyless::of(map));
    match (streamed, out.into_inner()) {
        (Ok(()), Ok(w)) => hex::encode(w.0.finalize()),
        _ => hex::encode(Sha256::digest(Keyless::of(map).to_json())),
    }
}

/// Bytes written are hashed.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What changed from `from` to `to` (their pods and dependencies; the other fields are sent as
/// they are).
pub fn diff(from: &ClusterMap, to: &ClusterMap) -> Changes {
    let dependencies = to
        .dependencies
        .iter()
        .filter_map(|(name, pods)| {
            let empty = BTreeMap::new();
            let was = from.dependencies.get(name);
            let c = diff_pods(was.unwrap_or(&empty), pods);
            (was.is_none() || !c.is_empty()).then(|| (name.clone(), c))
        })
        .collect();
    Changes {
        own: diff_pods(&from.pods, &to.pods),
        dependencies,
        dependencies_gone: from
            .dependencies
            .keys()
            .filter(|k| !to.dependencies.contains_key(*k))
            .cloned()
            .collect(),
    }
}

fn diff_pods(from: &BTreeMap<String, Pod>, to: &BTreeMap<String, Pod>) -> PodChanges {
    PodChanges {
        pods: to
            .iter()
            .filter(|(u, p)| from.get(*u) != Some(*p))
            .map(|(u, p)| (u.clone(), p.clone()))
            .collect(),
        gone: from.keys().filter(|u| !to.contains_key(*u)).cloned().collect(),
    }
}

/// The delta that takes a receiver holding `base` to `to` (its `key` left empty: set per
/// receiver).
pub fn make(base: &ClusterMap, base_digest: &str, to: &ClusterMap, to_digest: &str) -> Delta {
    Delta {
        version: to.version,
        epoch: to.epoch,
        generation: to.generation,
        key: String::new(),
        base: Base {
            generation: base.generation,
            digest: base_digest.to_string(),
        },
        delta: diff(base, to),
        added: Some(to.added.clone()),
        removed: Some(to.removed.clone()),
        removed_pods: to.removed_pods.clone(),
        digest: to_digest.to_string(),
    }
}

impl Delta {
    /// This delta without the `added` and `removed` that are the same as `base`'s (the map it
    /// was made from, [`make`]'s first argument): for a pod that said `"inherits": true` (SPEC
    /// §7). In an empty delta (the `on` and `ok` of a map the pod checked) that leaves out the
    /// whole list of a first configuration's pods.
    pub fn inheriting(mut self, base: &ClusterMap) -> Delta {
        if self.added.as_ref() == Some(&base.added) {
            self.added = None;
        }
        if self.removed.as_ref() == Some(&base.removed) {
            self.removed = None;
        }
        self
    }
}

/// The map a delta describes, from `last` (the receiver's last map, None when it has none):
/// refused when `last` is not its base, or the result is not valid, too large, or not the map
/// whose digest the delta carries. Pure; never panics.
pub fn rebuild(last: Option<&ClusterMap>, d: &Delta) -> Result<ClusterMap, DeltaError> {
    let last = last.ok_or(DeltaError::NoBase)?;
    let other = || DeltaError::OtherBase {
        have: last.generation,
        got: d.base.generation,
        digest: d.base.digest.chars().take(64).collect(),
    };
    // The generation first: hashing the map costs more.
    if last.generation != d.base.generation || digest(last) != d.base.digest {
        return Err(other());
    }
    rebuild_from(last, d)
}

/// The map a delta describes from `base`, which the caller knows is the delta's base (a
/// [`Held`](super::held::Held) map whose digest it computed once): [`rebuild`] without hashing the base again.
pub(super) fn rebuild_from(last: &ClusterMap, d: &Delta) -> Result<ClusterMap, DeltaError> {
    let changes = d
        .delta
        .dependencies
        .values()
        .fold(d.delta.own.len(), |n, c| n.saturating_add(c.len()));
    let size = |m: &ClusterMap| {
        m.dependencies
            .values()
            .fold(m.pods.len().saturating_add(m.removed_pods.len()), |n, p| {
                n.saturating_add(p.len())
            })
    };
    // Checked before applying, so that a huge delta costs no more than reading it did.
    if size(last).saturating_add(changes) > MAX_PODS.saturating_mul(2) {
        return Err(DeltaError::TooLarge);
    }
    let mut pods = last.pods.clone();
    apply(&mut pods, &d.delta.own);
    let mut dependencies = last.dependencies.clone();
    for name in &d.delta.dependencies_gone {
        dependencies.remove(name);
    }
    for (name, c) in &d.delta.dependencies {
        apply(dependencies.entry(name.clone()).or_default(), c);
    }
    let map = ClusterMap {
        version: d.version,
        epoch: d.epoch,
        generation: d.generation,
        key: d.key.clone(),
        pods,
        added: d.added.clone().unwrap_or_else(|| last.added.clone()),
        removed: d.removed.clone().unwrap_or_else(|| last.removed.clone()),
        removed_pods: d.removed_pods.clone(),
        dependencies,
    };
    if size(&map) > MAX_PODS {
        return Err(DeltaError::TooLarge);
    }
    check_map(&map)?;
    let got = digest(&map);
    if got != d.digest {
        return Err(DeltaError::Differs {
            got,
            want: d.digest.chars().take(64).collect(),
        });
    }
    Ok(map)
}

fn apply(pods: &mut BTreeMap<String, Pod>, c: &PodChanges) {
    for u in &c.gone {
        pods.remove(u);
    }
    for (u, p) in &c.pods {
        pods.insert(u.clone(), p.clone());
    }
}

/// A map body as a full map or a delta ([`Body`]); a delta is told by its `base`. One pass over
/// the bytes for a full map (the common case of an older leader, or a first configuration).
pub fn parse(bytes: &[u8]) -> Result<Body, DeltaError> {
    #[derive(Deserialize)]
    struct Probe {
        base: Option<serde::de::IgnoredAny>,
    }
    // A leader writes keys as they are: a body without the text `"base"` has no `base` key and
    // is read as a whole map (one with an escaped `base` key too: SPEC §7 reads `base` as written).
    // Else the probe: a pass that skips every other field without building it.
    if memchr::memmem::find(bytes, br#""base""#).is_none() {
        return serde_json::from_slice(bytes)
            .map(Body::Full)
            .map_err(DeltaError::Malformed);
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(DeltaError::Malformed)?;
    match probe.base {
        Some(_) => serde_json::from_slice(bytes)
            .map(Body::Delta)
            .map_err(DeltaError::Malformed),
        None => serde_json::from_slice(bytes)
            .map(Body::Full)
            .map_err(DeltaError::Malformed),
    }
}

/// The map a body carries: itself, or rebuilt from `last` ([`rebuild`]).
pub fn read(bytes: &[u8], last: Option<&ClusterMap>) -> Result<ClusterMap, DeltaError> {
    match parse(bytes)? {
        Body::Full(map) => Ok(map),
        Body::Delta(d) => rebuild(last, &d),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::fixtures::pod;

    fn map(generation: u64, own: &[u32], dep: &[u32]) -> ClusterMap {
        let pods = |ns: &[u32]| ns.iter().map(|&n| (format!("u{n}"), pod(n))).collect();
        let mut deps = BTreeMap::new();
        if !dep.is_empty() {
            deps.insert("db".to_string(), pods(dep));
        }
        ClusterMap {
            version: super::super::WIRE_VERSION,
            epoch: 7,
            generation,
            key: "u1".into(),
            pods: pods(own),
            added: vec![],
            removed: vec![],
            removed_pods: BTreeMap::new(),
            dependencies: deps,
        }
    }

    fn delta_for(base: &ClusterMap, to: &ClusterMap, key: &str) -> Delta {
        let mut d = make(base, &digest(base), to, &digest(to));
        d.key = key.into();
        d
    }

    #[test]
    fn a_delta_rebuilds_the_full_map() {
        let a = map(1, &[1, 2, 3], &[10]);
        let mut b = map(2, &[1, 3, 4], &[11, 12]);
        b.pods.get_mut("u3").unwrap().state = super::super::PodState::Held;
        b.added = vec!["u4".into()];
        b.removed = vec!["u2".into()];
        b.removed_pods.insert("u2".into(), pod(2));
        let d = delta_for(&a, &b, "u1");
        assert_eq!(d.delta.own.gone, vec!["u2".to_string()]);
        assert_eq!(d.delta.own.pods.len(), 2, "u3 changed, u4 added: {d:?}");
        let json = serde_json::to_vec(&d).unwrap();
        assert_eq!(read(&json, Some(&a)).unwrap(), b);
        // A dependency gone, another new and empty.
        let mut c = map(3, &[1], &[]);
        c.dependencies.insert("/ns.cache".into(), BTreeMap::new());
        assert_eq!(rebuild(Some(&b), &delta_for(&b, &c, "u1")).unwrap(), c);
    }

    #[test]
    fn a_delta_for_another_base_asks_for_the_full_map() {
        let (a, b) = (map(1, &[1, 2], &[]), map(2, &[1, 2, 3], &[]));
        let d = delta_for(&a, &b, "u1");
        for last in [None, Some(&b), Some(&map(1, &[1, 3], &[]))] {
            let e = rebuild(last, &d).unwrap_err();
            assert!(e.needs_full(), "{e}");
        }
        let mut wrong = d.clone();
        wrong.digest = "0".repeat(64);
        assert!(matches!(
            rebuild(Some(&a), &wrong),
            Err(DeltaError::Differs { .. })
        ));
        // Rebuilt, but not a valid map: a 400, not a retry.
        let mut bad = d;
        bad.key = "not/a/uuid".into();
        let e = rebuild(Some(&a), &bad).unwrap_err();
        assert!(!e.needs_full() && matches!(e, DeltaError::Invalid(_)), "{e}");
    }

    #[test]
    fn a_full_map_is_read_as_it_always_was() {
        let a = map(1, &[1, 2], &[3]);
        let json = serde_json::to_vec(&a).unwrap();
        assert_eq!(read(&json, None).unwrap(), a);
        assert!(matches!(read(b"[1]", None), Err(DeltaError::Malformed(_))));
    }

    #[test]
    fn the_digest_ignores_the_key_only() {
        let a = map(1, &[1, 2], &[]);
        let mut b = a.clone();
        b.key = "u2".into();
        assert_eq!(digest(&a), digest(&b));
        b.generation = 2;
        assert_ne!(digest(&a), digest(&b));
    }

    #[test]
    fn keyless_is_the_map_without_its_key() {
        let mut a = map(1, &[1, 2], &[3]);
        a.removed_pods.insert("u9".into(), pod(9));
        let mut full: serde_json::Value = serde_json::to_value(&a).unwrap();
        full.as_object_mut().unwrap().remove("key");
        let keyless: serde_json::Value = serde_json::from_slice(&Keyless::of(&a).to_json()).unwrap();
        assert_eq!(full, keyless);
    }
}
