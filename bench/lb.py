#!/usr/bin/env python3
"""Scale-down behind a load balancer (stop.drain, issue 9): Debian's HAProxy runs as the process
of a pod of cluster `lb` that depends on `web`; its haproxy.cfg lists one `server` per web pod
(no health checks, `retries 0`, no redispatch: a request sent to a pod that is gone fails) and is
reloaded with SIGUSR2 (master-worker mode). 5 web pods each serve HTTP on <ip>:8000 (a Python
server answering its ip). A client sends `GET /` through HAProxy, a new connection each time,
10 ms apart, 2 s timeout; meanwhile 2 web pods are stopped by SIGTERM, one after the other (the
second once the first has exited), and the client goes on until haproxy.cfg no longer lists
either, and 1 s more.
A failed request is anything but a 200.

With `stop.drain` the leaving pod stops only once its own cluster and the `lb` cluster were
configured without it; with `drain: 0s` it stops at once and HAProxy still sends it requests
until the lb leader's damper has passed. A signal reload is done, for ochopod, once the signal is
delivered: HAProxy's old worker may still route to the leaving pod for a few tens of ms after
the lb snapshot that ends the drain, so the web pods may get a `tear_down` pause (`sleep 1`)
between the drain and the stop (the PAUSE column).

Real parts only: Debian's ZooKeeper on a free port of 127.0.0.1, `ochopod run` processes on
127.81.R.x (each its own OCHOPOD_HOME), Debian's haproxy. Prints a Markdown table.

  bench/lb.py [--runs 3] [--binary target/debug/ochopod]
              [--cases 20s:1s:200ms:3s,...]   (drain:tear_down pause:web damper:lb damper)
"""
import argparse, os, shutil, signal, subprocess, sys, tempfile, threading, time
import http.client

from rolling import Zk, Pods, wait, info

HAPROXY = "/usr/sbin/haproxy"
WEBS = 5
LEAVING = 2

SERVE_PY = r'''import http.server, sys
ip = sys.argv[1]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (ip + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((ip, 8000), Handler).serve_forever()
'''

HAPROXY_CFG = """global
  maxconn 512
  hard-stop-after 10s
defaults
  mode http
  timeout connect 2s
  timeout client 10s
  timeout server 10s
  retries 0
frontend www
  bind {{pod.ip}}:{{port pod 8000}}
  default_backend web
backend web
  balance roundrobin
{{#each dependencies.web.pods}}  server web{{seq}} {{ip}}:{{port this 8000}}
{{/each}}"""


def web_yaml(ns, script, damper, drain, pause):
    hooks = f'hooks: {{ tear_down: "sleep {pause[:-1]}" }}\n' if pause not in ("0", "0s") else ""

    return f"""cluster: web
namespace: {ns}
ports: [8000]
settings: {{ damper: {damper} }}
process:
  command: ["python3", "{script}", "{{{{pod.ip}}}}"]
  stop: {{ signal: TERM, grace: 2s, drain: {drain} }}
checks:
  ready: {{ command: "nc -z -w1 {{{{sh pod.ip}}}} 8000", every: 100ms, timeout: 20s }}
{hooks}"""


def lb_yaml(ns, damper):
    return f"""cluster: lb
namespace: {ns}
ports: [8000]
depends_on: [{{ cluster: web }}]
settings: {{ damper: {damper} }}
process:
  command: ["{HAPROXY}", "-W", "-db", "-f", "{{{{env.OCHOPOD_HOME}}}}/haproxy.cfg"]
  reload: {{ signal: USR2 }}
  stop: {{ signal: TERM, grace: 5s }}
templates:
  - source: haproxy.cfg.hbs
    dest: "{{{{env.OCHOPOD_HOME}}}}/haproxy.cfg"
"""


def servers(case, lb_ip):
    try:
        with open(os.path.join(case, lb_ip, "haproxy.cfg")) as f:
            return [l.split()[2].rsplit(":", 1)[0] for l in f if l.strip().startswith("server ")]
    except OSError:
        return []


def get(ip, timeout=2):
    """One request on a new connection: the body on a 200, else None."""
    c = http.client.HTTPConnection(ip, 8000, timeout=timeout)
    try:
        c.request("GET", "/", headers={"Connection": "close"})
        r = c.getresponse()
        body = r.read()
        return body.decode().strip() if r.status == 200 else None
    except OSError:
        return None
    finally:
        c.close()


class Client(threading.Thread):
    def __init__(self, ip):
        super().__init__(daemon=True)
        self.ip, self.sent, self.failed, self.stop = ip, 0, [], threading.Event()
        self.t0 = time.time()

    def run(self):
        while not self.stop.is_set():
            self.sent += 1
            t = time.time()
            if get(self.ip) is None:
                self.failed.append(t - self.t0)
            self.stop.wait(0.01)


def stop_all(pods):
    """TERM every pod, and TERM again a second later to cut any drain short."""
    for p in pods.procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    time.sleep(1)
    for p in pods.procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    pods.stop()


def run_case(binary, zk, root, tag, drain, pause, web_damper, lb_damper, net):
    """One run: (sent, failed, [SIGTERM -> exit of each leaving pod], failure times)."""
    ns = f"bench-{tag}"
    case = os.path.join(root, tag)
    os.makedirs(case)
    script = os.path.join(case, "serve.py")
    with open(script, "w") as f:
        f.write(SERVE_PY)
    web, lb = os.path.join(case, "web.yaml"), os.path.join(case, "lb.yaml")
    with open(web, "w") as f:
        f.write(web_yaml(ns, script, web_damper, drain, pause))
    with open(lb, "w") as f:
        f.write(lb_yaml(ns, lb_damper))
    with open(os.path.join(case, "haproxy.cfg.hbs"), "w") as f:
        f.write(HAPROXY_CFG)
    pods = Pods(binary, case, zk.port)
    lb_ip = f"{net}.1"
    web_ips = [f"{net}.{i + 10}" for i in range(WEBS)]
    try:
        for ip in web_ips:
            pods.start(web, ip)
        pods.start(lb, lb_ip)
        wait(lambda: sorted(servers(case, lb_ip)) == sorted(web_ips), 120, f"haproxy.cfg lists {WEBS} web pods")
        seen = set()
        def all_answer():
            seen.add(get(lb_ip))
            return set(web_ips) <= seen
        wait(all_answer, 60, "every web pod answering through haproxy")
        client = Client(lb_ip)
        client.start()
        time.sleep(1)
        leaves = []
        # The last ones started (the highest seqs, as a StatefulSet scales down), one after the other.
        leaving = web_ips[-LEAVING:]
        procs = pods.procs[WEBS - LEAVING:WEBS]
        for ip, p in zip(leaving, procs):
            if (info(ip) or {}).get("state") == "leader":
                print(f"bench: {ip} leads the web cluster", file=sys.stderr)
            t = time.time()
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=60)
            leaves.append(time.time() - t)
        # Until HAProxy no longer lists them (at once with a drain; after the dampers without),
        # and a second more.
        wait(lambda: not set(leaving) & set(servers(case, lb_ip)), 60, "haproxy.cfg without the pods that left")
        time.sleep(1)
        client.stop.set()
        client.join()
        return client.sent, len(client.failed), leaves, client.failed
    finally:
        stop_all(pods)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--binary", default="target/debug/ochopod")
    ap.add_argument("--cases", default="20s:1s:200ms:3s,20s:1s:3s:200ms,20s:0s:200ms:3s,0s:0s:200ms:3s",
                    help="DRAIN:PAUSE:WEB_DAMPER:LB_DAMPER, comma-separated (PAUSE in whole seconds)")
    a = ap.parse_args()
    if not os.path.exists(a.binary):
        sys.exit(f"{a.binary} missing: cargo build")
    if not os.path.exists(HAPROXY):
        sys.exit(f"{HAPROXY} missing: install the Debian package `haproxy` (scripts/deps)")
    cases = [tuple(c.split(":")) for c in a.cases.split(",")]
    root = tempfile.mkdtemp(prefix="ochopod-bench-lb-")
    zk = Zk(root)
    load = os.getloadavg()[0]
    rows = []
    try:
        for ci, (drain, pause, wd, ld) in enumerate(cases):
            runs = []
            for r in range(a.runs):
                tag = f"c{ci}r{r}"
                print(f"bench: drain={drain} pause={pause} web damper={wd} lb damper={ld} run {r + 1}", file=sys.stderr, flush=True)
                runs.append(run_case(a.binary, zk, root, tag, drain, pause, wd, ld, f"127.81.{ci * a.runs + r + 1}"))
                sent, failed, leaves, when = runs[-1]
                print(f"bench:   {failed} of {sent} failed; leaves took "
                      f"{', '.join(f'{x:.2f} s' for x in leaves)}", file=sys.stderr, flush=True)
            rows.append((drain, pause, wd, ld, runs))
    finally:
        zk.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"# scale-down behind HAProxy ({os.cpu_count()} cores, load average {load:.2f} at the start, "
          f"{a.runs} runs per case)\n")
    print(f"{WEBS} web pods, {LEAVING} stopped by SIGTERM one after the other; a request every ~10 ms "
          f"through HAProxy (reloaded by SIGUSR2, no health checks, `retries 0`); binary `{a.binary}`\n")
    print("| `stop.drain` | `tear_down` pause | web damper | lb damper | failed / sent, each run "
          "| SIGTERM → exit, each leave |")
    print("|---|---|---|---|---|---|")
    for drain, pause, wd, ld, runs in rows:
        print(f"| `{drain}` | {pause} | `{wd}` | `{ld}` "
              f"| {', '.join(f'{r[1]} / {r[0]}' for r in runs)} "
              f"| {', '.join(f'{x:.1f}' for r in runs for x in r[2])} s |", flush=True)


if __name__ == "__main__":
    main()
