"""Prints bench/zookeeper.sh's table from the writer's log and the phase marks.

    zk_report.py WRITES MARKS

MARKS has lines `<name> <start> <end>` (Unix seconds). For each phase: its duration, the writes
started during it, the failed ones, and the longest stall (the longest time without an
acknowledged write, across the phase).
"""
import sys

writes = []
for line in open(sys.argv[1]):
    start, ack, _err = line.split()
    writes.append((float(start), None if ack == "-" else float(ack)))
marks = [line.split() for line in open(sys.argv[2]) if line.strip()]

print(f"| {'phase':<46} | {'took (s)':>8} | {'writes':>6} | {'failed':>6} | {'longest stall (s)':>17} |")
print(f"|{'-' * 48}|{'-' * 10}|{'-' * 8}|{'-' * 8}|{'-' * 19}|")
for name, a, b in marks:
    a, b = float(a), float(b)
    during = [w for w in writes if a <= w[0] <= b]
    failed = sum(1 for w in during if w[1] is None)
    acks = sorted(w[1] for w in writes if w[1] is not None and a - 5 <= w[1] <= b + 5)
    # The stall: the longest gap between acknowledgements that overlaps the phase.
    stall = 0.0
    for x, y in zip(acks, acks[1:]):
        if y >= a and x <= b:
            stall = max(stall, y - x)
    label = name.replace("_", " ")
    if not during:
        print(f"| {label:<46} | {b - a:>8.2f} | {'-':>6} | {'-':>6} | {'-':>17} |")
        continue
    print(f"| {label:<46} | {b - a:>8.2f} | {len(during):>6} | {failed:>6} | {stall:>17.3f} |")
total = len(writes)
failed = sum(1 for w in writes if w[1] is None)
print(f"\nwriter: {total} writes, {failed} failed")
