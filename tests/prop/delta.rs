//! Map deltas (SPEC §7), as `POST /control/check`, `on`, `off` and `ok` read them: a delta built
//! by the leader from two valid maps rebuilds the second one exactly (the same map, the same
//! digest), and no body, however broken (random edits of a real delta, any JSON with a `base`),
//! makes the reader panic; what it accepts is a valid map.

use ochopod::model::delta::{self, DeltaError};
use ochopod::model::ClusterMap;
use proptest::prelude::*;
use serde_json::Value;

use crate::gen::{any_json, apply, edit, map_json, valid_pod};

/// Two valid maps that share pods: each takes some of one pool (the second with some pods
/// changed), with dependencies drawn from it too; as the leader's are, read back from JSON.
fn two_maps() -> BoxedStrategy<(ClusterMap, ClusterMap)> {
    let pool = prop::collection::vec(valid_pod(), 0..8);
    let picks = || prop::collection::vec(0u8..8, 8);
    (pool, picks(), picks(), 0u64..100, 0u64..100, any::<bool>())
        .prop_map(|(pool, pa, pb, ga, gb, held)| {
            let make = |pick: &[u8], generation: u64, change: bool| {
                let mut m = ClusterMap {
                    version: ochopod::model::WIRE_VERSION,
                    epoch: 4,
                    generation,
                    key: pool.first().map_or_else(|| "k".to_string(), |p| p.uuid.clone()),
                    ..ClusterMap::default()
                };
                for (p, &bits) in pool.iter().zip(pick) {
                    let mut p = p.clone();
                    if change && bits & 8 == 0 && held {
                        p.state = ochopod::model::PodState::Held;
                    }
                    let u = p.uuid.clone();
                    match bits % 4 {
                        0 => {}
                        1 => {
                            m.pods.insert(u.clone(), p.clone());
                            m.added.push(u);
                        }
                        2 => {
                            m.dependencies.entry("db".into()).or_default().insert(u, p);
                        }
                        _ => {
                            m.dependencies
                                .entry("/ns.cache".into())
                                .or_default()
                                .insert(u.clone(), p.clone());
                            m.removed_pods.insert(u.clone(), p);
                            m.removed.push(u);
                        }
                    }
                }
                let text = serde_json::to_vec(&m).unwrap();
                serde_json::from_slice::<ClusterMap>(&text).ok()
            };
            (make(&pa, ga, false), make(&pb, gb, true))
        })
        .prop_filter_map("invalid", |(a, b)| Some((a?, b?)))
        .boxed()
}

/// Two generated maps, when both are valid.
fn maps(a: &Value, b: &Value) -> Option<(ClusterMap, ClusterMap)> {
    Some((
        serde_json::from_value(a.clone()).ok()?,
        serde_json::from_value(b.clone()).ok()?,
    ))
}

fn delta_json(a: &ClusterMap, b: &ClusterMap) -> String {
    let mut d = delta::make(a, &delta::digest(a), b, &delta::digest(b));
    d.key = b.key.clone();
    serde_json::to_string(&d).unwrap()
}

/// What the reader accepted is a valid map: it reads back whole.
fn judge(got: Result<ClusterMap, DeltaError>) -> Result<(), TestCaseError> {
    if let Ok(map) = got {
        let text = serde_json::to_vec(&map).unwrap();
        let back: Result<ClusterMap, _> = serde_json::from_slice(&text);
        prop_assert_eq!(back.ok(), Some(map));
    }
    Ok(())
}

proptest! {
    #![proptest_config(crate::config())]

    #[test]
    fn a_delta_between_two_valid_maps_rebuilds_the_second((a, b) in two_maps()) {
        let text = delta_json(&a, &b);
        let rebuilt = delta::read(text.as_bytes(), Some(&a));
        prop_assert!(rebuilt.is_ok(), "{:?}", rebuilt);
        let rebuilt = rebuilt.unwrap();
        prop_assert_eq!(delta::digest(&rebuilt), delta::digest(&b));
        prop_assert_eq!(rebuilt, b.clone());
        // Sent to a pod that inherits the base's `added` and `removed`: the same map.
        let mut d = delta::make(&a, &delta::digest(&a), &b, &delta::digest(&b)).inheriting(&a);
        d.key = b.key.clone();
        let inherited = delta::read(serde_json::to_string(&d).unwrap().as_bytes(), Some(&a));
        prop_assert_eq!(inherited.ok(), Some(b.clone()));
        // Any other base: the whole map is asked for, never a wrong map.
        if delta::digest(&a) != delta::digest(&b) {
            let other = delta::read(text.as_bytes(), Some(&b));
            prop_assert!(other.as_ref().is_err_and(DeltaError::needs_full), "{:?}", other);
        }
        let none = delta::read(text.as_bytes(), None);
        prop_assert!(none.as_ref().is_err_and(DeltaError::needs_full), "{:?}", none);
    }

    #[test]
    fn edited_deltas_never_panic_and_what_is_accepted_is_valid(
        a in map_json(),
        b in map_json(),
        edits in prop::collection::vec(edit(), 1..6),
        (c, d) in two_maps(),
    ) {
        // Generated maps (sometimes valid), and valid ones that share pods.
        let (a, b) = maps(&a, &b).unwrap_or((c, d));
        let text = apply(&delta_json(&a, &b), &edits);
        judge(delta::read(text.as_bytes(), Some(&a)))?;
    }

    #[test]
    fn any_json_with_a_base_never_panics(
        a in map_json(),
        fields in prop::collection::vec((prop_oneof![
            Just("base".to_string()), Just("delta".to_string()), Just("digest".to_string()),
            Just("key".to_string()), Just("generation".to_string()), Just("pods".to_string()),
            Just("gone".to_string()), Just("dependencies".to_string()),
        ], any_json()), 0..8),
    ) {
        let mut body = serde_json::Map::new();
        body.insert("base".into(), any_json_placeholder());
        for (k, v) in fields {
            body.insert(k, v);
        }
        let text = serde_json::to_vec(&Value::Object(body)).unwrap();
        let last: Option<ClusterMap> = serde_json::from_value(a).ok();
        judge(delta::read(&text, last.as_ref()))?;
    }
}

fn any_json_placeholder() -> Value {
    serde_json::json!({"generation": 0, "digest": ""})
}
