//! The showcase, end to end: pods/zookeeper.yaml runs a real ZooKeeper ensemble (Debian's 3.8)
//! under `ochopod run`, coordinated through a separate ZooKeeper, and pods/zk-client.yaml uses
//! it. The ensemble forms with 3 pods, grows to 5 and shrinks back to 3 by SIGTERM (drain) and by
//! kill -9, through ZooKeeper's dynamic reconfiguration, serving throughout; the client waits for
//! 3 configured ensemble pods, then reads and writes through them and follows every change.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zookeeper_client as zkc;

use crate::harness::eventually;
use crate::harness::pod::{read, Pod, PodDir, PodOptions};
use crate::harness::zk::ZkServer;

const T: Duration = Duration::from_secs(90);

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A ZooKeeper four-letter command to `ip:2181`; empty when it does not answer.
fn four(ip: &str, cmd: &str) -> String {
    let Ok(addr) = format!("{ip}:2181").parse() else {
        return String::new();
    };
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(cmd.as_bytes()).is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// `srvr`'s Mode (leader, follower...), when the server serves.
fn mode(ip: &str) -> Option<String> {
    four(ip, "srvr")
        .lines()
        .find_map(|l| l.strip_prefix("Mode: ").map(str::to_string))
}

/// The membership a server reports (`conf`): its `server.N=...` lines and the config version.
fn membership(ip: &str) -> (BTreeSet<String>, String) {
    let conf = four(ip, "conf");
    let servers = conf
        .lines()
        .filter(|l| l.starts_with("server.") && l.contains('='))
        .map(str::to_string)
        .collect();
    let version = conf
        .lines()
        .find_map(|l| l.strip_prefix("version="))
        .unwrap_or_default()
        .to_string();
    (servers, version)
}

/// Waits until every one of `ips` serves and all report the same membership of exactly `ips`.
async fn ensemble_of(ips: &[String]) -> Vec<String> {
    let want: BTreeSet<String> = ips.iter().map(|ip| format!("{ip}:2181")).collect();
    eventually(T, &format!("an ensemble of {ips:?}"), || async {
        let modes: Option<Vec<String>> = ips.iter().map(|ip| mode(ip)).collect();
        let modes = modes?;
        let views: Vec<_> = ips.iter().map(|ip| membership(ip)).collect();
        let (servers, version) = &views[0];
        let clients: BTreeSet<String> = servers
            .iter()
            .filter_map(|l| l.split(';').nth(1).map(str::to_string))
            .collect();
        (clients == want && views.iter().all(|(s, v)| s == servers && v == version)).then_some(modes)
    })
    .await
}

/// The pods of the test, killed outright (with their JVMs) at the end, whatever happens.
#[derive(Default)]
struct Fleet {
    pods: Vec<(Pod, PodDir)>,
}

impl Fleet {
    fn start(&mut self, zk: &ZkServer, example: &str) -> usize {
        self.start_with(zk, example, PodDir::new(""))
    }

    fn start_with(&mut self, zk: &ZkServer, example: &str, dir: PodDir) -> usize {
        let env = [
            ("OCHOPOD_ZK", zk.connect_string()),
            ("OCHOPOD_ZK_SESSION_TIMEOUT", "2s".into()),
            ("ZK_TICK_TIME", "300".into()),
            (
                "ZK_JVMFLAGS",
                "-Xmx64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1".into(),
            ),
            (
                "ZK_CLI_JVMFLAGS",
                "-Xmx32m -XX:+UseSerialGC -XX:TieredStopAtLevel=1".into(),
            ),
        ];
        let opts = PodOptions {
            args: vec![],
            env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            ..PodOptions::default()
        };
        let pod = Pod::start_file(&repo(example), &dir, opts);
        self.pods.push((pod, dir));
        self.pods.len() - 1
    }

    /// Starts pod `i` again on its home (same uuid and seq, its files as ZooKeeper left them),
    /// on a new address, as a rescheduled container would be.
    fn restart(&mut self, zk: &ZkServer, i: usize, example: &str) {
        let (old, dir) = self.pods.swap_remove(i);
        drop(old);
        let n = self.start_with(zk, example, dir);
        self.pods.swap(i, n);
    }

    fn pod(&self, i: usize) -> &Pod {
        &self.pods[i].0
    }

    fn ips(&self, which: &[usize]) -> Vec<String> {
        which.iter().map(|&i| self.pod(i).ip.clone()).collect()
    }

    /// Which of `which` is the ochopod leader of its cluster.
    /// Polls: right after a leader left, the election may still be settling.
    async fn ochopod_leader(&self, which: &[usize]) -> usize {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            for &i in which {
                if self.pod(i).info().await["state"] == "leader" {
                    return i;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no ochopod leader among {which:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for (pod, _) in &mut self.pods {
            pod.kill_hard();
        }
    }
}

async fn zk_client(ip: &str) -> zkc::Client {
    let addr = format!("{ip}:2181");
    eventually(T, &format!("a session with {addr}"), || async {
        let cfg = ochopod::zk::ZkConfig {
            connect: addr.clone(),
            session_timeout: Duration::from_secs(6),
            auth: None,
        };
        ochopod::zk::connect(&cfg).await.ok()
    })
    .await
}

/// The value zk-client last read back, 0 before any.
fn last_read(client: &Pod) -> u64 {
    read(&client.home_file("last-read")).trim().parse().unwrap_or(0)
}

/// Waits until zk-client renders `servers` and reads values past the one seen now.
async fn client_uses(client: &Pod, ips: &[String]) {
    let want: BTreeSet<String> = ips.iter().map(|ip| format!("{ip}:2181")).collect();
    eventually(T, &format!("zk-client configured with {want:?}"), || async {
        let cfg = read(&client.home_file("client.cfg"));
        let servers = cfg.lines().find_map(|l| l.strip_prefix("servers="))?;
        (servers.split(',').map(str::to_string).collect::<BTreeSet<_>>() == want).then_some(())
    })
    .await;
    let before = last_read(client);
    eventually(T, "zk-client to read back new values", || async {
        (last_read(client) >= before + 2).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_zookeeper_ensemble_grows_and_shrinks_by_reconfiguration_and_serves_its_client() {
    let zk = ZkServer::start();
    let mut fleet = Fleet::default();

    // The client first: it must wait for an ensemble configured with at least 3 pods.
    let client = fleet.start(&zk, "pods/zk-client.yaml");
    let (z1, z2) = (
        fleet.start(&zk, "pods/zookeeper.yaml"),
        fleet.start(&zk, "pods/zookeeper.yaml"),
    );
    for i in [z1, z2] {
        fleet
            .pod(i)
            .wait_info("registered", T, |i| i["seq"].as_u64() > Some(0))
            .await;
    }
    let leader = fleet.ochopod_leader(&[z1, z2]).await;
    fleet
        .pod(leader)
        .wait_info("the ensemble waiting for 3 pods", T, |i| {
            i["cluster_status"]
                .as_str()
                .unwrap_or("")
                .contains("min_size: 2/3")
        })
        .await;
    let waiting = fleet
        .pod(client)
        .wait_info("zk-client waiting for the ensemble", T, |i| {
            i["cluster_status"]
                .as_str()
                .unwrap_or("")
                .contains("waiting for dependency zookeeper")
        })
        .await;
    assert_eq!(waiting["generation"], 0, "{waiting}");
    assert_eq!(last_read(fleet.pod(client)), 0);

    // The third pod: a working ensemble of 3.
    let z3 = fleet.start(&zk, "pods/zookeeper.yaml");
    let three = [z1, z2, z3];
    let mut modes = ensemble_of(&fleet.ips(&three)).await;
    modes.sort();
    assert_eq!(modes, ["follower", "follower", "leader"]);
    let opts = zkc::CreateMode::Persistent.with_acls(zkc::Acls::anyone_all());
    let ips = fleet.ips(&three);
    zk_client(&ips[0])
        .await
        .create("/showcase", b"written through member 1", &opts)
        .await
        .unwrap();
    let (data, _) = zk_client(&ips[2]).await.get_data("/showcase").await.unwrap();
    assert_eq!(data, b"written through member 1");
    client_uses(fleet.pod(client), &ips).await;
    let (data, _) = zk_client(&ips[1])
        .await
        .get_data("/zk-client/pod-1")
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&data).parse::<u64>().unwrap() > 0);

    // 3 -> 5: the joiners are added by reconfiguration, all five vote.
    let (z4, z5) = (
        fleet.start(&zk, "pods/zookeeper.yaml"),
        fleet.start(&zk, "pods/zookeeper.yaml"),
    );
    let five = [z1, z2, z3, z4, z5];
    let modes = ensemble_of(&fleet.ips(&five)).await;
    let zk_leader = five[modes
        .iter()
        .position(|m| m == "leader")
        .expect("a ZooKeeper leader")];
    let leader_ip = fleet.pod(zk_leader).ip.clone();
    eventually(
        T,
        "4 voting followers synced with the ZooKeeper leader",
        || async {
            let mntr = four(&leader_ip, "mntr");
            (mntr.contains("zk_synced_followers\t4") && mntr.contains("zk_synced_non_voting_followers\t0"))
                .then_some(())
        },
    )
    .await;
    client_uses(fleet.pod(client), &fleet.ips(&five)).await;

    // 5 -> 3 by SIGTERM: the ochopod leader's pod (it hands the leadership over) and the
    // ZooKeeper leader's (a leader hand-off), or one more when they are the same. Each waits
    // for the new leader's `reconfig -remove`, then stops.
    let boss = fleet.ochopod_leader(&five).await;
    let mut leaving = vec![boss];
    for i in std::iter::once(zk_leader).chain(five.iter().rev().copied()) {
        if !leaving.contains(&i) && leaving.len() < 2 {
            leaving.push(i);
        }
    }
    for &i in &leaving {
        fleet.pod(i).signal(nix::sys::signal::Signal::SIGTERM);
    }
    for &i in &leaving {
        let code = fleet.pods[i].0.wait_exit(T).await;
        assert_eq!(code, 143, "a SIGTERMed ZooKeeper exits 128+15");
    }
    let rest: Vec<usize> = five.iter().copied().filter(|i| !leaving.contains(i)).collect();
    ensemble_of(&fleet.ips(&rest)).await;
    client_uses(fleet.pod(client), &fleet.ips(&rest)).await;

    // Back to 5: the two pods come back on their homes (their seqs, ZooKeeper's files from before
    // their removal) at new addresses; they are seeded afresh and added again. Then kill -9 the
    // ochopod leader's pod and another: the next ochopod leader removes them, the 3 left serve,
    // nothing written is lost.
    for &i in &leaving {
        fleet.restart(&zk, i, "pods/zookeeper.yaml");
    }
    ensemble_of(&fleet.ips(&five)).await;
    let five = five.to_vec();
    let boss = fleet.ochopod_leader(&five).await;
    let other = *five.iter().rev().find(|&&i| i != boss).unwrap();
    fleet.pods[boss].0.kill_hard();
    fleet.pods[other].0.kill_hard();
    let rest: Vec<usize> = five
        .iter()
        .copied()
        .filter(|&i| i != boss && i != other)
        .collect();
    ensemble_of(&fleet.ips(&rest)).await;
    let (data, _) = zk_client(&fleet.pod(rest[0]).ip)
        .await
        .get_data("/showcase")
        .await
        .unwrap();
    assert_eq!(data, b"written through member 1");
    client_uses(fleet.pod(client), &fleet.ips(&rest)).await;
}
