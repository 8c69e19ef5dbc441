//! The data that crosses the wire: a pod's JSON (SPEC §6) and the cluster map (SPEC §7).
//!
//! Both the leader (which builds maps) and the pods (which render from them) use these types, and
//! they are what ZooKeeper stores, so every field here is part of the contract.
//!
//! **This is the trust boundary for data.** ZooKeeper (writable by anybody without
//! `OCHOPOD_ZK_AUTH`) and the control port are untrusted, and these values end up in shell
//! commands, file paths and config files. So a [`Pod`] or a [`ClusterMap`] can only be
//! deserialized valid: both go through [`check_pod`] and the map checks (`#[serde(try_from)]`), which refuses addresses
//! that are not IP addresses, names outside strict character sets, out-of-range numbers and any
//! control character. Code past deserialization never checks again. Unknown fields are ignored,
//! so that a newer ochopod can add some without breaking older pods during a rolling upgrade.

mod check;
pub mod delta;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod held;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use check::{check_pod, is_uuid, Invalid, MAX_SEQ};

/// The version of the cluster map this ochopod writes (`version` in the map). Receivers accept
/// any version: fields they do not know are ignored. 2: the leader may send a map as a delta
/// ([`delta`]) to a pod that says it takes them.
pub const WIRE_VERSION: u32 = 2;

/// What a pod is, as registered in ZooKeeper and sent in cluster maps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "check::RawPod")]
pub struct Pod {
    pub uuid: String,
    pub seq: u32,
    pub cluster: String,
    pub namespace: String,
    /// The address peers use.
    pub ip: String,
    /// A stable DNS name when there is one, else the ip.
    pub host: String,
    /// The address outside users use.
    pub public: String,
    /// The node (host machine) the pod runs on, when known.
    pub node: String,
    /// The scheduler's task id, when known.
    pub task: String,
    /// Container port → the port peers reach it at (remapped on Marathon).
    pub ports: BTreeMap<String, u16>,
    /// The control port peers call.
    pub control_port: u16,
    /// Which binding found the identity: `explicit`, `kubernetes`, `marathon`, `local`.
    pub binding: String,
    /// ochopod's version.
    pub version: String,
    pub state: PodState,
    /// When this run of ochopod started (unix ms). A pod that comes back under the same uuid
    /// (a restarted container on a persistent volume) is a membership change, because its
    /// process needs a configuration again; a new session of the same run (expiry, reset) is not.
    pub started: u64,
}

impl Pod {
    /// The order of a cluster's pods everywhere (templates, maps, ctl, the UI): by seq, then uuid
    /// for pods that claim the same seq.
    pub fn by_seq(a: &Pod, b: &Pod) -> std::cmp::Ordering {
        (a.seq, &a.uuid).cmp(&(b.seq, &b.uuid))
    }
}

/// The pod's standing in its cluster, as the leader and dependents read it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodState {
    #[default]
    Running,
    /// An operator turned it off: the leader skips it until an `on`.
    Held,
    /// Sanity checks or configuration failed: left out.
    Failed,
    /// Shutting down (SIGTERM): dependents and the leader drop it.
    Leaving,
}

impl PodState {
    /// Whether the leader and dependents count this pod.
    pub fn is_live(self) -> bool {
        self == PodState::Running
    }
}

/// What applying a map would do to the pod's process: `POST /control/check` answers it
/// (`{"ok": true, "action": ...}`), so that the leader can restart pods a few at a time
/// (`settings.rolling`). An older pod answers without it: the leader then assumes `restart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The process is not running: it would start.
    Start,
    /// Nothing it sees changes: it keeps running.
    Keep,
    /// Its files or command change and `process.reload` is declared.
    Reload,
    /// Its files or command change (or `strict`): it would be stopped and started again.
    Restart,
}

/// Pods by uuid.
pub type Pods = std::collections::BTreeMap<String, Pod>;

/// The body of `POST /control/on` and `/control/check` (SPEC §7).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "check::RawMap")]
pub struct ClusterMap {
    /// The map format ([`WIRE_VERSION`]); informative, receivers ignore fields they do not know.
    pub version: u32,
    /// The leader's epoch: the zxid that created its election node. A later leader always has a
    /// larger one, so a pod can refuse the maps of a leader that was deposed (SPEC §6).
    pub epoch: u64,
    pub generation: u64,
    /// The uuid of the receiver.
    pub key: String,
    pub pods: BTreeMap<String, Pod>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// The pods of the last configuration that this one drops, so that every receiver (a new pod
    /// too) can render them. An addition to SPEC §7; a receiver falls back to its own last map.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub removed_pods: BTreeMap<String, Pod>,
    /// Dependency name (as written in depends_on, or ns.name for wildcard matches) → its pods.
    pub dependencies: BTreeMap<String, BTreeMap<String, Pod>>,
}

impl ClusterMap {
    /// A map holding only `me`, at `generation` (a standalone pod's configuration, or the context
    /// of hooks that run before any configuration).
    pub fn of_one(me: &Pod, generation: u64) -> ClusterMap {
        ClusterMap {
            version: WIRE_VERSION,
            generation,
            key: me.uuid.clone(),
            pods: BTreeMap::from([(me.uuid.clone(), me.clone())]),
            ..Default::default()
        }
    }

    /// The pods sorted by seq, as templates see them.
    pub fn pods_by_seq(&self) -> Vec<&Pod> {
        let mut pods: Vec<&Pod> = self.pods.values().collect();
        pods.sort_by(|a, b| Pod::by_seq(a, b));
        pods
    }

    /// The receiver's own entry.
    pub fn me(&self) -> Option<&Pod> {
        self.pods.get(&self.key)
    }
}
