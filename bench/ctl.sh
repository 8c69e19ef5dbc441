#!/usr/bin/env bash
# `ochopod ctl` wall time over 10 and 100 real pods, and what those pods cost in memory.
#
# Starts a throwaway ZooKeeper (Debian package `zookeeper`) on a free port of 127.0.0.1 and N
# real `ochopod run --standalone` pods (each running `sleep`) on 127.250.x.y, registers them
# under /ochopod/clusters/default.bench<N>/pods/ as SPEC §6 says (persistent znodes written with
# zkCli: the sync loop is not there to register them yet), then times `ctl ls` and
# `ctl info --json`. Every znode points at a real, answering pod.
#
# Usage: bench/ctl.sh [OCHOPOD_BINARY] [RUNS]     (default: target/debug/ochopod, 5 runs)
# Everything it starts is stopped on exit (by pid).
set -euo pipefail

BIN=${1:-target/debug/ochopod}
RUNS=${2:-5}
MAX=100
JARS=/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar:/usr/share/java/commons-cli.jar
[ -x "$BIN" ] || { echo "no ochopod binary at $BIN (cargo build first)" >&2; exit 2; }
[ -f /usr/share/java/zookeeper.jar ] || { echo "install the Debian package zookeeper" >&2; exit 2; }
BIN=$(realpath "$BIN")

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket,sys;s=socket.socket();s.bind((sys.argv[1],0));print(s.getsockname()[1])' "$1"; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }

# ZooKeeper.
ZKPORT=$(free_port 127.0.0.1)
mkdir -p "$WORK/zk/data"
printf 'tickTime=200\ndataDir=%s\nclientPort=%s\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=*\n' \
  "$WORK/zk/data" "$ZKPORT" > "$WORK/zk/zoo.cfg"
java -Xmx256m -cp "$JARS" org.apache.zookeeper.server.quorum.QuorumPeerMain "$WORK/zk/zoo.cfg" \
  > "$WORK/zk/log" 2>&1 &
PIDS+=($!)
for _ in $(seq 150); do [ "$(echo ruok | nc -q1 127.0.0.1 "$ZKPORT" 2>/dev/null)" = imok ] && break; sleep 0.2; done
ZK=127.0.0.1:$ZKPORT

# Pods: one dir (hence uuid and state) each, the same control port on distinct addresses.
cat > "$WORK/pod.yaml" <<'EOF'
cluster: bench
ports: [7000]
process:
  command: ["sleep", "3600"]
EOF
PORT=$(free_port 127.250.0.2)
ip_of() { echo "127.250.$(( $1 / 200 )).$(( $1 % 200 + 2 ))"; }
for i in $(seq 1 $MAX); do
  ip=$(ip_of "$i")
  mkdir -p "$WORK/pods/$i"
  OCHOPOD_IP=$ip OCHOPOD_BIND=$ip OCHOPOD_PORT=$PORT OCHOPOD_HOME="$WORK/pods/$i" \
    OCHOPOD_TOKEN= OCHOPOD_LOG=warn "$BIN" run --standalone "$WORK/pod.yaml" > "$WORK/pods/$i/log" 2>&1 &
  PIDS+=($!)
done

# Registration: the first 10 pods as default.bench10, all of them as default.bench100.
{
  echo 'create /ochopod ""'
  echo 'create /ochopod/clusters ""'
  for n in 10 $MAX; do
    echo "create /ochopod/clusters/default.bench$n \"\""
    echo "create /ochopod/clusters/default.bench$n/pods \"\""
    for i in $(seq 1 "$n"); do
      ip=$(ip_of "$i")
      json="{\"uuid\":\"bench-$i\",\"seq\":$i,\"cluster\":\"bench$n\",\"namespace\":\"default\",\"ip\":\"$ip\",\"host\":\"$ip\",\"public\":\"$ip\",\"ports\":{\"7000\":7000,\"$PORT\":$PORT},\"control_port\":$PORT,\"state\":\"running\"}"
      echo "create /ochopod/clusters/default.bench$n/pods/bench-$i $json"
    done
  done
} | java -cp "$JARS" org.apache.zookeeper.ZooKeeperMain -server "$ZK" > "$WORK/zkcli.log" 2>&1

"$BIN" ctl --zk "$ZK" wait bench100 --count $MAX --timeout 180s > /dev/null

# Memory: every ochopod pod and its sleep, from /proc (kB).
# RSS counts the shared binary in every process; PSS splits shared pages between them.
rss_of() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
pss_of() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
pod_rss=0; pod_pss=0; child_rss=0
for p in "${PIDS[@]:1}"; do
  pod_rss=$(( pod_rss + $(rss_of "$p") ))
  pod_pss=$(( pod_pss + $(pss_of "$p") ))
  for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do child_rss=$(( child_rss + $(rss_of "$c") )); done
done

# Wall time: best and median of RUNS for each command.
time_cmd() {
  local times=()
  for _ in $(seq "$RUNS"); do
    local t0; t0=$(ms)
    "$BIN" ctl --zk "$ZK" "$@" > /dev/null
    times+=($(( $(ms) - t0 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%d %d\n", a[1], a[int((NR+1)/2)]}'
}

printf '%-28s %6s %9s %11s\n' "command" "pods" "best ms" "median ms"
for n in 10 $MAX; do
  for cmd in "ls bench$n" "info --json bench$n"; do
    # shellcheck disable=SC2086
    read -r best median < <(time_cmd $cmd)
    printf '%-28s %6s %9s %11s\n' "ctl $cmd" "$n" "$best" "$median"
  done
done
echo
printf '%-40s %8s\n' "memory ($MAX pods)" "MiB"
printf '%-40s %8.1f\n' "ochopod processes, total RSS" "$(echo "$pod_rss / 1024" | bc -l)"
printf '%-40s %8.1f\n' "ochopod process, average RSS" "$(echo "$pod_rss / 1024 / $MAX" | bc -l)"
printf '%-40s %8.1f\n' "ochopod process, average PSS" "$(echo "$pod_pss / 1024 / $MAX" | bc -l)"
printf '%-40s %8.1f\n' "their sleep children, total" "$(echo "$child_rss / 1024" | bc -l)"
if command -v /usr/bin/time > /dev/null; then
  kb=$( { /usr/bin/time -f '%M' "$BIN" ctl --zk "$ZK" info --json bench$MAX > /dev/null; } 2>&1 | tail -1)
  printf '%-40s %8.1f\n' "ctl info --json bench$MAX, max RSS" "$(echo "$kb / 1024" | bc -l)"
fi
echo "binary: $BIN ($(du -h "$BIN" | cut -f1))"
