#!/usr/bin/env python3
"""Rolling restart figures (settings.rolling, issue 9): N `web` pods depend on a `db` cluster and
render the db pods' ips into a file, so a db pod joining restarts every web pod. With `rolling`,
the web leader restarts them `max_unavailable` at a time, each ready before the next; without it,
all at once. For each case: 1 db + N web pods up and ready, then a second db pod started, and
every web pod's /info sampled (all in parallel, then a ~50 ms pause) until each one runs a new
process and is ready again. A web pod is serving when `process == running` and `ready == true`.

Real parts only: Debian's ZooKeeper on a free port of 127.0.0.1, `ochopod run` processes on
127.79.R.x (each its own OCHOPOD_HOME). Prints a Markdown table of medians over --runs runs.

  bench/rolling.py [--runs 3] [--binary target/debug/ochopod] [--cases 3:off,3:1,10:off,10:1,10:2]
"""
import argparse, concurrent.futures, json, os, shutil, signal, socket, statistics, subprocess, sys
import tempfile, time, urllib.request

from benchzk import Zk  # noqa: F401 (bench/lb.py imports it from here too)
SESSION = "2s"
DB_DAMPER = "300ms"
WEB_DAMPER = "500ms"
READY = "sleep 1"  # the web pods' ready check: a process takes ~1 s to be ready
READY_EVERY = "1500ms"
READY_TIMEOUT = "20s"
PERIOD = 0.05  # pause between two samples


def db_yaml(ns):
    return f"""cluster: db
namespace: {ns}
ports: [9000]
settings: {{ damper: {DB_DAMPER} }}
process:
  command: ["sleep", "3600"]
"""


def web_yaml(ns, n, rolling, max_unavailable):
    return f"""cluster: web
namespace: {ns}
ports: [9000]
depends_on: [{{ cluster: db }}]
settings: {{ min_size: {n}, damper: {WEB_DAMPER}, rolling: {str(rolling).lower()}, max_unavailable: {max_unavailable} }}
process:
  command: ["sleep", "3600"]
checks:
  ready: {{ command: "{READY}", every: {READY_EVERY}, timeout: {READY_TIMEOUT} }}
templates:
  - source: db.hbs
    dest: "{{{{env.OCHOPOD_HOME}}}}/db.txt"
"""


DB_TEMPLATE = "{{#each dependencies.db.pods}}{{ip}}\n{{/each}}"


def info(ip):
    try:
        with urllib.request.urlopen(f"http://{ip}:8080/info", timeout=2) as r:
            return json.load(r)
    except Exception:
        return None


def serving(i):
    return bool(i) and i.get("process") == "running" and i.get("ready") is True


class Pods:
    def __init__(self, binary, root, zk_port):
        self.binary, self.root, self.zk_port = binary, root, zk_port
        self.procs = []

    def start(self, pod_yaml, ip):
        home = os.path.join(self.root, ip)
        os.makedirs(home)
        env = dict(os.environ, OCHOPOD_ZK=f"127.0.0.1:{self.zk_port}", OCHOPOD_IP=ip, OCHOPOD_BIND=ip,
                   OCHOPOD_PORT="8080", OCHOPOD_HOME=home, OCHOPOD_ZK_SESSION_TIMEOUT=SESSION,
                   OCHOPOD_LOG=os.environ.get("OCHOPOD_LOG", "warn"))
        env.pop("OCHOPOD_TOKEN", None)
        env.pop("OCHOPOD_TOKEN_FILE", None)
        env.pop("OCHOPOD_NAMESPACE", None)
        with open(os.path.join(home, "log"), "w") as log:
            p = subprocess.Popen([self.binary, "run", pod_yaml], env=env, stdout=log, stderr=log,
                                 start_new_session=True)
        self.procs.append(p)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)  # ochopod and its `sleep`, by the session it leads
                p.wait()
        self.procs = []


POOL = concurrent.futures.ThreadPoolExecutor(max_workers=16)


def wait(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(PERIOD)
    raise TimeoutError(what)


def run_case(binary, zk, root, tag, n, rolling, max_unavailable, net):
    """One run: returns (fewest serving, db start -> all ready, first down -> all ready, samples)."""
    ns = f"bench-{tag}"
    case = os.path.join(root, tag)
    os.makedirs(case)
    db, web = os.path.join(case, "db.yaml"), os.path.join(case, "web.yaml")
    with open(db, "w") as f:
        f.write(db_yaml(ns))
    with open(web, "w") as f:
        f.write(web_yaml(ns, n, rolling, max_unavailable))
    with open(os.path.join(case, "db.hbs"), "w") as f:
        f.write(DB_TEMPLATE)
    pods = Pods(binary, case, zk.port)
    web_ips = [f"{net}.{i + 10}" for i in range(n)]
    try:
        pods.start(db, f"{net}.1")
        for ip in web_ips:
            pods.start(web, ip)

        def all_ready_on(dbs):
            infos = list(POOL.map(info, web_ips))
            if not all(serving(i) for i in infos):
                return None
            for ip in web_ips:
                try:
                    with open(os.path.join(case, ip, "db.txt")) as f:
                        if len(f.read().split()) != dbs:
                            return None
                except OSError:
                    return None
            return [i["pid"] for i in infos]

        before = wait(lambda: all_ready_on(1), 120, f"{n} web pods ready on 1 db pod")
        time.sleep(1)  # let the web leader's snapshot settle

        t0 = time.time()
        pods.start(db, f"{net}.2")
        fewest, samples, first_down = n, 0, None
        deadline = t0 + 120
        while True:
            infos = list(POOL.map(info, web_ips))
            t = time.time()
            samples += 1
            up = sum(serving(i) for i in infos)
            fewest = min(fewest, up)
            if up < n and first_down is None:
                first_down = t
            restarted = all(serving(i) and i.get("pid") not in (None, p) for i, p in zip(infos, before))
            if restarted:
                break
            if t > deadline:
                raise TimeoutError("every web pod restarted and ready")
            time.sleep(PERIOD)
        # Every web pod renders the two db pods (else the restart was for something else).
        for ip in web_ips:
            with open(os.path.join(case, ip, "db.txt")) as f:
                assert len(f.read().split()) == 2, ip
        return fewest, t - t0, t - (first_down or t), samples
    finally:
        pods.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--binary", default="target/debug/ochopod")
    ap.add_argument("--cases", default="3:off,3:1,10:off,10:1,10:2",
                    help="N:off (no rolling) or N:MAX_UNAVAILABLE (rolling), comma-separated")
    a = ap.parse_args()
    if not os.path.exists(a.binary):
        sys.exit(f"{a.binary} missing: cargo build")
    cases = []
    for c in a.cases.split(","):
        n, _, mode = c.partition(":")
        cases.append((int(n), mode != "off", 1 if mode == "off" else int(mode)))
    root = tempfile.mkdtemp(prefix="ochopod-bench-rolling-")
    zk = Zk(root)
    load = os.getloadavg()[0]
    rows = []
    try:
        for ci, (n, rolling, mu) in enumerate(cases):
            runs = []
            for r in range(a.runs):
                tag = f"c{ci}r{r}"
                print(f"bench: N={n} rolling={rolling} max_unavailable={mu} run {r + 1}", file=sys.stderr, flush=True)
                runs.append(run_case(a.binary, zk, root, tag, n, rolling, mu, f"127.79.{ci * a.runs + r + 1}"))
            rows.append((n, rolling, mu, runs))
    finally:
        zk.stop()
        shutil.rmtree(root, ignore_errors=True)
    med = lambda xs: statistics.median(xs)
    print(f"# rolling dependency change ({os.cpu_count()} cores, load average {load:.2f} at the start, "
          f"{a.runs} runs per case, medians)\n")
    print(f"web: `damper: {WEB_DAMPER}`, ready check `{READY}` (every {READY_EVERY}); "
          f"db: `damper: {DB_DAMPER}`; `OCHOPOD_ZK_SESSION_TIMEOUT={SESSION}`; binary `{a.binary}`\n")
    print("| dependents | rolling | max_unavailable | fewest serving at once | db pod start → all ready "
          "| first one down → all ready | samples (one every) | fewest serving, each run |")
    print("|---:|---|---:|---:|---:|---:|---:|---|")
    for n, rolling, mu, runs in rows:
        fewest = med([r[0] for r in runs])
        print(f"| {n} | {'yes' if rolling else 'no'} | {mu if rolling else '-'} "
              f"| {fewest:g} ({100 * fewest / n:.0f} %) | {med([r[1] for r in runs]):.2f} s "
              f"| {med([r[2] for r in runs]):.2f} s "
              f"| {med([r[3] for r in runs]):g} ({1000 * med([r[1] / r[3] for r in runs]):.0f} ms) "
              f"| {', '.join(str(r[0]) for r in runs)} |", flush=True)


if __name__ == "__main__":
    main()
