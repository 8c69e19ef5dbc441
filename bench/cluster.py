#!/usr/bin/env python3
"""Cluster sync figures: N pods started together -> all configured; a pod lost -> survivors
reconfigured; ZooKeeper requests per reconfiguration and while idle.

Real parts only: Debian's ZooKeeper on a free port of 127.0.0.1, N `ochopod run` processes on
127.0.77.x (each its own OCHOPOD_HOME; `--net 127.0.91` for another range, so that two benches can
run at once), their /info polled over HTTP. Prints a Markdown table.

  bench/cluster.py [--sizes 3,10,50] [--binary target/release/ochopod] [--net 127.0.77]
"""
import argparse, concurrent.futures, json, os, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

from benchzk import Zk, four
DAMPER = 1.0
SESSION = 4.0
# The first three octets of the pods' addresses (--net).
NET = "127.0.77"


def packets(port):
    """ZooKeeper's count of requests received (mntr zk_packets_received)."""
    for line in four(port, "mntr").splitlines():
        k, _, v = line.partition("\t")
        if k == "zk_packets_received":
            return int(v)
    return 0


POD_YAML = f"""
cluster: bench
ports: [9000]
settings: {{ damper: {int(DAMPER * 1000)}ms, min_size: 1 }}
process:
  command: ["sleep", "3600"]
"""


def info(ip, port):
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}/info", timeout=2) as r:
            return json.load(r)
    except Exception:
        return None


def start_pods(binary, root, zk_port, n, first=0):
    pod_yaml = os.path.join(root, "pod.yaml")
    if not os.path.exists(pod_yaml):
        with open(pod_yaml, "w") as f:
            f.write(POD_YAML)
    pods = []
    for i in range(first, first + n):
        ip = f"{NET}.{i + 2}"
        home = os.path.join(root, f"pod-{i}")
        os.makedirs(home, exist_ok=True)
        env = dict(os.environ, OCHOPOD_ZK=f"127.0.0.1:{zk_port}", OCHOPOD_IP=ip, OCHOPOD_BIND=ip,
                   OCHOPOD_PORT="8080", OCHOPOD_HOME=home, OCHOPOD_ZK_SESSION_TIMEOUT=f"{int(SESSION)}s",
                   OCHOPOD_LOG=os.environ.get("OCHOPOD_LOG", "warn"))
        env.pop("OCHOPOD_TOKEN", None)
        log = open(os.path.join(home, "log"), "w")
        p = subprocess.Popen([binary, "run", pod_yaml], env=env, stdout=log, stderr=log)
        pods.append((ip, p))
    return pods


POOL = concurrent.futures.ThreadPoolExecutor(max_workers=32)


# The address of the pod last seen leading (see `configured`).
LEADER = {}


def leader_says(pods, size, min_generation):
    """Whether the leader's /info says it configured `size` pods at `min_generation` or later.
    One request while waiting, not one per pod: at 200 pods a sweep of every pod's /info every
    50 ms took about a core of the 2 the pods and ZooKeeper run on (and so slowed what it timed).
    The leader is looked for (one sweep) when unknown or no longer leading."""
    ip = LEADER.get("ip")
    i = info(ip, 8080) if ip else None
    if not i or i.get("state") != "leader":
        infos = list(POOL.map(lambda p: (p[0], info(p[0], 8080)), pods))
        leads = [(a, i) for a, i in infos if i and i.get("state") == "leader"]
        if not leads:
            return False
        LEADER["ip"], i = leads[0]
    return (f"{size} pods" in i.get("status", "") or size == 1) and i.get("generation", 0) >= min_generation


def configured(pods, size, min_generation=1):
    """The generation when every pod runs the same configuration of `size` pods, else None: once
    the leader says so, every pod's /info is read to check it."""
    if not leader_says(pods, size, min_generation):
        return None
    infos = list(POOL.map(lambda p: info(p[0], 8080), pods))
    if any(not i or i.get("process") != "running" or i.get("generation", 0) < min_generation for i in infos):
        return None
    gens = {i["generation"] for i in infos}
    if len(gens) != 1:
        return None
    leaders = [i for i in infos if i.get("state") == "leader"]
    status = leaders[0].get("status", "") if leaders else ""
    return gens.pop() if f"{size} pods" in status or size == 1 else None


def wait_at(pred, timeout, step=0.05):
    """`pred()`'s first true value and when that call began (a sweep of every pod that confirms
    what the leader said takes a while at 200 pods: not counted); (None, now) past `timeout`."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        at = time.time()
        v = pred()
        if v:
            return v, at
        time.sleep(step)
    return None, time.time()


def wait(pred, timeout, step=0.05):
    """`pred()`'s first true value, None past `timeout`."""
    return wait_at(pred, timeout, step)[0]


def stop_pods(pods):
    for _, p in pods:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for _, p in pods:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()


def run_size(binary, n):
    root = tempfile.mkdtemp(prefix="ochopod-bench-")
    zk = Zk(root)
    pods = []
    try:
        base = packets(zk.port)
        t0 = time.time()
        pods = start_pods(binary, root, zk.port, n)
        t_spawned = time.time()
        gen, formed_at = wait_at(lambda: configured(pods, n), 120)
        t_form = formed_at - t0
        t_after_last = formed_at - t_spawned
        formed = packets(zk.port) - base
        if not gen:
            return dict(n=n, form="timeout")
        # Idle: requests over 10 s with nothing changing (session pings only, no polling).
        time.sleep(1)
        p0 = packets(zk.port)
        time.sleep(10)
        idle = (packets(zk.port) - p0) / 10.0
        # One more pod: requests for that reconfiguration.
        p0 = packets(zk.port)
        t_join = time.time()
        pods += start_pods(binary, root, zk.port, 1, first=n)
        gen2 = wait(lambda: configured(pods, n + 1, gen + 1), 60)
        reconf_requests = packets(zk.port) - p0
        # Less the session pings of that window: what the change itself cost.
        reconf_net = reconf_requests - idle * (time.time() - t_join)
        # A pod lost (kill -9): the survivors reconfigured.
        victim_ip, victim = pods.pop(1)
        t1 = time.time()
        victim.kill()
        gen3, reconfigured_at = wait_at(lambda: configured(pods, n, (gen2 or gen) + 1), 60)
        t_lost = reconfigured_at - t1
        return dict(n=n, form=t_form, beyond=t_after_last - DAMPER, spawn=t_spawned - t0, idle=idle,
                    reconf=reconf_requests, reconf_net=reconf_net,
                    lost=t_lost if gen3 else "timeout", formed_packets=formed)
    finally:
        stop_pods(pods)
        zk.stop()
        shutil.rmtree(root, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="3,10,50")
    ap.add_argument("--binary", default="target/release/ochopod")
    ap.add_argument("--net", default=NET, help="the pods' addresses: <net>.2, <net>.3, ...")
    a = ap.parse_args()
    globals()["NET"] = a.net
    if not os.path.exists(a.binary):
        sys.exit(f"{a.binary} missing: cargo build --release")
    print(f"# cluster sync ({os.cpu_count()} cores, damper {DAMPER}s, session timeout {SESSION}s)\n")
    print("| pods | first start → all configured | starting them took | last start → all configured, "
          "beyond the damper | pod killed → survivors reconfigured | ZK requests for +1 pod "
          "| less idle pings | per pod | ZK requests/s idle | ZK requests to form |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in [int(x) for x in a.sizes.split(",")]:
        r = run_size(a.binary, n)
        f = lambda v: f"{v:.2f} s" if isinstance(v, float) else str(v)
        print(f"| {n} | {f(r['form'])} | {f(r.get('spawn', '-'))} | {f(r.get('beyond', '-'))} | {f(r.get('lost', '-'))} "
              f"| {r.get('reconf', '-')} | {r.get('reconf_net', 0):.0f} | {r.get('reconf_net', 0) / (n + 1):.2f} "
              f"| {r.get('idle', 0):.1f} | {r.get('formed_packets', '-')} |", flush=True)


if __name__ == "__main__":
    main()
