//! Short-lived shell commands: hooks, checks, `reload.command`, `apply` and `probe`.
//!
//! Each runs under `/bin/sh -c` in its own process group with a timeout; on timeout the whole
//! group is killed, so a hung `nc` in a check cannot pile up. stderr goes to the log ring (and
//! ochopod's stderr); stdout is captured (bounded) because some hooks answer with it
//! (`signaled`, `probe`) and is logged too.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::child::{self, Exit};
use super::reaper;
use crate::logs::LogRing;
use crate::spec::CommandLine;

/// Captured stdout is cut here.
const MAX_STDOUT: usize = 1 << 20;

/// What a command left behind.
#[derive(Debug, Clone)]
pub struct Output {
    pub exit: Exit,
    pub stdout: String,
    /// What it said on stderr (also logged), for error messages.
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.exit.success()
    }
}

/// Why a command produced no [`Output`].
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error("{what}: cannot start: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: no answer after {after:?}; killed")]
    Timeout { what: String, after: Duration },
}

/// Runs `line` with `env` added to ochopod's environment, feeding `stdin`, for at most `timeout`.
/// `what` names the command in logs and errors (`hooks.pre_start`).
pub async fn run(
    what: &str,
    line: &CommandLine,
    env: &BTreeMap<String, String>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    ring: &LogRing,
) -> Result<Output, ShellError> {
    let mut cmd = child::command(line);
    cmd.envs(env)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    let mut proc = reaper::spawn(&mut cmd).map_err(|source| ShellError::Spawn {
        what: what.to_string(),
        source,
    })?;
    let pid = proc.id();
    if let (Some(mut input), Some(bytes)) = (proc.stdin.take(), stdin) {
        tokio::spawn(async move {
            let _ = input.write_all(&bytes).await;
        });
    }
    let stdout = proc.stdout.take();
    let stderr = proc.stderr.take();
    let ring_err = ring.clone();
    let tag = what.to_string();
    let err_task = tokio::spawn(async move {
        let Some(stderr) = stderr else {
            return String::new();
        };
        let mut buf = Vec::new();
        let _ = stderr.take(MAX_STDOUT as u64).read_to_end(&mut buf).await;
        let text = String::from_utf8_lossy(&buf).into_owned();
        for line in text.lines() {
            ring_err.push(&format!("[{tag}] {line}"));
            eprintln!("[{tag}] {line}");
        }
        text
    });
    let out_task = tokio::spawn(async move {
        let Some(stdout) = stdout else { return Vec::new() };
        let mut buf = Vec::new();
        let _ = stdout.take(MAX_STDOUT as u64).read_to_end(&mut buf).await;
        buf
    });
    let waited = tokio::time::timeout(timeout, proc.wait()).await;
    let exit = match waited {
        Ok(Ok(status)) => Exit::from_status(status),
        Ok(Err(_)) => Exit {
            code: None,
            signal: None,
        },
        Err(_) => {
            if let Some(pid) = pid {
                let _ = child::signal_group(pid, Signal::SIGKILL);
            }
            let _ = proc.wait().await;
            if let Some(pid) = pid {
                reaper::forget(pid);
            }
            return Err(ShellError::Timeout {
                what: what.to_string(),
                after: timeout,
            });
        }
    };
    if let Some(pid) = pid {
        reaper::forget(pid);
        // Background children of the command keep its pipes open; they must not outlive it.
        let _ = child::signal_group(pid, Signal::SIGKILL);
    }
    let stdout = out_task.await.unwrap_or_default();
    let stderr = err_task.await.unwrap_or_default();
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    for line in stdout.lines() {
        ring.push(&format!("[{what}] {line}"));
        println!("[{what}] {line}");
    }
    tracing::debug!(command = what, code = ?exit.code, signal = ?exit.signal, "command done");
    Ok(Output { exit, stdout, stderr })
}
