//! ochopod as PID 1 of a new PID namespace: orphans of the process tree are reaped.

use std::time::Duration;

use crate::harness::eventually;
use crate::harness::pod::{Pod, PodDir, PodOptions};

/// (pid, state) of the processes whose parent is `ppid`.
fn children_of(ppid: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r.to_string()) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if f.next().and_then(|p| p.parse::<u32>().ok()) == Some(ppid) {
            out.push((pid, state));
        }
    }
    out
}

const ORPHANS: usize = 40;

/// Starts ochopod as PID 1 with a process that leaves ORPHANS orphans which die quickly; returns
/// the pod and ochopod's pid as seen from here.
async fn pid1_pod(dir: &PodDir, reap: bool) -> (Pod, u32) {
    let mut opts = PodOptions {
        prefix: [
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child=SIGTERM",
        ]
        .map(String::from)
        .to_vec(),
        ..PodOptions::default()
    };
    if !reap {
        opts.env.insert("OCHOPOD_REAP".into(), "off".into());
    }
    let pod = Pod::start(dir, opts);
    pod.wait_info("the process to run", Duration::from_secs(20), |i| {
        i["process"] == "running"
    })
    .await;
    let ochopod = eventually(Duration::from_secs(5), "ochopod under unshare", || async {
        children_of(pod.pid()).first().map(|c| c.0)
    })
    .await;
    let status = std::fs::read_to_string(format!("/proc/{ochopod}/status")).expect("status");
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).expect("NSpid");
    assert!(
        nspid.trim_end().ends_with("\t1"),
        "ochopod is PID 1 in its namespace: {nspid}"
    );
    eventually(Duration::from_secs(20), "the orphans to be made", || async {
        std::fs::metadata(pod.home_file("spawned")).ok().map(|_| ())
    })
    .await;
    (pod, ochopod)
}

fn orphan_maker() -> PodDir {
    PodDir::new(&format!(
        r#"
cluster: orphans
process:
  command: |
    for i in $(seq {ORPHANS}); do (sleep 0.2 &); done
    touch {{{{env.OCHOPOD_HOME}}}}/spawned
    exec sleep 60
"#
    ))
}

#[tokio::test]
async fn reaps_every_orphan_as_pid_1() {
    let dir = orphan_maker();
    let (pod, ochopod) = pid1_pod(&dir, true).await;
    // Once the sleeps are over, ochopod's only child is the process itself: no zombie left.
    eventually(Duration::from_secs(10), "no zombie under ochopod", || async {
        let kids = children_of(ochopod);
        (kids.iter().all(|k| k.1 != 'Z') && kids.len() == 1).then_some(())
    })
    .await;
    stop(pod, ochopod).await;
}

#[tokio::test]
async fn without_the_reaper_orphans_stay_zombies() {
    // The control experiment: it shows the test above can fail.
    let dir = orphan_maker();
    let (pod, ochopod) = pid1_pod(&dir, false).await;
    eventually(Duration::from_secs(10), "zombies to pile up", || async {
        let zombies = children_of(ochopod).iter().filter(|k| k.1 == 'Z').count();
        (zombies >= ORPHANS).then_some(())
    })
    .await;
    stop(pod, ochopod).await;
}

/// SIGTERM to ochopod itself (unshare does not forward it), then wait for unshare to end.
async fn stop(mut pod: Pod, ochopod: u32) {
    let pid = nix::unistd::Pid::from_raw(ochopod as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("TERM ochopod");
    pod.wait_exit(Duration::from_secs(20)).await;
}
