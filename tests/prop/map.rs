//! The cluster map (SPEC §7), as `POST /control/on` and `ochopod render --cluster` read it, and
//! what the renderer makes of it with the real pod.yaml files of the repository.
//!
//! Maps are generated structurally (valid pods, then corruptions of pods, names, keys and
//! numbers) and as JSON text with random edits. Deserialization never panics; an accepted map
//! holds only pods whose addresses are IP addresses and whose fields carry no character that
//! means something to a shell or a path; rendering it (files, command, env, cwd, every hook,
//! check and command field) never panics, and a rendered dest never climbs out with `..`.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use ochopod::model::ClusterMap;
use ochopod::render::{fields, sample_env, Context, Renderer};
use ochopod::spec::PodSpec;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::Value;

use crate::gen::{accepted_pod_invariants, apply, edit, forbidden, map_json};

/// The pod.yaml files whose templates render the maps: the shipped pods and the render fixtures.
fn renderers() -> &'static [(PodSpec, Renderer)] {
    static RENDERERS: OnceLock<Vec<(PodSpec, Renderer)>> = OnceLock::new();
    RENDERERS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let files = [
            "pods/zookeeper.yaml",
            "pods/zk-client.yaml",
            "pods/shell.yaml",
            "tests/fixtures/render/zookeeper.yaml",
            "tests/fixtures/render/kafka.yaml",
        ];
        files
            .iter()
            .map(|f| {
                let path: PathBuf = root.join(f);
                let text = std::fs::read_to_string(&path).unwrap();
                let spec =
                    ochopod::spec::load_with_env(&path, &text, &|_| None).unwrap_or_else(|d| panic!("{d}"));
                let r = Renderer::new(&spec).unwrap_or_else(|e| panic!("{f}: {e}"));
                (spec, r)
            })
            .collect()
    })
}

const HOOKS_AND_CHECKS: &[&str] = &[
    fields::INITIALIZE,
    fields::PRE_START,
    fields::CAN_CONFIGURE,
    fields::CONFIGURED,
    fields::SIGNALED,
    fields::TEAR_DOWN,
    fields::FINALIZE,
    fields::READY,
    fields::SANITY,
];

const COMMANDS: &[&str] = &[fields::APPLY, fields::PROBE, fields::RELOAD];

/// What became of one map, for the coverage test.
#[derive(Debug, Default)]
struct Outcome {
    accepted: bool,
    /// How many pod.yaml files rendered it whole (`render_pod` succeeded).
    rendered: usize,
}

/// The properties of an accepted map, then every pod.yaml renders it (`previous` as the last
/// map applied, for removed pods).
fn judge_accepted(map: &ClusterMap, previous: Option<&ClusterMap>) -> Result<Outcome, TestCaseError> {
    let groups = [("pods", &map.pods), ("removed_pods", &map.removed_pods)];
    for (group, pods) in groups.into_iter() {
        for (key, pod) in pods {
            prop_assert_eq!(key, &pod.uuid, "{} filed under another key", group);
            accepted_pod_invariants(&format!("{group}.{key}"), pod).map_err(TestCaseError::fail)?;
        }
    }
    for (dep, pods) in &map.dependencies {
        prop_assert!(
            !dep.chars()
                .any(|c| c.is_control() || c == ' ' || c == '"' || c == ';'),
            "dependency name {:?}",
            dep
        );
        for (key, pod) in pods {
            prop_assert_eq!(key, &pod.uuid);
            accepted_pod_invariants(&format!("dependencies.{dep}.{key}"), pod)
                .map_err(TestCaseError::fail)?;
        }
    }
    for name in std::iter::once(&map.key).chain(&map.added).chain(&map.removed) {
        prop_assert!(
            !name.is_empty() && !name.chars().any(forbidden),
            "uuid {:?}",
            name
        );
    }

    let base = BTreeMap::from([("OCHOPOD_HOME".to_owned(), "/tmp/ochopod-prop".to_owned())]);
    let mut outcome = Outcome {
        accepted: true,
        rendered: 0,
    };
    for (spec, r) in renderers() {
        let env = sample_env(spec, &base);
        // An error is fine (the receiver not in the map, a port its pods do not serve); a
        // panic is not.
        let Ok(ctx) = Context::new(spec, map, previous, &env) else {
            continue;
        };
        if let Ok(rendered) = r.render_pod(&ctx) {
            outcome.rendered += 1;
            for f in &rendered.files {
                let dest = f.dest.to_string_lossy();
                prop_assert!(
                    !f.dest.components().any(|c| c == Component::ParentDir)
                        && !dest.contains(char::is_control),
                    "unsafe dest rendered: {:?}",
                    f.dest
                );
            }
        }
        for field in HOOKS_AND_CHECKS.iter().filter(|f| r.has_field(f)) {
            let _ = r.render_field(field, &ctx);
        }
        for field in COMMANDS {
            let _ = r.render_command(field, &ctx);
        }
    }
    Ok(outcome)
}

fn judge_text(text: &[u8], previous: Option<&ClusterMap>) -> Result<Outcome, TestCaseError> {
    match serde_json::from_slice::<ClusterMap>(text) {
        Ok(map) => judge_accepted(&map, previous),
        Err(_) => Ok(Outcome::default()),
    }
}

fn judge_value(v: &Value, previous: Option<&ClusterMap>) -> Result<Outcome, TestCaseError> {
    let text = serde_json::to_vec(v).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let from_value = serde_json::from_value::<ClusterMap>(v.clone()).ok();
    let outcome = judge_text(&text, previous)?;
    // The same map read from a value or from its text: the same verdict.
    prop_assert_eq!(from_value.is_some(), outcome.accepted);
    Ok(outcome)
}

/// A previous map now and then, for the removed pods the receiver looks up there.
fn previous() -> impl Strategy<Value = Option<ClusterMap>> {
    prop_oneof![
        2 => Just(None),
        1 => map_json().prop_map(|v| serde_json::from_value::<ClusterMap>(v).ok()),
    ]
}

proptest! {
    #![proptest_config(crate::config())]

    #[test]
    fn cluster_map_of_random_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        judge_text(&bytes, None)?;
    }

    #[test]
    fn generated_cluster_maps_are_refused_or_safe_and_render_without_panic(
        map in map_json(),
        previous in previous(),
    ) {
        judge_value(&map, previous.as_ref())?;
    }

    #[test]
    fn mutated_cluster_map_text_is_refused_or_safe_and_renders_without_panic(
        map in map_json(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let text = serde_json::to_string_pretty(&map).map_err(|e| TestCaseError::fail(e.to_string()))?;
        judge_text(apply(&text, &edits).as_bytes(), None)?;
    }
}

/// Guards against a vacuous property: generated maps are accepted often enough, and accepted
/// maps render whole with the real pod.yaml files often enough.
#[test]
fn map_generator_reaches_acceptance_and_rendering() {
    let mut runner = TestRunner::deterministic();
    let (mut accepted, mut refused, mut rendered) = (0, 0, 0);
    for _ in 0..300 {
        let v = map_json().new_tree(&mut runner).expect("a value").current();
        let outcome = judge_value(&v, None).expect("the property holds");
        if outcome.accepted {
            accepted += 1;
        } else {
            refused += 1;
        }
        rendered += outcome.rendered;
    }
    eprintln!("maps: {accepted} accepted, {refused} refused, {rendered} whole renders");
    assert!(
        accepted >= 30 && refused >= 30,
        "{accepted} accepted, {refused} refused"
    );
    assert!(rendered >= 30, "only {rendered} renders succeeded");
}
