#!/usr/bin/env python3
"""The swarm: N simulated pods in one process (the `swarm` example, bench/swarm/) against one real
`ochopod run` leader (release build) and a throwaway ZooKeeper (bench/benchzk.py), at several
sizes. Prints a Markdown table and writes the cost curves as an SVG (docs/swarm.svg).

  cargo build --release --bin ochopod --example swarm
  bench/swarm.py [--sizes 100,1000] [--with-5000] [--svg docs/swarm.svg] [--load runs.jsonl] [-- extra swarm args]

Each size gets a fresh ZooKeeper. The raw JSON of each run goes to stderr as well.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchzk import Zk  # noqa: E402


def run_size(swarm, binary, n, extra, timeout):
    root = tempfile.mkdtemp(prefix="ochopod-swarm-")
    # tickTime=200 caps sessions at 4 s, whose heartbeats (about 2 requests/s per session) would
    # drown a change's requests at 1,000 sessions: allow the swarm's 30 s.
    # Thousands of sessions and their watches outgrow a 256 MiB heap (5,000 dropped connections).
    zk = Zk(root, extra="maxSessionTimeout=60000\n", heap="256m" if n <= 1000 else "1g")
    try:
        cmd = [swarm, "--zk", f"127.0.0.1:{zk.port}", "--zk-pid", str(zk.proc.pid), "--binary", binary,
               "--pods", str(n), "--session-timeout", "30s"] + extra
        t0 = time.time()
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, timeout=timeout, text=True)
        except subprocess.TimeoutExpired:
            return dict(pods=n, failed=dict(phase=f"whole run over {timeout} s"))
        lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
        if p.returncode != 0 or not lines:
            return dict(pods=n, failed=dict(phase=f"swarm exited {p.returncode}"))
        r = json.loads(lines[-1])
        r["wall_s"] = time.time() - t0
        print(json.dumps(r), file=sys.stderr, flush=True)
        return r
    finally:
        zk.stop()
        shutil.rmtree(root, ignore_errors=True)


def fmt(v, unit="", digits=2):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}{unit}"
    return f"{v}{unit}"


def mb(v):
    return None if v is None else v / 1e6


def row(r):
    g = lambda *k: _get(r, *k)
    failed = r.get("failed") or ({"phase": "snapshot", "why": r["snapshot"]} if "snapshot" in r else None)
    return [
        r.get("label", str(r["pods"])),
        fmt(g("registration_s"), " s"),
        fmt(g("formation_beyond_damper_s"), " s"),
        fmt(g("lost_s"), " s"),
        zk_change(r, "join"),
        zk_change(r, "loss"),
        fmt(g("join", "leader_zk_requests"), "", 0),
        fmt(mb(g("join", "http_bytes")), " MB", 1),
        fmt(mb(g("join", "zk_io_bytes")), " MB", 1),
        fmt(g("idle_zk_requests_per_s"), "", 0),
        fmt(g("formation", "leader_cpu_s"), " s"),
        fmt(g("join", "leader_cpu_s"), " s"),
        fmt(g("leader_memory", "rss_mib"), "", 1) + " / " + fmt(g("leader_memory", "hwm_mib"), "", 1),
        fmt(g("join", "swarm_cpu_s"), " s"),
        fmt(g("swarm_memory", "hwm_mib"), "", 0),
        "" if not failed else f"**{failed.get('phase')}**: {json.dumps(failed.get('progress') or failed.get('why') or '')}"
        + (f"; leader killed at {r['leader_killed_at_rss_mib']:.0f} MiB RSS" if r.get("leader_killed_at_rss_mib") else ""),
    ]


def zk_ops(r, phase):
    """A change's ZooKeeper requests: reads and writes on /ochopod (mntr's per-namespace counters,
    no heartbeats); for runs recorded before the swarm read them, packets received less the idle
    rate, which 1,000 sessions' heartbeats make noisy (they come in bursts)."""
    ops = _get(r, phase, "zk_ops")
    return ops if ops is not None else _get(r, phase, "zk_requests")


def zk_change(r, phase):
    v = zk_ops(r, phase)
    return fmt(v, "", 0) if _get(r, phase, "zk_ops") is not None or v is None else "≈ " + fmt(v, "", 0)


def _get(r, *keys):
    for k in keys:
        if not isinstance(r, dict) or r.get(k) is None:
            return None
        r = r[k]
    return r


HEAD = ["pods", "registration", "last registration → all ok, beyond the damper", "pod lost → survivors ok",
        "ZK requests, +1 pod", "ZK requests, −1 pod", "of which the leader's, +1 pod", "HTTP bytes to pods, +1 pod", "ZK JVM I/O, +1 pod",
        "ZK requests/s idle", "leader CPU, formation", "leader CPU, +1 pod", "leader RSS / peak (MiB)",
        "swarm CPU, +1 pod", "swarm peak RSS (MiB)", "did not complete"]


def table(results):
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    lines += ["| " + " | ".join(row(r)) + " |" for r in results]
    return "\n".join(lines)


# --- the plot: small multiples, log x (pods), each panel its own linear y ---------------------
PANELS = [
    ("formation beyond the damper (s)", lambda r: _get(r, "formation_beyond_damper_s")),
    ("pod lost → survivors ok (s)", lambda r: _get(r, "lost_s")),
    ("ZK requests, +1 pod (blue all, red leader's)", lambda r: zk_ops(r, "join"),
     lambda r: _get(r, "join", "leader_zk_requests")),
    ("HTTP MB to pods, +1 pod", lambda r: mb(_get(r, "join", "http_bytes"))),
    ("CPU s, +1 pod (blue leader, red swarm)", lambda r: _get(r, "join", "leader_cpu_s"),
     lambda r: _get(r, "join", "swarm_cpu_s")),
    ("leader peak RSS (MiB)", lambda r: _get(r, "leader_memory", "hwm_mib")),
]
COLORS = ["#1f6feb", "#d1242f"]


def num(v):
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def svg(results, title, before=()):
    """Small multiples; with `before` (earlier runs, e.g. the commit before a change), each
    panel's first series is drawn for them too, grey and dashed, and the y axes are logarithmic so
    that both curves stay readable."""
    import math
    w, h, cols = 310, 210, 3
    rows = (len(PANELS) + cols - 1) // cols
    W, H = cols * w + 20, rows * h + 50
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           'font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="10" y="20" font-size="14" font-weight="bold">{title}</text>']
    xs = sorted({r["pods"] for r in list(results) + list(before)})
    lx = [math.log10(x) for x in xs]
    x_lo, x_hi = (min(lx) - 0.15, max(lx) + 0.15) if lx else (1, 4)
    for i, (name, *series) in enumerate(PANELS):
        ox, oy = 10 + (i % cols) * w, 40 + (i // cols) * h
        px, py, pw, ph = ox + 50, oy + 22, w - 80, h - 65
        out.append(f'<text x="{ox + 5}" y="{oy + 12}" font-weight="bold">{name}</text>')
        pts = [[(r["pods"], f(r)) for r in results if isinstance(f(r), (int, float))] for f in series]
        old = [(r["pods"], series[0](r)) for r in before if isinstance(series[0](r), (int, float))]
        vals = [v for s in pts + [old] for _, v in s]
        top = max(vals + [0])
        top = top * 1.15 if top > 0 else 1
        X = lambda x: px + (math.log10(x) - x_lo) / (x_hi - x_lo) * pw
        if before:
            lo = min([v for v in vals if v > 0] + [top]) / 2
            lt, ll = math.log10(top), math.log10(lo)
            Y = lambda v: py + ph - (math.log10(max(v, lo)) - ll) / max(lt - ll, 1e-9) * ph
            ticks = [10 ** (ll + (lt - ll) * k / 4) for k in range(5)]
        else:
            Y = lambda v: py + ph - max(v, 0) / top * ph
            ticks = [top * k / 4 for k in range(5)]
        out.append(f'<rect x="{px}" y="{py}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
        for v in ticks:
            out.append(f'<line x1="{px}" x2="{px + pw}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#eee"/>')
            out.append(f'<text x="{px - 4}" y="{Y(v) + 4:.1f}" text-anchor="end">{num(v)}</text>')
        def series(s, color, dash="", label_dy=-5):
            """One curve: its line, a dot and the value at each point."""
            if len(s) > 1:
                path = " ".join(f"{X(x):.1f},{Y(v):.1f}" for x, v in s)
                out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
            for x, v in s:
                out.append(f'<circle cx="{X(x):.1f}" cy="{Y(v):.1f}" r="3" fill="{color}"/>')
                out.append(f'<text x="{X(x) + 5:.1f}" y="{Y(v) + label_dy:.1f}" fill="{color}">{num(v)}</text>')

        # The runs before: grey and dashed, their values below the points.
        series(old, "#999", ' stroke-dasharray="5,4"', 12)
        for x in xs:
            out.append(f'<text x="{X(x):.1f}" y="{py + ph + 14}" text-anchor="middle">{x:,}</text>')
        done = {r["pods"] for r in results if not r.get("failed") and "snapshot" not in r}
        for x in sorted(set(xs) - done):
            out.append(f'<text x="{X(x):.1f}" y="{py + 14}" text-anchor="middle" fill="#d1242f">did not complete</text>')
        for s, color in zip(pts, COLORS):
            series(s, color)
        out.append(f'<text x="{px + pw / 2}" y="{py + ph + 28}" text-anchor="middle" fill="#555">pods (log scale)</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--with-5000", action="store_true", help="add 5,000 pods (slow on main's leader)")
    ap.add_argument("--binary", default="target/release/ochopod")
    ap.add_argument("--swarm", default="target/release/examples/swarm")
    ap.add_argument("--svg", default="docs/swarm.svg")
    ap.add_argument("--title", default="ochopod swarm: one real leader, N simulated pods")
    ap.add_argument("--run-timeout", type=int, default=900, help="seconds per size")
    ap.add_argument("--load", help="JSON lines of earlier runs (as printed on stderr) to table with these")
    ap.add_argument("--before", help="JSON lines of runs of an earlier commit: tabled as 'N (before)' and "
                    "drawn grey and dashed (log y axes)")
    ap.add_argument("extra", nargs="*", help="after --: more arguments for the swarm example")
    a = ap.parse_args()
    for f in (a.binary, a.swarm):
        if not os.path.exists(f):
            sys.exit(f"{f} missing: cargo build --release --bin ochopod --example swarm")
    sizes = [int(x) for x in a.sizes.split(",") if x] + ([5000] if a.with_5000 else [])
    load = os.getloadavg()[0]
    results = []
    if a.load:
        with open(a.load) as f:
            results = [json.loads(l) for l in f if l.startswith("{")]
    for n in sizes:
        print(f"swarm.py: {n} pods", file=sys.stderr, flush=True)
        results.append(run_size(a.swarm, a.binary, n, a.extra, a.run_timeout))
    results.sort(key=lambda r: r["pods"])
    before = []
    if a.before:
        with open(a.before) as f:
            before = sorted((json.loads(l) for l in f if l.startswith("{")), key=lambda r: r["pods"])
    print(f"# swarm ({os.cpu_count()} cores, load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end)\n")
    print(table(results + [dict(r, label=f"{r['pods']} (before)") for r in before]))
    if a.svg:
        with open(a.svg, "w") as f:
            f.write(svg(results, a.title, before))
        print(f"\n(plot: {a.svg})")


if __name__ == "__main__":
    main()
