//! Integration tests: the real binary, real processes, real HTTP (and a real ZooKeeper for the
//! cluster tests). One test binary so the harness is compiled once.

mod harness;

mod api;
mod bounded;
mod check_deps;
mod cluster;
mod cluster_deps;
mod cluster_faults;
mod cluster_settings;
mod ctl;
mod damper;
mod deploy;
mod examples;
mod http_limits;
mod identity;
mod lb;
mod leader_cache;
mod lifecycle;
mod man;
mod map_delta;
mod monitoring;
mod pause;
mod pid1;
mod process;
mod readiness;
mod redirect;
mod rolling;
mod runner;
mod seq_claim;
mod seq_hold;
mod shell_safety;
mod showcase;
mod showcase_scripts;
mod sync_zk;
mod templates;
mod trust;
mod ui;
mod up;
mod zk_acl;
mod zk_layer;
mod zk_reconnect;
mod zk_snapshot;
