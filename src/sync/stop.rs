//! Why a configuration attempt stopped short ([`Stop`]), by phase ([`Phase`]) and pod: what the
//! leader logs, shows in its status line, and whether the next attempt must happen even if the
//! pods are back to the snapshot's ([`Stop::is_partial`]).

use super::evictions::{name, Evictions};
use super::world::World;
use crate::zk::ZkError;

/// Why a configuration attempt stopped short. The leader retries after the damper.
#[derive(Debug, thiserror::Error)]
pub(super) enum Stop {
    /// Pods' `hooks.can_configure` said no (their names).
    #[error("vetoed by {}", .0.join(", "))]
    Veto(Vec<String>),
    /// The snapshot's generation is at the top of its range: something else wrote it.
    #[error(
        "generation {at} cannot grow: the snapshot {path} was written by something else than \
         ochopod (delete it to start over)"
    )]
    Generation { at: u64, path: String },
    /// Pods failed a phase. After `on`, some pods may have applied the new map: the cluster is no
    /// longer as its snapshot says, so the next attempt must happen even if the pods are back to
    /// the snapshot's (see [`Stop::is_partial`]).
    #[error("{phase} failed: {failures}")]
    Calls { phase: Phase, failures: Failures },
    /// `settings.apply` failed on the leader's pod, after every pod applied the map.
    #[error("settings.apply: {0}")]
    Apply(#[source] super::world::RunError),
    #[error(transparent)]
    Zk(#[from] ZkError),
}

impl Stop {
    /// Whether pods may have applied the attempted map (see [`Stop::Calls`]).
    pub(super) fn is_partial(&self) -> bool {
        match self {
            Stop::Calls { phase, .. } => *phase == Phase::On,
            Stop::Apply(_) | Stop::Zk(_) => true,
            Stop::Veto(_) | Stop::Generation { .. } => false,
        }
    }
}

/// A phase of a configuration, as its calls and spans name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Check,
    Off,
    On,
    Ok,
}

impl Phase {
    pub(super) fn path(self) -> &'static str {
        match self {
            Phase::Check => "/control/check",
            Phase::Off => "/control/off",
            Phase::On => "/control/on",
            Phase::Ok => "/control/ok",
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Phase::Check => "check",
            Phase::Off => "off",
            Phase::On => "on",
            Phase::Ok => "ok",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One pod's failure in a phase, and where it stands towards eviction.
#[derive(Debug)]
pub(super) struct PodFailure {
    /// `seq N (uuid)`, or the uuid.
    pod: String,
    /// Failures in a row, this one included.
    count: u32,
    evict_after: u32,
    error: super::calls::CallFailure,
}

/// The pods that failed a phase.
#[derive(Debug)]
pub(super) struct Failures(Vec<PodFailure>);

impl std::fmt::Display for Failures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "; " };
            if p.count >= p.evict_after.max(1) {
                write!(
                    f,
                    "{sep}{} failed {} times, evicted ({})",
                    p.pod, p.count, p.error
                )?;
            } else {
                write!(f, "{sep}{} ({}/{}): {}", p.pod, p.count, p.evict_after, p.error)?;
            }
        }
        Ok(())
    }
}

/// Counts one failure for each pod of `failures` (none: Ok) and says which ones are now evicted.
pub(super) fn fail_if_any(
    w: &World,
    evictions: &mut Evictions,
    evict_after: u32,
    phase: Phase,
    failures: Vec<(String, super::calls::CallFailure)>,
) -> Result<(), Stop> {
    if failures.is_empty() {
        return Ok(());
    }
    let mut out = Vec::new();
    for (uuid, error) in failures {
        let count = w.registered.get(&uuid).map_or(0, |r| evictions.fail(r, 1));
        if count >= evict_after.max(1) {
            tracing::warn!(
                uuid,
                failures = count,
                phase = phase.name(),
                "pod evicted: left out of the configuration"
            );
        }
        out.push(PodFailure {
            pod: name(&w.live, &uuid),
            count,
            evict_after,
            error,
        });
    }
    Err(Stop::Calls {
        phase,
        failures: Failures(out),
    })
}
