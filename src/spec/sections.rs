//! The sections of a pod.yaml: `settings`, `process`, `templates`, `checks` and `hooks`, each
//! validated into its [`PodSpec`](super::PodSpec) part with the defaults of SPEC §3.
//!
//! Template sources are read here (relative to the pod.yaml's folder) so that a missing file is a
//! diagnostic at load time rather than a failure at the first configuration.

use std::path::Path;
use std::time::Duration;

use super::raw::{self, S};
use super::validate::{pos, Validator, TOP};
use super::values::{escape_controls, parse_mode};
use super::{
    format_duration, Check, Checks, CommandLine, Hooks, Order, Probe, Process, Reload, ReloadAction,
    ReloadFailure, Restart, RestartPolicy, Settings, Signal, Stop, TemplateSpec, WriteMode,
};

impl Validator {
    /// Two durations where the second must not be shorter than the first (`damper` and
    /// `damper_max`, `backoff` and `max_backoff`): each as `(field, value, default)`. A ceiling
    /// below its floor is reported at the ceiling (else the floor) as written.
    fn floor_and_ceiling(
        &mut self,
        (floor_field, floor_value, floor_default): (&str, Option<&S<String>>, Duration),
        (ceiling_field, ceiling_value, ceiling_default): (&str, Option<&S<String>>, Duration),
    ) -> (Duration, Duration) {
        let floor = self.duration(floor_field, floor_value, floor_default);
        let ceiling = self.duration(ceiling_field, ceiling_value, ceiling_default);
        if ceiling < floor {
            let at = ceiling_value.or(floor_value).map_or(TOP, |v| pos(&v.referenced));
            self.error(
                at,
                format!(
                    "{ceiling_field} ({}) must not be shorter than {floor_field} ({})",
                    format_duration(ceiling),
                    format_duration(floor)
                ),
            );
        }
        (floor, ceiling)
    }

    pub(super) fn settings(&mut self, raw: Option<&raw::RawSettings>) -> Settings {
        let d = raw::RawSettings::default();
        let s = raw.unwrap_or(&d);
        let (damper, damper_max) = self.floor_and_ceiling(
            ("settings.damper", s.damper.as_ref(), Duration::from_secs(5)),
            (
                "settings.damper_max",
                s.damper_max.as_ref(),
                Duration::from_secs(60),
            ),
        );
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
            rolling: s.rolling.unwrap_or(false),
            max_unavailable: self.int("settings.max_unavailable", s.max_unavailable.as_ref(), 1, 1),
            max_lost: s
                .max_lost
                .as_ref()
                .map(|n| self.int("settings.max_lost", Some(n), 0, 0)),
            parallelism: self.int("settings.parallelism", s.parallelism.as_ref(), 1, 16),
            full_shutdown: s.full_shutdown.unwrap_or(false),
            timeout: self.period("settings.timeout", s.timeout.as_ref(), Duration::from_secs(60)),
            evict_after: self.int("settings.evict_after", s.evict_after.as_ref(), 1, 3),
            seq_hold: self.duration("settings.seq_hold", s.seq_hold.as_ref(), Duration::from_secs(300)),
            apply,
            probe,
        }
    }

    pub(super) fn process(&mut self, raw: Option<&S<raw::RawProcess>>) -> Process {
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
        let (backoff, max_backoff) = self.floor_and_ceiling(
            (
                "process.restart.backoff",
                r.backoff.as_ref(),
                Duration::from_secs(1),
            ),
            (
                "process.restart.max_backoff",
                r.max_backoff.as_ref(),
                Duration::from_secs(30),
            ),
        );
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
            grace: self.duration("process.stop.grace", s.grace.as_ref(), Duration::from_secs(10)),
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
            &[("restart", ReloadFailure::Restart), ("keep", ReloadFailure::Keep)],
            ReloadFailure::Restart,
        );
        let action = match (&r.signal, &r.command) {
            (Some(s), None) => {
                ReloadAction::Signal(self.signal("process.reload.signal", Some(s), Signal::SIGHUP))
            }
            (None, Some(c)) => ReloadAction::Command(self.command("process.reload.command", c)?),
            (Some(_), Some(_)) | (None, None) => {
                let found = if r.signal.is_some() { "both" } else { "neither" };
                self.error(
                    pos(&raw.referenced),
                    format!("process.reload: expected exactly one of `signal` or `command`, found {found}"),
                );
                return None;
            }
        };
        Some(Reload { action, on_failure })
    }

    pub(super) fn templates(&mut self, raw: &[S<raw::RawTemplate>], dir: &Path) -> Vec<TemplateSpec> {
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
                &[("always", WriteMode::Always), ("if-absent", WriteMode::IfAbsent)],
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
                                format!(
                                    "{field}.source: cannot read {}: {e}",
                                    escape_controls(&resolved.display().to_string())
                                ),
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

    pub(super) fn checks(&mut self, raw: Option<&raw::RawChecks>) -> Checks {
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

    fn check_command(&mut self, field: &str, value: Option<&S<String>>, at: (u64, u64)) -> Option<String> {
        if value.is_none() {
            self.error(at, format!("{field}: missing, a command is required"));
        }
        self.shell(field, value)
    }

    pub(super) fn hooks(&mut self, raw: Option<&raw::RawHooks>) -> Hooks {
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
