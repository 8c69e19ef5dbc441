//! Property-based tests (proptest) of the parsers that read untrusted or hand-written input:
//! pod.yaml (`spec`), the cluster map and its rendering (`map`), a pod's JSON from ZooKeeper
//! (`pod`), the glob of `depends_on` and `ctl` (`glob`). Each property runs 256 cases by default; `PROPTEST_CASES=N` changes that, and
//! `bench/fuzz.sh` runs them all for longer. A failure prints the smallest input found and
//! saves its seed next to the test's source (`tests/prop/spec.regressions`, ...), replayed first
//! by every later run: commit that file with the fix.

// Tests may unwrap: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod delta;
mod gen;
mod glob;
mod map;
mod pod;
mod spec;

use proptest::test_runner::{Config, FileFailurePersistence};

/// proptest's defaults (256 cases, `PROPTEST_CASES` and the other `PROPTEST_*` variables
/// honoured), with failures saved beside each source file rather than in a folder named after
/// the crate layout.
fn config() -> Config {
    Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..Config::default()
    }
}
