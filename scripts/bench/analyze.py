#!/usr/bin/env python3
"""analyze.py - `latrine analyze --offline` against the floor of reading and
hashing the same files once (`find SPOOL -type f -print0 | xargs -0
sha256sum`), at several spool sizes, to show how time and memory grow.

Spools are made by scripts/gen_spool.py (kept in --work and reused when a
complete one is there). Each size: the floor and analyze alternate --reps
times, page cache warm (a first, untimed read warms it); the fastest of each
is reported, with analyze's peak resident memory. One JSON line per size.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def timed(cmd, **kw):
    start = time.monotonic()
    proc = subprocess.Popen(cmd, **kw)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - start
    if status != 0:
        raise SystemExit(f"analyze bench: {cmd[0]} failed with status {status}")
    return seconds, usage.ru_maxrss, usage.ru_utime + usage.ru_stime


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--latrine", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--sessions", default="10000,100000")
    p.add_argument("--reps", type=int, default=2)
    a = p.parse_args()
    for n in [int(x) for x in a.sessions.split(",")]:
        spool = os.path.join(a.work, f"analyze-spool-{n}")
        done = spool + ".complete"
        if not os.path.exists(done):
            shutil.rmtree(spool, ignore_errors=True)
            print(f"analyze bench: generating {n} sessions in {spool}", file=sys.stderr, flush=True)
            subprocess.run(
                [sys.executable, os.path.join(HERE, "..", "gen_spool.py"), "--latrine", a.latrine,
                 "--spool", spool, "--sessions", str(n), "--parallel", "4", "--clients", "200"],
                check=True, stdout=subprocess.DEVNULL,
            )
            open(done, "w").close()
        files = int(subprocess.run(f"find '{spool}' -type f | wc -l", shell=True,
                                   capture_output=True, text=True).stdout)
        size = int(subprocess.run(["du", "-sb", spool], capture_output=True,
                                  text=True).stdout.split()[0])
        floor_cmd = ["sh", "-c", f"find '{spool}' -type f -print0 | xargs -0 sha256sum > /dev/null"]
        out = os.path.join(a.work, f"analyze-out-{n}")
        analyze_cmd = [a.latrine, "analyze", "--offline", "-q", spool, "--out", out]
        timed(floor_cmd)  # warm the page cache
        floors, runs = [], []
        for _ in range(a.reps):
            floors.append(timed(floor_cmd))
            shutil.rmtree(out, ignore_errors=True)
            runs.append(timed(analyze_cmd, stdout=subprocess.DEVNULL))
        floor = min(floors)
        best = min(runs)
        print(json.dumps({
            "bench": "analyze", "sessions": n, "files": files, "bytes": size,
            "floor_seconds": round(floor[0], 2), "analyze_seconds": round(best[0], 2),
            "analyze_cpu_seconds": round(best[2], 2),
            "ratio": round(best[0] / floor[0], 2),
            "analyze_peak_rss_kib": max(r[1] for r in runs),
        }), flush=True)


if __name__ == "__main__":
    main()
