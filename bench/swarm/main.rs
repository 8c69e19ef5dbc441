//! The swarm: N simulated pods in one process against one real `ochopod run` leader and a real
//! ZooKeeper, to measure what one machine cannot run as N processes (issue 10, docs/benchmarks.md).
//!
//! Each simulated pod ([`pod`]) has its own ZooKeeper session and registration (the crate's own
//! `zk` functions, as the sync loop calls them) and its own control listener on 127.88.x.y
//! ([`control`]), which decodes every map with the crate's validating types ([`decode`]) and
//! answers as a real pod would; no process is supervised. The leader ([`leader`]) is the release
//! binary, started first so it wins the election.
//!
//! Phases, each timed and costed ([`probe`]): formation (N pods register; from the last
//! registration to every pod's `ok` for a map of N+1 pods, the leader's own included), idle
//! (ZooKeeper's heartbeat rate, subtracted from every phase), one pod joining, one pod lost (its
//! session closed: its znode vanishes without `leaving`). One JSON object on stdout; progress on
//! stderr. `bench/swarm.py` starts ZooKeeper, runs the sizes and draws the table and plot.

mod control;
mod decode;
mod leader;
mod pod;
mod probe;
mod tracker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};

use crate::leader::Leader;
use crate::pod::{Shared, SimPod};
use crate::probe::{Cost, Pids, Usage};
use crate::tracker::Tracker;

#[derive(Parser, Debug)]
#[command(about = "N simulated ochopod pods against one real leader and ZooKeeper")]
struct Args {
    /// ZooKeeper, host:port (bench/swarm.py starts one).
    #[arg(long)]
    zk: String,
    /// The ZooKeeper JVM's pid, for its CPU and I/O.
    #[arg(long)]
    zk_pid: Option<u32>,
    /// The leader: a release build of ochopod.
    #[arg(long, default_value = "target/release/ochopod")]
    binary: PathBuf,
    /// Simulated pods (the cluster has one more: the leader).
    #[arg(long, default_value_t = 100)]
    pods: usize,
    #[arg(long, default_value_t = 1000)]
    damper_ms: u64,
    /// OCHOPOD_ZK_SESSION_TIMEOUT of the leader and of every simulated pod.
    #[arg(long, default_value = "10s")]
    session_timeout: String,
    /// The leader's settings.parallelism (its default when unset).
    #[arg(long)]
    parallelism: Option<u32>,
    /// The swarm's tokio worker threads (the leader competes with them for the cores).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Pods connecting and registering at once.
    #[arg(long, default_value_t = 100)]
    connect_parallelism: usize,
    /// Seconds each phase may take before the run gives up and says how far it got.
    #[arg(long, default_value_t = 300)]
    phase_timeout: u64,
    /// Seconds of quiet over which ZooKeeper's idle request rate is measured.
    #[arg(long, default_value_t = 10)]
    idle: u64,
    /// The leader is killed past this RSS (MiB), and the run says so.
    #[arg(long, default_value_t = 4096.0)]
    leader_rss_cap_mib: f64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // `target=level` directives, as ochopod's own OCHOPOD_LOG (no regex filters).
    let filter: tracing_subscriber::filter::Targets = std::env::var("SWARM_LOG")
        .ok()
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| tracing_subscriber::filter::Targets::new().with_default(tracing::Level::WARN));
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();
    raise_nofile();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(&args))?;
    println!("{result}");
    // Sessions and listeners end with the process; no orderly goodbye of N pods to wait for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// One listener and one ZooKeeper socket per pod, plus the leader's connections to them.
fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            tracing::warn!(error = %e, "cannot raise RLIMIT_NOFILE");
        }
    }
}

fn say(what: &str) {
    eprintln!("swarm: {what}");
}

async fn run(args: &Args) -> anyhow::Result<Value> {
    let n = args.pods;
    let damper = Duration::from_millis(args.damper_ms);
    let phase = Duration::from_secs(args.phase_timeout);
    let dir = tempfile::tempdir()?;
    let mut leader = Leader::start(
        &leader::Settings {
            binary: &args.binary,
            dir: dir.path(),
            zk: &args.zk,
            session_timeout: &args.session_timeout,
            damper,
            parallelism: args.parallelism,
        },
        args.leader_rss_cap_mib,
    )?;
    if let Err(status) = leader
        .wait_configured(1, Instant::now() + Duration::from_secs(60))
        .await
    {
        anyhow::bail!("the leader did not configure itself: {status}");
    }
    say(&format!(
        "leader {} configured alone; starting {n} pods",
        leader.pid
    ));

    let mut zk = ochopod::zk::ZkConfig::from_vars(|v| match v {
        "OCHOPOD_ZK" => Some(args.zk.clone()),
        "OCHOPOD_ZK_SESSION_TIMEOUT" => Some(args.session_timeout.clone()),
        _ => None,
    })?;
    zk.auth = None;
    let pids = Pids {
        leader: leader.pid.clone(),
        zk: args.zk_pid.map(|p| p.to_string()),
        leader_sid: leader_session(&leader, &zk).await,
    };
    let shared = Arc::new(Shared {
        acls: ochopod::zk::Acls::new(&zk),
        zk,
        paths: ochopod::zk::paths::ClusterPaths::new("default.swarm"),
        cluster: "swarm".into(),
        namespace: "default".into(),
        maps: Default::default(),
        tracker: Tracker::new(n + 1),
        traffic: Default::default(),
    });
    let mut pods = Vec::with_capacity(n + 1);
    for idx in 0..=n {
        let ip = pod::address(idx).ok_or_else(|| anyhow::anyhow!("no address for pod {idx}"))?;
        let seq = u32::try_from(idx + 2)?;
        pods.push(Arc::new(SimPod::new(idx, ip, seq, &shared)));
    }
    let usage = |shared: &Arc<Shared>| Usage::now(&args.zk, &pids, shared.traffic.count());
    let mut out = json!({ "pods": n, "damper_s": damper.as_secs_f64(), "threads": args.threads,
                          "session_timeout": args.session_timeout, "parallelism": args.parallelism });

    // Formation.
    let u0 = usage(&shared).await;
    let last_registration = register(&pods[..n], &shared, args.connect_parallelism).await?;
    out["registration_s"] = json!(last_registration.duration_since(u0.at).as_secs_f64());
    say(&format!("{n} pods registered in {:.2} s", out["registration_s"]));
    let live: Vec<usize> = (0..n).collect();
    let formed = shared
        .tracker
        .wait_all(&live, n + 1, (0, 0), Instant::now() + phase)
        .await;
    let (at, v1) = match formed {
        Ok(done) => done,
        Err(progress) => return Ok(gave_up(out, "formation", progress, &leader, &pids).await),
    };
    let after_last = at.saturating_duration_since(last_registration).as_secs_f64();
    out["formation_s"] = json!(after_last);
    out["formation_beyond_damper_s"] = json!(after_last - damper.as_secs_f64());
    say(&format!(
        "formed: every pod got ok {after_last:.2} s after the last registration"
    ));
    if let Err(status) = leader.wait_configured(n + 1, Instant::now() + phase).await {
        out["snapshot"] = json!(format!("not committed: {status}"));
        return Ok(finish(out, &leader, &pids).await);
    }
    let u1 = usage(&shared).await;
    out["formation"] = json!(Cost::between(&u0, &u1, 0.0));

    // Idle: session heartbeats only.
    let i0 = usage(&shared).await;
    tokio::time::sleep(Duration::from_secs(args.idle)).await;
    let i1 = usage(&shared).await;
    let idle = Cost::between(&i0, &i1, 0.0);
    let idle_rate = idle.zk_requests_raw as f64 / idle.seconds.max(0.001);
    out["idle"] = json!(idle);
    out["idle_zk_requests_per_s"] = json!(idle_rate);

    // One pod joins.
    let j0 = usage(&shared).await;
    pods[n].start(&shared).await?;
    let live: Vec<usize> = (0..=n).collect();
    let v2 = match shared
        .tracker
        .wait_all(&live, n + 2, v1, Instant::now() + phase)
        .await
    {
        Ok((at, v)) => {
            out["join_s"] = json!(at.saturating_duration_since(j0.at).as_secs_f64());
            v
        }
        Err(progress) => return Ok(gave_up(out, "join", progress, &leader, &pids).await),
    };
    if let Err(status) = leader.wait_configured(n + 2, Instant::now() + phase).await {
        out["snapshot"] = json!(format!("not committed after the join: {status}"));
        return Ok(finish(out, &leader, &pids).await);
    }
    let j1 = usage(&shared).await;
    out["join"] = json!(Cost::between(&j0, &j1, idle_rate));
    say(&format!("joined in {:.2} s", out["join_s"]));

    // One pod lost.
    let victim = n / 2;
    let l0 = usage(&shared).await;
    pods[victim].lose().await;
    let live: Vec<usize> = (0..=n).filter(|&i| i != victim).collect();
    match shared
        .tracker
        .wait_all(&live, n + 1, v2, Instant::now() + phase)
        .await
    {
        Ok((at, _)) => out["lost_s"] = json!(at.saturating_duration_since(l0.at).as_secs_f64()),
        Err(progress) => return Ok(gave_up(out, "loss", progress, &leader, &pids).await),
    }
    if let Err(status) = leader.wait_configured(n + 1, Instant::now() + phase).await {
        out["snapshot"] = json!(format!("not committed after the loss: {status}"));
        return Ok(finish(out, &leader, &pids).await);
    }
    let l1 = usage(&shared).await;
    out["loss"] = json!(Cost::between(&l0, &l1, idle_rate));
    say(&format!(
        "survivors reconfigured {:.2} s after the loss",
        out["lost_s"]
    ));
    out["total"] = json!(Cost::between(&u0, &l1, 0.0));
    let out = finish(out, &leader, &pids).await;
    leader.stop().await;
    Ok(out)
}

/// The leader's session id: the owner of its ephemeral pod znode (read once, before any phase).
async fn leader_session(leader: &Leader, zk: &ochopod::zk::ZkConfig) -> Option<i64> {
    let uuid = leader.info().await?.get("uuid")?.as_str()?.to_string();
    let client = ochopod::zk::connect(zk).await.ok()?;
    let path = ochopod::zk::paths::ClusterPaths::new("default.swarm").pod(&uuid);
    let stat = client.check_stat(&path).await.ok()??;
    Some(stat.ephemeral_owner)
}

/// Registers `pods`, `parallel` at a time; the instant of the last registration.
async fn register(pods: &[Arc<SimPod>], shared: &Arc<Shared>, parallel: usize) -> anyhow::Result<Instant> {
    let gate = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for pod in pods {
        let (pod, shared, gate) = (pod.clone(), shared.clone(), gate.clone());
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            pod.start(&shared).await
        });
    }
    let mut last = Instant::now();
    while let Some(r) = set.join_next().await {
        last = last.max(r??);
    }
    Ok(last)
}

/// A phase that did not complete: how far it got and what the leader said.
async fn gave_up(
    mut out: Value,
    phase: &str,
    progress: tracker::Progress,
    leader: &Leader,
    pids: &Pids,
) -> Value {
    say(&format!("{phase} did not complete: {progress:?}"));
    out["failed"] = json!({ "phase": phase, "progress": progress, "leader_status": leader.status().await });
    finish(out, leader, pids).await
}

/// The closing readings: memory and CPU of the leader, the swarm and ZooKeeper.
async fn finish(mut out: Value, leader: &Leader, pids: &Pids) -> Value {
    let killed = *leader.killed_at_mib.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(rss) = killed {
        out["leader_killed_at_rss_mib"] = json!(rss);
    }
    let mem = |pid: &str| probe::memory(pid).map(|(rss, hwm)| json!({ "rss_mib": rss, "hwm_mib": hwm }));
    out["leader_memory"] = json!(mem(&pids.leader));
    out["swarm_memory"] = json!(mem("self"));
    out["zk_memory"] = json!(pids.zk.as_deref().and_then(mem));
    out["leader_cpu_s"] = json!(probe::cpu(&pids.leader));
    out["swarm_cpu_s"] = json!(probe::cpu("self"));
    out["leader_status"] = json!(leader.status().await);
    out
}
