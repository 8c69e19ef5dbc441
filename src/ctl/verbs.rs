//! The verbs: each resolves its targets, calls them in parallel, and reports per pod.
//!
//! Receives parsed [`CtlArgs`]; emits a table or JSON on stdout, one line per failed pod on
//! stderr (`ochopod ctl: default.web #2: no answer from 10.0.0.3:8080: connection refused`) and
//! the exit code. `wait` and `restart --rolling` live in [`super::wait`].

use std::io::Write;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use super::discover::{Cluster, Discovery, Target};
use super::http::{Caller, Failure, Request};
use super::{table, wait, CtlArgs, CtlError, Select, Verb, EXIT_FAILED, EXIT_OK};

/// What every verb works with.
pub struct Ctx {
    pub zk: Discovery,
    pub caller: Caller,
    pub namespace: String,
    pub json: bool,
    pub request_timeout: Duration,
}

/// One pod's outcome, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct PodReport {
    /// `<namespace>.<cluster> #<seq>`.
    pub pod: String,
    pub cluster: String,
    pub seq: u32,
    pub uuid: String,
    /// The control API's `ip:port`.
    pub address: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The pod's JSON answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<Value>,
}

impl PodReport {
    pub fn new(target: &Target, result: Result<Value, Failure>) -> PodReport {
        let (ok, error, answer) = match result {
            Ok(v) => (true, None, Some(v)),
            Err(f) => (false, Some(f.to_string()), None),
        };
        PodReport {
            pod: target.name(),
            cluster: target.cluster.clone(),
            seq: target.pod.seq,
            uuid: target.pod.uuid.clone(),
            address: target.address(),
            ok,
            error,
            answer,
        }
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a panic.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Prints JSON on stdout.
pub fn out_json(value: &Value) {
    out(&format!(
        "{}\n",
        serde_json::to_string_pretty(value).unwrap_or_default()
    ));
}

/// Names each failure on stderr; the exit code for these reports.
pub fn conclude(reports: &[PodReport]) -> i32 {
    let mut code = EXIT_OK;
    for r in reports.iter().filter(|r| !r.ok) {
        eprintln!(
            "ochopod ctl: {}: {}",
            r.pod,
            r.error.as_deref().unwrap_or("failed")
        );
        code = EXIT_FAILED;
    }
    code
}

/// The signer for the pods' tokens (`--token`, `OCHOPOD_TOKEN`, else the file named by
/// `OCHOPOD_TOKEN_FILE`): it signs with the first, the one pods accept during a rotation, like
/// the leader does. The token itself is never sent.
fn signer(given: Option<&str>) -> Result<Option<crate::auth::Signer>, CtlError> {
    let given = given.map(str::to_string);
    let var = move |k: &str| match (k, &given) {
        ("OCHOPOD_TOKEN", Some(t)) => Some(t.clone()),
        _ => std::env::var(k).ok(),
    };
    crate::auth::Tokens::from_vars(&var)
        .map(|t| t.as_ref().map(crate::auth::Tokens::signer))
        .map_err(|e| CtlError::Usage(e.to_string()))
}

/// The pods' ZooKeeper credentials (`OCHOPOD_ZK_AUTH`, else the file `OCHOPOD_ZK_AUTH_FILE`
/// names), read as the pods read them: a file that cannot be read fails, never "no auth".
fn zk_auth() -> Result<Option<(String, String)>, CtlError> {
    let var = |k: &str| match k {
        "OCHOPOD_ZK_AUTH" | "OCHOPOD_ZK_AUTH_FILE" => std::env::var(k).ok(),
        _ => None,
    };
    crate::zk::ZkConfig::from_vars(var)
        .map(|cfg| cfg.auth)
        .map_err(|e| CtlError::Usage(e.to_string()))
}

/// Usage the parser cannot see, checked before touching the network.
fn check_usage(verb: &Verb) -> Result<(), CtlError> {
    match verb {
        Verb::Signal { body, .. } => serde_json::from_str::<Value>(body)
            .map(drop)
            .map_err(|e| CtlError::Usage(format!("--body: not JSON: {e}"))),
        // Killing every pod of a namespace by forgetting an argument is one typo too cheap.
        Verb::Kill { select, .. } if select.clusters.is_empty() => Err(CtlError::Usage(
            "kill needs the clusters to kill by name (`*` for every cluster of the namespace)".into(),
        )),
        _ => Ok(()),
    }
}

pub async fn execute(args: CtlArgs) -> Result<i32, CtlError> {
    check_usage(&args.verb)?;
    let caller = Caller::new(signer(args.token.as_deref())?, args.parallelism)?;
    let zk = Discovery::connect(&args.zk, args.zk_timeout, zk_auth()?).await?;
    let ctx = Ctx {
        zk,
        caller,
        namespace: args.namespace,
        json: args.json,
        request_timeout: args.request_timeout,
    };
    let post = |path: &str, timeout| Request::post(path, None, timeout);
    match args.verb {
        Verb::Ls(select) => ls(&ctx, &select).await,
        Verb::Info(select) => info(&ctx, &select).await,
        Verb::Log { select, lines } => log(&ctx, &select, lines).await,
        Verb::On { select, timeout } => action(&ctx, &select, post("/control/on", timeout)).await,
        Verb::Off { select, timeout } => action(&ctx, &select, post("/control/off", timeout)).await,
        Verb::Restart {
            select,
            rolling: true,
            timeout,
        } => wait::rolling(&ctx, &select, timeout).await,
        Verb::Restart { select, timeout, .. } => restart(&ctx, &select, timeout).await,
        Verb::Reconnect(select) => action(&ctx, &select, post("/reset", ctx.request_timeout)).await,
        Verb::Kill { select, timeout } => action(&ctx, &select, post("/control/kill", timeout)).await,
        Verb::Signal {
            select,
            body,
            timeout,
        } => {
            let req = Request::post("/control/signal", Some(body.into_bytes()), timeout);
            action(&ctx, &select, req).await
        }
        Verb::Port { port: p, select } => port(&ctx, &select, p).await,
        Verb::Pause { clusters, reason } => super::pause::pause(&ctx, &clusters, &reason).await,
        Verb::Resume { clusters } => super::pause::resume(&ctx, &clusters).await,
        Verb::Wait {
            select,
            state,
            count,
            timeout,
        } => wait::wait(&ctx, &select, state, count, timeout).await,
        Verb::Events { clusters, follow } => super::events::run(ctx, clusters, follow).await,
        Verb::Ui {
            clusters,
            listen,
            refresh,
        } => super::ui::run(ctx, clusters, listen, refresh, args.parallelism).await,
    }
}

/// The clusters and the pods a selection names. Errors when it names nothing: an empty
/// namespace, a seq no cluster has, clusters without pods.
pub async fn targets(ctx: &Ctx, select: &Select) -> Result<(Vec<Cluster>, Vec<Target>), CtlError> {
    let clusters = ctx.zk.resolve(&select.clusters, &ctx.namespace).await?;
    if clusters.is_empty() {
        return Err(CtlError::NoMatch {
            pattern: super::key_pattern("*", &ctx.namespace),
            connect: ctx.zk.connect_string().to_string(),
            existing: ctx.zk.cluster_keys().await?,
        });
    }
    let keys: Vec<&str> = clusters.iter().map(|c| c.key.as_str()).collect();
    let all: Vec<Target> = clusters.iter().flat_map(|c| c.pods.iter().cloned()).collect();
    if all.is_empty() {
        return Err(CtlError::NoPods(format!(
            "no pod is registered in {} (ZooKeeper at {})",
            keys.join(", "),
            ctx.zk.connect_string()
        )));
    }
    for seq in &select.seqs {
        if !all.iter().any(|t| t.pod.seq == *seq) {
            let have: Vec<String> = all.iter().map(|t| t.name()).collect();
            return Err(CtlError::NoPods(format!(
                "no pod #{seq} in {}; pods there: {}",
                keys.join(", "),
                have.join(", ")
            )));
        }
    }
    let chosen = all
        .into_iter()
        .filter(|t| select.seqs.is_empty() || select.seqs.contains(&t.pod.seq))
        .collect();
    Ok((clusters, chosen))
}

/// `GET /info` on every target.
pub async fn infos(ctx: &Ctx, targets: &[Target]) -> Vec<(Target, Result<Value, Failure>)> {
    ctx.caller
        .call_each(targets, Request::get("/info", ctx.request_timeout))
        .await
}

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

async fn ls(ctx: &Ctx, select: &Select) -> Result<i32, CtlError> {
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

async fn info(ctx: &Ctx, select: &Select) -> Result<i32, CtlError> {
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

/// Prints the table (or `{"ok", "pods"}`) and names the failures; the exit code.
pub fn finish(ctx: &Ctx, reports: &[PodReport], human: String) -> Result<i32, CtlError> {
    let code = conclude(reports);
    if ctx.json {
        out_json(&json!({"ok": code == EXIT_OK, "pods": reports}));
    } else {
        out(&human);
    }
    Ok(code)
}

async fn log(ctx: &Ctx, select: &Select, lines: usize) -> Result<i32, CtlError> {
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

/// One control call per pod; a table of outcomes (`signal` shows each pod's answer).
async fn action(ctx: &Ctx, select: &Select, req: Request) -> Result<i32, CtlError> {
    let (_, targets) = targets(ctx, select).await?;
    let show_answer = req.path == "/control/signal";
    let answers = ctx.caller.call_each(&targets, req).await;
    report_actions(ctx, answers, show_answer)
}

fn report_actions(
    ctx: &Ctx,
    answers: Vec<(Target, Result<Value, Failure>)>,
    show_answer: bool,
) -> Result<i32, CtlError> {
    let rows: Vec<Vec<String>> = answers
        .iter()
        .map(|(t, r)| {
            let result = match r {
                Ok(v) if show_answer => v.to_string(),
                Ok(_) => "ok".into(),
                Err(_) => "FAILED".into(),
            };
            vec![t.name(), t.address(), result]
        })
        .collect();
    let reports: Vec<PodReport> = answers.into_iter().map(|(t, r)| PodReport::new(&t, r)).collect();
    finish(ctx, &reports, table::render(&["POD", "ADDRESS", "RESULT"], &rows))
}

/// Every pod at once: off, then on (answers once ready).
async fn restart(ctx: &Ctx, select: &Select, timeout: Duration) -> Result<i32, CtlError> {
    let (_, targets) = targets(ctx, select).await?;
    let answers = ctx
        .caller
        .each(&targets, move |caller, t| async move {
            caller
                .call(&t, &Request::post("/control/off", None, timeout))
                .await?;
            caller
                .call(&t, &Request::post("/control/on", None, timeout))
                .await
        })
        .await;
    report_actions(ctx, answers, false)
}

/// `ip:port` of each pod for a container port, from the registrations (no pod is called).
async fn port(ctx: &Ctx, select: &Select, port: u16) -> Result<i32, CtlError> {
    let (_, targets) = targets(ctx, select).await?;
    let key = port.to_string();
    let mut addresses = Vec::new();
    let reports: Vec<PodReport> = targets
        .iter()
        .map(|t| {
            let result = match t.pod.ports.get(&key) {
                Some(p) => {
                    let address = format!("{}:{p}", t.pod.ip);
                    addresses.push(address.clone());
                    Ok(Value::String(address))
                }
                None => Err(Failure::Other(format!(
                    "does not declare port {port} (ports: {})",
                    table::ports(&t.pod.ports)
                ))),
            };
            PodReport::new(t, result)
        })
        .collect();
    let code = conclude(&reports);
    if ctx.json {
        out_json(&json!({"ok": code == EXIT_OK, "port": port, "addresses": addresses, "pods": reports}));
    } else {
        out(&format!("{}\n", addresses.join(",")));
    }
    Ok(code)
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
