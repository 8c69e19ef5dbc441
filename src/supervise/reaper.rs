//! Zombie reaping when ochopod is PID 1 (or a child subreaper).
//!
//! A process whose parent dies is re-parented to PID 1, or to the nearest ancestor that declared
//! itself a "child subreaper" (`PR_SET_CHILD_SUBREAPER`). Either way those orphans become *our*
//! children, and unless somebody calls `wait` on them they stay zombies forever.
//!
//! The trap: tokio also waits for the children it spawned (the process, hooks, checks). A blanket
//! `waitpid(-1)` here would steal their exit status and tokio would see `ECHILD`. So this module
//! only ever waits for a *specific* pid that it knows tokio does not own:
//!
//! * every child ochopod spawns goes through [`spawn`], which records its pid in [`OWNED`] while
//!   holding the lock, so a child that exits at once cannot be mistaken for an orphan;
//! * on each `SIGCHLD` the reaper lists our zombie children from `/proc/self/task/*/children`
//!   (or, on kernels without that file, a scan of `/proc/*/stat` for our ppid) and reaps those
//!   not in [`OWNED`] with `waitpid(pid, WNOHANG)`.
//!
//! `SIGCHLD`s coalesce, so each wake-up scans until nothing is left. The task stops with the
//! shutdown token; a last pass runs at exit.

use std::collections::HashSet;
use std::io;
use std::sync::Mutex;

use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Pids of the children tokio waits for. Held while spawning and while deciding what to reap.
static OWNED: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

fn owned() -> std::sync::MutexGuard<'static, Option<HashSet<i32>>> {
    // A poisoned lock only means another thread panicked while holding it; the set is still a
    // valid set of pids, so keep going rather than leave zombies.
    OWNED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Spawns `cmd`, recording the pid as one tokio will wait for.
pub fn spawn(cmd: &mut Command) -> io::Result<Child> {
    let mut guard = owned();
    let child = cmd.spawn()?;
    if let Some(pid) = child.id() {
        guard.get_or_insert_with(HashSet::new).insert(pid as i32);
    }
    Ok(child)
}

/// Forgets a pid once tokio has reaped it, so a later orphan reusing it is reaped.
pub fn forget(pid: u32) {
    if let Some(set) = owned().as_mut() {
        set.remove(&(pid as i32));
    }
}

/// Declares ochopod a child subreaper, so orphans of its process tree come back to it even when it
/// is not PID 1 (and `stop` can see the whole tree go). Returns whether reaping is needed.
pub fn become_subreaper() -> bool {
    if std::process::id() == 1 {
        return true;
    }
    match nix::sys::prctl::set_child_subreaper(true) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot become a child subreaper; orphans go to PID 1");
            false
        }
    }
}

/// Reaps orphans until `shutdown` fires.
pub async fn run(shutdown: CancellationToken) {
    let mut sigchld = match signal(SignalKind::child()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGCHLD: orphans will not be reaped");
            return;
        }
    };
    loop {
        reap_orphans();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = sigchld.recv() => {}
        }
    }
    reap_orphans();
}

/// One pass: reap every zombie child that tokio does not own. Returns how many were reaped.
///
/// The listing happens without the lock, so a spawn is never held up by it; only the decision
/// (is this pid tokio's?) and the `waitpid` of a specific orphan hold it. That is safe: a pid
/// tokio owns was recorded under the lock before anyone could see it exit.
pub fn reap_orphans() -> usize {
    let zombies = zombie_children();
    if zombies.is_empty() {
        return 0;
    }
    let guard = owned();
    let mut reaped = 0;
    for pid in zombies {
        if guard.as_ref().is_some_and(|set| set.contains(&pid)) {
            continue;
        }
        if let Ok(status) = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            tracing::debug!(pid, ?status, "reaped an orphan");
            reaped += 1;
        }
    }
    reaped
}

/// Our children in state `Z`. Each thread's `/proc/self/task/<tid>/children` lists its children
/// (orphans are adopted by one of our threads), which costs in proportion to our own children;
/// kernels without that file (CONFIG_PROC_CHILDREN) get a scan of every `/proc/<pid>/stat`.
fn zombie_children() -> Vec<i32> {
    let is_zombie = |pid: i32, parent: Option<i32>| {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        matches!(parse_stat(&stat), Some((state, ppid)) if state == 'Z' && parent.is_none_or(|p| p == ppid))
    };
    let mut children = Vec::new();
    let mut listed = false;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                listed = true;
                children.extend(text.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
    }
    if listed {
        return children.into_iter().filter(|&pid| is_zombie(pid, None)).collect();
    }
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| is_zombie(pid, Some(me)))
        .collect()
}

/// `(state, ppid)` from a `/proc/<pid>/stat` line. The command name is in parentheses and may
/// itself contain spaces and parentheses, so parse from the last `)`.
fn parse_stat(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_names() {
        assert_eq!(parse_stat("42 (sleep) S 1 42 42 0"), Some(('S', 1)));
        assert_eq!(parse_stat("42 (a) b) (c) Z 7 42 42 0"), Some(('Z', 7)));
        assert_eq!(parse_stat("garbage"), None);
    }
}
