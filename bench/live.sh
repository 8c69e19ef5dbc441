#!/usr/bin/env bash
# Figures of `ochopod ctl events` and `ochopod ctl ui` (docs/benchmarks.md):
#   - events: from a pod znode created/deleted (acknowledged by ZooKeeper) to its line on
#     `ctl events --follow --json`'s stdout, 50 of each, one at a time;
#   - ui: the server's RSS with 10 clusters of 10 pods (raw znodes: their /info is refused, which
#     the page shows), and Chromium's first contentful paint and time to 100 rows on screen
#     (performance.now() when the first model was rendered), over 20 page loads.
#
#   bench/live.sh
#
# Needs Debian's zookeeper, java and chromium (scripts/deps installs them). The ochopod under
# test is the release build; the driver is the integration test binary (tests/it/ui/bench.rs,
# ignored tests), which starts and stops everything it uses.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps
cargo build --release --quiet
echo "bench/live.sh: load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores" >&2
OCHOPOD_BENCH_BIN=$PWD/target/release/ochopod \
  cargo test --quiet --test it bench_ -- --ignored --nocapture --test-threads 1 2>/dev/null \
  | grep -E '^(\||###)'
