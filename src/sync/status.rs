//! What the sync loop publishes ([`SyncStatus`], for `/info` and `/metrics`), and the events its
//! parts report to change it ([`Report`]).
//!
//! One writer: the sync actor owns the `watch::Sender<SyncStatus>` and applies, in order, what
//! the member and leader tasks report over an unbounded channel ([`apply`], pure); they never
//! write the status themselves.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No session, or not registered yet.
    Connecting,
    Follower,
    Leader,
}

/// What `/info` shows of the sync loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncStatus {
    pub role: Role,
    /// One human line: what the loop is doing or waiting for, and why.
    pub status: String,
    /// The claimed seq (0 until claimed).
    pub seq: u32,
    /// Whether the session is connected right now.
    pub connected: bool,
    /// The cluster's last configuration known here (the snapshot's generation).
    pub generation: u64,
    /// While leading: registrations under `pods/` refused as invalid (left out of every map).
    pub rejected: usize,
    /// What the leader saw and did (`/metrics`); meaningful while `role` is `Leader`.
    pub leader: LeaderStats,
}

/// What a leader publishes about its cluster and its configurations (`/metrics`). Everything but
/// the counters (attempts, reads) starts afresh with each leadership.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderStats {
    /// `settings.min_size`.
    pub min_size: usize,
    /// Registered pods by their state, as last read.
    pub pods: PodCounts,
    /// Pods a configuration includes: running and not evicted.
    pub live: usize,
    /// Running pods left out after failing `evict_after` times.
    pub evicted: usize,
    /// The cluster's pause, as last read (an operator's, or this leader's for `max_lost`).
    pub paused: Option<crate::zk::pause::Pause>,
    /// Pods of the last configuration that vanished without leaving (`settings.max_lost`).
    pub lost: usize,
    /// The longest a configuration of the live pods may take ([`configuration_bound`]).
    pub bound: Duration,
    /// When the configuration under way started.
    pub configuring: Option<std::time::Instant>,
    /// The last configuration that ended: how long it took, whether it succeeded.
    pub last: Option<(Duration, bool)>,
    /// When the last successful configuration ended.
    pub last_success: Option<std::time::SystemTime>,
    /// Configurations this pod ran while leading (all its leaderships), by result.
    pub succeeded: u64,
    pub failed: u64,
    /// ZooKeeper requests this pod made while leading to read its cluster and dependencies (lists and
    /// reads of the cache, [`crate::zk::mirror`]): what a change costs, from the leader's side.
    pub zk_reads: u64,
}

/// Registered pods by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodCounts {
    pub running: usize,
    pub held: usize,
    pub failed: usize,
    pub leaving: usize,
}

impl LeaderStats {
    /// A leadership starts: nothing seen or configured yet (the counters go on).
    pub(super) fn lead(&mut self, min_size: usize) {
        *self = LeaderStats {
            min_size,
            succeeded: self.succeeded,
            failed: self.failed,
            zk_reads: self.zk_reads,
            ..LeaderStats::default()
        };
    }

    /// The cluster as just read. False when nothing changed.
    fn observed(&mut self, seen: Seen) -> bool {
        let before = (self.pods, self.live, self.evicted, self.bound, self.lost);
        let pause_changed = self.paused != seen.paused;
        self.pods = seen.pods;
        self.live = seen.live;
        self.evicted = seen.evicted;
        self.bound = seen.bound;
        self.paused = seen.paused;
        self.lost = seen.lost;
        pause_changed || before != (self.pods, self.live, self.evicted, self.bound, self.lost)
    }

    fn started(&mut self) {
        self.configuring = Some(std::time::Instant::now());
    }

    fn finished(&mut self, ok: bool) {
        let took = self.configuring.take().map_or(Duration::ZERO, |t| t.elapsed());
        self.last = Some((took, ok));
        if ok {
            self.last_success = Some(std::time::SystemTime::now());
            self.succeeded = self.succeeded.saturating_add(1);
        } else {
            self.failed = self.failed.saturating_add(1);
        }
    }
}

/// The longest a configuration of `pods` pods can take when every call uses up its
/// `settings.timeout` (SPEC §3): a round of `check`, of `off` with `full_shutdown`, of `on` (one
/// call per pod when `sequential`), of `ok`, each round `parallelism` calls at a time, then
/// `apply`. ZooKeeper round trips come on top.
pub fn configuration_bound(settings: &crate::spec::Settings, pods: usize) -> Duration {
    let rounds = pods.max(1).div_ceil(settings.parallelism.max(1));
    let on = if settings.sequential { pods.max(1) } else { rounds };
    let off = if settings.full_shutdown { rounds } else { 0 };
    let apply = usize::from(settings.apply.is_some());
    let calls = rounds
        .saturating_mul(2)
        .saturating_add(on)
        .saturating_add(off)
        .saturating_add(apply);
    settings
        .timeout
        .saturating_mul(u32::try_from(calls).unwrap_or(u32::MAX))
}

/// What the leader saw in one read of its cluster (the `/metrics` gauges).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Seen {
    pub pods: PodCounts,
    pub live: usize,
    pub evicted: usize,
    pub bound: Duration,
    pub paused: Option<crate::zk::pause::Pause>,
    pub lost: usize,
}

/// What the member and leader tasks report to the sync actor (past tense: it happened).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Report {
    /// Entered the election, waiting behind another candidate.
    Following,
    /// Won the election.
    Elected,
    /// A leadership starts (its figures start afresh).
    Leading { min_size: usize },
    /// Gave the leadership up to a live pod, and why.
    Resigned(String),
    /// The election failed; joining again.
    Interrupted(String),
    /// A new status line.
    Line(String),
    /// The leader read its cluster.
    Observed(Seen),
    /// The leader made this many more read requests to ZooKeeper.
    Read(u64),
    /// Registrations refused as invalid, as last read.
    Rejected(usize),
    /// A configuration started.
    Started,
    /// A configuration ended: whether it succeeded.
    Finished(bool),
    /// A configuration committed this generation.
    Configured(u64),
}

/// Applies one report; false when nothing changed (readers are not woken).
pub(super) fn apply(s: &mut SyncStatus, r: Report) -> bool {
    let before = s.clone();
    match r {
        Report::Following => {
            s.role = Role::Follower;
            s.status = "following".into();
        }
        Report::Elected => {
            s.role = Role::Leader;
            s.status = "leading".into();
        }
        Report::Leading { min_size } => s.leader.lead(min_size),
        Report::Resigned(why) => {
            s.role = Role::Follower;
            s.status = format!("resigned: {why}");
        }
        Report::Interrupted(why) => {
            s.role = Role::Follower;
            s.status = format!("election interrupted: {why}");
        }
        Report::Line(line) => s.status = line,
        Report::Observed(seen) => {
            s.leader.observed(seen);
        }
        Report::Read(n) => s.leader.zk_reads = s.leader.zk_reads.saturating_add(n),
        Report::Rejected(n) => s.rejected = n,
        Report::Started => s.leader.started(),
        Report::Finished(ok) => s.leader.finished(ok),
        Report::Configured(generation) => s.generation = generation,
    }
    *s != before
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn settings(yaml: &str) -> crate::spec::Settings {
        let text = format!("cluster: c\nsettings: {yaml}\nprocess: {{ command: 'true' }}\n");
        crate::spec::load_with_env(std::path::Path::new("pod.yaml"), &text, &|_| None)
            .unwrap()
            .settings
            .clone()
    }

    #[test]
    fn a_configuration_is_bounded_by_one_timeout_per_round_of_calls() {
        let secs = Duration::from_secs;
        // check, on, ok: one round each with the default parallelism.
        assert_eq!(configuration_bound(&settings("{ timeout: 10s }"), 5), secs(30));
        // Two at a time: 3 rounds per phase for 5 pods.
        assert_eq!(
            configuration_bound(&settings("{ timeout: 10s, parallelism: 2 }"), 5),
            secs(90)
        );
        // One by one: one `on` per pod; off and apply add theirs.
        let all =
            settings("{ timeout: 10s, sequential: true, full_shutdown: true, apply: { command: 'true' } }");
        assert_eq!(configuration_bound(&all, 5), secs(10 * (1 + 5 + 1 + 1 + 1)));
        // No pods yet still means one round.
        assert_eq!(configuration_bound(&settings("{ timeout: 10s }"), 0), secs(30));
    }

    #[test]
    fn a_new_leadership_keeps_only_the_attempt_counters() {
        let mut s = LeaderStats::default();
        s.lead(3);
        s.started();
        assert!(s.configuring.is_some());
        s.finished(false);
        s.started();
        s.finished(true);
        assert_eq!((s.succeeded, s.failed), (1, 1));
        assert!(s.configuring.is_none() && s.last_success.is_some());
        assert_eq!(s.last.map(|(_, ok)| ok), Some(true));
        s.lead(2);
        assert_eq!((s.succeeded, s.failed, s.min_size), (1, 1, 2));
        assert!(s.last.is_none() && s.last_success.is_none());
    }

    fn status() -> SyncStatus {
        SyncStatus {
            role: Role::Connecting,
            status: String::new(),
            seq: 3,
            connected: true,
            generation: 0,
            rejected: 0,
            leader: LeaderStats::default(),
        }
    }

    #[test]
    fn reports_change_the_status_and_say_whether_anything_changed() {
        let mut s = status();
        assert!(apply(&mut s, Report::Elected));
        assert_eq!((s.role, s.status.as_str()), (Role::Leader, "leading"));
        assert!(
            !apply(&mut s, Report::Line("leading".into())),
            "same line: readers not woken"
        );
        assert!(apply(&mut s, Report::Read(5)));
        assert!(apply(&mut s, Report::Read(2)));
        assert!(!apply(&mut s, Report::Read(0)));
        assert!(apply(&mut s, Report::Configured(4)));
        assert!(apply(&mut s, Report::Resigned("b is live".into())));
        assert_eq!(s.role, Role::Follower);
        assert_eq!(s.status, "resigned: b is live");
        // A new leadership starts its figures afresh but keeps the counters.
        assert!(apply(&mut s, Report::Leading { min_size: 2 }));
        assert_eq!(
            (s.leader.zk_reads, s.leader.min_size, s.generation, s.seq),
            (7, 2, 4, 3)
        );
    }
}
