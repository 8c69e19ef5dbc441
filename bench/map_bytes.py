#!/usr/bin/env python3
"""Bytes of cluster maps the leader sends for one reconfiguration (one pod joining), SPEC §7.

N real `ochopod run` pods (bench/cluster.py's setup, a throwaway ZooKeeper), then one more: the
leader's `ochopod_cluster_map_bytes_sent_total` before and after. "Whole maps" is what the same
reconfiguration costs when every call carries the whole map (check, on, ok to each of the N+1
pods, as before deltas): 3 × (N+1) × the size of the map a pod applied (its cluster.json, compact).

  bench/map_bytes.py [--sizes 50,200] [--binary target/release/ochopod]
"""
import argparse, json, os, re, shutil, sys, tempfile, urllib.request

from benchzk import Zk
from cluster import POOL, configured, info, start_pods, stop_pods, wait


def sent(ip):
    with urllib.request.urlopen(f"http://{ip}:8080/metrics", timeout=5) as r:
        m = re.search(r"^ochopod_cluster_map_bytes_sent_total\{[^}]*\} (\S+)$", r.read().decode(), re.M)
        return int(float(m.group(1))) if m else 0


def leader(pods):
    infos = list(POOL.map(lambda p: info(p[0], 8080), pods))
    return next((p[0] for p, i in zip(pods, infos) if i and i.get("state") == "leader"), None)


def run_size(binary, n):
    root = tempfile.mkdtemp(prefix="ochopod-bytes-")
    zk = Zk(root)
    pods = []
    try:
        pods = start_pods(binary, root, zk.port, n)
        gen = wait(lambda: configured(pods, n), 180)
        if not gen:
            return None
        lead = leader(pods)
        first = sent(lead)
        pods += start_pods(binary, root, zk.port, 1, first=n)
        if not wait(lambda: configured(pods, n + 1, gen + 1), 120):
            return None
        after = sent(lead)
        with open(os.path.join(root, "pod-0", ".ochopod", "cluster.json")) as f:
            whole = len(json.dumps(json.load(f), separators=(",", ":")))
        return dict(first=first, join=after - first, whole=3 * (n + 1) * whole, map=whole)
    finally:
        stop_pods(pods)
        zk.stop()
        shutil.rmtree(root, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="50,200")
    ap.add_argument("--binary", default="target/release/ochopod")
    a = ap.parse_args()
    if not os.path.exists(a.binary):
        sys.exit(f"{a.binary} missing: cargo build --release")
    print("| pods | one map | first configuration (whole maps) | +1 pod, whole maps (before) | +1 pod, deltas (after) | after / before |")
    print("|---|---|---|---|---|---|")
    for n in [int(x) for x in a.sizes.split(",")]:
        r = run_size(a.binary, n)
        if not r:
            print(f"| {n} | timeout | | | | |", flush=True)
            continue
        print(f"| {n} | {r['map']:,} B | {r['first']:,} B | {r['whole']:,} B | {r['join']:,} B "
              f"| {r['join'] / r['whole']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
