//! `ochopod up`: a throwaway ZooKeeper and N pods on consecutive loopback addresses, all
//! configured together, and all gone after Ctrl-C.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::harness::pod::{alive, binary, PodDir};

#[test]
fn up_forms_a_local_cluster_and_ctrl_c_stops_everything() {
    let dir = PodDir::new(
        r#"
cluster: local
ports: [9000]
settings: { damper: 500ms, min_size: 3 }
process:
  command: "exec sleep 600"
"#,
    );
    let port = crate::harness::free_port("127.0.0.1");
    let mut child = Command::new(binary())
        .args([
            "up",
            "--replicas",
            "3",
            "--plain",
            "--first-ip",
            "127.0.99.2",
            "--port",
        ])
        .arg(port.to_string())
        .arg(dir.path())
        .env_remove("OCHOPOD_ZK")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ochopod up");
    let stdout = child.stdout.take().expect("stdout");
    // On a failed assertion, still stop `up` (and so its pods and ZooKeeper).
    let _guard = Interrupt(child.id());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Wait for a view where the 3 pods run generation 1, one of them leading.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut block = Vec::new();
    let configured = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(remaining) else {
            break None;
        };
        if !line.trim().is_empty() {
            block.push(line);
            continue;
        }
        let running = block
            .iter()
            .filter(|l| l.contains(" running ") && l.contains("gen 1"))
            .count();
        let leaders = block.iter().filter(|l| l.contains(" leader ")).count();
        if running == 3 && leaders == 1 {
            break Some(std::mem::take(&mut block));
        }
        block.clear();
    };
    let view = configured.expect("3 pods configured within 60 s");
    let mut seqs: Vec<&str> = view.iter().filter_map(|l| l.split_whitespace().nth(1)).collect();
    seqs.sort();
    assert_eq!(seqs, vec!["#1", "#2", "#3"], "{view:?}");
    let pids: Vec<u32> = pids_of_pods(child.id());
    let cmdlines: Vec<String> = pids
        .iter()
        .map(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .unwrap_or_default()
                .replace('\0', " ")
        })
        .collect();
    assert_eq!(pids.len(), 3, "three ochopod run processes: {cmdlines:?}");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).expect("SIGINT");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
    for pid in pids {
        assert!(!alive(pid), "pod {pid} still running after Ctrl-C");
    }
}

/// The `ochopod run` processes started by `up` (its children on the test's loopback range).
fn pids_of_pods(up: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let parent = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .map(str::trim);
        if comm.trim() != "ochopod" || parent != Some(up.to_string().as_str()) {
            continue;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if env
            .split(|b| *b == 0)
            .any(|kv| kv.starts_with(b"OCHOPOD_IP=127.0.99."))
        {
            out.push(pid);
        }
    }
    out
}

struct Interrupt(u32);

impl Drop for Interrupt {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0 as i32), Signal::SIGINT);
    }
}
