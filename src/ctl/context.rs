//! What every verb works with: the ZooKeeper session, the HTTP caller, the namespace and the
//! output mode ([`Ctx`], opened once per command from [`CtlArgs`]), and the two reads most verbs
//! start from: the pods a selection names ([`targets`]) and their `/info` ([`infos`]).

use std::time::Duration;

use serde_json::Value;

use super::discover::{Cluster, Discovery, Target};
use super::http::{Caller, Failure, Request};
use super::{CtlArgs, CtlError, Select};

/// What every verb works with.
pub struct Ctx {
    pub zk: Discovery,
    pub caller: Caller,
    pub namespace: String,
    pub json: bool,
    pub request_timeout: Duration,
}

impl Ctx {
    /// The token, the ZooKeeper credentials and the session, as `args` and the environment say.
    pub async fn open(args: &CtlArgs) -> Result<Ctx, CtlError> {
        let caller = Caller::new(signer(args.token.as_deref())?, args.parallelism);
        let zk = Discovery::connect(&args.zk, args.zk_timeout, zk_auth()?).await?;
        Ok(Ctx {
            zk,
            caller,
            namespace: args.namespace.clone(),
            json: args.json,
            request_timeout: args.request_timeout,
        })
    }
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
        .map_err(CtlError::from)
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
        .map_err(CtlError::ZkConfig)
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
