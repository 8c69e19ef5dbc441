//! Readings taken from outside the processes measured: `/proc/<pid>` (CPU, memory, I/O) and
//! ZooKeeper's `mntr` four-letter word. A [`Usage`] is one reading of everything, so that a
//! phase's cost is the difference of two.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::tracker::TrafficCount;

/// Clock ticks per second in `/proc/<pid>/stat` (USER_HZ, 100 on Linux whatever the kernel's HZ).
const TICKS: f64 = 100.0;

/// utime + stime of `pid` (`self` for this process), in seconds.
pub fn cpu(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: fields are counted after its closing paren.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the name and state.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime.saturating_add(stime) as f64 / TICKS)
}

/// (VmRSS, VmHWM) of `pid`, in MiB.
pub fn memory(pid: &str) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse::<f64>().ok()
    };
    Some((kib("VmRSS:")? / 1024.0, kib("VmHWM:")? / 1024.0))
}

/// (rchar, wchar) of `pid`: bytes through read/write syscalls, sockets and files alike. For the
/// ZooKeeper JVM that is its client traffic plus its transaction log.
pub fn io(pid: &str) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let get = |key: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key))?
            .trim()
            .parse()
            .ok()
    };
    Some((get("rchar:")?, get("wchar:")?))
}

/// A four-letter word's answer (one plain TCP connection, 3 s at most).
async fn four(zk: &str, word: &str) -> Option<String> {
    let read = async {
        let mut s = tokio::net::TcpStream::connect(zk).await.ok()?;
        s.write_all(word.as_bytes()).await.ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        Some(out)
    };
    tokio::time::timeout(Duration::from_secs(3), read).await.ok()?
}

/// Requests received on the connection of session `sid` (`cons`: `...,recved=N,...,sid=0x..,`):
/// one session's own requests, heartbeats included, whatever the other sessions do.
pub async fn session_received(zk: &str, sid: i64) -> Option<u64> {
    let out = four(zk, "cons").await?;
    let tag = format!("sid={sid:#x},");
    let line = out.lines().find(|l| l.contains(&tag))?;
    line.split(['(', ','])
        .find_map(|f| f.strip_prefix("recved="))?
        .parse()
        .ok()
}

/// From `mntr`: `zk_packets_received`, `zk_packets_sent`, and the reads and writes on the
/// `/ochopod` tree (ZooKeeper 3.6+ counts requests per top-level znode: heartbeats and session
/// set-up are not among them, so a change's own requests are exact, whatever the pings).
pub async fn packets(zk: &str) -> Option<(u64, u64, u64)> {
    let out = four(zk, "mntr").await?;
    let get = |key: &str| -> Option<u64> {
        out.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('\t'))?
            .trim()
            .parse()
            .ok()
    };
    let ops = [
        "zk_cnt_ochopod_read_per_namespace",
        "zk_cnt_ochopod_write_per_namespace",
    ]
    .iter()
    .map(|k| get(k).unwrap_or(0))
    .fold(0u64, u64::saturating_add);
    Some((get("zk_packets_received")?, get("zk_packets_sent")?, ops))
}

/// The processes measured.
#[derive(Debug, Clone)]
pub struct Pids {
    pub leader: String,
    pub zk: Option<String>,
    /// The leader's ZooKeeper session, for its own request count.
    pub leader_sid: Option<i64>,
}

/// One reading of everything a phase costs.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub at: Instant,
    pub leader_cpu: f64,
    pub swarm_cpu: f64,
    pub zk_cpu: f64,
    /// ZooKeeper requests received, answers and notifications sent.
    pub zk_received: u64,
    pub zk_sent: u64,
    /// Reads and writes on `/ochopod` (no heartbeats).
    pub zk_ops: u64,
    /// Requests received from the leader's session alone.
    pub leader_zk: u64,
    /// The ZooKeeper JVM's rchar + wchar.
    pub zk_io: u64,
    pub http: TrafficCount,
}

impl Usage {
    pub async fn now(zk: &str, pids: &Pids, http: TrafficCount) -> Usage {
        let (zk_received, zk_sent, zk_ops) = packets(zk).await.unwrap_or_default();
        let zk_pid = pids.zk.as_deref();
        let leader_zk = match pids.leader_sid {
            Some(sid) => session_received(zk, sid).await.unwrap_or_default(),
            None => 0,
        };
        Usage {
            leader_zk,
            at: Instant::now(),
            leader_cpu: cpu(&pids.leader).unwrap_or_default(),
            swarm_cpu: cpu("self").unwrap_or_default(),
            zk_cpu: zk_pid.and_then(cpu).unwrap_or_default(),
            zk_received,
            zk_sent,
            zk_ops,
            zk_io: zk_pid
                .and_then(io)
                .map(|(r, w)| r.saturating_add(w))
                .unwrap_or_default(),
            http,
        }
    }
}

/// What happened between two readings, ZooKeeper requests net of the idle rate.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Cost {
    pub seconds: f64,
    pub leader_cpu_s: f64,
    pub swarm_cpu_s: f64,
    pub zk_cpu_s: f64,
    /// Requests received minus `idle` per second over the interval.
    pub zk_requests: f64,
    pub zk_requests_raw: u64,
    pub zk_sent: u64,
    /// Reads and writes on `/ochopod`: the change's own requests, no heartbeat among them.
    pub zk_ops: u64,
    /// Requests from the leader's session alone (`cons`), heartbeats included.
    pub leader_zk_requests: u64,
    pub zk_io_bytes: u64,
    pub http_requests: u64,
    pub http_bytes: u64,
}

impl Cost {
    pub fn between(a: &Usage, b: &Usage, idle_per_s: f64) -> Cost {
        let seconds = b.at.saturating_duration_since(a.at).as_secs_f64();
        let raw = b.zk_received.saturating_sub(a.zk_received);
        let http = b.http.since(&a.http);
        Cost {
            seconds,
            leader_cpu_s: b.leader_cpu - a.leader_cpu,
            swarm_cpu_s: b.swarm_cpu - a.swarm_cpu,
            zk_cpu_s: b.zk_cpu - a.zk_cpu,
            zk_requests: raw as f64 - idle_per_s * seconds,
            zk_requests_raw: raw,
            zk_sent: b.zk_sent.saturating_sub(a.zk_sent),
            zk_ops: b.zk_ops.saturating_sub(a.zk_ops),
            leader_zk_requests: b.leader_zk.saturating_sub(a.leader_zk),
            zk_io_bytes: b.zk_io.saturating_sub(a.zk_io),
            http_requests: http.total_requests(),
            http_bytes: http.total_bytes(),
        }
    }
}
