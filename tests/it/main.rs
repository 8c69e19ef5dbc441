//! Integration tests: the real binary, real processes, real HTTP (and a real ZooKeeper for the
//! cluster tests). One test binary so the harness is compiled once.

mod harness;

mod api;
mod cluster;
mod cluster_deps;
mod cluster_faults;
mod ctl;
mod deploy;
mod examples;
mod lifecycle;
mod pid1;
mod runner;
mod shell_safety;
mod showcase;
mod showcase_scripts;
mod sync_zk;
mod ui;
mod up;
mod zk_layer;
mod zk_reconnect;
