//! The one place a map body becomes a full cluster map, and the store that lets a thousand
//! simulated pods keep "the maps they hold" without a thousand copies of them.
//!
//! [`decode`] is what a real pod does at its trust boundary: the body is parsed into the crate's
//! own [`ClusterMap`], whose deserialization validates every pod (SPEC §6, §7); a version-2 body
//! (a `base` digest and a `delta`) is read against the maps the pod holds (the one it applied
//! and the one its last `check` carried) by the crate's own `model::held::Held`, as a real pod
//! does: each held map's digest is computed once, and an empty delta from a held map to itself
//! is that map.
//!
//! [`Maps`] interns the maps the pods hold: maps of one configuration differ only in `key` (the
//! receiver), so the store keeps one copy per configuration, found by its digest (computed once
//! per body received whole, as a real pod computes it once), with `key` cleared. Each pod keeps
//! its own uuid, and admits a body by the body's `key` ([`Resolved::key`]).

use std::sync::Mutex;

use ochopod::model::held::{Held, Known, Resolved};

/// Why a body is refused, as a real pod refuses it: 409 `need: full` when it is a delta this pod
/// cannot rebuild ([`DecodeError::needs_full`]), 400 otherwise.
pub use ochopod::model::delta::DeltaError as DecodeError;

/// A body → the map it stands for, given the maps the receiver holds: a whole map as it is, a
/// delta (SPEC §7, version 2) read against the held map it names, with the real pod's own
/// function. The map may be a shared copy without `key`: the body's is [`Resolved::key`].
pub fn decode(body: &[u8], held: &Held) -> Result<Resolved, DecodeError> {
    held.resolve(body)
}

/// How many distinct configurations the store remembers: pods may lag one or two behind while a
/// configuration is under way; an older one is dropped once no pod holds it.
const KEPT: usize = 4;

/// The held maps, one copy per configuration (see the module header).
#[derive(Default)]
pub struct Maps {
    recent: Mutex<Vec<Known>>,
}

impl Maps {
    /// The shared copy of `map` (its `key` cleared), stored if new.
    pub fn intern(&self, map: Known) -> Known {
        // Outside the lock: the one hash of a map received whole.
        let digest = map.digest().to_string();
        // A poisoned lock only means another pod's handler panicked mid-push: the Vec is intact.
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(same) = recent.iter().find(|m| m.digest() == digest) {
            return same.clone();
        }
        let map = map.without_key();
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
    use ochopod::model::ClusterMap;

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
        let (a, b, c) = (
            maps.intern(Known::new(a)),
            maps.intern(Known::new(b)),
            maps.intern(Known::new(c)),
        );
        assert!(a.ptr_eq(&b));
        assert!(!a.ptr_eq(&c));
        assert_eq!(a.key, "");
    }
}
