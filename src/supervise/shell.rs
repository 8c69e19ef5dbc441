//! Short-lived shell commands: hooks, checks, `reload.command`, `apply` and `probe`.
//!
//! Each runs under `/bin/sh -c` in its own process group with a timeout; on timeout the whole
//! group is killed, so a hung `nc` in a check cannot pile up. stderr goes to the log ring (and
//! ochopod's stderr) line by line; stdout is logged the same way and also captured, up to
//! [`MAX_STDOUT`], because some commands answer with it (`signaled`, `probe`).
//!
//! Memory stays bounded whatever a command prints: lines are cut at [`LINE_BYTES`], the stdout
//! capture stops at [`MAX_STDOUT`] (the [`Output`] says so, and callers that need the answer fail),
//! the stderr kept for error messages is its last [`STDERR_TAIL`] bytes. Time too: once the
//! command ended (or was killed), its output is read for at most [`DRAIN`] more; a background
//! child that left the process group (`setsid`) and holds the pipes open cannot hold us up.

use std::collections::{BTreeMap, VecDeque};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::child::{self, Exit};
use super::reaper;
use crate::logs::{CutLine, LineSplitter, LogRing, LINE_BYTES};
use crate::spec::CommandLine;

/// Captured stdout stops here: a `signaled` answer or a `probe` line longer than this is refused.
pub const MAX_STDOUT: usize = 1 << 20;
/// How much of the end of stderr is kept for error messages (all of it is logged).
const STDERR_TAIL: usize = 16 * 1024;
/// How long the output of a command that ended is still read. Whatever it wrote before it ended
/// is in the pipe already; only a background child that kept the pipe open writes later.
const DRAIN: Duration = Duration::from_secs(1);

/// What a command left behind.
#[derive(Debug, Clone)]
pub struct Output {
    pub exit: Exit,
    /// Its stdout, the first [`MAX_STDOUT`] bytes of it.
    pub stdout: String,
    /// Bytes of stdout beyond [`MAX_STDOUT`], not kept (they were logged).
    pub stdout_dropped: u64,
    /// The end of what it said on stderr (all of it is logged), for error messages.
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
    // The caller's span (`run`, see `runner`) names the field; this says which process it was.
    if let Some(pid) = pid {
        tracing::Span::current().record("pid", pid);
    }
    let feeder = match (proc.stdin.take(), stdin) {
        (Some(mut input), Some(bytes)) => Some(tokio::spawn(async move {
            let _ = input.write_all(&bytes).await;
        })),
        _ => None,
    };
    // Tells the readers to stop: the command is over and DRAIN has passed.
    let stop = CancellationToken::new();
    let mut out_task = proc.stdout.take().map(|s| {
        let reader = Reader::new(what, ring, false, MAX_STDOUT);
        tokio::spawn(reader.read(s, stop.clone()))
    });
    let mut err_task = proc.stderr.take().map(|s| {
        let reader = Reader::new(what, ring, true, 0);
        tokio::spawn(reader.read(s, stop.clone()))
    });
    let waited = tokio::time::timeout(timeout, proc.wait()).await;
    let exit = match waited {
        Ok(Ok(status)) => Ok(Exit::from_status(status)),
        Ok(Err(_)) => Ok(Exit {
            code: None,
            signal: None,
        }),
        Err(_) => {
            if let Some(pid) = pid {
                let _ = child::signal_group(pid, Signal::SIGKILL);
            }
            let _ = proc.wait().await;
            Err(ShellError::Timeout {
                what: what.to_string(),
                after: timeout,
            })
        }
    };
    if let Some(pid) = pid {
        reaper::forget(pid);
        // Background children of the command keep its pipes open; they must not outlive it.
        let _ = child::signal_group(pid, Signal::SIGKILL);
    }
    if let Some(feeder) = feeder {
        feeder.abort();
    }
    let drained = tokio::time::Instant::now() + DRAIN;
    let out = finish(out_task.as_mut(), drained, &stop).await;
    let err = finish(err_task.as_mut(), drained, &stop).await;
    let exit = exit?;
    let span = tracing::Span::current();
    if let Some(code) = exit.code {
        span.record("code", code);
    }
    if let Some(signal) = exit.signal {
        span.record("signal", signal);
    }
    tracing::debug!(
        command = what,
        code = exit.code,
        signal = exit.signal,
        "command done"
    );
    Ok(Output {
        exit,
        stdout: String::from_utf8_lossy(&out.captured).into_owned(),
        stdout_dropped: out.dropped,
        stderr: err.tail.into_iter().collect::<Vec<_>>().join("\n"),
    })
}

/// Waits for a reader until `deadline`, then stops it; what it read either way.
async fn finish(
    task: Option<&mut JoinHandle<Read>>,
    deadline: tokio::time::Instant,
    stop: &CancellationToken,
) -> Read {
    let Some(task) = task else {
        return Read::default();
    };
    match tokio::time::timeout_at(deadline, &mut *task).await {
        Ok(read) => read.unwrap_or_default(),
        Err(_) => {
            tracing::debug!("output still open after the command ended: a background child holds it");
            stop.cancel();
            task.await.unwrap_or_default()
        }
    }
}

/// One output stream of a command: logged line by line, stdout captured, stderr's end kept.
struct Reader {
    tag: String,
    ring: LogRing,
    stderr: bool,
    /// How much to capture (0: nothing).
    capture: usize,
}

/// What a [`Reader`] kept.
#[derive(Default)]
struct Read {
    captured: Vec<u8>,
    /// Bytes beyond the capture.
    dropped: u64,
    /// The last lines, at most [`STDERR_TAIL`] bytes (stderr only).
    tail: VecDeque<String>,
    tail_bytes: usize,
}

impl Reader {
    fn new(what: &str, ring: &LogRing, stderr: bool, capture: usize) -> Reader {
        Reader {
            tag: what.to_string(),
            ring: ring.clone(),
            stderr,
            capture,
        }
    }

    async fn read(self, mut stream: impl AsyncRead + Unpin, stop: CancellationToken) -> Read {
        let mut read = Read::default();
        let mut lines = LineSplitter::new(LINE_BYTES);
        let mut chunk = vec![0u8; 8192];
        loop {
            let n = tokio::select! {
                n = stream.read(&mut chunk) => n.unwrap_or(0),
                _ = stop.cancelled() => 0,
            };
            if n == 0 {
                break;
            }
            let bytes = &chunk[..n];
            let room = self.capture.saturating_sub(read.captured.len()).min(n);
            read.captured.extend_from_slice(&bytes[..room]);
            read.dropped = read.dropped.saturating_add((n - room) as u64);
            for line in lines.feed(bytes) {
                self.log(&mut read, &line);
            }
        }
        if let Some(line) = lines.finish() {
            self.log(&mut read, &line);
        }
        if self.capture == 0 {
            read.dropped = 0;
        }
        read
    }

    fn log(&self, read: &mut Read, line: &CutLine) {
        let tag = &self.tag;
        // The ring cuts the tagged line again if needed, counting the reader's cut in its marker.
        self.ring.push_cut(
            &format!("[{tag}] {}", String::from_utf8_lossy(&line.kept)),
            line.dropped,
        );
        let text = line.text();
        if self.stderr {
            eprintln!("[{tag}] {text}");
            read.tail_bytes += text.len();
            read.tail.push_back(text);
            while read.tail_bytes > STDERR_TAIL && read.tail.len() > 1 {
                if let Some(old) = read.tail.pop_front() {
                    read.tail_bytes -= old.len();
                }
            }
        } else {
            println!("[{tag}] {text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> CommandLine {
        CommandLine::Shell(script.to_string())
    }

    #[tokio::test]
    async fn a_background_child_holding_the_pipes_does_not_hold_the_caller() {
        let ring = LogRing::default();
        // setsid puts the sleeper in a session of its own: the group kill does not reach it and
        // it keeps stdout and stderr open for 30 s.
        let started = std::time::Instant::now();
        let out = run(
            "hooks.test",
            &sh("setsid sleep 30 & echo answered; echo said >&2"),
            &BTreeMap::new(),
            None,
            Duration::from_secs(20),
            &ring,
        )
        .await
        .expect("the hook runs");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(10), "took {took:?}");
        assert!(out.success());
        assert_eq!(out.stdout, "answered\n");
        assert_eq!(out.stderr, "said");
    }

    #[tokio::test]
    async fn a_timeout_with_the_pipes_held_returns_at_the_timeout() {
        let ring = LogRing::default();
        let started = std::time::Instant::now();
        let err = run(
            "hooks.test",
            &sh("setsid sleep 30 & sleep 30"),
            &BTreeMap::new(),
            None,
            Duration::from_millis(300),
            &ring,
        )
        .await
        .expect_err("times out");
        assert!(matches!(err, ShellError::Timeout { .. }), "{err}");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(10), "took {took:?}");
    }

    #[tokio::test]
    async fn stdout_is_captured_up_to_its_cap_and_lines_are_cut() {
        let ring = LogRing::default();
        // 3 MiB on one line, without a newline, then a short stderr line.
        let out = run(
            "hooks.test",
            &sh("head -c 3145728 /dev/zero | tr '\\0' x; echo done >&2"),
            &BTreeMap::new(),
            None,
            Duration::from_secs(20),
            &ring,
        )
        .await
        .expect("the hook runs");
        assert!(out.success());
        assert_eq!(out.stdout.len(), MAX_STDOUT);
        assert_eq!(out.stdout_dropped, (3 << 20) - MAX_STDOUT as u64);
        let logged = ring.tail(usize::MAX);
        let long = logged
            .iter()
            .find(|l| l.starts_with("[hooks.test] xxx"))
            .expect("the long line is logged");
        assert!(long.len() < LINE_BYTES + 100, "{}", long.len());
        assert!(
            long.ends_with(&crate::logs::marker(
                (3 << 20) - LINE_BYTES as u64 + "[hooks.test] ".len() as u64
            )),
            "{}",
            &long[long.len() - 60..]
        );
        assert!(logged.iter().any(|l| l == "[hooks.test] done"));
    }
}
