#!/usr/bin/env python3
"""compare.py: compare two recordings made by replay.py, reply by reply.

Usage: compare.py REFERENCE.json CANDIDATE.json [--verbose]

Only what must differ between two servers is normalised: queue ids in
"queued as <id>" and the byte counts' queue ids in BDAT replies. Host names
are not normalised: record both with the same host name (mx.example.com).
Prints one line per differing step (with --verbose) and, last, the share of
identical replies as "identical: N/M (P%)". Exits 0 always; the caller
decides what share is good enough.
"""
import json
import re
import sys

QUEUE_ID = re.compile(r"queued as [0-9A-Za-z]+")


def normalise(line):
    return QUEUE_ID.sub("queued as QUEUEID", line)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    verbose = "--verbose" in sys.argv
    ref = {d["name"]: d for d in json.load(open(args[0], encoding="utf-8"))}
    got = {d["name"]: d for d in json.load(open(args[1], encoding="utf-8"))}
    total = same = 0
    for name, r in ref.items():
        g = got.get(name)
        for i, step in enumerate(r["steps"]):
            total += 1
            want = [normalise(l) for l in step["replies"]]
            have = None
            if g is not None and i < len(g["steps"]):
                have = [normalise(l) for l in g["steps"][i]["replies"]]
            if want == have:
                same += 1
            elif verbose:
                send = (step["send"] or "<connect>")[:70].encode("unicode_escape").decode()
                print(f"DIFF {name} step {i} send {send}")
                print(f"  postfix: {want[:6]}")
                print(f"  latrine: {(have or [])[:6]}")
        if g is not None and r.get("closed_by_server") != g.get("closed_by_server"):
            if verbose:
                print(f"DIFF {name}: closed_by_server {r.get('closed_by_server')} vs {g.get('closed_by_server')}")
    pct = 100.0 * same / total if total else 0.0
    print(f"identical: {same}/{total} ({pct:.1f}%)")


if __name__ == "__main__":
    main()
