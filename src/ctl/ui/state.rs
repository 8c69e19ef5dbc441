//! What the page shows, kept by one actor: the watcher's model of the selected clusters, each
//! pod's last `/info` (fetched here, once per change, never per viewer) and the recent events.
//!
//! Receives [`Update`]s from the watcher and the answers of its own `/info` fetches; emits a
//! [`Published`] view over a `watch` channel that every viewer's SSE stream and `GET /api/model`
//! read (the JSON is serialized once per change, whatever the number of viewers). Stops when the
//! watcher stops.
//!
//! When `/info` is fetched: for every pod of a cluster whose ZooKeeper view changed (a pod came
//! or went, a state, the leader, a configuration), and every `refresh` for all pods (a process
//! restart or a readiness change is not in ZooKeeper). At most one fetch per pod is in flight;
//! a change meanwhile asks for one more once it is back. A pod that does not answer (a raw znode,
//! a killed container) shows its error; the rest of the page does not wait for it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::ctl::discover::Target;
use crate::ctl::http::{Caller, Failure, Request};
use crate::ctl::watch::{ClusterView, Event, Model, Update};
use crate::model::Pod;

/// How long after a change its cluster's pods are asked again.
const SETTLE: Duration = Duration::from_secs(1);

/// How many events the page keeps.
const EVENTS: usize = 200;

/// The fields of `/info` the page shows (the rest is not sent to browsers).
const INFO_FIELDS: &[&str] = &[
    "process",
    "state",
    "pod_state",
    "ready",
    "restarts",
    "last_exit",
    "generation",
    "status",
    "uptime_s",
    "connected",
];

/// What viewers read: the selected model (for the log proxy) and the page's JSON.
#[derive(Debug, Default)]
pub struct Published {
    pub model: Model,
    /// `GET /api/model` and each SSE `model` message.
    pub json: String,
}

/// A pod's last `/info`.
#[derive(Debug, Clone)]
struct Info {
    /// When the answer came (unix ms).
    at: u64,
    result: Result<Value, Failure>,
}

/// The target a pod's calls go to (its validated address).
pub fn target(key: &str, pod: &Pod) -> Target {
    Target {
        cluster: key.to_string(),
        pod: pod.clone(),
    }
}

/// Settings of the actor.
pub struct Settings {
    pub caller: Caller,
    pub parallelism: usize,
    pub request_timeout: Duration,
    /// Re-read every pod's `/info` this often (zero: only on changes).
    pub refresh: Duration,
    /// Whether a cluster key is shown.
    pub selected: Box<dyn Fn(&str) -> bool + Send + Sync>,
    /// The ZooKeeper connect string, for the page's header.
    pub zk: String,
}

struct Actor {
    settings: Settings,
    model: Model,
    infos: BTreeMap<String, Info>,
    events: VecDeque<Event>,
    version: u64,
    /// Clusters to fetch again a moment after a change: a pod's `/info` lags its znode (the
    /// leader says "configured" just after writing the snapshot that woke us).
    settle: BTreeSet<String>,
    settle_at: Option<tokio::time::Instant>,
    /// Pods with a fetch in flight, and those changed meanwhile (fetched again on return).
    in_flight: BTreeSet<String>,
    again: BTreeSet<String>,
    permits: Arc<Semaphore>,
    /// The other end is held by each fetch task.
    answers_tx: mpsc::UnboundedSender<(String, Info)>,
    /// Read by `GET /api/model`, the SSE streams and the log proxy.
    publish: watch::Sender<Arc<Published>>,
}

/// Starts the actor; the view it publishes.
pub fn spawn(settings: Settings, updates: mpsc::Receiver<Update>) -> watch::Receiver<Arc<Published>> {
    let (publish, view) = watch::channel(Arc::new(Published::default()));
    let (answers_tx, answers) = mpsc::unbounded_channel();
    let actor = Actor {
        permits: Arc::new(Semaphore::new(settings.parallelism.max(1))),
        settings,
        model: Model::default(),
        infos: BTreeMap::new(),
        events: VecDeque::new(),
        version: 0,
        settle: BTreeSet::new(),
        settle_at: None,
        in_flight: BTreeSet::new(),
        again: BTreeSet::new(),
        answers_tx,
        publish,
    };
    let span = tracing::info_span!(
        "ui_state",
        refresh_ms = u64::try_from(actor.settings.refresh.as_millis()).unwrap_or(u64::MAX)
    );
    tokio::spawn(tracing::Instrument::instrument(actor.run(updates, answers), span));
    view
}

impl Actor {
    async fn run(
        mut self,
        mut updates: mpsc::Receiver<Update>,
        mut answers: mpsc::UnboundedReceiver<(String, Info)>,
    ) {
        let refresh = self.settings.refresh;
        let mut next_refresh = (!refresh.is_zero()).then(|| tokio::time::Instant::now() + refresh);
        loop {
            tokio::select! {
                update = updates.recv() => match update {
                    Some(u) => self.apply(u),
                    None => return,
                },
                answer = answers.recv() => {
                    // Cannot be None: the actor holds a sender.
                    let Some(first) = answer else { return };
                    self.answered(first);
                    // Answers that came together make one publication.
                    while let Ok(more) = answers.try_recv() {
                        self.answered(more);
                    }
                }
                _ = sleep_until(self.settle_at) => {
                    self.settle_at = None;
                    for key in std::mem::take(&mut self.settle) {
                        self.fetch_cluster(&key);
                    }
                    continue;
                }
                _ = sleep_until(next_refresh) => {
                    next_refresh = Some(tokio::time::Instant::now() + refresh);
                    let all: Vec<(String, Pod)> = self
                        .model
                        .clusters
                        .values()
                        .flat_map(|c| c.pods.values().map(|p| (c.key.clone(), p.clone())))
                        .collect();
                    for (key, pod) in all {
                        self.fetch(&key, &pod);
                    }
                    continue;
                }
            }
            self.publish();
        }
    }

    /// A new model: keep the selected clusters, fetch `/info` where something changed.
    fn apply(&mut self, update: Update) {
        let selected = &self.settings.selected;
        let model = Model {
            clusters: update
                .model
                .clusters
                .iter()
                .filter(|(k, _)| selected(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let changed: Vec<ClusterView> = model
            .clusters
            .values()
            .filter(|c| self.model.clusters.get(&c.key) != Some(*c))
            .cloned()
            .collect();
        self.model = model;
        let live: BTreeSet<&String> = self.model.clusters.values().flat_map(|c| c.pods.keys()).collect();
        self.infos.retain(|uuid, _| live.contains(uuid));
        for e in update.events.into_iter().filter(|e| selected(&e.cluster)) {
            if self.events.len() == EVENTS {
                self.events.pop_front();
            }
            self.events.push_back(e);
        }
        for cluster in changed {
            for pod in cluster.pods.values() {
                self.fetch(&cluster.key, pod);
            }
            self.settle.insert(cluster.key.clone());
            self.settle_at = Some(tokio::time::Instant::now() + SETTLE);
        }
    }

    fn fetch_cluster(&mut self, key: &str) {
        let pods: Vec<Pod> = match self.model.clusters.get(key) {
            Some(c) => c.pods.values().cloned().collect(),
            None => return,
        };
        for pod in &pods {
            self.fetch(key, pod);
        }
    }

    /// Fetches a pod's `/info` in the background (bounded), unless one is in flight already.
    fn fetch(&mut self, key: &str, pod: &Pod) {
        if !self.in_flight.insert(pod.uuid.clone()) {
            self.again.insert(pod.uuid.clone());
            return;
        }
        let target = target(key, pod);
        let caller = self.settings.caller.clone();
        let req = Request::get("/info", self.settings.request_timeout);
        let permits = self.permits.clone();
        let answers = self.answers_tx.clone();
        tokio::spawn(async move {
            // The semaphore is never closed, so acquiring only waits.
            let _permit = permits.acquire_owned().await;
            let result = caller.call(&target, &req).await;
            let info = Info {
                at: crate::clock::now_ms(),
                result,
            };
            let _ = answers.send((target.pod.uuid, info));
        });
    }

    fn answered(&mut self, (uuid, info): (String, Info)) {
        self.in_flight.remove(&uuid);
        let Some((key, pod)) = self
            .model
            .clusters
            .values()
            .find_map(|c| c.pods.get(&uuid).map(|p| (c.key.clone(), p.clone())))
        else {
            // The pod went meanwhile.
            self.again.remove(&uuid);
            return;
        };
        self.infos.insert(uuid.clone(), info);
        if self.again.remove(&uuid) {
            self.fetch(&key, &pod);
        }
    }

    fn publish(&mut self) {
        self.version = self.version.wrapping_add(1);
        let json = view(
            &self.model,
            &self.infos,
            &self.events,
            self.version,
            &self.settings.zk,
        )
        .to_string();
        self.publish.send_replace(Arc::new(Published {
            model: self.model.clone(),
            json,
        }));
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The page's JSON: clusters (with their pods and each pod's `/info` fields), recent events.
fn view(
    model: &Model,
    infos: &BTreeMap<String, Info>,
    events: &VecDeque<Event>,
    version: u64,
    zk: &str,
) -> Value {
    let now = crate::clock::now_ms();
    let clusters: Vec<Value> = model
        .clusters
        .values()
        .map(|c| {
            let mut pods: Vec<&Pod> = c.pods.values().collect();
            pods.sort_by(|a, b| Pod::by_seq(a, b));
            let pods: Vec<Value> = pods
                .into_iter()
                .map(|p| {
                    let info = infos.get(&p.uuid);
                    let answer = info.and_then(|i| i.result.as_ref().ok()).map(|v| {
                        let fields: serde_json::Map<String, Value> = INFO_FIELDS
                            .iter()
                            .filter_map(|k| v.get(*k).map(|x| (k.to_string(), x.clone())))
                            .collect();
                        Value::Object(fields)
                    });
                    json!({
                        "uuid": p.uuid,
                        "seq": p.seq,
                        "ip": p.ip,
                        "control_port": p.control_port,
                        "ports": p.ports,
                        "state": p.state,
                        "leader": c.leader.as_ref() == Some(&p.uuid),
                        "configured": c.snapshot.as_ref().is_some_and(|s| s.pods.contains_key(&p.uuid)),
                        "info": answer,
                        "info_error": info.and_then(|i| i.result.as_ref().err()).map(Failure::to_string),
                        "info_age_ms": info.map(|i| now.saturating_sub(i.at)),
                    })
                })
                .collect();
            let leader_status = c
                .leader
                .as_ref()
                .and_then(|u| infos.get(u))
                .and_then(|i| i.result.as_ref().ok())
                .and_then(|v| {
                    v["cluster_status"]
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                });
            let snapshot = c.snapshot.clone().unwrap_or_default();
            json!({
                "key": c.key,
                "paused": c.paused.as_ref().map(|p| p.describe()),
                "leader": c.leader,
                "leader_status": leader_status,
                "generation": c.snapshot.as_ref().map(|s| s.generation),
                "depends_on": snapshot.depends_on,
                "failed": snapshot.failed,
                "live": c.live(),
                "pods": pods,
                "rejected": c.rejected,
            })
        })
        .collect();
    json!({
        "version": version,
        "zk": zk,
        "time": crate::clock::rfc3339(SystemTime::now()),
        "clusters": clusters,
        "events": events,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ctl::watch::SnapshotView;

    #[test]
    fn the_view_carries_what_the_page_shows_and_no_more() {
        let pod = Pod {
            uuid: "u1".into(),
            seq: 1,
            ip: "127.0.0.2".into(),
            control_port: 8080,
            ..Pod::default()
        };
        let cluster = ClusterView {
            key: "default.web".into(),
            pods: BTreeMap::from([("u1".into(), pod)]),
            leader: Some("u1".into()),
            snapshot: Some(SnapshotView {
                generation: 2,
                pods: BTreeMap::from([("u1".into(), 1)]),
                depends_on: vec!["default.db".into()],
                failed: vec![],
            }),
            ..ClusterView::default()
        };
        let model = Model {
            clusters: BTreeMap::from([("default.web".into(), cluster)]),
        };
        let infos = BTreeMap::from([(
            "u1".to_string(),
            Info {
                at: 0,
                result: Ok(json!({"process": "running", "cluster_status": "configured", "secret": "x"})),
            },
        )]);
        let v = view(&model, &infos, &VecDeque::new(), 7, "zk:2181");
        let c = &v["clusters"][0];
        assert_eq!(c["leader_status"], "configured");
        assert_eq!(c["live"], 1);
        assert_eq!(c["generation"], 2);
        assert_eq!(c["depends_on"][0], "default.db");
        let p = &c["pods"][0];
        assert_eq!(
            (p["leader"].as_bool(), p["configured"].as_bool()),
            (Some(true), Some(true))
        );
        assert_eq!(p["info"]["process"], "running");
        assert!(p["info"].get("secret").is_none(), "only the shown fields: {p}");
        assert_eq!(v["version"], 7);
    }
}
