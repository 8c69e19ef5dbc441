//! ochopod: configure and supervise clustered containers from a pod.yaml.
//!
//! ```text
//!            ZooKeeper                         other pods, operators, `ochopod ctl`
//!               │ watches                                    │ HTTP
//!        ┌──────▼──────┐  cluster map (HTTP, leader only)  ┌──▼──────────┐
//!        │    sync     │ ─────────────────────────────────▶│   control   │
//!        │ register,   │                                   │ axum routes │
//!        │ elect, lead │◀── pod state (held/leaving) ──┐   └──┬──────────┘
//!        └─────────────┘                               │      │ Command (mpsc) / status (watch)
//!                                                 ┌────┴──────▼───┐
//!                                                 │   supervise   │── spawn / signal / reap
//!                                                 │ render, child │
//!                                                 └───────────────┘
//! ```
//!
//! * [`spec`] and [`render`] are the contract: pod.yaml types and the template context.
//! * [`supervise`] owns the process: render, spawn, restart, stop, reload, checks, hooks.
//! * `sync` owns the ZooKeeper session: registration, election and, on the leader,
//!   configuration of every pod of the cluster.
//! * [`control`] serves the HTTP API; it owns nothing and asks the other two.
//! * [`ctl`] is the CI/CD client: finds pods through ZooKeeper, drives them over HTTP.
//! * [`runtime`] is the one place that starts the loops and decides the order they stop in.

pub mod auth;
pub mod backoff;
pub mod binding;
pub mod check;
pub mod clock;
pub mod control;
pub mod ctl;
pub mod fsutil;
pub mod glob;
pub mod logs;
pub mod model;
pub mod render;
pub mod runtime;
pub mod spec;
pub mod supervise;
pub mod sync;
pub mod up;
pub mod zk;

/// ochopod's version, as pods report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
