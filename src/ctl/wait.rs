//! The two verbs that take time: `wait` (the deploy gate of a pipeline) and `restart --rolling`.
//!
//! Both re-read the pods' `/info` until a condition holds or a deadline passes, reporting on one
//! progress line (stderr). Readiness is only visible over HTTP, so this is a poll (every 500 ms);
//! ZooKeeper is re-read on each round of `wait` because pods register while a deploy runs.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::context::{infos, targets, Ctx};
use super::discover::{Cluster, Target};
use super::http::{Failure, Request};
use super::report::{finish, out, out_json, PodReport};
use super::table::Progress;
use super::{CtlError, Select, WaitState, EXIT_OK, EXIT_TIMEOUT};

const POLL: Duration = Duration::from_millis(500);

/// How far one cluster is from what `wait` wants.
#[derive(Debug, Clone)]
struct ClusterWait {
    cluster: String,
    wanted: usize,
    have: usize,
    registered: usize,
    /// Pods that do not count yet, and why.
    waiting_for: Vec<(String, String)>,
}

impl ClusterWait {
    fn done(&self) -> bool {
        self.have >= self.wanted
    }
}

/// Why a pod does not count as `state` yet, or None when it does.
fn pending(
    cluster: &Cluster,
    target: &Target,
    info: &Result<Value, Failure>,
    state: WaitState,
) -> Option<String> {
    let info = match info {
        Ok(v) => v,
        Err(f) => return Some(f.to_string()),
    };
    let field = |k: &str| info[k].as_str().unwrap_or("?").to_string();
    match state {
        WaitState::Held => (info["pod_state"] != "held").then(|| format!("pod {}", field("pod_state"))),
        WaitState::Running => {
            if info["process"] != "running" {
                return Some(format!("process {}", field("process")));
            }
            if info["pod_state"] != "running" {
                return Some(format!("pod {}", field("pod_state")));
            }
            let generation = info["generation"].as_u64().unwrap_or(0);
            if generation == 0 {
                return Some("not configured yet".into());
            }
            // With a leader, "configured" means: in its last configuration, at its generation.
            if let Some((snapshot, uuids)) = &cluster.snapshot {
                if !uuids.contains(&target.pod.uuid) {
                    return Some(format!("not in the last configuration (generation {snapshot})"));
                }
                if generation < *snapshot {
                    return Some(format!("at generation {generation}, the cluster at {snapshot}"));
                }
            }
            (info["ready"] != true).then(|| "not ready".to_string())
        }
    }
}

async fn round(
    ctx: &Ctx,
    select: &Select,
    state: WaitState,
    count: Option<usize>,
) -> Result<Vec<ClusterWait>, CtlError> {
    let clusters = ctx.zk.resolve(&select.clusters, &ctx.namespace).await?;
    let all: Vec<Target> = select.pods_of(&clusters);
    let answers = infos(ctx, &all).await;
    Ok(clusters
        .iter()
        .map(|c| {
            let mine: Vec<_> = answers.iter().filter(|(t, _)| t.cluster == c.key).collect();
            let waiting_for: Vec<(String, String)> = mine
                .iter()
                .filter_map(|(t, r)| pending(c, t, r, state).map(|why| (t.name(), why)))
                .collect();
            ClusterWait {
                cluster: c.key.clone(),
                wanted: count.unwrap_or(mine.len().max(1)),
                have: mine.len() - waiting_for.len(),
                registered: mine.len(),
                waiting_for,
            }
        })
        .collect())
}

pub(super) fn state_name(state: WaitState) -> &'static str {
    match state {
        WaitState::Running => "running",
        WaitState::Held => "held",
    }
}

/// Blocks until every selected cluster has `count` pods in `state`; exit 3 after `timeout`.
pub async fn wait(
    ctx: &Ctx,
    select: &Select,
    state: WaitState,
    count: Option<usize>,
    timeout: Duration,
) -> Result<i32, CtlError> {
    let started = Instant::now();
    let mut progress = Progress::new();
    let what = state_name(state);
    loop {
        // Clusters that do not exist yet are what a deploy gate waits for, not an error.
        // Bounded: a frozen ZooKeeper or pod must not hold the gate past its timeout.
        let budget = timeout.saturating_sub(started.elapsed()).max(POLL);
        let answer = tokio::time::timeout(budget, round(ctx, select, state, count))
            .await
            .unwrap_or_else(|_| {
                Err(CtlError::NoPods(
                    "no answer from ZooKeeper or the pods in time".into(),
                ))
            });
        let (status, clusters) = match answer {
            Ok(c) if c.is_empty() => (format!("no cluster matches yet in `{}`", ctx.namespace), c),
            Ok(c) => {
                let parts: Vec<String> = c
                    .iter()
                    .map(|w| format!("{} {}/{} {what}", w.cluster, w.have.min(w.wanted), w.wanted))
                    .collect();
                (parts.join(", "), c)
            }
            Err(e @ (CtlError::NoMatch { .. } | CtlError::NoPods(_))) => (e.to_string(), Vec::new()),
            // A deploy gate outlives a ZooKeeper hiccup: say so and keep waiting, with a new
            // session if the old one expired meanwhile.
            Err(e @ CtlError::Zk { .. }) => {
                let status = match ctx.zk.renew().await {
                    Ok(()) => format!("{e} (session renewed)"),
                    Err(again) => again.to_string(),
                };
                (status, Vec::new())
            }
            Err(e) => {
                progress.finish();
                return Err(e);
            }
        };
        let elapsed = started.elapsed();
        if !clusters.is_empty() && clusters.iter().all(ClusterWait::done) {
            progress.finish();
            return Ok(report(ctx, &clusters, elapsed, true, &status));
        }
        if elapsed >= timeout {
            progress.finish();
            eprintln!("ochopod ctl: wait: timed out after {timeout:?}: {status}");
            for w in &clusters {
                for (pod, why) in &w.waiting_for {
                    eprintln!("ochopod ctl:   {pod}: {why}");
                }
            }
            report(ctx, &clusters, elapsed, false, &status);
            return Ok(EXIT_TIMEOUT);
        }
        progress.update(&format!(
            "waiting ({}s/{}s): {status}",
            elapsed.as_secs(),
            timeout.as_secs()
        ));
        tokio::time::sleep(POLL.min(timeout.saturating_sub(elapsed))).await;
    }
}

fn report(ctx: &Ctx, clusters: &[ClusterWait], elapsed: Duration, ok: bool, status: &str) -> i32 {
    if ctx.json {
        let list: Vec<Value> = clusters
            .iter()
            .map(|w| {
                json!({
                    "cluster": w.cluster, "wanted": w.wanted, "have": w.have,
                    "registered": w.registered, "done": w.done(),
                    "waiting_for": w.waiting_for.iter().map(|(p, why)| json!({"pod": p, "why": why})).collect::<Vec<_>>(),
                })
            })
            .collect();
        out_json(
            &json!({"ok": ok, "timed_out": !ok, "elapsed_ms": elapsed.as_millis() as u64, "clusters": list}),
        );
    } else if ok {
        out(&format!("ready after {:.1}s: {status}\n", elapsed.as_secs_f64()));
    }
    if ok {
        EXIT_OK
    } else {
        EXIT_TIMEOUT
    }
}

/// One pod at a time in seq order: off, on (answers once ready), then until its cluster is whole
/// again. Stops at the first failure so a bad release takes down one pod only.
pub async fn rolling(ctx: &Ctx, select: &Select, timeout: Duration) -> Result<i32, CtlError> {
    let (_, targets) = targets(ctx, select).await?;
    let mut progress = Progress::new();
    let total = targets.len();
    let mut reports = Vec::with_capacity(total);
    let mut stopped_at: Option<String> = None;
    for (i, t) in targets.iter().enumerate() {
        if let Some(at) = &stopped_at {
            let why = Failure::Other(format!("not restarted: the rolling restart stopped at {at}"));
            reports.push(PodReport::new(t, Err(why)));
            continue;
        }
        let step = |what: &str| format!("restart --rolling: {}/{total} {}: {what}", i + 1, t.name());
        progress.update(&step("stopping"));
        let result = async {
            ctx.caller
                .call(t, &Request::post("/control/off", None, timeout))
                .await?;
            progress.update(&step("starting, waiting for ready"));
            ctx.caller
                .call(t, &Request::post("/control/on", None, timeout))
                .await?;
            whole_again(ctx, t, timeout, &mut progress, &step).await
        }
        .await;
        if result.is_err() {
            stopped_at = Some(t.name());
        }
        reports.push(PodReport::new(t, result));
    }
    progress.finish();
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            vec![
                r.pod.clone(),
                r.address.clone(),
                if r.ok { "ok" } else { "FAILED" }.into(),
            ]
        })
        .collect();
    finish(
        ctx,
        &reports,
        super::table::render(&["POD", "ADDRESS", "RESULT"], &rows),
    )
}

/// Polls until the restarted pod's cluster is whole again: every registered pod running, ready
/// and, with a leader, in its last configuration at its generation. Waiting for the whole
/// cluster, not only the restarted pod, is what keeps N-1 pods serving: a leader reconfigures
/// the others when the held pod drops out, and again when it comes back. The restarted pod's
/// last `/info` is its answer.
async fn whole_again(
    ctx: &Ctx,
    target: &Target,
    timeout: Duration,
    progress: &mut Progress,
    step: &dyn Fn(&str) -> String,
) -> Result<Value, Failure> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match ctx.zk.cluster(&target.cluster).await {
            Err(e) => match ctx.zk.renew().await {
                Ok(()) => format!("{e} (session renewed)"),
                Err(again) => again.to_string(),
            },
            Ok(cluster) => {
                let answers = infos(ctx, &cluster.pods).await;
                let waiting: Vec<String> = answers
                    .iter()
                    .filter_map(|(t, r)| {
                        pending(&cluster, t, r, WaitState::Running).map(|why| format!("{}: {why}", t.name()))
                    })
                    .collect();
                let mine = answers.iter().find(|(t, _)| t.pod.uuid == target.pod.uuid);
                match (waiting.is_empty(), mine) {
                    (true, Some((_, Ok(info)))) => return Ok(info.clone()),
                    (true, _) => format!("{} is not registered", target.name()),
                    (false, _) => waiting.join("; "),
                }
            }
        };
        if Instant::now() >= deadline {
            return Err(Failure::Other(format!(
                "the cluster was not whole again within {timeout:?} after `on` ({last})"
            )));
        }
        progress.update(&step(&format!("waiting for the cluster ({last})")));
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use super::*;
    use crate::ctl::discover::Registered;

    fn target(uuid: &str) -> Target {
        Target {
            cluster: "default.zk".into(),
            pod: Registered {
                uuid: uuid.into(),
                seq: 1,
                ip: "127.0.0.2".into(),
                control_port: 8080,
                ..Registered::default()
            },
        }
    }

    fn cluster(snapshot: Option<(u64, &[&str])>) -> Cluster {
        Cluster {
            key: "default.zk".into(),
            pods: vec![target("a")],
            leader: None,
            snapshot: snapshot.map(|(g, u)| (g, u.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>())),
            paused: None,
            reserved: Default::default(),
        }
    }

    fn info(process: &str, pod_state: &str, generation: u64, ready: bool) -> Result<Value, Failure> {
        Ok(json!({"process": process, "pod_state": pod_state, "generation": generation, "ready": ready}))
    }

    #[test]
    fn running_means_configured_at_the_leaders_generation_and_ready() {
        let standalone = cluster(None);
        let t = target("a");
        let run = WaitState::Running;
        assert_eq!(
            pending(&standalone, &t, &info("running", "running", 1, true), run),
            None
        );
        assert_eq!(
            pending(&standalone, &t, &info("stopped", "held", 1, false), run).unwrap(),
            "process stopped"
        );
        assert_eq!(
            pending(&standalone, &t, &info("running", "running", 0, true), run).unwrap(),
            "not configured yet"
        );
        assert_eq!(
            pending(&standalone, &t, &info("running", "running", 1, false), run).unwrap(),
            "not ready"
        );
        let led = cluster(Some((4, &["a"])));
        assert_eq!(pending(&led, &t, &info("running", "running", 4, true), run), None);
        assert!(pending(&led, &t, &info("running", "running", 3, true), run)
            .unwrap()
            .contains("at generation 3, the cluster at 4"));
        let without = cluster(Some((4, &["b"])));
        assert!(pending(&without, &t, &info("running", "running", 4, true), run)
            .unwrap()
            .contains("not in the last configuration"));
        let down = Err(Failure::Other("no answer".into()));
        assert_eq!(pending(&led, &t, &down, run).unwrap(), "no answer");
    }

    #[test]
    fn held_means_held_whatever_the_configuration() {
        let led = cluster(Some((4, &["b"])));
        let t = target("a");
        assert_eq!(
            pending(&led, &t, &info("stopped", "held", 1, false), WaitState::Held),
            None
        );
        assert_eq!(
            pending(&led, &t, &info("running", "running", 4, true), WaitState::Held).unwrap(),
            "pod running"
        );
    }
}
