//! `ctl events`: the real binary following a cluster of real pods that register through their own
//! sync loop; the lines it prints as pods come, are held, leave and are killed.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

use super::{Fixture, T};
use crate::harness::pod::binary;

/// A running `ochopod ctl events --follow --json` and every line it printed so far.
pub struct Follow {
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    pub seen: Vec<Value>,
}

impl Follow {
    pub fn start(zk: &str, args: &[&str]) -> Follow {
        Follow::start_with(binary(), zk, args)
    }

    /// With another ochopod binary (the benchmark's release build).
    pub fn start_with(bin: &str, zk: &str, args: &[&str]) -> Follow {
        let mut child = tokio::process::Command::new(bin)
            .args(["ctl", "--zk", zk, "events", "--follow", "--json"])
            .args(args)
            .env_remove("OCHOPOD_TOKEN")
            .env_remove("OCHOPOD_NAMESPACE")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        Follow {
            _child: child,
            lines: BufReader::new(stdout).lines(),
            seen: Vec::new(),
        }
    }

    /// Reads lines until one satisfies `pred` (panics with every line seen after `timeout`).
    pub async fn until(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match tokio::time::timeout(left, self.lines.next_line()).await {
                Ok(Ok(Some(line))) => line,
                Ok(other) => panic!(
                    "ctl events ended ({other:?}) before {what}; seen: {:#?}",
                    self.seen
                ),
                Err(_) => panic!("no {what} within {timeout:?}; seen: {:#?}", self.seen),
            };
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            for key in ["time", "cluster", "kind"] {
                assert!(v[key].is_string(), "every event has {key}: {v}");
            }
            self.seen.push(v.clone());
            if pred(&v) {
                return v;
            }
        }
    }
}

fn is(v: &Value, kind: &str, seq: u64) -> bool {
    v["kind"] == kind && v["seq"] == seq
}

#[tokio::test]
async fn follows_registrations_configurations_holds_departures_and_expiries() {
    let fx = Fixture::new().await;
    let zk = fx.zk.connect_string();
    // Started before any pod: it waits for the clusters to appear.
    let mut events = Follow::start(&zk, &["ev"]);
    let pods = fx.start_synced("ev", 2, "settings: { damper: 200ms, min_size: 2 }\n");

    // Both pods registered, a leader elected, then a configuration of both.
    // In either order: seqs go by the order of the claims, not of the starts.
    let mut want = vec![1u64, 2];
    while !want.is_empty() {
        let v = events
            .until("#1 and #2 registered", T, |v| {
                v["kind"] == "registered" && v["seq"].as_u64().is_some_and(|s| want.contains(&s))
            })
            .await;
        want.retain(|s| v["seq"].as_u64() != Some(*s));
    }
    let configured = events
        .until("a configuration of two pods", T, |v| {
            v["kind"] == "configured" && v["seqs"].as_array().map(Vec::len) == Some(2)
        })
        .await;
    assert!(configured["generation"].as_u64() >= Some(1), "{configured}");
    let leader = events
        .seen
        .iter()
        .find(|v| v["kind"] == "leader")
        .cloned()
        .expect("a leader before the configuration");
    assert_eq!(leader["cluster"], "default.ev");
    let leader_seq = leader["seq"].as_u64().unwrap();
    let follower_seq = 3 - leader_seq;
    // Seqs are claimed in whatever order the pods get there: find each pod by its ip.
    let index_of = |seq: u64| {
        let ip = events.seen.iter().find(|v| is(v, "registered", seq)).unwrap()["ip"].clone();
        pods.iter().position(|(_, p)| ip == p.ip.as_str()).unwrap()
    };
    let (leader_index, follower_index) = (index_of(leader_seq), index_of(follower_seq));
    let follower = &pods[follower_index].1;
    assert!(
        events.seen.iter().all(|v| v["cluster"] == "default.ev"),
        "{:#?}",
        events.seen
    );

    // Without --follow: the current state as events, then exit.
    let out = fx.ctl(&["events", "ev"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    for want in [
        format!(" default.ev #{leader_seq} registered {}", pods[leader_index].1.ip),
        format!(" default.ev #{follower_seq} registered {}", follower.ip),
        format!(" default.ev leader #{leader_seq} {}\n", pods[leader_index].1.ip),
        " default.ev configured generation ".to_string(),
    ] {
        assert!(out.stdout.contains(&want), "{want:?} in {out:?}");
    }

    // An operator's off and on: held, then running again.
    let seq = follower_seq.to_string();
    assert_eq!(fx.ctl(&["off", "ev", "-i", &seq]).await.code, 0);
    let held = events.until("held", T, |v| is(v, "held", follower_seq)).await;
    assert_eq!(held["was"], "running");
    assert_eq!(fx.ctl(&["on", "ev", "-i", &seq]).await.code, 0);
    events
        .until("running again", T, |v| is(v, "running", follower_seq))
        .await;

    // SIGTERM: the pod says it is leaving, then goes: left, not expired.
    follower.signal(nix::sys::signal::Signal::SIGTERM);
    let gone = events
        .until("the follower gone", T, |v| {
            v["seq"] == follower_seq && (v["kind"] == "left" || v["kind"] == "expired")
        })
        .await;
    assert_eq!(gone["kind"], "left", "{:#?}", events.seen);

    // A container killed: its znode goes with its session (4 s), unannounced: expired.
    let mut pods = pods;
    pods[leader_index].1.kill_hard();
    let gone = events
        .until("the leader gone", T, |v| {
            v["seq"] == leader_seq && (v["kind"] == "left" || v["kind"] == "expired")
        })
        .await;
    assert_eq!(gone["kind"], "expired", "{:#?}", events.seen);
    events
        .until("no leader", T, |v| v["kind"] == "leader" && v["uuid"].is_null())
        .await;
}
