#!/usr/bin/env python3
"""Builds the fuzz seed corpora under fuzz/seeds/<target>/ from real material.

    python3 fuzz/make_seeds.py [--latrine target/release/latrine]

- smtp_session: the client side of every dialog recorded from Postfix 3.7
  (tests/reference/postfix-3.7.json), plus full sessions (DATA, BDAT, AUTH,
  STARTTLS, limits) and a few corpus messages sent with DATA and BDAT. Each
  seed starts with the 8-byte header of `latrine_fuzz::SessionKnobs`.
- attachments: messages of tests/corpus/ (at most 32 KB each).
- manifest: manifest.json files written by the real listener: it is started
  on ephemeral ports and sent a few sessions with smtplib and raw sockets.
- client_hello: ClientHellos made by Python's ssl module (through a memory
  BIO, and captured on the wire against the listener's smtps port).
- escape_roundtrip: client and server records of the listener's transcripts,
  and a few binary strings.

Existing seed directories are replaced. Deterministic but for what the
listener writes (times, ids, hashes).
"""

import argparse
import base64
import glob
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")


def header(flags=0x01 | (1 << 2), size=200, rcpts=3, msgs=3, line=0, errors=19, chunk=0, seed=0):
    """The 8 bytes of SessionKnobs; default: STARTTLS offered, AUTH after TLS,
    1600-byte messages, 4 recipients, 4 messages, 512-byte lines, 20 errors,
    the whole dialog in one chunk."""
    return bytes([flags, size, rcpts, msgs, line, errors, chunk, seed])


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def dot_stuff(msg):
    lines = msg.split(b"\r\n")
    return b"\r\n".join(b"." + l if l.startswith(b".") else l for l in lines)


def crlf(msg):
    return re.sub(rb"\r?\n", b"\r\n", msg)


def corpus_messages(limit_bytes):
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "corpus", "**", "*"), recursive=True)):
        base = os.path.basename(path)
        if not os.path.isfile(path) or base.upper().startswith(("LICENSE", "README", "COPYING")):
            continue
        data = open(path, "rb").read()
        if len(data) <= limit_bytes:
            out.append((os.path.relpath(path, os.path.join(ROOT, "tests", "corpus")), data))
    return out


# ------------------------------------------------------------ smtp_session

def smtp_session_seeds():
    dialogs = json.load(open(os.path.join(ROOT, "tests", "reference", "postfix-3.7.json")))
    for d in dialogs:
        sends = b"".join(
            s["send"].encode("latin-1") if all(ord(c) < 256 for c in s["send"]) else s["send"].encode()
            for s in d["steps"]
            if s.get("send")
        )
        if len(sends) > 8192:
            continue
        # Postfix's defaults (no TLS, no AUTH, big limits) in one chunk,
        # once per persona (bits 2-3 of the recipients byte): the same
        # dialogs were replayed against the real Exim too.
        for persona, prefix in ((0, "ref-"), (1, "ref-exim-"), (2, "ref-exchange-")):
            knobs = header(flags=0, size=255, rcpts=3 | (persona << 2), msgs=3)
            write("smtp_session", prefix + d["name"], knobs + sends)

    b64 = lambda b: base64.b64encode(b)
    msg = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nbody\r\n..stuffed\r\n.undoubled\r\n"
    ehlo = b"EHLO client.example.org\r\n"
    tx = b"MAIL FROM:<a@example.org> SIZE=100 BODY=8BITMIME\r\nRCPT TO:<b@example.net> NOTIFY=SUCCESS,FAILURE\r\n"
    sessions = {
        "data": ehlo + tx + b"DATA\r\n" + msg + b".\r\nQUIT\r\n",
        "data-two-messages": ehlo + tx + b"DATA\r\n" + msg + b".\r\n" + tx + b"DATA\r\n" + msg + b".\r\nQUIT\r\n",
        "data-smuggling": ehlo + tx + b"DATA\r\nx\n.\r\nMAIL FROM:<e@vil>\r\n\r\n.\r\nQUIT\r\n",
        "data-bare-cr-lf": ehlo + tx + b"DATA\r\na\rb\nc\r\n.\rx\r\n.\r\nQUIT\r\n",
        "bdat": ehlo + tx + b"BDAT 10\r\n0123456789BDAT 5 LAST\r\nabcdeQUIT\r\n",
        "bdat-zero-last": ehlo + tx + b"BDAT 4\r\nabcdBDAT 0 LAST\r\nQUIT\r\n",
        "bdat-refused": ehlo + b"BDAT 6 LAST\r\nsecretRSET\r\nQUIT\r\n",
        "bdat-rset-midway": ehlo + tx + b"BDAT 3\r\nabcRSET\r\n" + tx + b"BDAT 3 LAST\r\nxyzQUIT\r\n",
        "bdat-then-data": ehlo + tx + b"BDAT 3\r\nabcDATA\r\nQUIT\r\n",
        "bdat-syntax": ehlo + tx + b"BDAT x LAST\r\nQUIT\r\n",
        "too-big": ehlo + tx + b"DATA\r\n" + b"x" * 3000 + b"\r\n.\r\nQUIT\r\n",
        "bdat-too-big": ehlo + tx + b"BDAT 2000\r\n" + b"y" * 2000 + b"BDAT 1 LAST\r\nzQUIT\r\n",
        "recipients-limit": ehlo + b"MAIL FROM:<a@example.org>\r\n"
        + b"".join(b"RCPT TO:<r%d@example.net>\r\n" % i for i in range(6)) + b"DATA\r\nx\r\n.\r\nQUIT\r\n",
        "messages-limit": ehlo + (tx + b"DATA\r\nm\r\n.\r\n") * 5 + b"QUIT\r\n",
        "starttls": ehlo + b"STARTTLS\r\n",
        "starttls-injection": ehlo + b"STARTTLS\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<x@example.net>\r\n",
        "starttls-then-auth": ehlo + b"STARTTLS\r\n" + ehlo
        + b"AUTH PLAIN " + b64(b"\0user\0pass") + b"\r\n" + tx + b"DATA\r\n" + msg + b".\r\nQUIT\r\n",
        "auth-login": ehlo + b"AUTH LOGIN\r\n" + b64(b"alice") + b"\r\n" + b64(b"secret") + b"\r\nQUIT\r\n",
        "auth-login-initial": ehlo + b"AUTH LOGIN " + b64(b"alice") + b"\r\n" + b64(b"pw") + b"\r\nQUIT\r\n",
        "auth-plain-prompt": ehlo + b"AUTH PLAIN\r\n" + b64(b"authz\0bob\0hunter2") + b"\r\nAUTH PLAIN\r\n*\r\nQUIT\r\n",
        "auth-cram": ehlo + b"AUTH CRAM-MD5\r\n" + b64(b"bob 0123456789abcdef0123456789abcdef") + b"\r\nQUIT\r\n",
        "auth-bad-base64": ehlo + b"AUTH PLAIN !!!!\r\nAUTH LOGIN\r\n\xff\xfe\r\nAUTH PLAIN =\r\nQUIT\r\n",
        "auth-brute": ehlo + b"".join(
            b"AUTH PLAIN " + b64(b"\0admin\0pw%d" % i) + b"\r\n" for i in range(6)) + b"QUIT\r\n",
        "errors": b"".join(b"XYZZY %d\r\n" % i for i in range(25)),
        "junk": ehlo + b"NOOP\r\n" * 30 + b"VRFY root\r\nRSET\r\nETRN example.org\r\nQUIT\r\n",
        "http": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "long-line": ehlo + b"MAIL FROM:<" + b"a" * 3000 + b"@example.org>\r\nQUIT\r\n",
        "nul-and-8bit": b"EHLO a\0b\r\nHELO \xc3\xa9t\xc3\xa9\r\nMAIL FROM:<\xff@x>\r\nQUIT\r\n",
        "pipelined": b"EHLO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<postmaster>\r\nRCPT TO:<root@localhost>\r\n"
        b"RCPT TO:<nobody@localhost>\r\nDATA\r\nSubject: p\r\n\r\n.\r\n\r\nQUIT\r\n",
    }
    for name, dialog in sessions.items():
        write("smtp_session", "session-" + name, header() + dialog)
    # Other policies and chunkings of a few of them.
    variants = [
        ("implicit-auth", dict(flags=0x02 | (2 << 2), size=130)),
        ("auth-always-strict", dict(flags=(2 << 2) | 0x10, size=40, line=200)),
        ("storage-toggle", dict(flags=0x01 | 0x20 | 0x40 | 0x80, errors=3)),
        ("chunked-1", dict(chunk=1)),
        ("chunked-7", dict(chunk=7, seed=3)),
        ("chunked-64", dict(chunk=64, seed=9, size=5)),
    ]
    for vname, kw in variants:
        for name in ("data", "bdat", "starttls-then-auth", "auth-login", "too-big", "data-smuggling"):
            write("smtp_session", "variant-%s-%s" % (vname, name), header(**kw) + sessions[name])
    # Real messages, with DATA (dot-stuffed) and BDAT.
    for i, (name, data) in enumerate(corpus_messages(4096)[:24]):
        body = crlf(data)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        if i % 2 == 0:
            dialog = ehlo + tx + b"DATA\r\n" + dot_stuff(body) + b".\r\nQUIT\r\n"
        else:
            dialog = ehlo + tx + b"BDAT %d LAST\r\n" % len(body) + body + b"QUIT\r\n"
        write("smtp_session", "corpus-" + name, header(size=255) + dialog)


# ------------------------------------------------------------ attachments

def attachments_seeds():
    for name, data in corpus_messages(32 * 1024):
        write("attachments", name, data)


# ------------------------------------------------------------ client_hello

def client_hello_bytes(**kw):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if kw.get("max"):
        ctx.maximum_version = kw["max"]
    if kw.get("min"):
        ctx.minimum_version = kw["min"]
    if kw.get("alpn"):
        ctx.set_alpn_protocols(kw["alpn"])
    if kw.get("ciphers"):
        ctx.set_ciphers(kw["ciphers"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=kw.get("sni"))
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def client_hello_seeds():
    configs = {
        "tls13-sni": dict(sni="mx.example.com"),
        "tls13-nosni": dict(),
        "tls12-only": dict(max=ssl.TLSVersion.TLSv1_2, sni="mail.example.org"),
        "tls13-alpn": dict(sni="mx.example.com", alpn=["h2", "http/1.1", "smtp"]),
        "tls12-aes": dict(max=ssl.TLSVersion.TLSv1_2, ciphers="AES128-SHA:ECDHE-RSA-AES256-GCM-SHA384"),
        "tls13-utf8-sni": dict(sni="xn--bcher-kva.example"),
    }
    for name, kw in configs.items():
        data = client_hello_bytes(**kw)
        write("client_hello", name, data)
        # The same hello cut into two records, as some clients send it.
        if data[:1] == b"\x16":
            body = data[5:]
            cut = len(body) // 3
            rec = lambda b: data[:3] + len(b).to_bytes(2, "big") + b
            write("client_hello", name + "-split", rec(body[:cut]) + rec(body[cut:]))


# ------------------------------------------------------------ listener: manifests

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("listener did not come up on %d" % port)


def raw_session(port, data):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.recv(4096)
    s.sendall(data)
    try:
        while s.recv(65536):
            pass
    except socket.timeout:
        pass
    s.close()


def listener_seeds(latrine):
    tmp = tempfile.mkdtemp(prefix="latrine-seeds-")
    spool = os.path.join(tmp, "spool")
    ports = {k: free_port() for k in ("smtp", "submission", "smtps")}
    # The readiness probes below are sessions too (closed at once, or a
    # failed TLS handshake on smtps): their manifests are kept as seeds.
    args = [
        latrine, "listen",
        "--listen", "127.0.0.1:%d" % ports["smtp"],
        "--listen-submission", "127.0.0.1:%d" % ports["submission"],
        "--listen-smtps", "127.0.0.1:%d" % ports["smtps"],
        "--spool", spool, "--sensor", "fuzzseed", "--hostname", "mx.example.com",
        "--no-fsync", "--auth-policy", "accept-after:1",
        "--max-message-size", "4096", "--max-recipients", "3", "--max-errors", "5",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "log"), "w"))
    try:
        for p in ports.values():
            wait_port(p)
        time.sleep(0.3)
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        msgs = corpus_messages(3000)
        mime = next((d for n, d in msgs if b"multipart" in d.lower()), msgs[0][1])

        # Plain session, two messages (one from the corpus, with MIME parts).
        with smtplib.SMTP("127.0.0.1", ports["smtp"]) as s:
            s.ehlo("client.example.org")
            s.sendmail("alice@example.org", ["bob@example.net"], b"Subject: one\r\n\r\nhello\r\n.dot\r\n")
            s.sendmail("spam@example.org", ["a@example.net", "b@example.net"], crlf(mime))
        # STARTTLS, AUTH LOGIN and PLAIN, a message.
        with smtplib.SMTP("127.0.0.1", ports["submission"]) as s:
            s.ehlo("tls.example.org")
            s.starttls(context=insecure)
            s.ehlo("tls.example.org")
            try:
                s.login("admin", "password1")
            except smtplib.SMTPException:
                pass
            s.esmtp_features["auth"] = "PLAIN"
            try:
                s.login("admin", "password2")
            except smtplib.SMTPException:
                pass
            s.sendmail("x@example.org", ["y@example.net"],
                       b"Subject: =?utf-8?q?caf=C3=A9?=\r\nX-Mailer: seed\r\n\r\nbody\r\n")
        # Implicit TLS (smtps) with SNI, and CRAM-MD5.
        with smtplib.SMTP_SSL("127.0.0.1", ports["smtps"], context=insecure) as s:
            s.ehlo("smtps.example.org")
            s.esmtp_features["auth"] = "CRAM-MD5"
            try:
                s.login("carol", "pw")
            except smtplib.SMTPException:
                pass
            s.quit()
        # Errors, limits, oversize message, smuggling, BDAT, STARTTLS injection.
        raw_session(ports["smtp"], b"EHLO raw\r\nMAIL FROM:<a@b.example>\r\n"
                    + b"".join(b"RCPT TO:<r%d@example.net>\r\n" % i for i in range(4))
                    + b"DATA\r\n" + b"z" * 5000 + b"\r\n.\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"
                    b"DATA\r\nx\n.\r\nMAIL FROM:<e@vil>\r\n\r\n.\r\nQUIT\r\n")
        raw_session(ports["smtp"], b"EHLO bdat\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"
                    b"BDAT 5\r\nhelloBDAT 7 LAST\r\n world\nQUIT\r\n")
        raw_session(ports["smtp"], b"EHLO x\r\n" + b"BOGUS\r\n" * 6)
        raw_session(ports["smtp"], b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        raw_session(ports["submission"], b"EHLO inj\r\nSTARTTLS\r\nRSET\r\nMAIL FROM:<inj@example.org>\r\n")
        # A ClientHello captured on the wire, as the listener sees it.
        s = socket.create_connection(("127.0.0.1", ports["smtps"]), timeout=5)
        hello = client_hello_bytes(sni="wire.example.net", alpn=["smtp"])
        s.sendall(hello)
        s.close()
        write("client_hello", "wire-smtps", hello)
        time.sleep(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    manifests = sorted(glob.glob(os.path.join(spool, "fuzzseed", "*", "*", "*", "*", "manifest.json")))
    if not manifests:
        sys.exit("no manifest written; listener log in %s" % tmp)
    for i, path in enumerate(manifests):
        write("manifest", "listener-%02d.json" % i, open(path, "rb").read())
    # Transcript records: client and server bytes as recorded.
    n = 0
    for path in sorted(glob.glob(os.path.join(spool, "fuzzseed", "*", "*", "*", "*", "transcript.log"))):
        recs = [l.split(" ", 2)[2] for l in open(path).read().splitlines()[1:] if l.count(" ") >= 2]
        for rec in recs[:12]:
            data = unescape(rec)
            if data and len(data) < 512:
                write("escape_roundtrip", "transcript-%03d" % n, data)
                n += 1
    shutil.rmtree(tmp)
    return len(manifests)


def unescape(text):
    out, i = bytearray(), 0
    while i < len(text):
        c = text[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        n = text[i + 1]
        if n == "x":
            out.append(int(text[i + 2:i + 4], 16))
            i += 4
            continue
        out += {"\\": b"\\", "r": b"\r", "n": b"\n", "t": b"\t"}[n]
        i += 2
    return bytes(out)


def escape_seeds():
    write("escape_roundtrip", "all-bytes", bytes(range(256)))
    write("escape_roundtrip", "escapes-literal", b"\\x41\\\\\\r\\n\\t\\q\\x4")
    write("escape_roundtrip", "utf8-bidi", "jos\u00e9@b\u00fccher.example\r\n\u202ex\u2066\u200f\u0085".encode())
    write("escape_roundtrip", "invalid-utf8", b"a\xff\xfeb\xc3\x28\xe2\x82\xf0\x9f\x98\x80\xed\xa0\x80\\")
    write("escape_roundtrip", "record-line", b"0.000123 C MAIL FROM:<\\x00\\xff>\\r\\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--latrine", default=os.path.join(ROOT, "target", "release", "latrine"))
    args = ap.parse_args()
    for t in ("smtp_session", "attachments", "manifest", "escape_roundtrip", "client_hello"):
        shutil.rmtree(os.path.join(SEEDS, t), ignore_errors=True)
    smtp_session_seeds()
    attachments_seeds()
    client_hello_seeds()
    escape_seeds()
    n = listener_seeds(args.latrine)
    for t in sorted(os.listdir(SEEDS)):
        files = os.listdir(os.path.join(SEEDS, t))
        size = sum(os.path.getsize(os.path.join(SEEDS, t, f)) for f in files)
        print("%-18s %4d seeds %8d bytes" % (t, len(files), size))
    print("(%d manifests from the listener)" % n)


if __name__ == "__main__":
    main()
