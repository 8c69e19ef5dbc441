//! One run of the process: spawned in its own process group, its output copied to ochopod's
//! stdout/stderr and the log ring, stopped as a group.
//!
//! Why a process group: the process may be a shell script that forks the real server (or a JVM
//! that forks helpers). Signalling only the direct child would leave those behind, still holding
//! ports and files. `setpgid(0, 0)` at spawn makes the child the leader of a new group whose id is
//! its pid, and `killpg` reaches the whole tree, grandchildren included, unless one of them moved
//! to a group of its own on purpose.

use std::collections::BTreeMap;
use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::reaper;
use crate::logs::{marker, LineSplitter, LogRing, LINE_BYTES};
use crate::spec::CommandLine;

/// How a run ended, as a shell would report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Exit {
    /// The exit code, when the process exited.
    pub code: Option<i32>,
    /// The signal number, when a signal killed it.
    pub signal: Option<i32>,
}

impl Exit {
    pub fn from_status(status: ExitStatus) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        Exit {
            code: status.code(),
            signal: status.signal(),
        }
    }

    /// The code ochopod itself exits with: the child's, or 128+n when signal n killed it.
    pub fn shell_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 1,
        }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// What to run: the rendered command line, environment and working directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub command: CommandLine,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
}

/// Builds a tokio command for a command line: a list is exec'd as is, a string runs under sh -c.
///
/// Every process ochopod starts (the process, hooks, checks, `apply`, `probe`) is built here, so
/// two things hold for all of them: ochopod's secrets are not in their environment (see
/// [`crate::spec::is_secret_env`]; a caller's explicit `envs` afterwards still wins), and, when
/// ochopod is not PID 1, they are killed if ochopod dies (see [`die_with_ochopod`]).
pub fn command(line: &CommandLine) -> Command {
    let mut cmd = match line {
        CommandLine::Exec(argv) => {
            let mut cmd = Command::new(argv.first().map(String::as_str).unwrap_or("/bin/false"));
            cmd.args(argv.iter().skip(1));
            cmd
        }
        CommandLine::Shell(script) => {
            let mut cmd = Command::new("/bin/sh");
            cmd.arg("-c").arg(script);
            cmd
        }
    };
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(crate::spec::is_secret_env) {
            cmd.env_remove(name);
        }
    }
    die_with_ochopod(&mut cmd);
    cmd
}

/// Makes the kernel SIGKILL the started process when ochopod dies (`PR_SET_PDEATHSIG`), so a
/// crash or a `kill -9` of ochopod never leaves an orphaned server holding its ports. Not needed
/// when ochopod is PID 1: the kernel then kills its whole PID namespace with it.
///
/// The death signal fires when the *thread* that forked exits, not only the process. tokio forks
/// from the thread that polls the spawning task: a runtime worker (or the main thread in
/// `block_on`), never a `spawn_blocking` thread, and those live as long as the runtime, which is
/// as long as ochopod. Only the direct child is covered: what it forks in turn is reached through
/// its process group while ochopod lives, and is re-parented when it does not.
fn die_with_ochopod(cmd: &mut Command) {
    let parent = nix::unistd::getpid();
    if parent.as_raw() == 1 {
        return;
    }
    // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe
    // calls are allowed. It makes two system calls (prctl, getppid) and builds an `io::Error`
    // from a raw errno, none of which allocates or takes a lock.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
                .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
            // ochopod died between the fork and the prctl: the signal will never come.
            if nix::unistd::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// A running process.
pub struct Running {
    child: tokio::process::Child,
    pid: u32,
    pub started: Instant,
}

impl Running {
    /// Spawns the process in a new process group, piping its output into `ring` (and through to
    /// ochopod's own stdout/stderr, so `docker logs` shows it).
    pub fn spawn(launch: &Launch, ring: &LogRing) -> io::Result<Running> {
        let mut cmd = command(&launch.command);
        cmd.envs(&launch.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        if let Some(cwd) = &launch.cwd {
            cmd.current_dir(cwd);
        }
        let mut child = reaper::spawn(&mut cmd)?;
        let pid = child
            .id()
            .ok_or_else(|| io::Error::other("the process exited before it had a pid"))?;
        if let Some(out) = child.stdout.take() {
            tokio::spawn(copy_lines(out, ring.clone(), false));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(copy_lines(err, ring.clone(), true));
        }
        Ok(Running {
            child,
            pid,
            started: Instant::now(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the direct child to exit. Cancel-safe: can be raced in a `select!`.
    pub async fn wait(&mut self) -> Exit {
        let exit = match self.child.wait().await {
            Ok(status) => Exit::from_status(status),
            // Only ECHILD can land here: somebody else reaped our child. Say so loudly, it
            // means a reaping bug, and report it as a failure so the restart policy applies.
            Err(e) => {
                tracing::error!(pid = self.pid, error = %e, "lost the exit status of the process");
                Exit {
                    code: None,
                    signal: None,
                }
            }
        };
        reaper::forget(self.pid);
        exit
    }

    /// Signals the whole process group. A group already gone is not an error.
    pub fn signal_group(&self, sig: Signal) -> nix::Result<()> {
        signal_group(self.pid, sig)
    }

    /// Stops the process: `signal` to the group, then `grace` for it to go, then KILL
    /// (`grace` zero means wait forever). Waits for the group's last member, not only the direct
    /// child, so that nothing of this run outlives the stop. Returns how the child ended.
    pub async fn stop(mut self, signal: Signal, grace: Duration) -> Exit {
        // grace is at most spec::MAX_DURATION; out of the clock's range it counts as forever.
        let deadline = (!grace.is_zero())
            .then(|| tokio::time::Instant::now().checked_add(grace))
            .flatten();
        let _ = self.signal_group(signal);
        let exit = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, self.wait()).await {
                Ok(exit) => exit,
                Err(_) => {
                    tracing::warn!(
                        pid = self.pid,
                        grace_s = grace.as_secs_f64(),
                        "grace period over: sending KILL"
                    );
                    let _ = self.signal_group(Signal::SIGKILL);
                    self.wait().await
                }
            },
            None => self.wait().await,
        };
        // The leader is gone; stragglers of its group (workers that ignore the stop signal) get the
        // rest of the grace period, then KILL. Polling is fine here: it only runs while stopping.
        while group_alive(self.pid) {
            match deadline {
                Some(d) if tokio::time::Instant::now() >= d => {
                    let _ = signal_group(self.pid, Signal::SIGKILL);
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        exit
    }
}

/// Sends `sig` to the process group led by `pid`.
pub fn signal_group(pid: u32, sig: Signal) -> nix::Result<()> {
    match killpg(Pid::from_raw(pid as i32), sig) {
        Err(nix::errno::Errno::ESRCH) => Ok(()),
        other => other,
    }
}

/// Whether any process of the group led by `pid` is still alive (zombies aside).
pub fn group_alive(pid: u32) -> bool {
    killpg(Pid::from_raw(pid as i32), None).is_ok()
}

/// Copies one output stream line by line to ochopod's own stream and the ring, each line cut at
/// [`LINE_BYTES`] with a marker: a line that never ends costs that much memory, not more. Bytes
/// that are not UTF-8 are kept on ochopod's stream as they are and shown lossily in the ring.
async fn copy_lines(mut stream: impl AsyncRead + Unpin, ring: LogRing, stderr: bool) {
    let mut out: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = if stderr {
        Box::new(tokio::io::stderr())
    } else {
        Box::new(tokio::io::stdout())
    };
    let mut lines = LineSplitter::new(LINE_BYTES);
    let mut chunk = vec![0u8; 8192];
    loop {
        let (done, eof) = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => (lines.finish().into_iter().collect(), true),
            Ok(n) => (lines.feed(&chunk[..n]), false),
        };
        for line in &done {
            ring.push_cut(&String::from_utf8_lossy(&line.kept), line.dropped);
            let _ = out.write_all(&line.kept).await;
            if line.dropped > 0 {
                let _ = out.write_all(marker(line.dropped).as_bytes()).await;
            }
            let _ = out.write_all(b"\n").await;
        }
        if !done.is_empty() {
            let _ = out.flush().await;
        }
        if eof {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_read_like_a_shell() {
        assert_eq!(
            Exit {
                code: Some(3),
                signal: None
            }
            .shell_code(),
            3
        );
        assert_eq!(
            Exit {
                code: None,
                signal: Some(9)
            }
            .shell_code(),
            137
        );
        assert!(Exit {
            code: Some(0),
            signal: None
        }
        .success());
    }
}
