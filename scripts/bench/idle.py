#!/usr/bin/env python3
"""idle.py - resident memory of `latrine listen` holding many idle connections.

Starts the listener (connection caps raised to let them in), opens one full
session to warm it up, then --connections idle connections that each read
the greeting and say nothing. After the sessions have parked (2 s), reads
the listener's VmRSS and open descriptors, checks that one more client is
served normally, and prints one JSON line.

The client side needs one descriptor per connection: the soft file limit is
raised to the hard one. The listener needs one per idle connection (parked
sessions close their files), plus a few.
"""

import argparse
import json
import os
import resource
import shutil
import socket
import time

import listener


def greeted(sock):
    reply = sock.recv(512)
    if not reply.startswith(b"220"):
        raise SystemExit(f"idle: an idle connection was greeted with {reply!r}")


def session(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    f = s.makefile("rb")
    assert f.readline().startswith(b"220")
    for cmd, code in [(b"EHLO warm.example", b"250 "), (b"QUIT", b"221")]:
        s.sendall(cmd + b"\r\n")
        while True:
            line = f.readline()
            if not line.startswith(b"250-"):
                break
        assert line.startswith(code), line
    s.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--latrine", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--connections", type=int, default=10_000)
    p.add_argument("--port", type=int, default=27050)
    a = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    spool = os.path.join(a.work, f"idle-spool-{os.getpid()}")
    log = open(os.path.join(a.work, "idle.log"), "wb")
    caps = str(a.connections + 100)
    proc = listener.start(a.latrine, a.port, spool, a.work,
                          ["--max-connections", caps, "--max-connections-per-ip", caps], log)
    try:
        session(a.port)
        time.sleep(1)
        baseline = listener.status_kib(proc.pid, "VmRSS")
        idle = []
        start = time.monotonic()
        for i in range(a.connections):
            s = socket.create_connection(("127.0.0.1", a.port), timeout=60)
            idle.append(s)
            # Read greetings in bursts so the backlog never overflows.
            if len(idle) % 200 == 0:
                for c in idle[-200:]:
                    greeted(c)
        for c in idle[len(idle) - len(idle) % 200:]:
            greeted(c)
        opened = time.monotonic() - start
        time.sleep(4)  # parking after 2 s quiet
        with_idle = listener.status_kib(proc.pid, "VmRSS")
        fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
        session(a.port)  # still serving
        per_connection = (with_idle - baseline) * 1024 / a.connections
        print(json.dumps({
            "bench": "idle", "connections": a.connections,
            "baseline_kib": baseline, "rss_kib": with_idle,
            "growth_kib": with_idle - baseline,
            "bytes_per_connection": round(per_connection),
            "listener_fds": fds, "open_seconds": round(opened, 1),
        }), flush=True)
        for c in idle:
            c.close()
    finally:
        listener.stop(proc)
        shutil.rmtree(spool, ignore_errors=True)


if __name__ == "__main__":
    main()
