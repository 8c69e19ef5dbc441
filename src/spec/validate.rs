//! The validator: judges raw values one at a time and records a diagnostic for each bad one.
//!
//! Owns the list of diagnostics while a file is validated. A bad value is replaced by its
//! default (or dropped) so that the checks after it still run and the user sees every problem in
//! one go. This file holds the value-level helpers and the top-level keys; the sections
//! (`settings`, `process`, `templates`, `checks`, `hooks`) are in `sections.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::Location;

use super::raw::{RawCommand, RawDependency, RawPod, S};
use super::values::{escape_controls, is_name, is_pattern, parse_signal};
use super::{parse_duration, CommandLine, Dependency, Diagnostic, PodSpec, Signal};
use crate::glob::matches as glob;

pub(super) fn pos(l: &Location) -> (u64, u64) {
    (l.line(), l.column())
}

/// Collects diagnostics while it builds the spec.
pub(super) struct Validator {
    file: PathBuf,
    pub(super) diags: Vec<Diagnostic>,
}

/// Where a problem with no value of its own is reported (a required key that is missing).
pub(super) const TOP: (u64, u64) = (1, 1);

impl Validator {
    pub(super) fn new(file: &Path) -> Self {
        Validator {
            file: file.to_path_buf(),
            diags: Vec::new(),
        }
    }

    pub(super) fn error(&mut self, (line, col): (u64, u64), message: String) {
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            line,
            col,
            message,
        });
    }

    pub(super) fn duration(&mut self, field: &str, value: Option<&S<String>>, default: Duration) -> Duration {
        let Some(v) = value else { return default };
        parse_duration(&v.value).unwrap_or_else(|m| {
            self.error(pos(&v.referenced), format!("{field}: {m}"));
            default
        })
    }

    /// A period (`every`, `timeout`): zero would spin or time out at once.
    pub(super) fn period(&mut self, field: &str, value: Option<&S<String>>, default: Duration) -> Duration {
        let d = self.duration(field, value, default);
        if d.is_zero() {
            if let Some(v) = value {
                self.error(pos(&v.referenced), format!("{field}: must be longer than 0"));
            }
            return default;
        }
        d
    }

    pub(super) fn int<T: TryFrom<i64>>(
        &mut self,
        field: &str,
        value: Option<&S<i64>>,
        min: i64,
        default: T,
    ) -> T {
        let Some(v) = value else { return default };
        match T::try_from(v.value) {
            Ok(n) if v.value >= min => n,
            _ => {
                self.error(
                    pos(&v.referenced),
                    format!("{field}: expected a number >= {min}, found {}", v.value),
                );
                default
            }
        }
    }

    /// One of a fixed set of words, e.g. `always | on-failure | never`.
    pub(super) fn choice<T: Copy>(
        &mut self,
        field: &str,
        value: Option<&S<String>>,
        options: &[(&str, T)],
        default: T,
    ) -> T {
        let Some(v) = value else { return default };
        if let Some((_, t)) = options.iter().find(|(name, _)| *name == v.value) {
            return *t;
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        self.error(
            pos(&v.referenced),
            format!(
                "{field}: expected one of {}, found {:?}",
                names.join(", "),
                v.value
            ),
        );
        default
    }

    pub(super) fn signal(&mut self, field: &str, value: Option<&S<String>>, default: Signal) -> Signal {
        let Some(v) = value else { return default };
        parse_signal(&v.value).unwrap_or_else(|m| {
            self.error(pos(&v.referenced), format!("{field}: {m}"));
            default
        })
    }

    pub(super) fn command(&mut self, field: &str, value: &S<RawCommand>) -> Option<CommandLine> {
        let at = pos(&value.referenced);
        match &value.value {
            RawCommand::Shell(s) if s.trim().is_empty() => {
                self.error(at, format!("{field}: expected a command, found an empty string"));
                None
            }
            RawCommand::Shell(s) => Some(CommandLine::Shell(s.clone())),
            RawCommand::Exec(v) if v.is_empty() => {
                self.error(at, format!("{field}: expected a command, found an empty list"));
                None
            }
            RawCommand::Exec(v) if v[0].trim().is_empty() => {
                self.error(at, format!("{field}: the program (first item) is empty"));
                None
            }
            RawCommand::Exec(v) => Some(CommandLine::Exec(v.clone())),
        }
    }

    /// A required command inside a section that is present (`at` is the section's position).
    pub(super) fn required_command(
        &mut self,
        field: &str,
        value: Option<&S<RawCommand>>,
        at: (u64, u64),
    ) -> Option<CommandLine> {
        match value {
            Some(c) => self.command(field, c),
            None => {
                self.error(at, format!("{field}: missing, a command is required"));
                None
            }
        }
    }

    /// A shell command (checks, hooks): a non-blank string.
    pub(super) fn shell(&mut self, field: &str, value: Option<&S<String>>) -> Option<String> {
        let v = value?;
        if v.value.trim().is_empty() {
            self.error(
                pos(&v.referenced),
                format!("{field}: expected a command, found an empty string"),
            );
            return None;
        }
        Some(v.value.clone())
    }

    pub(super) fn pod(&mut self, path: &Path, raw: RawPod, env: &dyn Fn(&str) -> Option<String>) -> PodSpec {
        // Empty variables count as unset: orchestrators often template them to "".
        let var = |name: &str| env(name).filter(|v| !v.is_empty());
        let cluster = self.name(
            "cluster",
            raw.cluster.as_ref(),
            var("OCHOPOD_CLUSTER"),
            "OCHOPOD_CLUSTER",
            None,
        );
        let ns_var = var("OCHOPOD_NAMESPACE")
            .map(|v| (v, "OCHOPOD_NAMESPACE"))
            .or_else(|| var("POD_NAMESPACE").map(|v| (v, "POD_NAMESPACE")));
        let (ns_value, ns_name) = ns_var.map_or((None, ""), |(v, n)| (Some(v), n));
        let namespace = self.name(
            "namespace",
            raw.namespace.as_ref(),
            ns_value,
            ns_name,
            Some("default"),
        );

        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        PodSpec {
            path: path.to_path_buf(),
            ports: self.ports(&raw.ports),
            depends_on: self.depends_on(&raw.depends_on, &namespace, &cluster),
            settings: self.settings(raw.settings.as_ref()),
            process: self.process(raw.process.as_ref()),
            templates: self.templates(&raw.templates, &dir),
            checks: self.checks(raw.checks.as_ref()),
            hooks: self.hooks(raw.hooks.as_ref()),
            cluster,
            namespace,
            dir,
        }
    }

    /// `cluster` or `namespace`, after its environment override (`var` names the variable).
    pub(super) fn name(
        &mut self,
        field: &str,
        value: Option<&S<String>>,
        over: Option<String>,
        var: &str,
        default: Option<&str>,
    ) -> String {
        let at = value.map_or(TOP, |v| pos(&v.referenced));
        let expected = "expected a name of [a-z0-9-]+";
        if let Some(o) = over {
            if !is_name(&o) {
                self.error(at, format!("{var} (overriding {field}): {expected}, found {o:?}"));
            }
            return o;
        }
        match (value, default) {
            (Some(v), _) => {
                if !is_name(&v.value) {
                    self.error(at, format!("{field}: {expected}, found {:?}", v.value));
                }
                v.value.clone()
            }
            (None, Some(d)) => d.to_owned(),
            (None, None) => {
                self.error(at, format!("{field}: missing, a name of [a-z0-9-]+ is required"));
                String::new()
            }
        }
    }

    pub(super) fn ports(&mut self, raw: &[S<i64>]) -> Vec<u16> {
        let mut ports: Vec<(u16, (u64, u64))> = Vec::new();
        for (i, p) in raw.iter().enumerate() {
            let at = pos(&p.referenced);
            let Some(port) = u16::try_from(p.value).ok().filter(|n| *n >= 1) else {
                self.error(
                    at,
                    format!("ports[{i}]: expected a port in 1..=65535, found {}", p.value),
                );
                continue;
            };
            if let Some((_, (l, c))) = ports.iter().find(|(q, _)| *q == port) {
                self.error(
                    at,
                    format!("ports[{i}]: port {port} is listed twice (first at {l}:{c})"),
                );
                continue;
            }
            ports.push((port, at));
        }
        ports.into_iter().map(|(p, _)| p).collect()
    }

    pub(super) fn depends_on(
        &mut self,
        raw: &[S<RawDependency>],
        namespace: &str,
        cluster: &str,
    ) -> Vec<Dependency> {
        let mut deps = Vec::new();
        for (i, d) in raw.iter().enumerate() {
            let field = format!("depends_on[{i}]");
            let (name, min) = match &d.value {
                RawDependency::Name(n) => (S::new(n.clone(), d.referenced, d.defined), None),
                RawDependency::Full {
                    cluster: Some(c),
                    min,
                } => (c.clone(), min.as_ref()),
                RawDependency::Full { cluster: None, .. } => {
                    self.error(
                        pos(&d.referenced),
                        format!("{field}.cluster: missing, a cluster name is required"),
                    );
                    continue;
                }
            };
            let min = self.int(&format!("{field}.min"), min, 0, 0usize);
            let at = pos(&name.referenced);
            let text = name.value.as_str();
            let valid = match text.strip_prefix('/') {
                Some(abs) => abs
                    .split_once('.')
                    .is_some_and(|(ns, n)| is_pattern(ns) && is_pattern(n)),
                None => is_pattern(text),
            };
            if !valid {
                self.error(
                    at,
                    format!(
                        "{field}: expected a cluster name like \"zookeeper\", \"/namespace.name\" \
                         or a \"*\" pattern, found {text:?}"
                    ),
                );
                continue;
            }
            let is_self = match text.strip_prefix('/').and_then(|a| a.split_once('.')) {
                Some((ns, n)) => glob(ns, namespace) && glob(n, cluster),
                None => glob(text, cluster),
            };
            if is_self {
                // The names may come from the environment unchecked (a bad override is reported
                // on its own): escaped, so the message stays one line.
                let own = escape_controls(&format!("{namespace}.{cluster}"));
                self.error(
                    at,
                    format!(
                        "{field}: {text:?} names this pod's own cluster {own}: \
                         a cluster cannot depend on itself"
                    ),
                );
                continue;
            }
            deps.push(Dependency {
                cluster: name.value.clone(),
                min,
            });
        }
        deps
    }
}
