//! One configuration of the cluster by its leader (SPEC §3 settings, §7): `check` every pod,
//! `off` them all when `full_shutdown`, `on` each with the map (in parallel, or one by one in
//! `order` when `sequential`), `ok`, run `settings.apply` on the leader's own pod, then write the
//! snapshot in one transaction that checks the leader still holds its election node.
//!
//! A veto (406) or a failure stops the attempt; the leader retries after the damper. A pod
//! answering 410 is dropped at once; one failing `evict_after` times is left out ([`Evictions`]).

use std::collections::{BTreeSet, HashMap};

use super::calls::{Answer, Caller};
use super::leader::{Ctx, World};
use super::plan::{self, Pods};
use crate::model::{ClusterMap, Pod};
use crate::render::fields;
use crate::zk::cluster::Registered;
use crate::zk::election::Candidate;
use crate::zk::snapshot::{self, Commit, Snapshot};
use crate::zk::{Client, ZkError};

/// Pods left out: gone (410) or failing `on` `evict_after` times, for as long as they keep the
/// same registration (a new znode, i.e. a new czxid, gives them another chance).
#[derive(Default)]
pub(super) struct Evictions {
    failures: HashMap<String, (i64, u32)>,
}

impl Evictions {
    pub(super) fn count(&self, r: &Registered) -> u32 {
        match self.failures.get(&r.pod.uuid) {
            Some((czxid, n)) if *czxid == r.czxid => *n,
            _ => 0,
        }
    }

    fn fail(&mut self, r: &Registered, by: u32) -> u32 {
        let n = self.count(r).saturating_add(by);
        self.failures.insert(r.pod.uuid.clone(), (r.czxid, n));
        n
    }

    fn succeed(&mut self, uuid: &str) {
        self.failures.remove(uuid);
    }
}

/// Why a configuration attempt stopped short.
#[derive(Debug, thiserror::Error)]
pub(super) enum Stop {
    #[error("vetoed by {0}")]
    Veto(String),
    /// Before any pod was sent the new map.
    #[error("{0}")]
    Failed(String),
    /// After some pods may have applied the new map: the cluster is no longer as its snapshot
    /// says, so the next attempt must happen even if the pods are back to the snapshot's.
    #[error("{0}")]
    Partial(String),
    #[error(transparent)]
    Zk(#[from] ZkError),
}

impl Stop {
    /// Whether pods may have applied the attempted map (see [`Stop::Partial`]).
    pub(super) fn is_partial(&self) -> bool {
        matches!(self, Stop::Partial(_) | Stop::Zk(_))
    }
}

/// One configuration: check, (off), on, ok, apply, then the snapshot transaction.
pub(super) async fn configure(
    ctx: &Ctx,
    client: &Client,
    me: &Candidate,
    w: &World,
    evictions: &mut Evictions,
) -> Result<u64, Stop> {
    let settings = &ctx.spec.settings;
    let (prev, prev_generation, version) = match &w.snapshot {
        Some((s, v)) => (s.pods.clone(), s.generation, Some(*v)),
        None => (Pods::new(), 0, None),
    };
    let generation = prev_generation + 1;
    let caller = Caller::new(ctx.token.clone(), settings.timeout, settings.parallelism);
    let mut pods = w.live.clone();

    // A pod that applied a later generation than the snapshot's + 1 (a snapshot lost or written
    // back, a leader gone between `ok` and its snapshot) answers 409: start above what the pods
    // have, so that the generation keeps growing.
    let mut generation = generation;
    for round in 0..3 {
        let map = plan::cluster_map(generation, &prev, &pods, &w.deps);
        let answers = caller.fan_out(&list(&pods), "/control/check", Some(&map)).await;
        let mut vetoes = Vec::new();
        let mut failures = Vec::new();
        let mut stale = Vec::new();
        for (uuid, answer) in answers {
            match answer {
                Answer::Ok => {}
                Answer::Veto => vetoes.push(name(&pods, &uuid)),
                Answer::Gone => {
                    tracing::info!(uuid, "pod is gone (410), dropped");
                    if let Some(r) = w.registered.get(&uuid) {
                        evictions.fail(r, u32::MAX);
                    }
                    pods.remove(&uuid);
                }
                Answer::Stale(e) if round < 2 => stale.push((uuid, e)),
                Answer::Stale(e) | Answer::Failed(e) => failures.push((uuid, e)),
            }
        }
        if !vetoes.is_empty() {
            return Err(Stop::Veto(vetoes.join(", ")));
        }
        if !failures.is_empty() {
            return Err(Stop::Failed(count_failures(
                w,
                evictions,
                settings.evict_after,
                "check",
                failures,
            )));
        }
        if stale.is_empty() {
            break;
        }
        for (uuid, e) in stale {
            let applied = match pods.get(&uuid) {
                Some(pod) => caller.applied_generation(pod).await,
                None => None,
            };
            tracing::info!(uuid, applied, reason = %e, "a pod is ahead of the snapshot's generation");
            generation = generation.max(applied.unwrap_or(0) + 1);
        }
    }
    let map = plan::cluster_map(generation, &prev, &pods, &w.deps);

    if settings.full_shutdown {
        // With a body, `off` is the leader's (an empty one is an operator's, which holds the pod).
        for (uuid, answer) in caller.fan_out(&list(&pods), "/control/off", Some(&map)).await {
            if let Answer::Failed(e) | Answer::Stale(e) = answer {
                tracing::warn!(uuid, error = %e, "off failed, going on");
            }
        }
    }

    let mut failures = Vec::new();
    if settings.sequential {
        for uuid in plan::call_order(&pods, &map.added, settings.order) {
            let Some(pod) = pods.get(&uuid) else { continue };
            let body = ClusterMap {
                key: uuid.clone(),
                ..map.clone()
            };
            match caller.post(pod, "/control/on", Some(&body)).await {
                Answer::Ok => evictions.succeed(&uuid),
                Answer::Veto => failures.push((uuid, "vetoed `on` (406)".to_string())),
                Answer::Gone => failures.push((uuid, "gone (410)".to_string())),
                Answer::Stale(e) | Answer::Failed(e) => failures.push((uuid, e)),
            }
            // One by one means each waits for the previous to be ready: stop at the first failure.
            if !failures.is_empty() {
                break;
            }
        }
    } else {
        for (uuid, answer) in caller.fan_out(&list(&pods), "/control/on", Some(&map)).await {
            match answer {
                Answer::Ok => evictions.succeed(&uuid),
                Answer::Veto => failures.push((uuid, "vetoed `on` (406)".to_string())),
                Answer::Gone => failures.push((uuid, "gone (410)".to_string())),
                Answer::Stale(e) | Answer::Failed(e) => failures.push((uuid, e)),
            }
        }
    }
    if !failures.is_empty() {
        return Err(Stop::Partial(count_failures(
            w,
            evictions,
            settings.evict_after,
            "on",
            failures,
        )));
    }

    for (uuid, answer) in caller.fan_out(&list(&pods), "/control/ok", Some(&map)).await {
        if let Answer::Failed(e) = answer {
            tracing::warn!(uuid, error = %e, "ok failed, going on");
        }
    }

    if let Some(apply) = &settings.apply {
        ctx.run(fields::APPLY, apply, &map)
            .await
            .map_err(|e| Stop::Partial(format!("apply: {e}")))?;
    }

    let registered: BTreeSet<String> = w.registered.keys().cloned().collect();
    let free: Vec<(String, i32)> = plan::seqs_to_free(&w.held, &pods, &registered)
        .into_iter()
        .map(|h| (ctx.paths.seq(h.seq), h.version))
        .collect();
    let snap = Snapshot {
        generation,
        hash: plan::config_hash(&pods, &w.deps),
        pods,
    };
    let path = ctx.paths.snapshot();
    let commit = Commit {
        leader_node: &me.path,
        leader_version: 0,
        path: &path,
        snapshot: &snap,
        snapshot_version: version,
        free_seqs: free,
    };
    snapshot::commit(client, ctx.acls, &commit).await?;
    Ok(generation)
}

fn list(pods: &Pods) -> Vec<Pod> {
    pods.values().cloned().collect()
}

fn name(pods: &Pods, uuid: &str) -> String {
    pods.get(uuid)
        .map_or_else(|| uuid.to_string(), |p| format!("seq {} ({uuid})", p.seq))
}

/// Counts one failure for each pod and says which ones are now evicted.
fn count_failures(
    w: &World,
    evictions: &mut Evictions,
    evict_after: u32,
    phase: &str,
    failures: Vec<(String, String)>,
) -> String {
    let mut words = Vec::new();
    for (uuid, e) in failures {
        let n = w.registered.get(&uuid).map_or(0, |r| evictions.fail(r, 1));
        if n >= evict_after.max(1) {
            tracing::warn!(uuid, failures = n, "pod evicted: left out of the configuration");
            words.push(format!(
                "{} failed {phase} {n} times, evicted ({e})",
                name(&w.live, &uuid)
            ));
        } else {
            words.push(format!(
                "{} failed {phase} ({n}/{evict_after}): {e}",
                name(&w.live, &uuid)
            ));
        }
    }
    words.join("; ")
}
