//! The verbs: `execute` resolves the arguments into a [`Ctx`] and dispatches; the control calls
//! (`on`, `off`, `restart`, `reconnect`, `kill`, `signal`) and `port` live here, the reads in
//! [`super::status`], `wait` and `restart --rolling` in [`super::wait`].
//!
//! Receives parsed [`CtlArgs`]; emits a table or JSON on stdout, one line per failed pod on
//! stderr (`ochopod ctl: default.web #2: no answer from 10.0.0.3:8080: connection refused`) and
//! the exit code.

use std::time::Duration;

use serde_json::{json, Value};
use tracing::Instrument;

use super::context::{targets, Ctx};
use super::discover::Target;
use super::http::{Failure, Request};
use super::report::{conclude, finish, out, out_json, PodReport};
use super::{status, table, wait, CtlArgs, CtlError, Select, Verb, EXIT_OK};

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
    let ctx = Ctx::open(&args).await?;
    let post = |path: &str, timeout| Request::post(path, None, timeout);
    match args.verb {
        Verb::Ls(select) => status::ls(&ctx, &select).await,
        Verb::Info(select) => status::info(&ctx, &select).await,
        Verb::Log { select, lines } => status::log(&ctx, &select, lines).await,
        Verb::On { select, timeout } => action(&ctx, &select, post("/control/on", timeout)).await,
        Verb::Off { select, timeout } => action(&ctx, &select, post("/control/off", timeout)).await,
        Verb::Restart {
            select,
            rolling: true,
            timeout,
        } => {
            let span = tracing::info_span!("restart_rolling", timeout_ms = millis(timeout));
            wait::rolling(&ctx, &select, timeout).instrument(span).await
        }
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
        } => {
            let span = tracing::info_span!(
                "wait",
                state = wait::state_name(state),
                count,
                timeout_ms = millis(timeout)
            );
            wait::wait(&ctx, &select, state, count, timeout)
                .instrument(span)
                .await
        }
        Verb::Events { clusters, follow } => super::events::run(ctx, clusters, follow).await,
        Verb::Ui {
            clusters,
            listen,
            refresh,
        } => super::ui::run(ctx, clusters, listen, refresh, args.parallelism).await,
    }
}

/// A duration as a log field.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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
