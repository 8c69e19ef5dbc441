#!/usr/bin/env python3
"""The pod runner's benchmark: ochopod next to supervisord, printed as a Markdown table.

Figures (see bench/README.md for what each one means):
  1. idle RSS, CPU, threads, wake-ups and syscalls of `ochopod run --standalone` supervising
     `sleep 3600`, and of supervisord supervising the same;
  2. crash -> re-exec latency (median, p90) with a zero backoff floor, for both;
  3. size of the static (glibc, crt-static) release binary, and of the dynamic one;
  4. GET /info and GET /healthz latency on one keep-alive connection (median, p99);
  5. start-up: exec -> GET /healthz answering (standalone, and with a throwaway ZooKeeper), and
     exec -> registered in ZooKeeper, over fresh starts.

Only loopback addresses, free ports and temp dirs are used. Every process started here runs in
a session of its own; on the way out (normal end, error, Ctrl-C, SIGTERM) each session is sent
TERM, given a few seconds, then every process still in it gets KILL.

Standard library only. Run through bench/runner.sh from anywhere.
"""

import argparse
import http.client
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from benchzk import Zk

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
TARGET = os.path.join(ROOT, "target")
RELEASE_BIN = os.path.join(TARGET, "release", "ochopod")
STATIC_TRIPLE = "x86_64-unknown-linux-gnu"
STATIC_BIN = os.path.join(TARGET, STATIC_TRIPLE, "release", "ochopod")
VENV = os.path.join(TARGET, "bench-venv")
RECORD = 42  # bytes per crasher record: "%020lld %020lld\n"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Sessions (= leader pids) of everything this script started, for the cleanup.
SESSIONS = []


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes and cleanup


def spawn(argv, *, env=None, cwd=None, logfile=None):
    """Starts argv in a new session (its id is the pid), output to logfile."""
    out = open(logfile, "ab") if logfile else subprocess.DEVNULL
    p = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    if logfile:
        out.close()
    SESSIONS.append(p)
    return p


def stat_fields(pid):
    """/proc/<pid>/stat fields after the command name: [state, ppid, pgrp, session, ...]."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    return text[text.rindex(")") + 2 :].split()


def pids_in_session(sid):
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if int(stat_fields(name)[3]) == sid:
                found.append(int(name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def children_of(pid):
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if int(stat_fields(name)[1]) == pid:
                found.append(int(name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def stop(p, grace=10.0):
    """TERM to the leader (ochopod and supervisord both stop their child on TERM), then KILL to
    whatever is left in its session. Idempotent."""
    if p.poll() is None:
        try:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            pass
    for _ in range(50):  # bounded: a session cannot refill itself once its members are KILLed
        left = [q for q in pids_in_session(p.pid) if q != os.getpid()]
        if not left:
            break
        for q in left:
            try:
                os.kill(q, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    if p.poll() is None:
        p.kill()
    p.wait()


def cleanup():
    while SESSIONS:
        stop(SESSIONS.pop(), grace=5.0)


def on_term(signum, _frame):
    raise SystemExit(128 + signum)


# ---------------------------------------------------------------- small helpers


def run(argv, **kw):
    return subprocess.run(argv, check=True, text=True, capture_output=True, **kw).stdout.strip()


def free_port(ip):
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def wait_for(what, deadline_s, probe, every=0.02):
    """Polls probe() until it returns a truthy value; fails after deadline_s."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        v = probe()
        if v:
            return v
        time.sleep(every)
    raise RuntimeError(f"timed out after {deadline_s}s waiting for {what}")


def pct(values, p):
    """Nearest-rank percentile."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
    return s[k]


def status_field(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split()[1]
    raise KeyError(key)


def cpu_ticks(pid):
    f = stat_fields(pid)
    return int(f[11]) + int(f[12])  # utime + stime, every thread of the process, dead ones too


def switches(pid):
    """{tid: voluntary + involuntary context switches} of every live thread: each one is a
    wake-up (or a preemption), so an idle process that polls shows up here."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            n = 0
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        n += int(line.split()[1])
            out[tid] = n
        except OSError:
            continue
    return out


# ---------------------------------------------------------------- builds


def build_release():
    log("cargo build --release")
    subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    return os.path.getsize(RELEASE_BIN)


def build_static():
    """Returns (size or None, static?: bool, note)."""
    env = dict(os.environ, RUSTFLAGS="-C target-feature=+crt-static")
    log(f"RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target {STATIC_TRIPLE}")
    p = subprocess.run(
        ["cargo", "build", "--release", "--target", STATIC_TRIPLE],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
    )
    sys.stderr.write(p.stderr[-3000:])
    if p.returncode != 0:
        tail = [l for l in p.stderr.splitlines() if "error" in l.lower()][:5]
        return None, False, "static build failed: " + " | ".join(tail)
    kind = run(["file", "-b", STATIC_BIN])
    ldd = subprocess.run(["ldd", STATIC_BIN], text=True, capture_output=True)
    ldd_text = (ldd.stdout + ldd.stderr).strip()
    static = ("statically linked" in kind or "static-pie" in kind) and (
        "not a dynamic executable" in ldd_text or "statically linked" in ldd_text
    )
    # glibc's NSS functions (getaddrinfo, getpwnam...) still dlopen libnss_*.so of the very same
    # glibc version at run time, even in a static binary. The linker's warning about it is hidden
    # by rustc's allow-by-default `linker_messages` lint, so look for the loader in the binary too.
    nss = sorted(set(re.findall(r"Using '(\w+)' in statically linked", p.stderr)))
    with open(STATIC_BIN, "rb") as f:
        nss_loader = b"libnss_%s.so" in f.read()
    linked = next((part.strip() for part in kind.split(",") if "linked" in part), kind)
    note = f"`file`: {linked}; `ldd`: {ldd_text.splitlines()[0] if ldd_text else '?'}"
    if nss:
        note += f"; the linker warns that {', '.join(nss)} need glibc's shared NSS modules at run time"
    if nss_loader:
        note += (
            "; glibc's NSS loader is linked in (host name lookups, e.g. a ZooKeeper host name, may"
            " dlopen libnss_*.so of the same glibc version at run time; IP addresses need nothing)"
        )
    try:
        run([STATIC_BIN, "--version"])
    except (subprocess.CalledProcessError, OSError) as e:
        note += f"; the static binary does not run: {e}"
    return os.path.getsize(STATIC_BIN), static, note


def ensure_supervisord():
    exe = os.path.join(VENV, "bin", "supervisord")
    if not os.path.exists(exe):
        log(f"installing supervisor into {VENV}")
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "-q", "supervisor"], check=True)
    return exe, run([exe, "--version"])


def compile_crasher(tmp):
    exe = os.path.join(tmp, "crasher")
    src = os.path.join(BENCH, "crasher.c")
    # Static when glibc's libc.a is there: no dynamic loader in the measured gap.
    for flags in (["-static"], []):
        if subprocess.run(["cc", "-O2", *flags, "-o", exe, src], capture_output=True).returncode == 0:
            return exe, ("static" if flags else "dynamic")
    raise RuntimeError("cannot compile bench/crasher.c with cc")


# ---------------------------------------------------------------- the two supervisors


class Ochopod:
    name = "ochopod"

    def __init__(self, binary, ip, tmp, env=None):
        self.binary, self.ip, self.tmp = binary, ip, tmp
        self.extra_env = env or {}
        self.port = None
        self.p = None

    def start(self, argv, restart=None, standalone=True):
        home = os.path.join(self.tmp, "home")
        os.makedirs(home, exist_ok=True)
        yaml = f"cluster: bench\nprocess:\n  command: {json.dumps(argv)}\n"
        if restart:
            yaml += f"  restart: {restart}\n"
        pod = os.path.join(self.tmp, "pod.yaml")
        with open(pod, "w") as f:
            f.write(yaml)
        self.port = free_port(self.ip)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCHOPOD_")}
        env.update(
            OCHOPOD_HOME=home,
            OCHOPOD_IP=self.ip,
            OCHOPOD_BIND=self.ip,
            OCHOPOD_PORT=str(self.port),
        )
        env.update(self.extra_env)
        mode = ["--standalone"] if standalone else []
        self.p = spawn([self.binary, "run", *mode, pod], env=env, logfile=os.path.join(self.tmp, "ochopod.log"))
        return self

    def url(self, path):
        return f"http://{self.ip}:{self.port}{path}"

    def info(self):
        if self.p.poll() is not None:
            raise RuntimeError(f"ochopod exited with {self.p.returncode}; see {self.tmp}/ochopod.log")
        try:
            with urllib.request.urlopen(self.url("/info"), timeout=2) as r:
                return json.load(r)
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def wait_running(self):
        info = wait_for("ochopod's process to run", 30, lambda: (lambda i: i if i and i.get("process") == "running" else None)(self.info()), every=0.05)
        return info["pid"]

    def stop(self):
        stop(self.p)


class Supervisord:
    name = "supervisord"

    def __init__(self, exe, tmp):
        self.exe, self.tmp = exe, tmp
        self.p = None

    def start(self, argv, restart=False):
        conf = os.path.join(self.tmp, "supervisord.conf")
        extra = "autorestart=true\nstartsecs=0\nstartretries=1000000\n" if restart else "autorestart=true\n"
        with open(conf, "w") as f:
            f.write(
                "[supervisord]\n"
                "nodaemon=true\n"
                f"logfile={self.tmp}/supervisord.log\n"
                f"pidfile={self.tmp}/supervisord.pid\n"
                f"childlogdir={self.tmp}\n"
                + ("user=root\n" if os.geteuid() == 0 else "")
                + "\n[program:child]\n"
                f"command={' '.join(argv)}\n"
                "autostart=true\n"
                f"{extra}"
                f"stdout_logfile={self.tmp}/child.out\n"
                "redirect_stderr=true\n"
            )
        self.p = spawn([self.exe, "-n", "-c", conf], logfile=os.path.join(self.tmp, "supervisord.out"))
        return self

    def wait_running(self):
        def child():
            if self.p.poll() is not None:
                raise RuntimeError(f"supervisord exited with {self.p.returncode}; see {self.tmp}")
            kids = children_of(self.p.pid)
            return kids[0] if kids else None

        return wait_for("supervisord's child to run", 30, child, every=0.05)

    def stop(self):
        stop(self.p)


# ---------------------------------------------------------------- 1. idle


def strace_idle(pid, seconds):
    """Syscalls of every thread of pid over `seconds`: (total calls, top syscalls), or a reason."""
    if not shutil.which("strace"):
        return None, "strace not installed"
    out = os.path.join(tempfile.gettempdir(), f"bench-strace-{pid}.txt")
    p = subprocess.run(
        ["timeout", "-s", "INT", str(seconds), "strace", "-f", "-c", "-o", out, "-p", str(pid)],
        text=True,
        capture_output=True,
    )
    try:
        with open(out) as f:
            text = f.read()
        os.unlink(out)
    except OSError:
        return None, f"strace failed: {p.stderr.strip()[:200]}"
    total, calls = 0, []
    for line in text.splitlines():
        cols = line.split()
        if len(cols) >= 5 and cols[0][0].isdigit() and cols[-1] != "total":
            n = int(cols[3])
            calls.append((n, cols[-1]))
        elif cols and cols[-1] == "total" and len(cols) >= 4:
            total = int(cols[3])
    calls.sort(reverse=True)
    return total, ", ".join(f"{name} {n}" for n, name in calls[:4]) or "none"


def idle(sup, settle, window, strace_s):
    sup.start(["sleep", "3600"])
    sup.wait_running()
    time.sleep(settle)  # startup done: let any lazy thread or allocation happen first
    pid = sup.p.pid
    t0, c0, s0 = time.monotonic(), cpu_ticks(pid), switches(pid)
    time.sleep(window)
    t1, c1, s1 = time.monotonic(), cpu_ticks(pid), switches(pid)
    wakeups = sum(n - s0.get(tid, 0) for tid, n in s1.items())
    res = {
        "rss_mib": int(status_field(pid, "VmRSS")) / 1024.0,
        # Private (heap, stacks, written data) vs mapped from files (the binary's code and the
        # shared libraries': page cache, shared by every process running the same file).
        "anon_mib": int(status_field(pid, "RssAnon")) / 1024.0,
        "file_mib": int(status_field(pid, "RssFile")) / 1024.0,
        "threads": int(status_field(pid, "Threads")),
        "cpu_pct": 100.0 * (c1 - c0) / CLK_TCK / (t1 - t0),
        "wakeups_per_s": wakeups / (t1 - t0),
    }
    res["strace_calls"], res["strace_top"] = strace_idle(pid, strace_s) if strace_s else (None, "skipped")
    log(f"{sup.name} idle: {res}")
    return res


# ---------------------------------------------------------------- 2. crash -> re-exec


def restart_latency(sup, crasher, tmp, n):
    runs = os.path.join(tmp, "runs")
    argv = [crasher, runs, str(n + 1)]
    if isinstance(sup, Ochopod):
        sup.start(argv, restart="{ policy: always, backoff: 0s, max_backoff: 1s }")
    else:
        sup.start(argv, restart=True)
    size = lambda: os.path.getsize(runs) if os.path.exists(runs) else 0
    wait_for(f"{n + 1} runs under {sup.name}", 60 + n * 0.5, lambda: size() >= (n + 1) * RECORD, every=0.05)
    t_end = time.monotonic()
    sup.stop()
    with open(runs) as f:
        recs = [tuple(map(int, l.split())) for l in f if l.strip()]
    gaps_ms = [(recs[i + 1][0] - recs[i][1]) / 1e6 for i in range(len(recs) - 1)]
    res = {
        "n": len(gaps_ms),
        "median_ms": statistics.median(gaps_ms),
        "p90_ms": pct(gaps_ms, 90),
        "min_ms": min(gaps_ms),
        "max_ms": max(gaps_ms),
        "wall_s": (recs[-1][1] - recs[0][0]) / 1e9,
    }
    log(f"{sup.name} restarts: {res}")
    return res


# ---------------------------------------------------------------- 5. start-up


def healthz_once(ip, port):
    """True when GET /healthz answers 200 (a refused connection is False)."""
    try:
        conn = http.client.HTTPConnection(ip, port, timeout=1)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        finally:
            conn.close()
    except OSError:
        return False


def info_once(ip, port):
    try:
        conn = http.client.HTTPConnection(ip, port, timeout=1)
        try:
            conn.request("GET", "/info")
            r = conn.getresponse()
            return json.loads(r.read()) if r.status == 200 else None
        finally:
            conn.close()
    except (OSError, ValueError):
        return None


def start_times(binary, ip, tmp, n, zk_port=None, env=None):
    """exec -> GET /healthz answering, and (with ZooKeeper) exec -> registered (`/info` says
    `connected`: the seq is claimed and the pod znode written), in ms, over n fresh starts of
    `ochopod run` supervising `sleep 3600`; polled every 2 ms."""
    health, registered = [], []
    for i in range(n):
        d = tempfile.mkdtemp(dir=tmp, prefix="start-")
        env = {"OCHOPOD_LOG": "warn", **(env or {})}
        if zk_port:
            env.update(OCHOPOD_ZK=f"127.0.0.1:{zk_port}", OCHOPOD_ZK_SESSION_TIMEOUT="4s")
        sup = Ochopod(binary, ip, d, env=env)
        t0 = time.perf_counter()
        sup.start(["sleep", "3600"], standalone=not zk_port)
        try:
            wait_for("/healthz", 30, lambda: healthz_once(ip, sup.port), every=0.002)
            health.append((time.perf_counter() - t0) * 1e3)
            if zk_port:
                wait_for("registration", 30, lambda: (info_once(ip, sup.port) or {}).get("connected"), every=0.002)
                registered.append((time.perf_counter() - t0) * 1e3)
        finally:
            sup.stop()
    res = {"n": n, "healthz_ms": statistics.median(health), "healthz_p90_ms": pct(health, 90)}
    if registered:
        res.update(registered_ms=statistics.median(registered), registered_p90_ms=pct(registered, 90))
    log(f"start-up{' with ZooKeeper' if zk_port else ''}: {res}")
    return res


# ---------------------------------------------------------------- 4. HTTP


def http_latency(ip, port, path, n, warmup=50):
    conn = http.client.HTTPConnection(ip, port, timeout=5)
    times, reconnects, sock = [], 0, None
    try:
        for i in range(warmup + n):
            t0 = time.perf_counter_ns()
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            t1 = time.perf_counter_ns()
            if r.status != 200:
                raise RuntimeError(f"GET {path}: {r.status} {body[:200]!r}")
            if sock is not None and conn.sock is not sock:
                reconnects += 1
            sock = conn.sock
            if i >= warmup:
                times.append((t1 - t0) / 1e3)
    finally:
        conn.close()
    return {"n": len(times), "median_us": statistics.median(times), "p99_us": pct(times, 99), "reconnects": reconnects}


def wrk(url, seconds=5):
    if not shutil.which("wrk"):
        return None
    out = subprocess.run(
        ["wrk", "-t1", "-c1", f"-d{seconds}s", "--latency", url], text=True, capture_output=True, timeout=seconds + 30
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"50%\s+(\S+)", out)
    p99 = re.search(r"99%\s+(\S+)", out)
    return {"rps": float(rps.group(1)) if rps else None, "p50": p50.group(1) if p50 else "?", "p99": p99.group(1) if p99 else "?"}


# ---------------------------------------------------------------- main


def fmt(v, spec="{:.2f}"):
    return "n/a" if v is None else spec.format(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--restarts", type=int, default=200, help="crash -> re-exec cycles measured (default 200)")
    ap.add_argument(
        "--sv-restarts",
        type=int,
        default=50,
        help="the same for supervisord, which takes 1-2 s per restart (default 50)",
    )
    ap.add_argument(
        "--host-procs",
        type=int,
        default=0,
        help="extra idle processes to start during the crash -> re-exec runs (default 0)",
    )
    ap.add_argument("--requests", type=int, default=1000, help="sequential GETs per endpoint (default 1000)")
    ap.add_argument("--window", type=float, default=10.0, help="idle CPU window in seconds (default 10)")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds after start before idle figures (default 3)")
    ap.add_argument("--strace", type=int, default=5, help="seconds of strace -f -c while idle, 0 to skip (default 5)")
    ap.add_argument("--no-static", action="store_true", help="skip the static build")
    ap.add_argument("--no-supervisord", action="store_true", help="ochopod only")
    ap.add_argument("--starts", type=int, default=20, help="fresh starts timed to /healthz and to registration (default 20, 0 to skip)")
    ap.add_argument("--no-zk", action="store_true", help="time the start-up without ZooKeeper only")
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set in every ochopod started (e.g. MALLOC_ARENA_MAX=1); repeatable",
    )
    ap.add_argument("--binary", help="measure this ochopod binary instead of building target/release/ochopod")
    ap.add_argument("--json", help="also write every figure to this JSON file")
    args = ap.parse_args()
    extra_env = dict(kv.split("=", 1) for kv in args.env)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    global RELEASE_BIN
    if args.binary:
        RELEASE_BIN = os.path.abspath(args.binary)
        dyn_size = os.path.getsize(RELEASE_BIN)
    else:
        dyn_size = build_release()
    load0 = open("/proc/loadavg").read().split()[:3]
    version = run([RELEASE_BIN, "--version"])
    try:
        commit = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    except (subprocess.CalledProcessError, OSError):
        commit = "?"
    sv_exe, sv_version = (None, None) if args.no_supervisord else ensure_supervisord()
    ip = f"127.0.0.{random.randint(100, 250)}"
    fig = {"ochopod": {}, "supervisord": {}}

    with tempfile.TemporaryDirectory(prefix="ochopod-bench-") as tmp:
        crasher, crasher_kind = compile_crasher(tmp)
        sups = [("ochopod", lambda d: Ochopod(RELEASE_BIN, ip, d, env=extra_env))]
        if sv_exe:
            sups.append(("supervisord", lambda d: Supervisord(sv_exe, d)))
        for name, make in sups:
            d = tempfile.mkdtemp(dir=tmp, prefix=f"{name}-idle-")
            sup = make(d)
            try:
                fig[name]["idle"] = idle(sup, args.settle, args.window, args.strace)
                if name == "ochopod":
                    for path in ("/info", "/healthz"):
                        r = http_latency(ip, sup.port, path, args.requests)
                        log(f"GET {path}: {r}")
                        fig[name][path] = r
                        fig[name]["wrk " + path] = wrk(sup.url(path))
            finally:
                sup.stop()
        # ochopod once more with its orphan reaper off, to show the reaper's share of a restart
        # (it scans /proc on every SIGCHLD: the more processes the host shows, the longer).
        runs = [("ochopod", "restart", sups[0][1])]
        runs.append(("ochopod", "restart_noreap", lambda d: Ochopod(RELEASE_BIN, ip, d, env={**extra_env, "OCHOPOD_REAP": "off"})))
        runs += [(name, "restart", make) for name, make in sups[1:]]
        crowd = None
        if args.host_procs:
            log(f"starting {args.host_procs} idle processes for the crash -> re-exec runs")
            crowd = spawn(["sh", "-c", f"i=0; while [ $i -lt {args.host_procs} ]; do sleep 3600 & i=$((i+1)); done; wait"])
            wait_for("the idle processes", 120, lambda: len(pids_in_session(crowd.pid)) > args.host_procs)
        fig["host_procs"] = sum(1 for e in os.listdir("/proc") if e.isdigit())
        try:
            for name, key, make in runs:
                d = tempfile.mkdtemp(dir=tmp, prefix=f"{name}-{key}-")
                sup = make(d)
                try:
                    n = args.restarts if name == "ochopod" else args.sv_restarts
                    fig[name][key] = restart_latency(sup, crasher, d, n)
                finally:
                    sup.stop()
        finally:
            if crowd:
                stop(crowd)

        if args.starts:
            fig["ochopod"]["start"] = start_times(RELEASE_BIN, ip, tmp, args.starts, env=extra_env)
            if not args.no_zk:
                zk = Zk(tmp)
                try:
                    fig["ochopod"]["start_zk"] = start_times(RELEASE_BIN, ip, tmp, args.starts, zk.port, env=extra_env)
                finally:
                    zk.stop()

    static = (None, False, "skipped (--no-static)") if args.no_static else build_static()
    if static[1]:
        # The binary images ship (Dockerfile.base): no shared libraries mapped next to it.
        with tempfile.TemporaryDirectory(prefix="ochopod-bench-") as tmp:
            sup = Ochopod(STATIC_BIN, ip, tmp, env=extra_env)
            try:
                fig["ochopod"]["idle_static"] = idle(sup, args.settle, 2.0, 0)
            finally:
                sup.stop()
    loadavg = open("/proc/loadavg").read().split()[:3]

    # ---- the report
    o, s = fig["ochopod"], fig["supervisord"]
    oi, si = o["idle"], s.get("idle", {})
    orr, srr = o["restart"], s.get("restart", {})
    ratio = lambda a, b: "n/a" if not a or not b else f"{b / a:.1f}x"
    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(
        f"Environment: {os.cpu_count()} CPUs ({cpu_model}), Linux {platform.release()}, {version} ({commit}), "
        f"{'supervisord ' + sv_version + ', ' if sv_version else ''}Python {platform.python_version()}, "
        f"load average at the start {' '.join(load0)}, at the end {' '.join(loadavg)}, crasher: {crasher_kind} C\n"
    )
    print("| figure | ochopod | supervisord | goal |")
    print("|---|---:|---:|---|")
    row = lambda a, b, c, d: print(f"| {a} | {b} | {c} | {d} |")
    row("idle RSS (VmRSS, MiB)", fmt(oi["rss_mib"], "{:.1f}"), fmt(si.get("rss_mib"), "{:.1f}"), "<= 10 MiB")
    row(
        "idle RSS: private (RssAnon) / mapped from files (RssFile), MiB",
        f"{oi['anon_mib']:.1f} / {oi['file_mib']:.1f}",
        f"{si['anon_mib']:.1f} / {si['file_mib']:.1f}" if si else "n/a",
        "",
    )
    ois = o.get("idle_static")
    if ois:
        row(
            "idle RSS of the static binary: VmRSS (RssAnon / RssFile), MiB",
            f"{ois['rss_mib']:.1f} ({ois['anon_mib']:.1f} / {ois['file_mib']:.1f})",
            "n/a",
            "<= 5 MiB",
        )
    row(f"idle CPU over {args.window:g} s (%)", fmt(oi["cpu_pct"]), fmt(si.get("cpu_pct")), "~0 %")
    row("threads", oi["threads"], si.get("threads", "n/a"), "")
    row("idle wake-ups (context switches/s, all threads)", fmt(oi["wakeups_per_s"], "{:.1f}"), fmt(si.get("wakeups_per_s"), "{:.1f}"), "~0: no polling")
    if args.strace:
        row(
            f"idle syscalls in {args.strace} s (strace -f -c)",
            f"{fmt(oi['strace_calls'], '{}')} ({oi['strace_top']})",
            f"{fmt(si.get('strace_calls'), '{}')} ({si.get('strace_top', 'n/a')})",
            "~0",
        )
    row(f"crash -> re-exec: restarts measured ({fig['host_procs']} processes in /proc)", orr["n"], srr.get("n", "n/a"), "")
    row("crash -> re-exec, median (ms)", fmt(orr["median_ms"], "{:.3f}"), fmt(srr.get("median_ms"), "{:.3f}"), "<= 5 ms")
    row("crash -> re-exec, p90 (ms)", fmt(orr["p90_ms"], "{:.3f}"), fmt(srr.get("p90_ms"), "{:.3f}"), "")
    row("crash -> re-exec, min / max (ms)", f"{orr['min_ms']:.3f} / {orr['max_ms']:.3f}",
        f"{srr['min_ms']:.3f} / {srr['max_ms']:.3f}" if srr else "n/a", "")
    nr = o["restart_noreap"]
    row(
        "ochopod with `OCHOPOD_REAP=off`: median / p90 (ms)",
        f"{nr['median_ms']:.3f} / {nr['p90_ms']:.3f}",
        "",
        "the orphan reaper's share",
    )
    row("supervisord / ochopod median ratio", ratio(orr["median_ms"], srr.get("median_ms")), "", "")
    st_size, st_ok, st_note = static
    row(
        "static release binary (MB)",
        f"{st_size / 1e6:.2f} ({'static' if st_ok else 'NOT static'})"
        if st_size
        else ("skipped" if args.no_static else "build failed: see below"),
        "n/a",
        "<= 8 MB",
    )
    row("dynamic release binary (MB)", f"{dyn_size / 1e6:.2f}", "n/a", "")
    for path in ("/info", "/healthz"):
        r = o[path]
        row(f"GET {path}, median / p99 (µs, n={r['n']}, keep-alive)", f"{r['median_us']:.0f} / {r['p99_us']:.0f}", "n/a", "")
        w = o.get("wrk " + path)
        if w:
            row(f"GET {path} with wrk -t1 -c1: req/s, p50 / p99", f"{w['rps']:.0f}, {w['p50']} / {w['p99']}", "n/a", "")
    for key, what in (("start", "standalone"), ("start_zk", "with ZooKeeper")):
        r = o.get(key)
        if r:
            row(f"exec -> GET /healthz answers, {what}: median / p90 (ms, n={r['n']})", f"{r['healthz_ms']:.1f} / {r['healthz_p90_ms']:.1f}", "n/a", "")
            if "registered_ms" in r:
                row(f"exec -> registered in ZooKeeper: median / p90 (ms, n={r['n']})", f"{r['registered_ms']:.1f} / {r['registered_p90_ms']:.1f}", "n/a", "")
    if extra_env:
        print(f"\nEnvironment of every ochopod: {' '.join(f'{k}={v}' for k, v in extra_env.items())}")
    print(f"\nStatic build: {st_note}")
    for path in ("/info", "/healthz"):
        if o[path]["reconnects"]:
            print(f"Warning: GET {path} reconnected {o[path]['reconnects']} times (keep-alive not kept)")
    if args.json:
        fig["static"] = {"size": st_size, "static": st_ok, "note": st_note}
        fig["dynamic_size"] = dyn_size
        with open(args.json, "w") as f:
            json.dump(fig, f, indent=2)


if __name__ == "__main__":
    try:
        main()
    finally:
        cleanup()
