//! Running what the pod.yaml declares besides the process: hooks, `process.reload.command`,
//! checks, and on the leader `settings.apply` and `settings.probe`.
//!
//! Each is rendered from its compiled template (named by its field in [`crate::render::fields`]) against a map,
//! and run by [`super::shell::run`] under the reaper, with the map in `$OCHOPOD_CLUSTER_FILE` (a
//! private copy per run, deleted afterwards) and the pod in `$OCHOPOD_POD_JSON`, its output in
//! the log ring, within `settings.timeout`. Each run is a span (`run`) carrying the field, the
//! pid and the exit code. Called from the actor, from `Handle` (`check`, `ok`, `signal`, outside
//! the actor) and from the sync loop (`apply`, `probe`); nothing here keeps state.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tracing::Instrument as _;

use super::error::{ClusterFileError, RunError};
use super::shell::{self, Output};
use super::PodContext;
use crate::logs::LogRing;
use crate::model::ClusterMap;
use crate::render::Context;
use crate::spec::{Check, CommandLine};

/// Writes a map as JSON, atomically (hooks may read it while a new one is written).
pub(super) fn write_map(path: &Path, map: &ClusterMap) -> Result<(), ClusterFileError> {
    let json = serde_json::to_vec_pretty(map)?;
    crate::fsutil::write_atomic(path, &json, 0o600)?;
    Ok(())
}

/// `OCHOPOD_CLUSTER_FILE` and `OCHOPOD_POD_JSON` for hooks, checks and the process.
pub(super) fn hook_env(ctx: &PodContext, map: &ClusterMap, cluster_file: &Path) -> BTreeMap<String, String> {
    let me = map.me().unwrap_or(&ctx.me);
    let mut env = BTreeMap::new();
    env.insert("OCHOPOD_CLUSTER_FILE".into(), cluster_file.display().to_string());
    env.insert(
        "OCHOPOD_POD_JSON".into(),
        serde_json::to_string(me).unwrap_or_default(),
    );
    env
}

/// The span of one run of a hook, check or command: its field, then its pid and exit code once
/// known (recorded by [`shell::run`]).
fn span(field: &'static str) -> tracing::Span {
    tracing::info_span!(
        "run",
        field,
        pid = tracing::field::Empty,
        code = tracing::field::Empty,
        signal = tracing::field::Empty
    )
}

/// Renders the command `field` (see [`crate::render::fields`]) against `map` and runs it with the hook
/// environment. Holds one of [`PodContext::hook_slots`] while it runs.
pub(super) async fn run(
    ctx: &PodContext,
    field: &'static str,
    map: &ClusterMap,
    stdin: Option<Vec<u8>>,
) -> Result<Output, RunError> {
    // Waits for a turn before anything else (the cluster file included). The semaphore is never
    // closed, so this always gets a permit.
    let _permit = ctx.hook_slots.acquire().await.ok();
    let render = |e| RunError::Render {
        field,
        source: Box::new(e),
    };
    let context = Context::new(&ctx.spec, map, None, &ctx.env).map_err(render)?;
    let line = ctx.renderer.render_command(field, &context).map_err(render)?;
    let file = ctx
        .state_dir
        .join("tmp")
        .join(format!("cluster-{}.json", uuid::Uuid::new_v4()));
    write_map(&file, map).map_err(|source| RunError::ClusterFile { field, source })?;
    let env = hook_env(ctx, map, &file);
    let result = shell::run(field, &line, &env, stdin, ctx.spec.settings.timeout, &ctx.ring)
        .instrument(span(field))
        .await;
    let _ = std::fs::remove_file(&file);
    Ok(result?)
}

/// [`run`], and an exit code other than 0 is an error.
pub(super) async fn run_ok(
    ctx: &PodContext,
    field: &'static str,
    map: &ClusterMap,
    stdin: Option<Vec<u8>>,
) -> Result<Output, RunError> {
    let out = run(ctx, field, map, stdin).await?;
    if !out.success() {
        return Err(RunError::Exit {
            field,
            code: out.exit.shell_code(),
        });
    }
    Ok(out)
}

/// Runs a command field against `map` as hooks run (see `run`); the leader's `apply` and
/// `probe` use it. Since they read its stdout, a stdout over [`super::MAX_STDOUT`] fails it.
pub async fn run_with_map(
    ctx: &PodContext,
    field: &'static str,
    map: &ClusterMap,
) -> Result<Output, RunError> {
    let out = run(ctx, field, map, None).await?;
    whole_stdout(field, &out)?;
    Ok(out)
}

/// Refuses an output whose stdout was cut: a caller that reads the answer must not act on half
/// of it.
pub(super) fn whole_stdout(field: &'static str, out: &Output) -> Result<(), RunError> {
    if out.stdout_dropped > 0 {
        return Err(RunError::StdoutCut {
            field,
            dropped: out.stdout_dropped,
        });
    }
    Ok(())
}

/// A check as one run of the process runs it: rendered once against the run's map (which does
/// not change during the run), then executed every `every`.
pub(super) struct PreparedCheck {
    field: &'static str,
    /// What its output lines are prefixed with in the log: `checks.ready`, `checks.sanity`.
    tag: &'static str,
    /// None when it does not render: every run of it fails.
    line: Option<CommandLine>,
    env: BTreeMap<String, String>,
    pub every: Duration,
    /// A single run may not outlast the check's period (nor be shorter than a second).
    timeout: Duration,
}

impl PreparedCheck {
    /// `field` is [`crate::render::fields::READY`] or `SANITY`.
    pub(super) fn new(
        ctx: &PodContext,
        field: &'static str,
        check: &Check,
        map: &ClusterMap,
    ) -> PreparedCheck {
        let line = Context::new(&ctx.spec, map, None, &ctx.env)
            .and_then(|context| ctx.renderer.render_command(field, &context))
            .map_err(
                |e| tracing::warn!(field, error = %e, "check does not render: it fails until the next start"),
            )
            .ok();
        PreparedCheck {
            field,
            tag: field.strip_suffix(".command").unwrap_or(field),
            line,
            env: hook_env(ctx, map, &ctx.state_dir.join("cluster.json")),
            every: check.every,
            timeout: check.every.max(Duration::from_secs(1)),
        }
    }

    /// One run; a failure to run counts as a failed check.
    pub(super) async fn passes(&self, ring: &LogRing) -> bool {
        let Some(line) = &self.line else { return false };
        let ran = shell::run(self.tag, line, &self.env, None, self.timeout, ring)
            .instrument(span(self.field))
            .await;
        match ran {
            Ok(out) => out.success(),
            Err(e) => {
                tracing::debug!(field = self.field, error = %e, "check did not run");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn check_tags_are_the_documented_log_prefixes() {
        for (field, tag) in [
            (crate::render::fields::READY, "checks.ready"),
            (crate::render::fields::SANITY, "checks.sanity"),
        ] {
            assert_eq!(field.strip_suffix(".command").unwrap_or(field), tag);
        }
    }
}
