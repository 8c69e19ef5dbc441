//! The verbs that read: `ls` (clusters), `info` (pods), `log` (each pod's last lines). Nothing
//! here changes a pod.

use std::time::Duration;

use serde_json::{json, Value};

use super::context::{infos, targets, Ctx};
use super::discover::{Cluster, Target};
use super::http::{Failure, Request};
use super::report::{conclude, finish, out, out_json, PodReport};
use super::{table, CtlError, Select, EXIT_OK};

fn text(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Null => "-".into(),
        Value::String(_) => "-".into(),
        other => other.to_string(),
    }
}

/// Whether `/info` shows a pod serving: process running and not held, failed or leaving.
pub fn is_running(info: &Value) -> bool {
    info["process"] == "running" && info["pod_state"] == "running"
}

pub(super) async fn ls(ctx: &Ctx, select: &Select) -> Result<i32, CtlError> {
    let clusters = ctx.zk.resolve(&select.clusters, &ctx.namespace).await?;
    if clusters.is_empty() && !ctx.json {
        let existing = ctx.zk.cluster_keys().await?;
        eprintln!(
            "ochopod ctl: no cluster in namespace `{}` (ZooKeeper at {}); {}",
            ctx.namespace,
            ctx.zk.connect_string(),
            super::existing_clusters(&existing)
        );
    }
    let all: Vec<Target> = select.pods_of(&clusters);
    let answers = infos(ctx, &all).await;
    let reports: Vec<PodReport> = answers
        .iter()
        .map(|(t, r)| PodReport::new(t, r.clone()))
        .collect();
    let mut rows = Vec::new();
    let mut summaries = Vec::new();
    for cluster in &clusters {
        let mine: Vec<&(Target, Result<Value, Failure>)> =
            answers.iter().filter(|(t, _)| t.cluster == cluster.key).collect();
        let answered: Vec<(&Target, &Value)> = mine
            .iter()
            .filter_map(|(t, r)| r.as_ref().ok().map(|v| (t, v)))
            .collect();
        let running = answered.iter().filter(|(_, v)| is_running(v)).count();
        // The leader as the pods say; else the election's lowest node; else none (standalone).
        let leader = answered
            .iter()
            .find(|(_, v)| v["state"] == "leader")
            .map(|(t, v)| ((*t).clone(), Some((*v).clone())))
            .or_else(|| {
                let uuid = cluster.leader.as_ref()?;
                let t = cluster.pods.iter().find(|t| &t.pod.uuid == uuid)?;
                Some((t.clone(), None))
            });
        let generation = match &cluster.snapshot {
            Some((g, _)) => Some(*g),
            None => answered
                .iter()
                .filter_map(|(_, v)| v["generation"].as_u64())
                .max(),
        };
        let status = match &leader {
            Some((_, Some(info))) => text(info, "status"),
            _ if answered.iter().any(|(_, v)| v["state"] == "standalone") => "standalone".into(),
            _ => "-".into(),
        };
        // The pause is in ZooKeeper, leader or not: said even when no leader answers.
        let status = match &cluster.paused {
            Some(p) if !status.starts_with("paused ") => format!("{}; {status}", p.describe()),
            _ => status,
        };
        let unanswered: Vec<String> = mine
            .iter()
            .filter(|(_, r)| r.is_err())
            .map(|(t, _)| t.name())
            .collect();
        rows.push(vec![
            cluster.key.clone(),
            format!("{running}/{}", mine.len()),
            leader
                .as_ref()
                .map_or("-".into(), |(t, _)| format!("#{}", t.pod.seq)),
            generation.map_or("-".into(), |g| g.to_string()),
            status.clone(),
        ]);
        summaries.push(json!({
            "cluster": cluster.key,
            "total": mine.len(),
            "running": running,
            "leader": leader.as_ref().map(|(t, _)| json!({"seq": t.pod.seq, "uuid": t.pod.uuid, "address": t.address()})),
            "generation": generation,
            "status": status,
            "paused": cluster.paused,
            "unanswered": unanswered,
            "reserved": reserved_json(cluster),
        }));
    }
    let code = conclude(&reports);
    if ctx.json {
        out_json(&json!({"ok": code == EXIT_OK, "clusters": summaries}));
    } else {
        out(&table::render(
            &["CLUSTER", "PODS", "LEADER", "GENERATION", "STATUS"],
            &rows,
        ));
        out(&reserved_lines(&clusters));
    }
    Ok(code)
}

/// When a reservation ends, as people read it (UTC).
fn until(ms: u64) -> String {
    match std::time::UNIX_EPOCH.checked_add(Duration::from_millis(ms)) {
        Some(t) => crate::clock::rfc3339(t),
        None => format!("{ms} ms after the epoch"),
    }
}

/// The seqs a cluster keeps for pods that vanished without leaving (SPEC §4), for `--json`.
fn reserved_json(cluster: &Cluster) -> Value {
    let list: Vec<Value> = cluster
        .reserved
        .iter()
        .map(|(seq, r)| json!({"seq": seq, "uuid": r.uuid, "until": until(r.until), "until_ms": r.until}))
        .collect();
    Value::Array(list)
}

/// One line per reserved seq, below the table: `reserved: default.zk seq 1 (<uuid>) until ...`.
fn reserved_lines(clusters: &[Cluster]) -> String {
    let mut text = String::new();
    for c in clusters {
        for (seq, r) in &c.reserved {
            text.push_str(&format!(
                "reserved: {} seq {seq} ({}) until {}\n",
                c.key,
                r.uuid,
                until(r.until)
            ));
        }
    }
    text
}

pub(super) async fn info(ctx: &Ctx, select: &Select) -> Result<i32, CtlError> {
    let (clusters, targets) = targets(ctx, select).await?;
    let answers = infos(ctx, &targets).await;
    let mut rows = Vec::new();
    for (t, r) in &answers {
        let row = match r {
            Ok(v) => vec![
                t.name(),
                t.pod.ip.clone(),
                table::ports(&t.pod.ports),
                text(v, "process"),
                text(v, "pod_state"),
                text(v, "state"),
                text(v, "restarts"),
                if v["ready"] == true {
                    "yes".into()
                } else {
                    "no".into()
                },
                text(v, "generation"),
            ],
            Err(_) => {
                let mut row = vec![
                    t.name(),
                    t.pod.ip.clone(),
                    table::ports(&t.pod.ports),
                    "no answer".into(),
                ];
                row.extend(vec!["-".to_string(); 5]);
                row
            }
        };
        rows.push(row);
    }
    let reports: Vec<PodReport> = answers.into_iter().map(|(t, r)| PodReport::new(&t, r)).collect();
    let paused: Vec<&Cluster> = clusters.iter().filter(|c| c.paused.is_some()).collect();
    if ctx.json {
        let code = conclude(&reports);
        let paused: serde_json::Map<String, Value> =
            paused.iter().map(|c| (c.key.clone(), json!(c.paused))).collect();
        out_json(&json!({"ok": code == EXIT_OK, "pods": reports, "paused": paused}));
        return Ok(code);
    }
    let mut human = table::render(
        &[
            "POD",
            "IP",
            "PORTS",
            "PROCESS",
            "STATE",
            "ROLE",
            "RESTARTS",
            "READY",
            "GENERATION",
        ],
        &rows,
    );
    for c in paused.iter().filter_map(|c| Some((&c.key, c.paused.as_ref()?))) {
        human.push_str(&format!("{} is {}\n", c.0, c.1.describe()));
    }
    human.push_str(&reserved_lines(&clusters));
    finish(ctx, &reports, human)
}

pub(super) async fn log(ctx: &Ctx, select: &Select, lines: usize) -> Result<i32, CtlError> {
    let (_, targets) = targets(ctx, select).await?;
    let req = Request::get(format!("/log?lines={lines}"), ctx.request_timeout);
    let answers = ctx.caller.call_each(&targets, req).await;
    let mut human = String::new();
    for (t, r) in &answers {
        if let Ok(v) = r {
            human.push_str(&format!("==> {} ({}) <==\n", t.name(), t.address()));
            for line in v["lines"].as_array().into_iter().flatten() {
                match line {
                    Value::String(s) => human.push_str(s.trim_end_matches('\n')),
                    other => human.push_str(&other.to_string()),
                }
                human.push('\n');
            }
        }
    }
    let reports: Vec<PodReport> = answers.into_iter().map(|(t, r)| PodReport::new(&t, r)).collect();
    finish(ctx, &reports, human)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zk::snapshot::Reservation;

    #[test]
    fn reserved_seqs_are_one_line_each_under_the_table() {
        let cluster = Cluster {
            key: "default.zk".into(),
            pods: Vec::new(),
            leader: None,
            snapshot: None,
            paused: None,
            reserved: [(
                1,
                Reservation {
                    uuid: "a-1".into(),
                    until: 1_764_628_801_000,
                },
            )]
            .into(),
        };
        assert_eq!(
            reserved_lines(std::slice::from_ref(&cluster)),
            "reserved: default.zk seq 1 (a-1) until 2025-12-01T22:40:01Z\n"
        );
        assert_eq!(
            reserved_json(&cluster),
            json!([{"seq": 1, "uuid": "a-1", "until": "2025-12-01T22:40:01Z", "until_ms": 1_764_628_801_000u64}])
        );
        // Whatever a snapshot says, a line, not a panic.
        let far = Cluster {
            reserved: [(
                2,
                Reservation {
                    uuid: "b".into(),
                    until: u64::MAX,
                },
            )]
            .into(),
            ..cluster
        };
        assert!(reserved_lines(&[far]).starts_with("reserved: default.zk seq 2 (b) until "));
    }
}
