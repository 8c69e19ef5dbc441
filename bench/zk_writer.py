"""A ZooKeeper writer for bench/zookeeper.sh: one `set` every 50 ms, each retried for up to 2 s.

    zk_writer.py HOSTS PATH OUT

Appends one line per write to OUT: `<start> <ack or -> <error or ->` (Unix seconds). Runs until
SIGTERM. Needs kazoo (bench/zookeeper.sh installs it in a venv under target/).
"""
import signal
import sys
import time

from kazoo.client import KazooClient
from kazoo.retry import KazooRetry

PERIOD = 0.05
BUDGET = 2.0

hosts, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
zk = KazooClient(hosts=hosts, timeout=10.0,
                 connection_retry=KazooRetry(max_tries=-1, delay=0.05, max_delay=0.2))
zk.start(timeout=30)
zk.ensure_path(path)
with open(out, "a", buffering=1) as log:
    n = 0
    next_at = time.time()
    while running:
        n += 1
        start = time.time()
        retry = KazooRetry(max_tries=-1, delay=0.02, max_delay=0.1, deadline=BUDGET,
                           ignore_expire=False)
        try:
            retry(zk.set, path, str(n).encode())
            log.write(f"{start:.3f} {time.time():.3f} -\n")
        except Exception as e:  # a failed write is what the bench counts
            log.write(f"{start:.3f} - {type(e).__name__}\n")
        next_at += PERIOD
        time.sleep(max(0.0, next_at - time.time()))
zk.stop()
