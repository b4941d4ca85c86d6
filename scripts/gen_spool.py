#!/usr/bin/env python3
"""gen_spool.py - build a spool of any size by driving the real listener over
SMTP with Python's smtplib (stdlib only).

Usage:
    gen_spool.py --latrine BIN --spool DIR [--sensor NAME] [options]
    gen_spool.py --host HOST --port PORT [options]

With --latrine, the script starts `BIN listen` on 127.0.0.1 (free ports for
smtp and submission, --no-fsync, --no-tls, per-IP connection limit lifted),
writes into DIR, and stops it with SIGTERM at the end, so that every session
is sealed when it exits. With --host/--port (and --submission-port for AUTH)
it talks to a listener you started yourself.

Generate mode (default): --sessions N sessions, by --parallel P client
processes (each one connection at a time), from 127.0.0.1 or, with
--clients N, from N addresses in 127.1.0.0/16 (Linux only). Session k follows
a recipe drawn from random.Random(f"{seed}:{k}"), so the same seed gives the
same sessions whatever P (but for which logins the listener's accept-after
policy accepts, which depends on the order of arrival):

     5%  scanner: EHLO, QUIT, no message
     5%  password guesser: one AUTH PLAIN or LOGIN on the submission port
         with a pair from a short list (the listener's policy decides; an
         accepted login then sends a campaign message); a scanner instead
         when there is no submission port
    55%  one message from the corpus (tests/corpus by default), 1-3 recipients
    25%  one message of a phishing campaign: a few templates, each sent with
         a varying greeting, name, numbers and tracking URL, some with one of
         a few fixed attachments (so campaigns and attachments deduplicate)
    10%  two messages in one session (a corpus message, then a campaign one)

At the end one JSON object goes to standard output: what was sent
(sessions, messages, recipients, auth_attempts, credentials as
"user:password:MECHANISM" -> attempts, failures) and how fast.

Replay mode (--replay FILE...): each file once, one session per file, in
order, by one client; the file's line endings are made CRLF first (with
smtplib's own _fix_eols) so that the listener stores the file itself. One
JSON line per file: {"file", "local_port", "sha256", "size"}, the sha256 and
size being those of what the listener must store.

Speed: about 900 sessions a second on 2 cores with --parallel 4 (the
listener shares the cores): 100,000 sessions (3 GB) in about two minutes.
"""

import argparse
import base64
import hashlib
import json
import multiprocessing
import os
import random
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NAMES = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy"]
GREETINGS = ["Dear {name},", "Hello {name}!", "Hi {name},", "Dear Customer,", "Good morning {name},"]
TEMPLATES = [
    (
        "Your mailbox is almost full",
        "Your mailbox {user}@{domain} has reached 98% of its quota ({n} MB).\r\n"
        "To keep receiving mail, verify your account within 24 hours:\r\n"
        "http://mail-quota.example/verify?u={user}&t={n}\r\n\r\nThe IT team\r\n",
    ),
    (
        "Invoice {n} overdue",
        "Please find attached invoice {n} for order {n2}.\r\n"
        "Payment is overdue; pay at https://pay.invoices.example/i/{n}?ref={n2}\r\n\r\n"
        "Accounts department\r\n",
    ),
    (
        "Security alert for your account",
        "We detected a sign-in from a new device ({n} attempts).\r\n"
        "If this was not you, secure your account now: https://login.secure-bank.example/"
        "reset?session={n2}\r\n\r\nCustomer care\r\n",
    ),
]
# What password guessers try.
CREDENTIALS = [("admin", "admin"), ("admin", "123456"), ("test", "test"), ("root", "password"),
               ("info@honeypot0.example", "qwerty")]
# A few fixed attachments, so that they deduplicate across sessions.
ATTACHMENTS = [
    ("invoice.pdf.exe", "application/x-msdownload", b"MZ\x90\x00" + bytes(range(256)) * 4),
    ("scan_0042.zip", "application/zip", b"PK\x03\x04" + b"latrine test payload " * 40),
    ("report.docm", "application/vnd.ms-word.document.macroEnabled.12", b"\xd0\xcf\x11\xe0" * 64),
]


def corpus_files(dirs):
    files = []
    for d in dirs:
        for base, _, names in os.walk(d):
            for name in names:
                if name.endswith(".eml") or (name.startswith("msg_") and name.endswith(".txt")):
                    files.append(os.path.join(base, name))
    files.sort()
    return files


def campaign_message(rng, sender, rcpt):
    subject, body = rng.choice(TEMPLATES)
    name = rng.choice(NAMES)
    user, _, domain = rcpt.partition("@")
    fields = {
        "name": name,
        "user": user,
        "domain": domain,
        "n": rng.randrange(1000, 99999),
        "n2": rng.randrange(100000, 9999999),
    }
    text = rng.choice(GREETINGS).format(**fields) + "\r\n\r\n" + body.format(**fields)
    headers = (
        f"From: Support <{sender}>\r\nTo: {name} <{rcpt}>\r\n"
        f"Subject: {subject.format(**fields)}\r\n"
        f"Message-ID: <{rng.randrange(1 << 60):x}@gen.example>\r\nMIME-Version: 1.0\r\n"
    )
    if rng.random() < 0.4:
        filename, ctype, payload = rng.choice(ATTACHMENTS)
        b64 = base64.encodebytes(payload).decode().replace("\n", "\r\n")
        return (
            headers + "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n" + text + "--b1\r\n"
            f"Content-Type: {ctype}; name=\"{filename}\"\r\n"
            f"Content-Disposition: attachment; filename=\"{filename}\"\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n" + b64 + "--b1--\r\n"
        ).encode()
    return (headers + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + text).encode()


def source(rng, clients):
    """The local address to connect from: 127.0.0.1, or one of `clients`
    addresses in 127.1.0.0/16 (Linux routes all of 127/8 to loopback)."""
    if clients <= 1:
        return None
    n = rng.randrange(clients)
    return (f"127.1.{n // 250}.{n % 250 + 1}", 0)


def guess_password(host, port, rng, sent, clients):
    """One AUTH attempt; an accepted one sends a message."""
    user, password = rng.choice(CREDENTIALS)
    mechanism = rng.choice(["PLAIN", "LOGIN"])
    key = f"{user}:{password}:{mechanism}"
    sent["credentials"][key] = sent["credentials"].get(key, 0) + 1
    sent["auth_attempts"] += 1
    with smtplib.SMTP(host, port, local_hostname="bot.example", timeout=60,
                      source_address=source(rng, clients)) as s:
        s.ehlo()
        s.user, s.password = user, password
        try:
            s.auth(mechanism, s.auth_plain if mechanism == "PLAIN" else s.auth_login)
        except smtplib.SMTPAuthenticationError:
            return
        rcpt = "victim1@honeypot1.example"
        s.sendmail(user if "@" in user else f"{user}@bot.example", [rcpt],
                   campaign_message(rng, "bot@bot.example", rcpt))
        sent["messages"] += 1
        sent["recipients"] += 1


def session(host, port, submission, rng, corpus, sent, clients):
    """One session, counted into `sent`."""
    kind = rng.random()
    if 0.05 <= kind < 0.10 and submission:
        guess_password(host, submission, rng, sent, clients)
        return
    sender = f"user{rng.randrange(100)}@spam{rng.randrange(20)}.example"
    rcpts = [f"victim{n // 5}@honeypot{n % 5}.example"
             for n in rng.sample(range(2500), rng.randrange(1, 4))]
    with smtplib.SMTP(host, port, local_hostname=f"host{rng.randrange(50)}.example", timeout=60,
                      source_address=source(rng, clients)) as s:
        if kind < 0.10:
            s.ehlo()
            return
        messages = []
        if kind < 0.65 or kind >= 0.90:
            with open(rng.choice(corpus), "rb") as f:
                messages.append(f.read())
        if kind >= 0.65:
            messages.append(campaign_message(rng, sender, rcpts[0]))
        for msg in messages:
            s.sendmail(sender, rcpts, msg)
        sent["messages"] += len(messages)
        sent["recipients"] += len(messages) * len(rcpts)


def worker(job):
    host, port, submission, seed, start, stop, corpus, clients = job
    sent = {"sessions": 0, "messages": 0, "recipients": 0, "auth_attempts": 0,
            "credentials": {}, "failures": 0}
    for k in range(start, stop):
        rng = random.Random(f"{seed}:{k}")
        try:
            session(host, port, submission, rng, corpus, sent, clients)
            sent["sessions"] += 1
        except (OSError, smtplib.SMTPException) as e:
            sent["failures"] += 1
            print(f"session {k}: {e}", file=sys.stderr)
    return sent


def generate(args, host, port, submission):
    corpus = corpus_files(args.corpus or [os.path.join(ROOT, "tests", "corpus")])
    if not corpus:
        sys.exit("gen_spool.py: no corpus files found")
    p = max(1, args.parallel)
    chunk = (args.sessions + p - 1) // p
    jobs = [(host, port, submission, args.seed, i * chunk, min(args.sessions, (i + 1) * chunk),
             corpus, args.clients)
            for i in range(p) if i * chunk < args.sessions]
    started = time.monotonic()
    with multiprocessing.Pool(len(jobs)) as pool:
        results = pool.map(worker, jobs)
    elapsed = time.monotonic() - started
    total = {key: sum(r[key] for r in results) for key in results[0] if key != "credentials"}
    total["credentials"] = {}
    for r in results:
        for key, n in r["credentials"].items():
            total["credentials"][key] = total["credentials"].get(key, 0) + n
    total["seconds"] = round(elapsed, 2)
    total["sessions_per_second"] = round(total["sessions"] / elapsed, 1) if elapsed else None
    return total


def replay(args, host, port):
    for path in args.replay:
        with open(path, "rb") as f:
            raw = f.read()
        message = smtplib._fix_eols(raw.decode("latin-1")).encode("latin-1")
        # smtplib ends the content with CRLF if it does not already.
        stored = message if message.endswith(b"\r\n") else message + b"\r\n"
        with smtplib.SMTP(host, port, local_hostname="replay.example", timeout=60) as s:
            local_port = s.sock.getsockname()[1]
            s.sendmail(args.mail_from, args.rcpt, message)
        print(json.dumps({"file": path, "local_port": local_port,
                          "sha256": hashlib.sha256(stored).hexdigest(), "size": len(stored)}),
              flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_listener(args):
    """Starts the listener; returns it, its host, and its smtp and submission ports."""
    # Two listeners on 127.0.0.1:0 are refused as duplicates: ask for ports.
    smtp, submission = free_port(), free_port()
    cmd = [args.latrine, "listen", "--spool", args.spool, "--sensor", args.sensor,
           "--listen", f"127.0.0.1:{smtp}", "--listen-submission", f"127.0.0.1:{submission}",
           "--no-tls", "--no-fsync", "--max-connections-per-ip", "1000",
           "--max-connections", "1000"]
    env = {**os.environ,
           "RUST_LOG": "latrine=warn,latrine::listen=info,latrine::listen::connection=warn"}
    child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env=env)
    seen = 0
    for line in child.stderr:
        if "listening on " in line.decode("utf-8", "replace"):
            seen += 1
        if seen == 2:
            # Keep draining stderr so the listener never blocks on it.
            threading.Thread(target=lambda: [None for _ in child.stderr], daemon=True).start()
            return child, "127.0.0.1", smtp, submission
    child.kill()
    sys.exit("gen_spool.py: the listener did not start")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latrine", help="latrine binary to start")
    parser.add_argument("--spool", help="spool directory for the started listener")
    parser.add_argument("--sensor", default="gen-sensor")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--submission-port", type=int, help="where AUTH is offered")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--seed", default="latrine")
    parser.add_argument("--clients", type=int, default=1,
                        help="client addresses to connect from (more than 1: Linux only)")
    parser.add_argument("--corpus", action="append", help="directory of .eml / msg_*.txt files")
    parser.add_argument("--replay", nargs="+", metavar="FILE")
    parser.add_argument("--mail-from", default="corpus@replay.example")
    parser.add_argument("--rcpt", action="append", default=None)
    args = parser.parse_args()
    args.rcpt = args.rcpt or ["victim@honeypot.example"]
    child = None
    if args.latrine:
        if not args.spool:
            parser.error("--latrine needs --spool")
        child, host, port, submission = start_listener(args)
    elif args.port:
        host, port, submission = args.host, args.port, args.submission_port
    else:
        parser.error("give --latrine and --spool, or --port")
    try:
        if args.replay:
            replay(args, host, port)
        else:
            print(json.dumps(generate(args, host, port, submission), sort_keys=True), flush=True)
    finally:
        if child:
            child.send_signal(signal.SIGTERM)
            child.wait(timeout=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
