//! Validation: raw YAML → [`PodSpec`](super::PodSpec), collecting every diagnostic.
//!
//! Receives the pod.yaml's path and text and a view of the environment (for the overrides of
//! SPEC §3); emits either the validated [`PodSpec`] or [`Diagnostics`], every problem found, in
//! file order. A YAML that does not even deserialize (bad syntax, unknown key, wrong shape) stops
//! at that one diagnostic: serde cannot go on past it. Everything else is judged here, one value
//! at a time, and a bad value only replaces itself with its default so the checks after it still
//! run. Nothing here retries: a bad pod.yaml is fatal for `run` and printed by `check`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde_saphyr::{Location, MessageFormatter, UserMessageFormatter};

use super::raw::{self, RawCommand, RawDependency, RawPod, S};
use super::{
    parse_duration, Check, Checks, CommandLine, Dependency, Diagnostic, Diagnostics, Hooks, Order,
    PodSpec, Probe, Process, Reload, ReloadAction, ReloadFailure, Restart, RestartPolicy, Settings,
    Signal, Stop, TemplateSpec, WriteMode,
};

/// Reads, parses and validates a pod.yaml, applying the environment overrides of SPEC §3.
pub fn load(path: &Path) -> Result<PodSpec, Diagnostics> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic {
            file: path.to_path_buf(),
            line: 0,
            col: 0,
            message: format!("cannot read: {e}"),
        }])
    })?;
    load_str(path, &text)
}

/// As [`load`], for text already read (`path` names it in diagnostics and anchors templates).
pub fn load_str(path: &Path, text: &str) -> Result<PodSpec, Diagnostics> {
    load_with_env(path, text, &|name| std::env::var(name).ok())
}

/// As [`load_str`], with the environment given as a lookup (tests pass a fixed map).
pub fn load_with_env(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PodSpec, Diagnostics> {
    let raw: RawPod = serde_saphyr::from_str(text).map_err(|e| {
        let (line, col) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        // The formatter's text has no location suffix. "key" is pod.yaml's word for a serde field;
        // control characters are escaped because the message may quote the user's input.
        let text = UserMessageFormatter.format_message(e.without_snippet());
        let message = match text.strip_prefix("unknown field ") {
            Some(rest) => escape_controls(&format!("unknown key {rest}")),
            None => escape_controls(&text),
        };
        Diagnostics(vec![Diagnostic {
            file: path.to_path_buf(),
            line,
            col,
            message,
        }])
    })?;
    let mut v = Validator {
        file: path.to_path_buf(),
        diags: Vec::new(),
    };
    let spec = v.pod(path, raw, env);
    if v.diags.is_empty() {
        Ok(spec)
    } else {
        // A stable sort keeps the order checks ran in for problems at the same place.
        v.diags.sort_by_key(|d| (d.line, d.col));
        Err(Diagnostics(v.diags))
    }
}

/// Parses a signal name as pod.yaml and `ochopod ctl signal` write it: `TERM`, `SIGTERM`, `hup`.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    let upper = text.trim().to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name)
        .map_err(|_| format!("expected a signal name like TERM, HUP or SIGUSR1, found {text:?}"))
}

fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// `[a-z0-9-]+`: the charset of cluster and namespace names (they become ZooKeeper paths).
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A name that may contain `*` wildcards.
fn is_pattern(s: &str) -> bool {
    !s.is_empty() && is_name(&s.replace('*', "x"))
}

/// Glob match where `*` stands for any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(tail) = text.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && glob(rest, &tail[i..]))
        }
    }
}

/// Octal file mode as chmod reads it: `0644`, `644`, `0o644` (an unquoted YAML int included).
fn parse_mode(text: &str) -> Option<u32> {
    let t = text.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o7777)
}

fn pos(l: &Location) -> (u64, u64) {
    (l.line(), l.column())
}

/// Collects diagnostics while it builds the spec.
struct Validator {
    file: PathBuf,
    diags: Vec<Diagnostic>,
}

/// Where a problem with no value of its own is reported (a required key that is missing).
const TOP: (u64, u64) = (1, 1);

impl Validator {
    fn error(&mut self, (line, col): (u64, u64), message: String) {
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            line,
            col,
            message,
        });
    }

    fn duration(&mut self, field: &str, value: Option<&S<String>>, default: Duration) -> Duration {
        let Some(v) = value else { return default };
        parse_duration(&v.value).unwrap_or_else(|m| {
            self.error(pos(&v.referenced), format!("{field}: {m}"));
            default
        })
    }

    /// A period (`every`, `timeout`): zero would spin or time out at once.
    fn period(&mut self, field: &str, value: Option<&S<String>>, default: Duration) -> Duration {
        let d = self.duration(field, value, default);
        if d.is_zero() {
            if let Some(v) = value {
                self.error(
                    pos(&v.referenced),
                    format!("{field}: must be longer than 0"),
                );
            }
            return default;
        }
        d
    }

    fn int<T: TryFrom<i64>>(
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
    fn choice<T: Copy>(
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

    fn signal(&mut self, field: &str, value: Option<&S<String>>, default: Signal) -> Signal {
        let Some(v) = value else { return default };
        parse_signal(&v.value).unwrap_or_else(|m| {
            self.error(pos(&v.referenced), format!("{field}: {m}"));
            default
        })
    }

    fn command(&mut self, field: &str, value: &S<RawCommand>) -> Option<CommandLine> {
        let at = pos(&value.referenced);
        match &value.value {
            RawCommand::Shell(s) if s.trim().is_empty() => {
                self.error(
                    at,
                    format!("{field}: expected a command, found an empty string"),
                );
                None
            }
            RawCommand::Shell(s) => Some(CommandLine::Shell(s.clone())),
            RawCommand::Exec(v) if v.is_empty() => {
                self.error(
                    at,
                    format!("{field}: expected a command, found an empty list"),
                );
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
    fn required_command(
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
    fn shell(&mut self, field: &str, value: Option<&S<String>>) -> Option<String> {
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

    fn pod(&mut self, path: &Path, raw: RawPod, env: &dyn Fn(&str) -> Option<String>) -> PodSpec {
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
    fn name(
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
                self.error(
                    at,
                    format!("{var} (overriding {field}): {expected}, found {o:?}"),
                );
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
                self.error(
                    at,
                    format!("{field}: missing, a name of [a-z0-9-]+ is required"),
                );
                String::new()
            }
        }
    }

    fn ports(&mut self, raw: &[S<i64>]) -> Vec<u16> {
        let mut ports: Vec<(u16, (u64, u64))> = Vec::new();
        for (i, p) in raw.iter().enumerate() {
            let at = pos(&p.referenced);
            let Some(port) = u16::try_from(p.value).ok().filter(|n| *n >= 1) else {
                self.error(
                    at,
                    format!(
                        "ports[{i}]: expected a port in 1..=65535, found {}",
                        p.value
                    ),
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

    fn depends_on(
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
                    format!("{field}: expected a cluster name like \"zookeeper\", \"/namespace.name\" or a \"*\" pattern, found {text:?}"),
                );
                continue;
            }
            let is_self = match text.strip_prefix('/').and_then(|a| a.split_once('.')) {
                Some((ns, n)) => glob(ns, namespace) && glob(n, cluster),
                None => glob(text, cluster),
            };
            if is_self {
                self.error(
                    at,
                    format!("{field}: {text:?} names this pod's own cluster {namespace}.{cluster}: a cluster cannot depend on itself"),
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

    fn settings(&mut self, raw: Option<&raw::RawSettings>) -> Settings {
        let d = raw::RawSettings::default();
        let s = raw.unwrap_or(&d);
        let damper = self.duration("settings.damper", s.damper.as_ref(), Duration::from_secs(5));
        let damper_max = self.duration(
            "settings.damper_max",
            s.damper_max.as_ref(),
            Duration::from_secs(60),
        );
        if damper_max < damper {
            let at = s
                .damper_max
                .as_ref()
                .or(s.damper.as_ref())
                .map_or(TOP, |v| pos(&v.referenced));
            self.error(
                at,
                format!(
                    "settings.damper_max ({}) must not be shorter than settings.damper ({})",
                    super::format_duration(damper_max),
                    super::format_duration(damper)
                ),
            );
        }
        let apply = s.apply.as_ref().and_then(|a| {
            self.required_command(
                "settings.apply.command",
                a.value.command.as_ref(),
                pos(&a.referenced),
            )
        });
        let probe = s.probe.as_ref().and_then(|p| {
            let command = self.required_command(
                "settings.probe.command",
                p.value.command.as_ref(),
                pos(&p.referenced),
            );
            let every = self.period(
                "settings.probe.every",
                p.value.every.as_ref(),
                Duration::from_secs(60),
            );
            command.map(|command| Probe { command, every })
        });
        Settings {
            min_size: self.int("settings.min_size", s.min_size.as_ref(), 1, 1),
            damper,
            damper_max,
            sequential: s.sequential.unwrap_or(false),
            order: self.choice(
                "settings.order",
                s.order.as_ref(),
                &[("seq", Order::Seq), ("added-first", Order::AddedFirst)],
                Order::Seq,
            ),
            parallelism: self.int("settings.parallelism", s.parallelism.as_ref(), 1, 16),
            full_shutdown: s.full_shutdown.unwrap_or(false),
            timeout: self.period(
                "settings.timeout",
                s.timeout.as_ref(),
                Duration::from_secs(60),
            ),
            evict_after: self.int("settings.evict_after", s.evict_after.as_ref(), 1, 3),
            apply,
            probe,
        }
    }

    fn process(&mut self, raw: Option<&S<raw::RawProcess>>) -> Process {
        let d = raw::RawProcess::default();
        let (p, at) = match raw {
            Some(p) => (&p.value, pos(&p.referenced)),
            None => {
                self.error(
                    TOP,
                    "process: missing, a process with a command is required".into(),
                );
                (&d, TOP)
            }
        };
        let command = match &p.command {
            Some(c) => self.command("process.command", c),
            None if raw.is_some() => self.required_command("process.command", None, at),
            None => None,
        };
        let rd = raw::RawRestart::default();
        let r = p.restart.as_ref().unwrap_or(&rd);
        let backoff = self.duration(
            "process.restart.backoff",
            r.backoff.as_ref(),
            Duration::from_secs(1),
        );
        let max_backoff = self.duration(
            "process.restart.max_backoff",
            r.max_backoff.as_ref(),
            Duration::from_secs(30),
        );
        if max_backoff < backoff {
            let at = r
                .max_backoff
                .as_ref()
                .or(r.backoff.as_ref())
                .map_or(TOP, |v| pos(&v.referenced));
            self.error(
                at,
                format!(
                    "process.restart.max_backoff ({}) must not be shorter than process.restart.backoff ({})",
                    super::format_duration(max_backoff),
                    super::format_duration(backoff)
                ),
            );
        }
        let restart = Restart {
            policy: self.choice(
                "process.restart.policy",
                r.policy.as_ref(),
                &[
                    ("always", RestartPolicy::Always),
                    ("on-failure", RestartPolicy::OnFailure),
                    ("never", RestartPolicy::Never),
                ],
                RestartPolicy::OnFailure,
            ),
            backoff,
            max_backoff,
        };
        let sd = raw::RawStop::default();
        let s = p.stop.as_ref().unwrap_or(&sd);
        let stop = Stop {
            signal: self.signal("process.stop.signal", s.signal.as_ref(), Signal::SIGTERM),
            grace: self.duration(
                "process.stop.grace",
                s.grace.as_ref(),
                Duration::from_secs(10),
            ),
            drain: self.duration("process.stop.drain", s.drain.as_ref(), Duration::ZERO),
        };
        let cwd = p.cwd.as_ref().and_then(|c| {
            if c.value.trim().is_empty() {
                self.error(
                    pos(&c.referenced),
                    "process.cwd: expected a folder, found an empty string".into(),
                );
                return None;
            }
            Some(c.value.clone())
        });
        Process {
            command: command.unwrap_or_else(|| CommandLine::Exec(Vec::new())),
            env: p.env.clone(),
            cwd,
            start: p.start.unwrap_or(true),
            restart,
            stop,
            reload: p.reload.as_ref().and_then(|r| self.reload(r)),
            strict: p.strict.unwrap_or(false),
            linger: p.linger.unwrap_or(false),
        }
    }

    fn reload(&mut self, raw: &S<raw::RawReload>) -> Option<Reload> {
        let r = &raw.value;
        let on_failure = self.choice(
            "process.reload.on_failure",
            r.on_failure.as_ref(),
            &[
                ("restart", ReloadFailure::Restart),
                ("keep", ReloadFailure::Keep),
            ],
            ReloadFailure::Restart,
        );
        let action = match (&r.signal, &r.command) {
            (Some(s), None) => {
                ReloadAction::Signal(self.signal("process.reload.signal", Some(s), Signal::SIGHUP))
            }
            (None, Some(c)) => ReloadAction::Command(self.command("process.reload.command", c)?),
            (Some(_), Some(_)) | (None, None) => {
                let found = if r.signal.is_some() {
                    "both"
                } else {
                    "neither"
                };
                self.error(
                    pos(&raw.referenced),
                    format!("process.reload: expected exactly one of `signal` or `command`, found {found}"),
                );
                return None;
            }
        };
        Some(Reload { action, on_failure })
    }

    fn templates(&mut self, raw: &[S<raw::RawTemplate>], dir: &Path) -> Vec<TemplateSpec> {
        let mut out = Vec::new();
        for (i, t) in raw.iter().enumerate() {
            let at = pos(&t.referenced);
            let field = format!("templates[{i}]");
            let mode = match &t.value.mode {
                None => 0o644,
                Some(m) => parse_mode(&m.value).unwrap_or_else(|| {
                    self.error(
                        pos(&m.referenced),
                        format!(
                            "{field}.mode: expected an octal file mode like \"0644\", found {:?}",
                            m.value
                        ),
                    );
                    0o644
                }),
            };
            let write = self.choice(
                &format!("{field}.write"),
                t.value.write.as_ref(),
                &[
                    ("always", WriteMode::Always),
                    ("if-absent", WriteMode::IfAbsent),
                ],
                WriteMode::Always,
            );
            let dest = match &t.value.dest {
                Some(d) if d.value.trim().is_empty() => {
                    self.error(
                        pos(&d.referenced),
                        format!("{field}.dest: expected a path, found an empty string"),
                    );
                    None
                }
                Some(d) => Some(d.value.clone()),
                None => {
                    self.error(
                        at,
                        format!("{field}.dest: missing, a destination path is required"),
                    );
                    None
                }
            };
            let source = match &t.value.source {
                Some(s) if s.value.trim().is_empty() => {
                    self.error(
                        pos(&s.referenced),
                        format!("{field}.source: expected a path, found an empty string"),
                    );
                    None
                }
                Some(s) => {
                    let resolved = dir.join(&s.value);
                    match std::fs::read_to_string(&resolved) {
                        Ok(text) => Some((resolved, text)),
                        Err(e) => {
                            self.error(
                                pos(&s.referenced),
                                format!("{field}.source: cannot read {}: {e}", resolved.display()),
                            );
                            None
                        }
                    }
                }
                None => {
                    self.error(
                        at,
                        format!("{field}.source: missing, a template file is required"),
                    );
                    None
                }
            };
            if let (Some((source, text)), Some(dest)) = (source, dest) {
                out.push(TemplateSpec {
                    source,
                    text,
                    dest,
                    mode,
                    write,
                });
            }
        }
        out
    }

    fn checks(&mut self, raw: Option<&raw::RawChecks>) -> Checks {
        let Some(c) = raw else {
            return Checks::default();
        };
        let ready = c.ready.as_ref().and_then(|r| {
            let command = self.check_command(
                "checks.ready.command",
                r.value.command.as_ref(),
                pos(&r.referenced),
            );
            let every = self.period(
                "checks.ready.every",
                r.value.every.as_ref(),
                Duration::from_secs(1),
            );
            let timeout = self.period(
                "checks.ready.timeout",
                r.value.timeout.as_ref(),
                Duration::from_secs(60),
            );
            // `failures` has no meaning for readiness: the first success makes the pod ready.
            command.map(|command| Check {
                command,
                every,
                timeout,
                failures: 1,
            })
        });
        let sanity = c.sanity.as_ref().and_then(|s| {
            let command = self.check_command(
                "checks.sanity.command",
                s.value.command.as_ref(),
                pos(&s.referenced),
            );
            let every = self.period(
                "checks.sanity.every",
                s.value.every.as_ref(),
                Duration::from_secs(10),
            );
            let failures = self.int("checks.sanity.failures", s.value.failures.as_ref(), 1, 3);
            // A sanity run that outlasts its period counts as a failure, so its timeout is `every`.
            command.map(|command| Check {
                command,
                every,
                timeout: every,
                failures,
            })
        });
        Checks { ready, sanity }
    }

    fn check_command(
        &mut self,
        field: &str,
        value: Option<&S<String>>,
        at: (u64, u64),
    ) -> Option<String> {
        if value.is_none() {
            self.error(at, format!("{field}: missing, a command is required"));
        }
        self.shell(field, value)
    }

    fn hooks(&mut self, raw: Option<&raw::RawHooks>) -> Hooks {
        let Some(h) = raw else {
            return Hooks::default();
        };
        Hooks {
            initialize: self.shell("hooks.initialize", h.initialize.as_ref()),
            pre_start: self.shell("hooks.pre_start", h.pre_start.as_ref()),
            can_configure: self.shell("hooks.can_configure", h.can_configure.as_ref()),
            configured: self.shell("hooks.configured", h.configured.as_ref()),
            signaled: self.shell("hooks.signaled", h.signaled.as_ref()),
            tear_down: self.shell("hooks.tear_down", h.tear_down.as_ref()),
            finalize: self.shell("hooks.finalize", h.finalize.as_ref()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_are_case_insensitive_with_or_without_sig() {
        assert_eq!(parse_signal("TERM"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("sigterm"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("hup"), Ok(Signal::SIGHUP));
        assert_eq!(parse_signal("SIGUSR1"), Ok(Signal::SIGUSR1));
        assert!(parse_signal("TERMINATE").is_err());
        assert!(parse_signal("").is_err());
    }

    #[test]
    fn modes_are_octal_as_chmod_reads_them() {
        assert_eq!(parse_mode("0644"), Some(0o644));
        assert_eq!(parse_mode("644"), Some(0o644));
        assert_eq!(parse_mode("0o755"), Some(0o755));
        assert_eq!(parse_mode("0600"), Some(0o600));
        assert_eq!(parse_mode("0888"), None);
        assert_eq!(parse_mode("rw"), None);
        assert_eq!(parse_mode("17777"), None);
    }

    #[test]
    fn globs_match_runs_of_characters() {
        assert!(glob("kafka-*", "kafka-a"));
        assert!(glob("*", "anything"));
        assert!(glob("a*c", "abbbc"));
        assert!(!glob("a*c", "abbb"));
        assert!(glob("zk", "zk"));
        assert!(!glob("zk", "zk2"));
    }
}
