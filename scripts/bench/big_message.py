#!/usr/bin/env python3
"""big_message.py - resident memory of `latrine listen` receiving and sealing
one very large message (default 1 GB).

The message is generated as it is sent (78-column lines, a header block
first), so the client holds none of it; its sha256 is computed on the way.
The listener's VmRSS is sampled every 64 chunks while receiving and every
20 ms while sealing, and its peak (VmHWM, reset before each phase) read
after each. Prints one JSON line; fails if the stored message's size or
sha256 differ.
"""

import argparse
import hashlib
import json
import os
import shutil
import socket
import time

import listener


def reply(f):
    while True:
        line = f.readline()
        if not line[3:4] == b"-":
            return line


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--latrine", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--size", type=int, default=1_000_000_000)
    p.add_argument("--port", type=int, default=27060)
    a = p.parse_args()
    spool = os.path.join(a.work, f"big-spool-{os.getpid()}")
    log = open(os.path.join(a.work, "big.log"), "wb")
    proc = listener.start(
        a.latrine, a.port, spool, a.work,
        ["--max-message-size", str(a.size + 1_000_000),
         "--idle-timeout", "600", "--session-timeout", "3600"],
        log,
    )
    try:
        s = socket.create_connection(("127.0.0.1", a.port), timeout=600)
        f = s.makefile("rb")
        assert reply(f).startswith(b"220")
        for cmd in [b"EHLO big.example", f"MAIL FROM:<big@spam.example> SIZE={a.size}".encode(),
                    b"RCPT TO:<x@victim.example>", b"DATA"]:
            s.sendall(cmd + b"\r\n")
            r = reply(f)
            assert r[:1] in (b"2", b"3"), r
        time.sleep(0.5)
        baseline = listener.status_kib(proc.pid, "VmRSS")
        listener.reset_peak(proc.pid)
        sampled = baseline
        sha = hashlib.sha256()
        line = (b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789" * 2)[:78] + b"\r\n"
        chunk = line * 840  # 67,200 bytes
        head = b"From: big@spam.example\r\nSubject: one gigabyte\r\n\r\n"
        s.sendall(head)
        sha.update(head)
        sent = len(head)
        start = time.monotonic()
        n = 0
        while sent < a.size:
            piece = chunk[: a.size - sent]
            if not piece.endswith(b"\r\n"):
                piece = piece[:-2] + b"\r\n" if len(piece) >= 2 else b"\r\n"[: len(piece)]
            s.sendall(piece)
            sha.update(piece)
            sent += len(piece)
            n += 1
            if n % 64 == 0:
                sampled = max(sampled, listener.status_kib(proc.pid, "VmRSS"))
        s.sendall(b".\r\n")
        r = reply(f)
        assert r.startswith(b"250"), r
        receive_seconds = time.monotonic() - start
        receiving_peak = max(sampled, listener.status_kib(proc.pid, "VmHWM"))
        listener.reset_peak(proc.pid)
        s.sendall(b"QUIT\r\n")
        reply(f)
        s.close()
        sealing_sampled = 0
        seal_start = time.monotonic()
        manifest = None
        while manifest is None and time.monotonic() - seal_start < 600:
            sealing_sampled = max(sealing_sampled, listener.status_kib(proc.pid, "VmRSS"))
            for root, dirs, files in os.walk(spool):
                dirs[:] = [d for d in dirs if d != ".incoming"]
                # The start-up probe's session is sealed too: the message's
                # session is the one with a message.
                if "manifest.json" in files:
                    path = os.path.join(root, "manifest.json")
                    if json.load(open(path))["messages"]:
                        manifest = path
            time.sleep(0.02)
        seal_seconds = time.monotonic() - seal_start
        sealing_peak = max(sealing_sampled, listener.status_kib(proc.pid, "VmHWM"))
        m = json.load(open(manifest))
        msg = m["messages"][0]
        assert msg["size"] == sent and msg["sha256"] == sha.hexdigest(), msg
        print(json.dumps({
            "bench": "big_message", "bytes": sent, "baseline_kib": baseline,
            "receiving_peak_kib": receiving_peak, "sealing_peak_kib": sealing_peak,
            "receiving_growth_kib": receiving_peak - baseline,
            "sealing_growth_kib": sealing_peak - baseline,
            "receive_seconds": round(receive_seconds, 1), "seal_seconds": round(seal_seconds, 1),
            "flags": m["flags"], "subject": msg["headers"].get("subject"),
        }), flush=True)
    finally:
        listener.stop(proc)
        shutil.rmtree(spool, ignore_errors=True)


if __name__ == "__main__":
    main()
