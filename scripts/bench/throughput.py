#!/usr/bin/env python3
"""throughput.py - listener throughput against reference servers, measured in
the same run, with Postfix's smtp-source as the load.

Servers: smtp-sink (the floor: throws everything away), a real Postfix
(already running, see scripts/reference/postfix.sh; it fsyncs its queue file
before 250), aiosmtpd writing each message to a file, latrine with its
default settings (fsync before 250), and latrine --no-fsync.

Loads: 2,000 messages of 2 KB and 200 messages of 200 KB with an attachment,
20 parallel sessions, each with a new connection per message and with
connections reused (smtp-source -d). Each (load, server) pair runs --reps
times, interleaved; the median rate is reported.

Prints one JSON object a line: {"bench": "throughput", "load", "server",
"rates": [...], "rate": median msgs/s}.
"""

import argparse
import base64
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time

import listener

SESSIONS = 20
LOADS = [
    # name, smtp-source arguments, messages
    ("2 KB, new connection", ["-l", "2048"], 2000, False),
    ("2 KB, reused", ["-l", "2048"], 2000, True),
    ("200 KB + attachment, new connection", None, 200, False),
    ("200 KB + attachment, reused", None, 200, True),
]


def log(*args):
    print("throughput:", *args, file=sys.stderr, flush=True)


def attachment_message(path):
    """About 200 KB: a text part and a base64 attachment (LF line ends;
    smtp-source sends CRLF)."""
    rng = random.Random(7)
    blob = bytes(rng.getrandbits(8) for _ in range(145_000))
    b64 = base64.encodebytes(blob).decode()
    text = "\n".join(f"Line {i} of the cover letter, nothing to see here." for i in range(40))
    msg = (
        "From: Sender <sender@client.example>\n"
        "To: victim@victim.example\n"
        "Subject: invoice with attachment\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="b1"\n'
        "\n--b1\nContent-Type: text/plain; charset=us-ascii\n\n"
        f"{text}\n"
        '--b1\nContent-Type: application/octet-stream; name="invoice.zip"\n'
        'Content-Disposition: attachment; filename="invoice.zip"\n'
        "Content-Transfer-Encoding: base64\n\n"
        f"{b64}--b1--\n"
    )
    with open(path, "w") as f:
        f.write(msg)


class Server:
    """A server started for one measurement and stopped after it."""

    def __init__(self, name, port):
        self.name, self.port, self.proc = name, port, None

    def start(self, work):
        pass

    def stop(self):
        if self.proc:
            listener.stop(self.proc)
            self.proc = None

    def settle(self):
        """Waits until background work from the last run is done."""


class SmtpSink(Server):
    def __init__(self, port, tools):
        super().__init__("smtp-sink", port)
        self.tools = tools

    def start(self, work):
        env = dict(os.environ, LD_LIBRARY_PATH=f"{self.tools}/usr/lib/postfix")
        args = [f"{self.tools}/usr/sbin/smtp-sink"]
        if os.geteuid() == 0:
            args += ["-u", "nobody"]
        args += [f"127.0.0.1:{self.port}", "256"]
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL)
        listener.wait_greeting(self.port)


class Aiosmtpd(Server):
    def __init__(self, port, python):
        super().__init__("aiosmtpd (files)", port)
        self.python = python

    def start(self, work):
        here = os.path.dirname(os.path.abspath(__file__))
        out = os.path.join(work, f"aiosmtpd-{time.monotonic_ns()}")
        self.proc = subprocess.Popen(
            [self.python, os.path.join(here, "aiosmtpd_files.py"), str(self.port), out]
        )
        listener.wait_greeting(self.port)


class Latrine(Server):
    def __init__(self, name, port, binary, extra):
        super().__init__(name, port)
        self.binary, self.extra = binary, extra

    def start(self, work):
        # A fresh directory each run; old ones are removed at the end: ext4
        # allocates inodes slowly next to many just deleted.
        spool = os.path.join(work, f"latrine-spool-{time.monotonic_ns()}")
        self.log = open(os.path.join(work, "latrine.log"), "ab")
        self.proc = listener.start(
            self.binary, self.port, spool, work,
            [
                # 20 sessions from one address; the default cap is 50.
                "--max-connections-per-ip", "1000",
                # smtp-source -d sends more than the default 100 per
                # connection (Postfix has no such limit).
                "--max-messages-per-session", "100000",
            ] + self.extra,
            self.log,
        )


class Postfix(Server):
    """The reference instance; started and stopped by the caller."""

    def __init__(self, port, conf):
        super().__init__("Postfix", port)
        self.conf = conf

    def start(self, work):
        listener.wait_greeting(self.port)

    def stop(self):
        pass

    def settle(self):
        # Its queue manager delivers to discard in the background: let it
        # finish before the next measurement.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            out = subprocess.run(
                ["postqueue", "-c", self.conf, "-p"], capture_output=True, text=True
            ).stdout
            if "is empty" in out:
                return
            time.sleep(0.5)


def run_load(tools, port, load, message_file):
    name, args, messages, reuse = load
    env = dict(os.environ, LD_LIBRARY_PATH=f"{tools}/usr/lib/postfix")
    cmd = [f"{tools}/usr/sbin/smtp-source", "-s", str(SESSIONS), "-m", str(messages),
           "-M", "client.example", "-f", "sender@client.example", "-t", "victim@victim.example"]
    cmd += args if args else ["-F", message_file]
    if reuse:
        cmd.append("-d")
    cmd.append(f"127.0.0.1:{port}")
    start = time.monotonic()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"throughput: smtp-source failed ({name}): {done.stderr.strip()[-500:]}")
    return messages / seconds


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--latrine", required=True)
    p.add_argument("--tools", required=True, help="unpacked postfix .deb (smtp-source, smtp-sink)")
    p.add_argument("--python", required=True, help="a python with aiosmtpd")
    p.add_argument("--work", required=True)
    p.add_argument("--postfix-port", type=int, default=27025)
    p.add_argument("--postfix-conf", default="/var/lib/latrine-postfix-bench/conf")
    p.add_argument("--port", type=int, default=27030, help="first port for the other servers")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--only", help="comma-separated server names (for profiling runs)")
    p.add_argument("--loads", help="comma-separated load numbers, from 1 (default: all)")
    p.add_argument("--compare", action="append", default=[], metavar="NAME=BIN",
                   help="another latrine binary to measure with default settings (before/after)")
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    message_file = os.path.join(a.work, "attachment-200k.eml")
    attachment_message(message_file)
    servers = [
        SmtpSink(a.port, a.tools),
        Postfix(a.postfix_port, a.postfix_conf),
        Aiosmtpd(a.port + 1, a.python),
        Latrine("latrine", a.port + 2, a.latrine, []),
        Latrine("latrine --no-fsync", a.port + 3, a.latrine, ["--no-fsync"]),
    ]
    for i, spec in enumerate(a.compare):
        name, binary = spec.split("=", 1)
        servers.append(Latrine(name, a.port + 4 + i, binary, []))
    loads = LOADS
    if a.loads:
        loads = [LOADS[int(n) - 1] for n in a.loads.split(",")]
    if a.only:
        wanted = a.only.split(",")
        servers = [s for s in servers if s.name in wanted]
    rates = {}
    for rep in range(a.reps):
        for load in loads:
            for server in servers:
                server.settle()
                server.start(a.work)
                try:
                    rate = run_load(a.tools, server.port, load, message_file)
                finally:
                    server.stop()
                rates.setdefault((load[0], server.name), []).append(rate)
                log(f"rep {rep + 1}: {load[0]:38} {server.name:20} {rate:8.0f} msg/s")
    for name in os.listdir(a.work):
        if name.startswith(("latrine-spool-", "aiosmtpd-")):
            shutil.rmtree(os.path.join(a.work, name), ignore_errors=True)
    for (load, server), values in rates.items():
        print(json.dumps({"bench": "throughput", "load": load, "server": server,
                          "rates": [round(v) for v in values],
                          "rate": round(statistics.median(values))}), flush=True)


if __name__ == "__main__":
    main()
