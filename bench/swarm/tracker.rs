//! What the simulated pods received: the last `ok` of each (when, for which configuration, of how
//! many pods), and the HTTP bytes of every control call. The measuring task waits here for "every
//! live pod received `ok` for a configuration of the expected size".
//!
//! Written by the control handlers ([`crate::control`]), read by `main`'s phases. No task of its
//! own: the handlers wake the waiter through a [`Notify`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::Notify;

/// One `ok` a pod accepted.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    /// (epoch, generation) of the map it carried.
    pub version: (u64, u64),
    /// How many pods the map holds (the leader's own included).
    pub pods: usize,
    pub at: Instant,
}

/// How far a wait got when its deadline passed.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Progress {
    /// Live pods whose last `ok` is for a map of the expected size.
    pub done: usize,
    pub live: usize,
    /// The largest map size any live pod's last `ok` carried.
    pub largest: usize,
}

#[derive(Default)]
pub struct Tracker {
    seen: Mutex<Vec<Option<Seen>>>,
    notify: Notify,
}

impl Tracker {
    pub fn new(pods: usize) -> Tracker {
        Tracker {
            seen: Mutex::new(vec![None; pods]),
            notify: Notify::new(),
        }
    }

    /// Pod `idx` accepted an `ok`.
    pub fn ok(&self, idx: usize, seen: Seen) {
        if let Some(slot) = self.lock().get_mut(idx) {
            *slot = Some(seen);
        }
        self.notify.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<Seen>>> {
        // Slots are plain values: a panic elsewhere leaves them consistent.
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When every pod of `live` has received `ok` for a map of `pods` pods later than `after`:
    /// the time of the last of those `ok`s and the configuration's (epoch, generation).
    fn all(&self, live: &[usize], pods: usize, after: (u64, u64)) -> Result<(Instant, (u64, u64)), Progress> {
        let seen = self.lock();
        let mut last: Option<(Instant, (u64, u64))> = None;
        let mut progress = Progress {
            done: 0,
            live: live.len(),
            largest: 0,
        };
        for s in live.iter().filter_map(|&i| seen.get(i).copied().flatten()) {
            progress.largest = progress.largest.max(s.pods);
            if s.pods == pods && s.version > after {
                progress.done += 1;
                last = Some(match last {
                    Some((at, v)) => (at.max(s.at), v.max(s.version)),
                    None => (s.at, s.version),
                });
            }
        }
        match last {
            Some(last) if progress.done == live.len() => Ok(last),
            _ => Err(progress),
        }
    }

    /// Waits (no polling: woken by each `ok`) until [`Tracker::all`] holds, or `deadline`.
    pub async fn wait_all(
        &self,
        live: &[usize],
        pods: usize,
        after: (u64, u64),
        deadline: Instant,
    ) -> Result<(Instant, (u64, u64)), Progress> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so an `ok` landing in between still wakes us.
            notified.as_mut().enable();
            let progress = match self.all(live, pods, after) {
                Ok(done) => return Ok(done),
                Err(p) => p,
            };
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(deadline.into()) => return Err(progress),
            }
        }
    }
}

/// Control calls received and their body bytes, per route.
#[derive(Default)]
pub struct Traffic {
    requests: [AtomicU64; ROUTES.len()],
    bytes: [AtomicU64; ROUTES.len()],
}

/// The routes the leader posts maps to.
pub const ROUTES: [&str; 4] = ["check", "off", "on", "ok"];

/// A copy of [`Traffic`] at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrafficCount {
    pub requests: [u64; ROUTES.len()],
    pub bytes: [u64; ROUTES.len()],
}

impl Traffic {
    pub fn add(&self, route: usize, bytes: usize) {
        if let (Some(r), Some(b)) = (self.requests.get(route), self.bytes.get(route)) {
            r.fetch_add(1, Relaxed);
            b.fetch_add(u64::try_from(bytes).unwrap_or(u64::MAX), Relaxed);
        }
    }

    pub fn count(&self) -> TrafficCount {
        TrafficCount {
            requests: std::array::from_fn(|i| self.requests[i].load(Relaxed)),
            bytes: std::array::from_fn(|i| self.bytes[i].load(Relaxed)),
        }
    }
}

impl TrafficCount {
    pub fn total_bytes(&self) -> u64 {
        self.bytes.iter().sum()
    }

    pub fn total_requests(&self) -> u64 {
        self.requests.iter().sum()
    }

    pub fn since(&self, before: &TrafficCount) -> TrafficCount {
        TrafficCount {
            requests: std::array::from_fn(|i| self.requests[i].saturating_sub(before.requests[i])),
            bytes: std::array::from_fn(|i| self.bytes[i].saturating_sub(before.bytes[i])),
        }
    }
}
