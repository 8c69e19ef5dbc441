//! `ochopod ctl` end to end: a real ZooKeeper holding the SPEC §6 layout, real pods answering
//! the §7 API, the real binary as a pipeline would run it.
//!
//! Most tests register standalone pods themselves: their real `/info` as the znode (ephemeral,
//! from the test's session), with the seq the test gives them (standalone pods all call
//! themselves #1), so that a pod can be made to vanish or misbehave at will. `synced` runs pods
//! that register through their own sync loop.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

mod errors;
pub mod events;
mod synced;
mod verbs;

use std::time::Duration;

use serde_json::Value;
use zookeeper_client as zkc;

use crate::harness::pod::{binary, Pod, PodDir, PodOptions};
use crate::harness::zk::ZkServer;
use crate::runner::pod_json;

pub const T: Duration = Duration::from_secs(30);

/// A ZooKeeper, a session on it, and the pods registered through that session.
pub struct Fixture {
    pub zk: ZkServer,
    pub client: zkc::Client,
    pub token: Option<String>,
}

/// A finished `ochopod ctl`.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

async fn zk_session(connect: &str) -> zkc::Client {
    let cfg = ochopod::zk::ZkConfig {
        connect: connect.to_string(),
        ..ochopod::zk::ZkConfig::default()
    };
    ochopod::zk::connect(&cfg).await.unwrap()
}

fn persistent() -> zkc::CreateOptions<'static> {
    zkc::CreateMode::Persistent.with_acls(zkc::Acls::anyone_all())
}

impl Fixture {
    pub async fn new() -> Fixture {
        let zk = tokio::task::spawn_blocking(ZkServer::start).await.unwrap();
        let client = zk_session(&zk.connect_string()).await;
        Fixture {
            zk,
            client,
            token: None,
        }
    }

    /// Starts `n` standalone pods of `cluster` (each its own dir, hence its own uuid).
    pub fn start(&self, cluster: &str, n: usize, extra: &str) -> Vec<(PodDir, Pod)> {
        self.start_pods(cluster, n, extra, false)
    }

    /// Starts `n` pods of `cluster` that register themselves through their sync loop.
    pub fn start_synced(&self, cluster: &str, n: usize, extra: &str) -> Vec<(PodDir, Pod)> {
        self.start_pods(cluster, n, extra, true)
    }

    fn start_pods(&self, cluster: &str, n: usize, extra: &str, synced: bool) -> Vec<(PodDir, Pod)> {
        (0..n)
            .map(|_| {
                let dir = PodDir::new(&format!(
                    "cluster: {cluster}\nports: [7000]\nprocess:\n  command: [\"sleep\", \"300\"]\n  \
                     stop: {{ grace: 2s }}\n{extra}"
                ));
                let mut opts = PodOptions {
                    token: self.token.clone(),
                    ..PodOptions::default()
                };
                if synced {
                    opts.args.clear();
                    opts.env.insert("OCHOPOD_ZK".into(), self.zk.connect_string());
                    opts.env.insert("OCHOPOD_ZK_SESSION_TIMEOUT".into(), "4s".into());
                }
                let pod = Pod::start(&dir, opts);
                (dir, pod)
            })
            .collect()
    }

    /// Registers the pods with seqs 1, 2, ...: their `/info` as pod JSON under `pods/<uuid>`.
    pub async fn register(&self, pods: &[(PodDir, Pod)]) -> Vec<String> {
        self.register_from(pods, 1).await
    }

    /// Registers the pods with seqs `first`, `first + 1`, ...
    pub async fn register_from(&self, pods: &[(PodDir, Pod)], first: u32) -> Vec<String> {
        let mut uuids = Vec::new();
        for (i, (_, pod)) in pods.iter().enumerate() {
            let info = pod.wait_info("running", T, |i| i["process"] == "running").await;
            let mut json = pod_json(&info);
            json["seq"] = (first + i as u32).into();
            json["state"] = info["pod_state"].clone();
            let key = info["key"].as_str().unwrap();
            let uuid = info["uuid"].as_str().unwrap().to_string();
            let dir = format!("/ochopod/clusters/{key}/pods");
            self.client.mkdir(&dir, &persistent()).await.unwrap();
            let ephemeral = zkc::CreateMode::Ephemeral.with_acls(zkc::Acls::anyone_all());
            self.client
                .create(&format!("{dir}/{uuid}"), json.to_string().as_bytes(), &ephemeral)
                .await
                .unwrap();
            uuids.push(uuid);
        }
        uuids
    }

    /// An election node for `uuid` (the first one created leads).
    pub async fn elect(&self, key: &str, uuid: &str) {
        let dir = format!("/ochopod/clusters/{key}/leader");
        self.client.mkdir(&dir, &persistent()).await.unwrap();
        let opts = zkc::CreateMode::EphemeralSequential.with_acls(zkc::Acls::anyone_all());
        self.client
            .create(&format!("{dir}/n_"), uuid.as_bytes(), &opts)
            .await
            .unwrap();
    }

    pub async fn ctl(&self, args: &[&str]) -> Out {
        ctl_with(&self.zk.connect_string(), args, &[]).await
    }
}

/// `ochopod ctl --zk <zk> <args>`, without the test runner's token or namespace.
pub fn ctl_command(zk: &str, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(binary());
    cmd.arg("ctl")
        .arg("--zk")
        .arg(zk)
        .args(args)
        .env_remove("OCHOPOD_TOKEN")
        .env_remove("OCHOPOD_TOKEN_FILE")
        .env_remove("OCHOPOD_NAMESPACE");
    cmd
}

pub async fn ctl_with(zk: &str, args: &[&str], env: &[(&str, &str)]) -> Out {
    let out = ctl_command(zk, args)
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn pods_of(v: &Value) -> Vec<Value> {
    v["pods"].as_array().cloned().unwrap_or_default()
}
