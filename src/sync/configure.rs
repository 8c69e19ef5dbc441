//! One configuration of the cluster by its leader (SPEC §3 settings, §7): `check` every pod,
//! `off` them all when `full_shutdown`, `on` each with the map (in parallel, or one by one in
//! `order` when `sequential`), `ok`, run `settings.apply` on the leader's own pod, then write the
//! snapshot in one transaction that checks the leader still holds its election node, and that
//! frees the seqs of the pods gone or keeps them reserved ([`plan::seqs_to_free`]).
//!
//! A veto (406) or a failure stops the attempt; the leader retries after the damper. A pod
//! answering 410 is dropped at once; one failing `evict_after` times is left out ([`Evictions`]).

use std::collections::{BTreeMap, BTreeSet};

use std::sync::Arc;

use tokio::task::JoinSet;
use tracing::Instrument;

use super::calls::{Answer, CallFailure, Caller};
use super::delivery::{Delivered, Outgoing};
pub(super) use super::evictions::Evictions;
use super::evictions::{evicted, name};
use super::plan::{self, Pods};
pub(super) use super::stop::Stop;
use super::stop::{fail_if_any, Phase};
use super::world::{Ctx, World};
use crate::model::{Action, ClusterMap, Pod};
use crate::render::fields;
use crate::zk::election::{still_leads, Candidate};
use crate::zk::snapshot::{self, Commit, Snapshot};
use crate::zk::Client;

/// What a leadership carries from one configuration round to the next.
#[derive(Default)]
pub(super) struct Rounds {
    pub evictions: Evictions,
    /// What each pod holds, to send it deltas.
    pub delivered: Delivered,
    /// The last generation this leadership committed to the snapshot.
    pub committed: u64,
}

/// One configuration: check, (off), on, ok, apply, then the snapshot transaction. Before each
/// phase the leader makes sure it still leads (a deposed leader stops at the next phase; pods
/// refuse its maps anyway, they carry an older epoch).
///
/// The generation is one above both the snapshot's and `committed`, the last one this leadership
/// wrote to the snapshot (in case the snapshot was lost or written back meanwhile): it comes from
/// ZooKeeper and this leader's own count, never from what a pod says. An attempt that fails does
/// not use its generation up: pods that applied its map take the next attempt's, of the same
/// epoch and generation, as the same configuration (they are ordered by epoch, then generation).
///
/// Each pod gets the map whole or as a delta from the last one it applied ([`Delivered`]).
pub(super) async fn configure(
    ctx: &Ctx,
    client: &Client,
    me: &Candidate,
    w: &World,
    rounds: &mut Rounds,
    left: &plan::Leavers,
) -> Result<u64, Stop> {
    let settings = &ctx.spec.settings;
    let (prev, prev_generation, version) = match &w.snapshot {
        Some((s, v)) => (s.pods.clone(), s.generation, Some(*v)),
        None => (Pods::new(), 0, None),
    };
    let at = prev_generation.max(rounds.committed);
    let generation = at.checked_add(1).ok_or_else(|| Stop::Generation {
        at,
        path: ctx.paths.snapshot(),
    })?;
    let caller = Caller::new(ctx.signer.clone(), settings.timeout, settings.parallelism);
    let mut pods = w.live.clone();
    rounds.delivered.retain(|uuid| w.registered.contains_key(uuid));

    still_leads(client, me).await?;
    let map = plan::cluster_map(me.epoch, generation, &prev, &pods, &w.deps);
    let out = Arc::new(rounds.delivered.prepare(&map, pods.keys()));
    let answers = phase(&caller, Phase::Check, &list(&pods), &out, generation).await;
    let mut vetoes = Vec::new();
    let mut failures = Vec::new();
    // What `on` would do to each pod's process (for a rolling restart).
    let mut actions = BTreeMap::new();
    for (uuid, answer) in answers {
        match answer {
            Answer::Ok(reply) => {
                rounds.delivered.checked(&uuid, reply.takes, &out);
                if reply.refetched {
                    // Not the map the leader thought: the whole map for the rest of this one.
                    rounds.delivered.unknown(&uuid);
                }
                if let Some(a) = reply.action {
                    actions.insert(uuid, a);
                }
            }
            Answer::Veto => vetoes.push(name(&pods, &uuid)),
            Answer::Gone => {
                tracing::info!(uuid, "pod is gone (410), dropped");
                if let Some(r) = w.registered.get(&uuid) {
                    rounds.evictions.fail(r, u32::MAX);
                }
                pods.remove(&uuid);
            }
            // A pod that holds a map of a later leader (this one is deposed: the next phase
            // says so) or one forged by somebody else: it cannot take part.
            Answer::Stale(e) | Answer::Failed(e) => failures.push((uuid, e)),
        }
    }
    if !vetoes.is_empty() {
        return Err(Stop::Veto(vetoes));
    }
    fail_if_any(
        w,
        &mut rounds.evictions,
        settings.evict_after,
        Phase::Check,
        failures,
    )?;
    let map = plan::cluster_map(me.epoch, generation, &prev, &pods, &w.deps);
    // What the pods said of themselves (deltas) is known now.
    let out = Arc::new(rounds.delivered.prepare(&map, pods.keys()));

    if settings.full_shutdown {
        still_leads(client, me).await?;
        // With a body, `off` is the leader's (an empty one is an operator's, which holds the pod).
        for (uuid, answer) in phase(&caller, Phase::Off, &list(&pods), &out, generation).await {
            if let Answer::Failed(e) | Answer::Stale(e) = answer {
                tracing::warn!(uuid, error = %e, "off failed, going on");
            }
        }
    }

    still_leads(client, me).await?;
    let mut failures = Vec::new();
    let span = phase_span(Phase::On, &out, pods.len(), generation);
    for (uuid, answer) in turn_on(ctx, &caller, &pods, &map, &out, &actions)
        .instrument(span)
        .await
    {
        match answer {
            Answer::Ok(_) => {
                rounds.evictions.succeed(&uuid);
                rounds.delivered.applied(&uuid, &out);
                continue;
            }
            Answer::Veto => failures.push((uuid.clone(), CallFailure::Vetoed)),
            Answer::Gone => failures.push((uuid.clone(), CallFailure::Gone)),
            Answer::Stale(e) | Answer::Failed(e) => failures.push((uuid.clone(), e)),
        }
        rounds.delivered.unknown(&uuid);
    }
    fail_if_any(
        w,
        &mut rounds.evictions,
        settings.evict_after,
        Phase::On,
        failures,
    )?;

    still_leads(client, me).await?;
    // Every pod holds the map now: `ok` carries it as an empty delta to those that take them.
    let out = Arc::new(rounds.delivered.prepare(&map, pods.keys()));
    for (uuid, answer) in phase(&caller, Phase::Ok, &list(&pods), &out, generation).await {
        if let Answer::Failed(e) = answer {
            tracing::warn!(uuid, error = %e, "ok failed, going on");
        }
    }

    if settings.apply.is_some() {
        still_leads(client, me).await?;
        ctx.run(fields::APPLY, &map).await.map_err(Stop::Apply)?;
    }

    let registered: BTreeSet<String> = w.registered.keys().cloned().collect();
    let before = w
        .snapshot
        .as_ref()
        .map(|(s, _)| s.reserved.clone())
        .unwrap_or_default();
    let now = crate::clock::now_ms();
    let seqs = plan::seqs_to_free(&w.held, &pods, &registered, left, &before, now, settings.seq_hold);
    for (seq, r) in seqs.reserved.iter().filter(|(n, _)| !before.contains_key(n)) {
        tracing::info!(seq, uuid = %r.uuid, until_ms = r.until, "seq reserved: its pod vanished without leaving");
    }
    let free: Vec<(String, i32)> = seqs
        .free
        .into_iter()
        .map(|h| (ctx.paths.seq(h.seq), h.version))
        .collect();
    let snap = Snapshot {
        generation,
        hash: plan::config_hash(&pods, &w.deps),
        depends_on: w.depends_on.clone(),
        failed: evicted(w, &pods, &rounds.evictions, settings.evict_after),
        dependencies: w.dependencies.clone(),
        reserved: seqs.reserved,
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

fn phase_span(phase: Phase, out: &Outgoing, pods: usize, generation: u64) -> tracing::Span {
    tracing::info_span!(
        "configure",
        phase = phase.name(),
        generation,
        pods,
        deltas = out.deltas()
    )
}

/// One phase's calls to every pod at once, in its span.
async fn phase(
    caller: &Caller,
    phase: Phase,
    pods: &[Pod],
    out: &Arc<Outgoing>,
    generation: u64,
) -> BTreeMap<String, Answer> {
    let span = phase_span(phase, out, pods.len(), generation);
    caller
        .fan_out(pods, phase.path(), Some(out))
        .instrument(span)
        .await
}

/// The `on` phase; the answers in the order they came. All pods at once (up to `parallelism`),
/// or one at a time in `order` when `sequential`, or, when `rolling`, the pods whose process
/// would not restart (new ones, reloads, no change) at once and then those that would, at most
/// `max_unavailable` at a time. An `on` answers once its pod is ready, so each restart waits for
/// the previous ones to be ready; one at a time or rolling, the first failure stops the calls
/// (the pods not called yet keep their process and their last map).
async fn turn_on(
    ctx: &Ctx,
    caller: &Caller,
    pods: &Pods,
    map: &ClusterMap,
    out: &Arc<Outgoing>,
    actions: &BTreeMap<String, Action>,
) -> Vec<(String, Answer)> {
    let settings = &ctx.spec.settings;
    let order = plan::call_order(pods, &map.added, settings.order);
    if settings.sequential {
        return in_windows(ctx, caller, pods, out, &order, 1, "configuring one by one").await;
    }
    if !settings.rolling {
        return caller
            .fan_out(&list(pods), Phase::On.path(), Some(out))
            .await
            .into_iter()
            .collect();
    }
    // An older pod does not say what `on` would do: count it as a restart.
    let restarts =
        |u: &String| !map.added.contains(u) && actions.get(u).is_none_or(|a| *a == Action::Restart);
    let (roll, at_once): (Vec<String>, Vec<String>) = order.into_iter().partition(restarts);
    let first: Vec<Pod> = at_once.iter().filter_map(|u| pods.get(u).cloned()).collect();
    let mut answers: Vec<(String, Answer)> = caller
        .fan_out(&first, Phase::On.path(), Some(out))
        .await
        .into_iter()
        .collect();
    if answers.iter().all(|(_, a)| matches!(a, Answer::Ok(_))) {
        let window = settings.max_unavailable.max(1);
        answers.extend(in_windows(ctx, caller, pods, out, &roll, window, "rolling restart").await);
    }
    answers
}

/// `on` to the pods of `order`, at most `window` in flight, starting no new one after a failure.
async fn in_windows(
    ctx: &Ctx,
    caller: &Caller,
    pods: &Pods,
    out: &Arc<Outgoing>,
    order: &[String],
    window: usize,
    what: &str,
) -> Vec<(String, Answer)> {
    let mut answers = Vec::new();
    let mut next = order.iter().filter_map(|u| pods.get(u));
    let mut flying = JoinSet::new();
    let mut stopped = false;
    loop {
        while !stopped && flying.len() < window {
            let Some(pod) = next.next() else { break };
            let done = answers.len();
            tracing::info!(seq = pod.seq, uuid = %pod.uuid, done, of = order.len(), "{what}: configuring");
            ctx.say(format!(
                "{what}: {done}/{} done, configuring seq {}",
                order.len(),
                pod.seq
            ));
            let (caller, pod, out) = (caller.clone(), pod.clone(), out.clone());
            flying.spawn(async move {
                let answer = caller.post(&pod, Phase::On.path(), Some(&out)).await;
                (pod.uuid, answer)
            });
        }
        let Some(joined) = flying.join_next().await else {
            break;
        };
        // A call task does not panic; one that did counts as not answered.
        let Ok((uuid, answer)) = joined else { continue };
        if !matches!(answer, Answer::Ok(_)) && !stopped {
            tracing::warn!(
                uuid,
                "{what}: stopped at this pod; the others keep their process and map"
            );
            stopped = true;
        }
        answers.push((uuid, answer));
    }
    answers
}

fn list(pods: &Pods) -> Vec<Pod> {
    pods.values().cloned().collect()
}
