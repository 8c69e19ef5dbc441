//! The one place a map body becomes a full cluster map, and the store that lets a thousand
//! simulated pods keep "their last map" without a thousand copies of it.
//!
//! [`decode`] is what a real pod does at its trust boundary: the body is parsed into the crate's
//! own [`ClusterMap`], whose deserialization validates every pod (SPEC §6, §7); a version-2 body
//! (a `base` digest and a `delta`) is rebuilt from the receiver's last map by the crate's own
//! `model::delta::read`, as a real pod does.
//!
//! [`Maps`] interns the maps the pods applied: maps of one configuration differ only in `key`
//! (the receiver), so the store keeps one copy per configuration, compared field by field (not
//! trusted by generation alone), with `key` cleared. Each pod keeps its own uuid.

use std::sync::{Arc, Mutex};

use ochopod::model::ClusterMap;

/// Why a body is refused, as a real pod refuses it: 409 `need: full` when it is a delta this pod
/// cannot rebuild ([`DecodeError::needs_full`]), 400 otherwise.
pub use ochopod::model::delta::DeltaError as DecodeError;

/// A body → the full map it stands for, given the receiver's last applied map (`None` before the
/// first `on`): a whole map as it is, a delta (SPEC §7, version 2) rebuilt from `last` and
/// checked against the digest the leader sent, with the real pod's own function.
pub fn decode(body: &[u8], last: Option<&ClusterMap>) -> Result<ClusterMap, DecodeError> {
    ochopod::model::delta::read(body, last)
}

/// How many distinct configurations the store remembers: pods may lag one or two behind while a
/// configuration is under way; an older one is dropped once no pod holds it.
const KEPT: usize = 4;

/// The applied maps, one copy per configuration (see the module header).
#[derive(Default)]
pub struct Maps {
    recent: Mutex<Vec<Arc<ClusterMap>>>,
}

impl Maps {
    /// The shared copy of `map` (its `key` cleared), stored if new.
    pub fn intern(&self, mut map: ClusterMap) -> Arc<ClusterMap> {
        map.key.clear();
        // A poisoned lock only means another pod's handler panicked mid-push: the Vec is intact.
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(same) = recent.iter().find(|m| ***m == map) {
            return same.clone();
        }
        let map = Arc::new(map);
        recent.push(map.clone());
        if recent.len() > KEPT {
            recent.remove(0);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_copy_per_configuration() {
        let maps = Maps::default();
        let a = ClusterMap {
            generation: 2,
            key: "a".into(),
            ..Default::default()
        };
        let b = ClusterMap {
            key: "b".into(),
            ..a.clone()
        };
        let c = ClusterMap {
            generation: 3,
            ..a.clone()
        };
        let (a, b, c) = (maps.intern(a), maps.intern(b), maps.intern(c));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
