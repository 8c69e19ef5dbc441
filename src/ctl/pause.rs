//! `pause` and `resume`: the one thing ctl writes to ZooKeeper, each cluster's `paused` node
//! (SPEC §6, [`crate::zk::pause`]). No pod is called: the leader watches the node, and a new
//! leader reads it, so the pause holds whoever leads and whether any pod answers.
//!
//! On a secured tree (pods with `OCHOPOD_ZK_AUTH`), ZooKeeper refuses the write without the same
//! credentials in ctl's environment: the error says so.

use serde_json::{json, Value};

use super::context::Ctx;
use super::discover::{self, Unmatched};
use super::report::{out, out_json};
use super::{table, CtlError, EXIT_FAILED, EXIT_OK};
use crate::zk::pause::{self, Paused};
use crate::zk::ZkError;

/// The cluster keys the arguments name (each must match one).
async fn keys(ctx: &Ctx, clusters: &[String]) -> Result<Vec<String>, CtlError> {
    let existing = ctx.zk.cluster_keys().await?;
    discover::select(&existing, clusters, &ctx.namespace).map_err(|Unmatched(pattern)| CtlError::NoMatch {
        pattern,
        connect: ctx.zk.connect_string().to_string(),
        existing: existing.clone(),
    })
}

/// Why one cluster's `paused` node was not written. Reported per cluster; nothing retries.
#[derive(Debug, thiserror::Error)]
enum WriteFailed {
    /// ZooKeeper refused ctl's credentials: say which ones it needs.
    #[error("{0}: the tree is secured; run ctl with the pods' OCHOPOD_ZK_AUTH or OCHOPOD_ZK_AUTH_FILE")]
    Secured(#[source] ZkError),
    #[error(transparent)]
    Zk(ZkError),
}

impl From<ZkError> for WriteFailed {
    fn from(e: ZkError) -> WriteFailed {
        match e.source_error() {
            Some(zookeeper_client::Error::NoAuth) => WriteFailed::Secured(e),
            _ => WriteFailed::Zk(e),
        }
    }
}

/// One cluster's outcome: the table's line and the JSON result, or why it failed.
type Outcome = Result<(String, Value), WriteFailed>;

/// Prints one row per cluster (or `{"ok", "clusters"}`), names the failures; the exit code.
fn report(ctx: &Ctx, rows: Vec<(String, Outcome)>) -> i32 {
    let mut code = EXIT_OK;
    let mut human = Vec::new();
    let mut docs = Vec::new();
    for (key, r) in rows {
        match r {
            Ok((line, doc)) => {
                human.push(vec![key.clone(), line]);
                docs.push(json!({"cluster": key, "ok": true, "result": doc}));
            }
            Err(e) => {
                eprintln!("ochopod ctl: {key}: {e}");
                code = EXIT_FAILED;
                human.push(vec![key.clone(), "FAILED".into()]);
                docs.push(json!({"cluster": key, "ok": false, "error": e.to_string()}));
            }
        }
    }
    if ctx.json {
        out_json(&json!({"ok": code == EXIT_OK, "clusters": docs}));
    } else {
        out(&table::render(&["CLUSTER", "RESULT"], &human));
    }
    code
}

pub async fn pause(ctx: &Ctx, clusters: &[String], reason: &str) -> Result<i32, CtlError> {
    let keys = keys(ctx, clusters).await?;
    let client = ctx.zk.client();
    let acls = ctx.zk.acls();
    let mut rows = Vec::new();
    for key in keys {
        let path = crate::zk::paths::ClusterPaths::new(&key).paused();
        let r = match pause::pause(&client, acls, &path, reason).await {
            Ok(Paused::Now) => Ok(("paused".to_string(), json!("paused"))),
            Ok(Paused::TakenOver(was)) => Ok((
                format!("paused (was {}; now an operator's)", was.describe()),
                json!({"taken_over": was}),
            )),
            Ok(Paused::Already(p)) => Ok((format!("already {}", p.describe()), json!({"already": p}))),
            Err(e) => Err(e.into()),
        };
        rows.push((key, r));
    }
    Ok(report(ctx, rows))
}

pub async fn resume(ctx: &Ctx, clusters: &[String]) -> Result<i32, CtlError> {
    let keys = keys(ctx, clusters).await?;
    let client = ctx.zk.client();
    let mut rows = Vec::new();
    for key in keys {
        let path = crate::zk::paths::ClusterPaths::new(&key).paused();
        let r = match pause::resume(&client, &path).await {
            Ok(Some(p)) => Ok((format!("resumed (was {})", p.describe()), json!({"was": p}))),
            Ok(None) => Ok(("was not paused".to_string(), json!("not paused"))),
            Err(e) => Err(e.into()),
        };
        rows.push((key, r));
    }
    Ok(report(ctx, rows))
}
