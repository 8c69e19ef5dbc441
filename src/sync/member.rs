//! One session's part in the cluster: the election (and, when elected, the leader loop), and
//! the wait for a configuration without this pod when it leaves.
//!
//! Both run as tasks of the session, stopped by its token when the session ends (the sync loop
//! then registers again and starts them anew).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use zookeeper_client as zkc;

use super::leader;
use super::status::Report;
use super::world::Ctx;
use crate::zk::paths::ClusterPaths;
use crate::zk::{cluster, election, snapshot, Client, ZkError};

/// Election, then leadership, for one session; re-enters the election after a recoverable error.
/// `fresh`: a new session (not one resumed), which cannot hold an election node yet.
pub(super) async fn member(ctx: Arc<Ctx>, client: Client, fresh: bool, stop: CancellationToken) {
    let mut fresh = fresh;
    loop {
        let r = tokio::select! {
            _ = stop.cancelled() => return,
            r = elect_and_lead(&ctx, &client, std::mem::take(&mut fresh), &stop) => r,
        };
        match r {
            Ok(leader::Ended::Stopped) => return,
            Ok(leader::Ended::Resigned(why)) => {
                tracing::info!(reason = %why, "resigned the leadership to a live pod");
                ctx.tell(Report::Resigned(why));
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            Err(e) if e.is_session_lost() => return,
            Err(e) => {
                tracing::warn!(error = %e, "election interrupted, joining again");
                ctx.tell(Report::Interrupted(e.to_string()));
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

async fn elect_and_lead(
    ctx: &Ctx,
    client: &Client,
    fresh: bool,
    stop: &CancellationToken,
) -> Result<leader::Ended, ZkError> {
    // Reads every candidate's node (O(pods)): only worth it when this session may have left one
    // (an earlier attempt, a resumed session). A new session's ephemeral nodes start empty.
    if !fresh {
        election::leave_stale(client, &ctx.paths, &ctx.uuid).await?;
    }
    let me = election::enter(client, &ctx.paths, ctx.acls, &ctx.uuid).await?;
    ctx.tell(Report::Following);
    election::wait_until_leader(client, &ctx.paths, &me).await?;
    tracing::info!(node = %me.name, "elected leader");
    ctx.tell(Report::Elected);
    let span = tracing::info_span!("leadership", node = %me.name, epoch = me.epoch);
    let r = tracing::Instrument::instrument(leader::lead(ctx, client, &me, stop), span).await;
    // Whatever happened, this node no longer leads through `me`: give the election a chance.
    let _ = client.delete(&me.path, None).await;
    r
}

/// Waits up to `drain` for a snapshot of this cluster without `uuid`, then for every cluster that
/// depends on this one to have been configured without it too (SPEC §8), then answers.
pub(super) async fn drain_then_reply(
    client: Client,
    paths: ClusterPaths,
    uuid: String,
    drain: Duration,
    stop: CancellationToken,
    reply: oneshot::Sender<()>,
) {
    if !drain.is_zero() {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(drain) => tracing::warn!("drain time over, leaving anyway"),
            r = async {
                wait_unconfigured(&client, &paths, &uuid).await?;
                wait_dependents(&client, &paths.key, &uuid).await
            } => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "cannot watch the snapshots, leaving anyway");
                }
            }
        }
    }
    drop(client);
    let _ = reply.send(());
}

/// Returns once the cluster's snapshot does not list `uuid` (or there is none).
async fn wait_unconfigured(client: &Client, paths: &ClusterPaths, uuid: &str) -> Result<(), ZkError> {
    let path = paths.snapshot();
    loop {
        // A one-shot watch: nothing in this session puts a persistent watch on our own snapshot
        // (ZOOKEEPER-4466).
        let (data, _, watcher) = match client.get_and_watch_data(&path).await {
            Ok(r) => r,
            Err(zkc::Error::NoNode) => return Ok(()),
            Err(e) => return Err(ZkError::op("watching", &path)(e)),
        };
        // Either form (SPEC §6): the watch is on `snapshot`, which every commit rewrites.
        if !snapshot::resolve(client, &path, &data)
            .await?
            .pods
            .contains_key(uuid)
        {
            return Ok(());
        }
        let event = watcher.changed().await;
        if event.event_type == zkc::EventType::Session && event.session_state.is_terminated() {
            return Err(ZkError::Op {
                doing: "watching",
                path,
                source: zkc::Error::SessionExpired,
            });
        }
    }
}

/// Returns once no cluster depending on `own` (its snapshot's `depends_on` lists it) still lists
/// `uuid` among the pods it was configured from (its snapshot's `dependencies`). A dependent with
/// no live pod, or whose leader does not record what it used (an older ochopod), is not waited
/// for. Woken by one-shot watches on the dependents' snapshots.
async fn wait_dependents(client: &Client, own: &str, uuid: &str) -> Result<(), ZkError> {
    loop {
        let mut waiting = Vec::new();
        let mut watches = Vec::new();
        for key in cluster::list_clusters(client).await? {
            if key == own {
                continue;
            }
            let paths = ClusterPaths::new(&key);
            let path = paths.snapshot();
            let (data, _, watcher) = match client.get_and_watch_data(&path).await {
                Ok(r) => r,
                Err(zkc::Error::NoNode) => continue,
                Err(e) => return Err(ZkError::op("watching", &path)(e)),
            };
            // A snapshot that is not one (another tool's) is not ours to wait for.
            let Ok(s) = snapshot::resolve(client, &path, &data).await else {
                continue;
            };
            let lists_me = s
                .dependencies
                .get(own)
                .is_some_and(|d| d.pods.iter().any(|p| p == uuid));
            if !s.depends_on.iter().any(|d| d == own) || !lists_me {
                continue;
            }
            let registered = cluster::registered(client, &paths).await?.pods;
            if registered.values().any(|r| r.pod.state.is_live()) {
                waiting.push(key);
                watches.push(Box::pin(async move { watcher.changed().await }));
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        tracing::info!(dependents = ?waiting, "waiting for dependents to be configured without this pod");
        let (event, _, _) = futures_util::future::select_all(watches).await;
        if event.event_type == zkc::EventType::Session && event.session_state.is_terminated() {
            return Err(ZkError::Op {
                doing: "watching",
                path: format!("the snapshots of {}", waiting.join(", ")),
                source: zkc::Error::SessionExpired,
            });
        }
    }
}
