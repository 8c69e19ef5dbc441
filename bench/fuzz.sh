#!/usr/bin/env bash
# Runs the property-based tests of tests/prop/ (pod.yaml, cluster maps and their rendering, pod
# JSON from ZooKeeper) for longer than CI does: each property alone, with many cases, printing
# per property the case count, the time taken and the result.
#
#   bench/fuzz.sh                 # 50000 cases per property
#   bench/fuzz.sh 200000          # more
#   bench/fuzz.sh 20000 map::     # only the properties whose name contains `map::`
#   PROPTEST_RNG_SEED=42 bench/fuzz.sh   # a fixed seed (default: a new random one each run)
#
# Built with the `fuzz` profile (Cargo.toml: optimized, overflow checks on, no LTO) into
# target/fuzz/. A failure prints the smallest input proptest found and saves its seed beside the
# test's source (tests/prop/map.regressions, ...), replayed first by every later run (CI's short
# one too): commit that file with the fix. Exits 1 if any property failed.
set -euo pipefail
cd "$(dirname "$0")/.."

cases="${1:-50000}"
filter="${2:-}"

echo "building the property tests (profile fuzz)..." >&2
bin=$(cargo test --profile fuzz --test prop --no-run --message-format json 2>/dev/null |
  python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "prop":
        print(m["executable"])
')
if [[ -z "$bin" ]]; then
  cargo test --profile fuzz --test prop --no-run # show the build error
  exit 2
fi

# Properties are the tests whose name is not a coverage guard (`..._reach...`), which run a fixed
# number of cases whatever PROPTEST_CASES says.
mapfile -t props < <("$bin" --list --format terse | sed -n 's/: test$//p' | grep -v reach | grep -F -- "$filter")
if [[ ${#props[@]} -eq 0 ]]; then
  echo "no property matches '$filter'" >&2
  exit 2
fi

failed=0
printf '%-82s %9s %9s  %s\n' property cases seconds result
for p in "${props[@]}"; do
  log=$(mktemp)
  start=$(date +%s%N)
  if PROPTEST_CASES="$cases" "$bin" --exact "$p" --test-threads 1 >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
    failed=1
  fi
  end=$(date +%s%N)
  printf '%-82s %9s %9.1f  %s\n' "$p" "$cases" "$(awk "BEGIN { print ($end - $start) / 1e9 }")" "$result"
  if [[ $result == FAILED ]]; then
    sed -n '/^---- /,/^failures:$/p' "$log" | head -60 >&2
  fi
  rm -f "$log"
done
exit "$failed"
