//! The pod.yaml as serde-saphyr deserializes it, before any semantic check.
//!
//! Every key is optional here and every value that `load` must judge (durations, signals,
//! enumerations, numbers with a range, commands, names, paths) is a [`Spanned`], so a problem is
//! reported at the `line:col` of the offending value and all problems can be collected in one
//! pass. Only the YAML shape itself (syntax, unknown keys, a list where a map belongs) is checked
//! by serde, which stops at the first such error.
//!
//! Numbers that have a range are read as `i64` on purpose: `port: 70000` or `min_size: -1` is a
//! semantic diagnostic with a clear message, not an opaque overflow from the deserializer.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPod {
    pub cluster: Option<S<String>>,
    pub namespace: Option<S<String>>,
    #[serde(default)]
    pub ports: Vec<S<i64>>,
    #[serde(default)]
    pub depends_on: Vec<S<RawDependency>>,
    pub settings: Option<RawSettings>,
    pub process: Option<S<RawProcess>>,
    #[serde(default)]
    pub templates: Vec<S<RawTemplate>>,
    pub checks: Option<RawChecks>,
    pub hooks: Option<RawHooks>,
}

/// `{cluster: NAME, min: N}` or a plain `NAME`.
#[derive(Debug)]
pub enum RawDependency {
    Name(String),
    Full {
        cluster: Option<S<String>>,
        min: Option<S<i64>>,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub min_size: Option<S<i64>>,
    pub damper: Option<S<String>>,
    pub damper_max: Option<S<String>>,
    pub sequential: Option<bool>,
    pub order: Option<S<String>>,
    pub rolling: Option<bool>,
    pub max_unavailable: Option<S<i64>>,
    pub max_lost: Option<S<i64>>,
    pub parallelism: Option<S<i64>>,
    pub full_shutdown: Option<bool>,
    pub timeout: Option<S<String>>,
    pub evict_after: Option<S<i64>>,
    pub seq_hold: Option<S<String>>,
    pub apply: Option<S<RawApply>>,
    pub probe: Option<S<RawProbe>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApply {
    pub command: Option<S<RawCommand>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    pub command: Option<S<RawCommand>>,
    pub every: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProcess {
    pub command: Option<S<RawCommand>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub cwd: Option<S<String>>,
    pub start: Option<bool>,
    pub restart: Option<RawRestart>,
    pub stop: Option<RawStop>,
    pub reload: Option<S<RawReload>>,
    pub strict: Option<bool>,
    pub linger: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRestart {
    pub policy: Option<S<String>>,
    pub backoff: Option<S<String>>,
    pub max_backoff: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStop {
    pub signal: Option<S<String>>,
    pub grace: Option<S<String>>,
    pub drain: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReload {
    pub signal: Option<S<String>>,
    pub command: Option<S<RawCommand>>,
    pub on_failure: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTemplate {
    pub source: Option<S<String>>,
    pub dest: Option<S<String>>,
    /// Read as text so an unquoted `0644` keeps its leading zero (octal, as chmod reads it).
    pub mode: Option<S<String>>,
    pub write: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChecks {
    pub ready: Option<S<RawReady>>,
    pub sanity: Option<S<RawSanity>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReady {
    pub command: Option<S<String>>,
    pub every: Option<S<String>>,
    pub timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSanity {
    pub command: Option<S<String>>,
    pub every: Option<S<String>>,
    pub failures: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHooks {
    pub initialize: Option<S<String>>,
    pub pre_start: Option<S<String>>,
    pub can_configure: Option<S<String>>,
    pub configured: Option<S<String>>,
    pub signaled: Option<S<String>>,
    pub tear_down: Option<S<String>>,
    pub finalize: Option<S<String>>,
}

/// A string (run under `/bin/sh -c`) or a list of strings (exec'd as is).
#[derive(Debug)]
pub enum RawCommand {
    Shell(String),
    Exec(Vec<String>),
}

// Hand-written visitors rather than `#[serde(untagged)]`: untagged enums buffer their input,
// which loses the spans of nested values and turns every mistake into "did not match any
// variant". A visitor keeps the real deserializer, so nested `Spanned` values and unknown-key
// errors keep their positions.

impl<'de> Deserialize<'de> for RawCommand {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawCommand;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command: a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawCommand, E> {
                Ok(RawCommand::Shell(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawCommand, A::Error> {
                let mut parts = Vec::new();
                while let Some(part) = seq.next_element::<String>()? {
                    parts.push(part);
                }
                Ok(RawCommand::Exec(parts))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawDependency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawDependency;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a cluster name or a map {cluster: NAME, min: N}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDependency, E> {
                Ok(RawDependency::Name(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawDependency, A::Error> {
                const FIELDS: &[&str] = &["cluster", "min"];
                let mut cluster = None;
                let mut min = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "cluster" => cluster = map.next_value()?,
                        "min" => min = map.next_value()?,
                        other => return Err(de::Error::unknown_field(other, FIELDS)),
                    }
                }
                Ok(RawDependency::Full { cluster, min })
            }
        }
        d.deserialize_any(V)
    }
}
