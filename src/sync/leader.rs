//! The leader loop: watch the cluster and its dependencies, and configure every pod when the
//! configuration changes (SPEC §3 settings, §6, §7).
//!
//! Driven by ZooKeeper watches, never by polling: a persistent recursive watch on the cluster's
//! `pods/` (arrivals, departures, state changes), a persistent one on its `paused` node, and on
//! each dependency's `pods/` and `snapshot`, plus a persistent watch on `/ochopod/clusters` when a
//! wildcard needs the list.
//! Each watch event names the znode that changed: the leader's cache ([`super::cache`]) reads
//! only that one again, and everything only at the start of the leadership, after a reconnection
//! (events can be lost across one, ZOOKEEPER-4698) or a failed read ([`super::watches`]).
//!
//! A configuration is due when the hash of (live pods, dependencies) differs from the snapshot's;
//! it then waits for `damper` of quiet (at most `damper_max` after the first change). The loop
//! ends when its token is cancelled (session over or shutdown) or when it is deposed.
//!
//! Dependency cycles (SPEC §3: an error): the leader publishes its cluster's `depends_on`
//! (resolved keys) in the snapshot, before the first configuration too (generation 0), follows
//! its dependencies' snapshots transitively (bounded, each watched), and while a path leads back
//! to its own cluster it says so in its status and configures nothing.
//!
//! Pause (SPEC §6 `paused`): while the node exists the leader configures nothing (a
//! configuration under way finishes). With `settings.max_lost`, the leader writes it itself when
//! too many pods of the last configuration are lost, and lifts it when they are back
//! ([`super::lost`]).

use std::collections::BTreeSet;

use tokio::sync::mpsc;
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::cache::Cache;
use super::calls::last_line;
use super::configure::{configure, Rounds, Stop};
use super::decide::{resignation, Pending};
use super::lost::{NetAction, SafetyNet};
use super::plan;
use super::status::Report;
use super::watches::{Event, Watches};
use super::world::{Ctx, World};
use crate::model::ClusterMap;
use crate::render::fields;
use crate::zk::cluster::Rejected;
use crate::zk::election::Candidate;
use crate::zk::pause;
use crate::zk::snapshot::{self, Snapshot};
use crate::zk::{Client, ZkError};

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How a leadership ended without an error.
#[derive(Debug)]
pub(super) enum Ended {
    /// The session or the loop is over.
    Stopped,
    /// This pod is not live (held, failed, leaving, evicted) while another is: that one should
    /// lead, so that `apply` and `probe` run on a pod that takes part in the configuration.
    Resigned(String),
}

/// Leads until `stop` is cancelled; errors when deposed or when the session is lost.
pub(super) async fn lead(
    ctx: &Ctx,
    client: &Client,
    me: &Candidate,
    stop: &CancellationToken,
) -> Result<Ended, ZkError> {
    let settings = &ctx.spec.settings;
    ctx.tell(Report::Leading {
        min_size: settings.min_size,
    });
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut watches = Watches::new(events_tx);
    let mut cache = Cache::new(ctx);
    let mut pending = Pending::new(settings.damper, settings.damper_max);
    let mut net = SafetyNet::default();
    // Rejected registrations already logged (one line each, not one per round).
    let mut reported: BTreeSet<(String, i64)> = BTreeSet::new();
    let mut rounds = Rounds::default();
    // Who was seen leaving: their seqs are freed, not reserved (plan::seqs_to_free).
    let mut leavers = plan::Leavers::default();
    let mut next_probe = settings.probe.as_ref().map(|_| Instant::now());
    // The connection came back: every watch is added again before anything is read.
    let mut renew = false;
    loop {
        // Every event so far: a burst of changes is read once.
        while let Ok(event) = events.try_recv() {
            renew |= event == Event::Reconnected;
            cache.event(event);
        }
        let read = async {
            if std::mem::take(&mut renew) {
                if let Err(e) = watches.renew(client).await {
                    renew = true;
                    return Err(e);
                }
            }
            cache
                .observe(ctx, client, &mut watches, &mut rounds.evictions)
                .await
        }
        .await
        .inspect(|w| leavers.saw(&w.registered, &w.held));
        ctx.tell(Report::Read(cache.take_reads()));
        let (world, act) = match read {
            Ok(mut w) => {
                let (lost, act) = net.look(&w, &leavers, settings.max_lost);
                w.lost = lost;
                (Some(w), act)
            }
            Err(e) if e.is_session_lost() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cluster, retrying");
                ctx.say(format!("leader: cannot read the cluster: {e}"));
                (None, None)
            }
        };
        let mut publish_failed = false;
        if let Some(world) = &world {
            report_rejected(ctx, &mut reported, &world.rejected);
            ctx.tell(Report::Observed(world.seen(settings)));
            if let Some(why) = resignation(&ctx.uuid, world) {
                return Ok(Ended::Resigned(why));
            }
            // A pause that could not be written holds the configuration back all the same.
            let mut hold = false;
            if let Some(act) = act {
                match safety_net(ctx, client, me, world, act).await {
                    // Read again: the pause changed (or somebody else's did); its watch says so.
                    Ok(()) => {
                        cache.pause_written();
                        continue;
                    }
                    Err(e) if e.is_session_lost() || matches!(e, ZkError::Deposed { .. }) => return Err(e),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot write the pause, retrying");
                        ctx.say(format!("leader: cannot write the pause: {e}"));
                        publish_failed = true;
                        hold = true;
                    }
                }
            }
            let published = world
                .snapshot
                .as_ref()
                .map_or(&[][..], |(s, _)| s.depends_on.as_slice());
            if published != world.depends_on.as_slice() {
                let r = publish_dependencies(ctx, client, me, world).await;
                cache.snapshot_written();
                match r {
                    // Read again: the snapshot's version changed.
                    Ok(()) => continue,
                    Err(e) if e.is_session_lost() || matches!(e, ZkError::Deposed { .. }) => return Err(e),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot publish the dependencies, retrying");
                        publish_failed = true;
                    }
                }
            }
            if hold {
                pending.damper.clear();
            } else {
                ctx.say(pending.decide(&ctx.spec, world, Instant::now()));
            }
        }
        // After a failed read, the watches wake us on reconnection; this timer only covers an
        // error they will not report.
        let retry_read = (world.is_none() || publish_failed).then(|| Instant::now() + Duration::from_secs(1));
        let deadline = if world.is_some() {
            pending.damper.deadline()
        } else {
            None
        };
        tokio::select! {
            _ = stop.cancelled() => return Ok(Ended::Stopped),
            event = events.recv() => {
                // The sender lives in `watches`, so the channel stays open while leading.
                if let Some(event) = event {
                    renew |= event == Event::Reconnected;
                    cache.event(event);
                }
            }
            _ = sleep_until(retry_read) => {}
            _ = sleep_until(deadline) => {
                let Some(world) = world else { continue };
                // A pause written since the world was read (its watch may fire at this very
                // moment): after `ctl pause` answers, no configuration starts.
                cache.count_read();
                match pause::read(client, &ctx.paths.paused()).await {
                    Ok(None) => {}
                    Ok(Some(_)) => continue,
                    Err(e) if e.is_session_lost() => return Err(e),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the pause, retrying");
                        continue;
                    }
                }
                let round = tracing::info_span!("configuration", pods = world.live.len(), epoch = me.epoch);
                let done = tracing::Instrument::instrument(
                    round_of(ctx, client, me, &world, &mut rounds, &leavers),
                    round,
                )
                .await;
                // Written, or maybe written (a transaction whose answer was lost): read it again.
                cache.snapshot_written();
                match done {
                    Ok(generation) => {
                        rounds.committed = generation;
                        pending.done();
                    }
                    Err(Stop::Zk(e)) if e.is_session_lost() || matches!(e, ZkError::Deposed { .. }) => return Err(e),
                    Err(why) => {
                        if matches!(why, Stop::Zk(_)) {
                            // The cache may be what is wrong (a snapshot deleted by hand).
                            cache.invalidate();
                        }
                        pending.failed(why.to_string(), why.is_partial(), Instant::now());
                    }
                }
            }
            _ = sleep_until(next_probe) => {
                if let Some(probe) = &settings.probe {
                    pending.probe = Some(run_probe(ctx, client).await);
                    next_probe = Some(Instant::now() + probe.every);
                }
            }
        }
    }
}

/// One configuration round, reported to the sync actor (started, finished, generation).
async fn round_of(
    ctx: &Ctx,
    client: &Client,
    me: &Candidate,
    world: &World,
    rounds: &mut Rounds,
    leavers: &plan::Leavers,
) -> Result<u64, Stop> {
    ctx.say(format!("configuring {} pods", world.live.len()));
    ctx.tell(Report::Started);
    let done = configure(ctx, client, me, world, rounds, leavers).await;
    ctx.tell(Report::Finished(done.is_ok()));
    match &done {
        Ok(generation) => {
            ctx.tell(Report::Configured(*generation));
            tracing::info!(generation, pods = world.live.len(), "cluster configured");
        }
        Err(Stop::Zk(e)) if e.is_session_lost() || matches!(e, ZkError::Deposed { .. }) => {}
        Err(why) => {
            tracing::warn!(reason = %why, "configuration did not complete, retrying after the damper")
        }
    }
    done
}

/// Writes or lifts the leader's own pause (`settings.max_lost`); the next read shows the result.
async fn safety_net(
    ctx: &Ctx,
    client: &Client,
    me: &Candidate,
    w: &World,
    act: NetAction,
) -> Result<(), ZkError> {
    let path = ctx.paths.paused();
    match act {
        NetAction::Pause(reason) => {
            if pause::pause_as_leader(client, ctx.acls, &me.path, &path, &reason).await? {
                let lost = super::lost::names(w, &w.lost);
                tracing::warn!(%lost, max_lost = ?ctx.spec.settings.max_lost, "too many pods lost: the cluster is paused instead of configuring the survivors");
            }
        }
        NetAction::Resume(version) => {
            if pause::resume_as_leader(client, &me.path, &path, version).await? {
                tracing::info!(
                    lost = w.lost.len(),
                    "enough lost pods are back: the leader lifted its pause"
                );
            }
        }
    }
    Ok(())
}

/// Logs each rejected registration once, and publishes how many there are (`/metrics`).
fn report_rejected(ctx: &Ctx, reported: &mut BTreeSet<(String, i64)>, rejected: &[Rejected]) {
    reported.retain(|(name, czxid)| rejected.iter().any(|r| r.name == *name && r.czxid == *czxid));
    for r in rejected {
        if reported.insert((r.name.clone(), r.czxid)) {
            tracing::warn!(znode = ?r.name, reason = %r.reason, "registration rejected: left out of every map");
        }
    }
    ctx.tell(Report::Rejected(rejected.len()));
}

/// Writes this cluster's `depends_on` into its snapshot (a new one of generation 0 before the
/// first configuration), so that other leaders can see a cycle through it.
async fn publish_dependencies(ctx: &Ctx, client: &Client, me: &Candidate, w: &World) -> Result<(), ZkError> {
    let (snap, version) = match &w.snapshot {
        Some((s, v)) => (
            Snapshot {
                depends_on: w.depends_on.clone(),
                ..s.clone()
            },
            Some(*v),
        ),
        None => (
            Snapshot {
                depends_on: w.depends_on.clone(),
                ..Snapshot::default()
            },
            None,
        ),
    };
    let path = ctx.paths.snapshot();
    let commit = snapshot::Commit {
        leader_node: &me.path,
        leader_version: 0,
        path: &path,
        snapshot: &snap,
        snapshot_version: version,
        free_seqs: Vec::new(),
    };
    snapshot::commit(client, ctx.acls, &commit).await?;
    tracing::info!(depends_on = ?w.depends_on, "dependencies published in the snapshot");
    Ok(())
}

/// Runs `settings.probe` against the last configuration; its stdout's last line is the status.
async fn run_probe(ctx: &Ctx, client: &Client) -> String {
    let last = match snapshot::read(client, &ctx.paths.snapshot()).await {
        Ok(Some((s, _))) if s.pods.contains_key(&ctx.uuid) => s,
        Ok(_) => return "probe: waiting for a configuration with this pod".into(),
        Err(e) => return format!("probe: {e}"),
    };
    let map = ClusterMap {
        generation: last.generation,
        pods: last.pods,
        ..ClusterMap::default()
    };
    match ctx.run(fields::PROBE, &map).await {
        Ok(out) => last_line(&out).unwrap_or_default(),
        Err(e) => format!("probe failed: {e}"),
    }
}
