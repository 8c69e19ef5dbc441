#!/usr/bin/env bash
# The showcase's figures: a real 3-pod ZooKeeper ensemble (pods/zookeeper.yaml) run by ochopod,
# grown to 5 and shrunk back to 3 twice (SIGTERM with drain, then kill -9), while a client
# writes every 50 ms (each write retried for up to 2 s). Prints a table: per phase, how long it
# took, the writes, the failed ones and the longest stall between acknowledged writes; and the
# time from starting 3 pods to an ensemble serving.
#
#   bench/zookeeper.sh            (loopback only: pods on 127.78.0.N, ZooKeeper on 127.78.1.1)
#
# Needs Debian's zookeeper, java, nc, python3 (kazoo is installed in target/bench-venv).
# Everything it starts is stopped on exit, by pid.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
scripts/deps
cargo build --quiet
bin=$repo/target/debug/ochopod
venv=$repo/target/bench-venv
if ! "$venv/bin/python" -c 'import kazoo' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet kazoo==2.11.0
fi

net=127.78
work=$(mktemp -d /tmp/ochopod-bench-zk.XXXXXX)
pids=()
cleanup() {
  # Every pod's ochopod and whatever it started (the JVMs, hooks), by pid.
  local all=() p
  for p in "${pids[@]}"; do
    # Still our child? (a pod that exited long ago may have left its pid to somebody else)
    [ "$(ps -o ppid= -p "$p" 2>/dev/null | tr -d ' ')" = "$$" ] || continue
    all+=("$p" $(descendants "$p"))
  done
  [ ${#all[@]} -eq 0 ] || kill -KILL "${all[@]}" 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "bench: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
descendants() {
  local c
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done
}
now() { date +%s.%N; }
four() { echo "$2" | nc -w 1 "$net.0.$1" 2181 2>/dev/null || true; }
members() { four "$1" conf | grep -c '^server\.[0-9]' || true; }
serving() { four "$1" srvr | grep -q '^Mode: '; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$(( $(date +%s) + $1 )) what=$2; shift 2
  until "$@"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then echo "bench: timed out waiting for $what" >&2; exit 1; fi
    sleep 0.1
  done
}

# The coordination ZooKeeper (ochopod's), separate from the ensemble under test.
mkdir -p "$work/coord/data"
cat > "$work/coord/zoo.cfg" <<CFG
tickTime=200
dataDir=$work/coord/data
clientPort=2181
clientPortAddress=$net.1.1
admin.enableServer=false
4lw.commands.whitelist=ruok
CFG
java -Xmx64m -XX:+UseSerialGC -cp /usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar \
  org.apache.zookeeper.server.quorum.QuorumPeerMain "$work/coord/zoo.cfg" > "$work/coord.log" 2>&1 &
pids+=($!)
disown "$!"
wait_for 30 "the coordination ZooKeeper" sh -c "echo ruok | nc -w 1 $net.1.1 2181 | grep -q imok"

declare -A pod_pid
start_pod() { # start_pod N
  local n=$1 home=$work/pod$1
  mkdir -p "$home"
  OCHOPOD_ZK=$net.1.1:2181 OCHOPOD_ZK_SESSION_TIMEOUT=2s OCHOPOD_HOME=$home \
  OCHOPOD_IP=$net.0.$n OCHOPOD_BIND=$net.0.$n OCHOPOD_PORT=8080 \
  ZK_TICK_TIME=300 ZK_JVMFLAGS="-Xmx64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1" \
  ZK_CLI_JVMFLAGS="-Xmx32m -XX:+UseSerialGC -XX:TieredStopAtLevel=1" \
    "$bin" run pods/zookeeper.yaml > "$work/pod$n.log" 2>&1 &
  pod_pid[$n]=$!
  pids+=($!)
  disown "$!"  # no "Killed" notices from bash at the end
}
all_serving() { local n; for n in "$@"; do serving "$n" || return 1; done; }
ensemble_is() { # ensemble_is COUNT N...: every N serves and lists COUNT members
  local want=$1 n; shift
  for n in "$@"; do serving "$n" && [ "$(members "$n")" = "$want" ] || return 1; done
}
ochopod_leader() { local n; for n in "$@"; do
  if curl -s "http://$net.0.$n:8080/info" | grep -q '"state":"leader"'; then echo "$n"; return; fi; done; }
zk_leader() { local n; for n in "$@"; do
  if four "$n" srvr | grep -q '^Mode: leader'; then echo "$n"; return; fi; done; }
gone() { local n; for n in "$@"; do kill -0 "${pod_pid[$n]}" 2>/dev/null && return 1; done; return 0; }
kill_pod() { # like a container killed: ochopod and everything it started, at once
  local p=${pod_pid[$1]}
  kill -KILL "$p" $(descendants "$p") 2>/dev/null || true
}

echo "bench: starting 3 pods" >&2
t=$(now)
start_pod 1; start_pod 2; start_pod 3
wait_for 120 "3 pods serving" ensemble_is 3 1 2 3
echo "3_pods_started_to_ensemble_serving $t $(now)" >> "$work/marks"

hosts=$(for n in 1 2 3 4 5; do printf '%s:2181,' "$net.0.$n"; done)
"$venv/bin/python" bench/zk_writer.py "${hosts%,}" /bench "$work/writes" 2> "$work/writer.log" &
writer=$!
pids+=($writer)
wait_for 30 "the first write" test -s "$work/writes"
sleep 2

echo "bench: 3 -> 5" >&2
t=$(now); start_pod 4; start_pod 5
wait_for 120 "5 members" ensemble_is 5 1 2 3 4 5
echo "grow_3_to_5 $t $(now)" >> "$work/marks"; sleep 2

# SIGTERM the ochopod leader's pod (it hands the leadership over) and the ZooKeeper leader's (a
# leader hand-off), or one more when they are the same.
boss=$(ochopod_leader 1 2 3 4 5)
victims=$(for n in "$boss" $(zk_leader 1 2 3 4 5) 5 4; do echo "$n"; done | awk '!seen[$0]++' | head -n 2 | tr '\n' ' ')
keep=$(for n in 1 2 3 4 5; do case " $victims " in *" $n "*) ;; *) echo "$n" ;; esac; done | tr '\n' ' ')
echo "bench: 5 -> 3, SIGTERM (drain) pods $victims(the ochopod and ZooKeeper leaders)" >&2
t=$(now)
for n in $victims; do kill -TERM "${pod_pid[$n]}"; done
# shellcheck disable=SC2086
wait_for 120 "pods $victims to leave" gone $victims
# shellcheck disable=SC2086
wait_for 60 "3 members" ensemble_is 3 $keep
echo "shrink_5_to_3_by_SIGTERM_(both_leaders) $t $(now)" >> "$work/marks"; sleep 2

echo "bench: 3 -> 5 (the same two pods back)" >&2
# shellcheck disable=SC2086
t=$(now); for n in $victims; do start_pod "$n"; done
wait_for 120 "5 members" ensemble_is 5 1 2 3 4 5
echo "grow_3_to_5_again $t $(now)" >> "$work/marks"; sleep 2

# kill -9 the ochopod leader's pod and the ZooKeeper leader's (or one more when they are the
# same): a new ochopod leader must take over, ZooKeeper must elect again, then both are removed.
boss=$(ochopod_leader 1 2 3 4 5)
victims=$(for n in "$boss" $(zk_leader 1 2 3 4 5) 5 4; do echo "$n"; done | awk '!seen[$0]++' | head -n 2 | tr '\n' ' ')
keep=$(for n in 1 2 3 4 5; do case " $victims " in *" $n "*) ;; *) echo "$n" ;; esac; done | tr '\n' ' ')
echo "bench: 5 -> 3, kill -9 pods $victims(the ochopod and ZooKeeper leaders)" >&2
t=$(now)
for n in $victims; do kill_pod "$n"; done
# shellcheck disable=SC2086
wait_for 120 "3 members" ensemble_is 3 $keep
echo "shrink_5_to_3_by_kill_-9_(both_leaders) $t $(now)" >> "$work/marks"; sleep 2

kill -TERM "$writer"; wait "$writer" || true
echo
"$venv/bin/python" bench/zk_report.py "$work/writes" "$work/marks"
