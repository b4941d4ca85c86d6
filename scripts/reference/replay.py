#!/usr/bin/env python3
"""replay.py — play a corpus of SMTP dialogs against HOST:PORT over raw TCP and
record every reply line exactly (stdlib only).

Usage:
    replay.py [--host 127.0.0.1] [--port 10025] [-o OUT.json] [--only REGEX]
              [--timing] [--quiet-ms 300] [--step-timeout 60] [--jobs N] CORPUS

Only loopback targets (127.0.0.0/8, ::1) are accepted.

CORPUS FORMAT
=============
Line oriented, UTF-8. Blank lines and lines starting with '#' are ignored
(outside of payloads; a payload is the rest of its own line only).

    === NAME              starts a new dialog called NAME (each dialog uses a
                          fresh TCP connection).
    @early                (optional, directly after ===) send the first step
                          immediately after connect, WITHOUT waiting for the
                          greeting ("talking before the greeting").
    KIND[/N][*T] PAYLOAD  one client step.

KIND:
    C   send PAYLOAD followed by "\\r\\n" (CRLF is appended).
    R   send PAYLOAD raw, nothing appended (use escapes for line endings).
    W   no send; PAYLOAD is a number of milliseconds to sleep. Not recorded.
/N: read until N complete replies have been received (a reply is one or more
    lines, the last one being "DDD " or "DDD" — a multi-line EHLO answer is ONE
    reply). The reader then waits a short grace period (100 ms) after the N-th
    reply so that unexpected extra output or a server-side close is still
    attributed to this step. /0 means "expect nothing" (grace only).
/q: read until nothing has arrived for --quiet-ms (300 ms) after the last
    received byte (or after the end of the send, if nothing arrives).
Default: C steps behave as /1 (one command line, one reply); R steps as /q.
Counted reads are deterministic even when the server delays its answers
(error tarpit); use them whenever the number of replies is known.
*T: repeat this step T times (T separate, individually recorded steps).

PAYLOAD is taken verbatim after the single space that follows KIND[/N][*T]
(so leading spaces are preserved) and then processed in two stages:
  1. generators: {repeat:COUNT:TEXT} is replaced by TEXT repeated COUNT times
     (TEXT ends at the first '}'; write a literal '}' inside TEXT as \\x7d;
     escapes inside TEXT are decoded in stage 2).
  2. escapes: \\r \\n \\t \\0 \\\\ \\{ \\} \\s (space; handy for trailing
     spaces) and \\xHH (any byte). Other characters are encoded as UTF-8.

OUTPUT (JSON)
=============
A list, one object per dialog, in corpus order:
    {"name": NAME,
     "steps": [{"send": STR, "replies": [LINE, ...]}, ...],
     "closed_by_server": BOOL}
Step 0 is the greeting: {"send": null, "replies": [greeting line(s)]} — except
for @early dialogs, where step 0 is the first client step and its replies
include the greeting.
All strings map bytes 1:1 to code points U+0000..U+00FF (latin-1), so
STR.encode("latin-1") yields the exact bytes sent / received. Reply lines are
recorded without their terminating "\\r\\n"; a line that ended in a bare "\\n"
keeps that "\\n", and an unterminated fragment (connection closed mid-line) is
recorded as is.
Optional step fields:
    "send_spec", "send_len": instead of "send" when the payload is longer than
                  10000 bytes (send_spec is the corpus notation).
    "closed": true   the server closed the connection during this step.
    "error": STR     e.g. a send failure (connection reset) or a step timeout.
    "ms": [first, last] with --timing: milliseconds from the end of the send to
                  the first / last reply byte (null when nothing arrived).
"closed_by_server" tells whether the server closed the connection by itself
within 1 s after the last step (the replayer itself never sends QUIT unless
the corpus says so).
"""

import argparse
import concurrent.futures
import ipaddress
import json
import re
import select
import socket
import sys
import time

GRACE_S = 0.1
FINAL_WAIT_S = 1.0
BIG = 10000


class CorpusError(Exception):
    pass


STEP_RE = re.compile(r"^([CRW])(?:/(\d+|q))?(?:\*(\d+))?(?: (.*))?$", re.S)
REPEAT_RE = re.compile(r"\{repeat:(\d+):([^}]*)\}")


def decode_escapes(text, where):
    out = bytearray()
    i = 0
    simple = {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0", "\\": b"\\",
              "{": b"{", "}": b"}", "s": b" "}
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out += ch.encode("utf-8")
            i += 1
            continue
        if i + 1 >= len(text):
            raise CorpusError("%s: dangling backslash" % where)
        nxt = text[i + 1]
        if nxt in simple:
            out += simple[nxt]
            i += 2
        elif nxt == "x":
            hh = text[i + 2:i + 4]
            if not re.fullmatch(r"[0-9A-Fa-f]{2}", hh):
                raise CorpusError("%s: bad \\x escape" % where)
            out.append(int(hh, 16))
            i += 4
        else:
            raise CorpusError("%s: unknown escape \\%s" % (where, nxt))
    return bytes(out)


def expand_payload(text, where):
    # Generators first; a literal '\{' must not start a generator, so protect it.
    protected = text.replace("\\\\", "\0BS\0").replace("\\{", "\0LB\0")

    def rep(m):
        return m.group(2) * int(m.group(1))

    expanded = REPEAT_RE.sub(rep, protected)
    expanded = expanded.replace("\0LB\0", "\\{").replace("\0BS\0", "\\\\")
    return decode_escapes(expanded, where)


def parse_corpus(path):
    dialogs = []
    cur = None
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip("\n").rstrip("\r")
            where = "%s:%d" % (path, lineno)
            if not line.strip() or line.startswith("#"):
                continue
            if line.startswith("==="):
                name = line[3:].strip()
                if not name:
                    raise CorpusError("%s: dialog without a name" % where)
                if any(d["name"] == name for d in dialogs):
                    raise CorpusError("%s: duplicate dialog name %r" % (where, name))
                cur = {"name": name, "early": False, "steps": []}
                dialogs.append(cur)
                continue
            if cur is None:
                raise CorpusError("%s: step outside of a dialog" % where)
            if line.strip() == "@early":
                if cur["steps"]:
                    raise CorpusError("%s: @early must precede the steps" % where)
                cur["early"] = True
                continue
            m = STEP_RE.match(line)
            if not m:
                raise CorpusError("%s: cannot parse step %r" % (where, line))
            kind, count, times, payload = m.groups()
            payload = payload or ""
            if count is None:
                count = 1 if kind == "C" else None
            elif count == "q":
                count = None
            else:
                count = int(count)
            times = int(times) if times is not None else 1
            if kind == "W":
                step = {"kind": "W", "ms": int(payload.strip())}
            else:
                data = expand_payload(payload, where)
                if kind == "C":
                    data += b"\r\n"
                step = {"kind": kind, "data": data, "count": count,
                        "spec": line}
            cur["steps"].extend([step] * times)
    for d in dialogs:
        if not any(s["kind"] != "W" for s in d["steps"]) and d["early"]:
            raise CorpusError("dialog %r: @early without a step" % d["name"])
    return dialogs


def latin1(b):
    return b.decode("latin-1")


class Conn:
    def __init__(self, host, port, timeout):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setblocking(False)
        self.buf = b""       # unparsed received bytes
        self.eof = False

    def _recv_some(self, wait):
        if self.eof:
            return False
        r, _, _ = select.select([self.sock], [], [], max(0.0, wait))
        if not r:
            return False
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
            return True
        self.buf += data
        return True

    def send_and_read(self, data, count, quiet_s, timeout_s):
        """Send data (concurrently reading) and collect replies.
        Returns (lines, closed, error, first_ms, last_ms)."""
        lines = []
        replies_done = 0
        error = None
        first = last = None
        out = memoryview(data)
        t_send_end = time.monotonic() if not out else None
        start = time.monotonic()
        last_activity = start

        def parse_lines():
            nonlocal replies_done, first, last
            while True:
                idx = self.buf.find(b"\n")
                if idx < 0:
                    return
                raw, self.buf = self.buf[:idx + 1], self.buf[idx + 1:]
                if raw.endswith(b"\r\n"):
                    text = raw[:-2]
                else:
                    text = raw  # keeps bare "\n"
                lines.append(latin1(text))
                if len(text) <= 3 or text[3:4] != b"-":
                    replies_done += 1

        while True:
            now = time.monotonic()
            if now - start > timeout_s:
                error = "timeout after %.0fs" % timeout_s
                break
            if out:
                try:
                    r, w, _ = select.select([self.sock], [self.sock], [], 1.0)
                except ValueError:
                    break
                if w:
                    try:
                        n = self.sock.send(out[:262144])
                        out = out[n:]
                        if not out:
                            t_send_end = time.monotonic()
                            last_activity = t_send_end
                    except BlockingIOError:
                        pass
                    except (BrokenPipeError, ConnectionResetError) as e:
                        error = "send failed after %d of %d bytes: %s" % (
                            len(data) - len(out), len(data), e.__class__.__name__)
                        out = b""
                        t_send_end = time.monotonic()
                if r:
                    before = len(self.buf)
                    got = self._recv_some(0)
                    if got and (len(self.buf) != before):
                        t = time.monotonic()
                        first = first if first is not None else t
                        last = t
                        last_activity = t
                    parse_lines()
                if self.eof and out:
                    error = error or "server closed before all data was sent (%d of %d bytes sent)" % (
                        len(data) - len(out), len(data))
                    out = b""
                    t_send_end = time.monotonic()
                continue
            # all sent; now read
            if self.eof:
                break
            if count is not None and replies_done >= count:
                wait = (last_activity + GRACE_S) - now
                if wait <= 0:
                    break
            elif count is None:
                wait = (last_activity + quiet_s) - now
                if wait <= 0:
                    break
            else:
                wait = min(1.0, timeout_s - (now - start))
            before = len(self.buf)
            got = self._recv_some(wait)
            if got and len(self.buf) != before:
                t = time.monotonic()
                first = first if first is not None else t
                last = t
                last_activity = t
            parse_lines()
        if self.eof and self.buf:
            lines.append(latin1(self.buf))
            self.buf = b""

        def ms(t):
            if t is None or t_send_end is None:
                return None
            return round((t - t_send_end) * 1000)

        return lines, self.eof, error, ms(first), ms(last)

    def wait_close(self, wait_s):
        end = time.monotonic() + wait_s
        extra = b""
        while not self.eof and time.monotonic() < end:
            before = len(self.buf)
            self._recv_some(end - time.monotonic())
            extra += self.buf[before:]
        return self.eof, extra

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def run_dialog(d, args):
    conn = Conn(args.host, args.port, args.step_timeout)
    steps = []
    rec = {"name": d["name"], "steps": steps}

    def record(step, res):
        lines, closed, error, first, last = res
        data = step["data"] if step else None
        entry = {}
        if data is None:
            entry["send"] = None
        elif len(data) > BIG:
            entry["send_spec"] = step["spec"]
            entry["send_len"] = len(data)
        else:
            entry["send"] = latin1(data)
        entry["replies"] = lines
        if closed:
            entry["closed"] = True
        if error:
            entry["error"] = error
        if args.timing:
            entry["ms"] = [first, last]
        steps.append(entry)

    try:
        todo = list(d["steps"])
        if not d["early"]:
            # Greeting: one reply.
            record(None, conn.send_and_read(b"", 1, args.quiet_ms / 1000.0,
                                            args.step_timeout))
        for step in todo:
            if step["kind"] == "W":
                time.sleep(step["ms"] / 1000.0)
                continue
            if conn.eof:
                steps.append({"send": latin1(step["data"]) if len(step["data"]) <= BIG else None,
                              "replies": [], "error": "not sent: connection already closed"})
                continue
            count = step["count"]
            if d["early"] and not steps and count is not None:
                count += 1  # the greeting is part of this step's replies
            record(step, conn.send_and_read(step["data"], count,
                                            args.quiet_ms / 1000.0,
                                            args.step_timeout))
        closed, extra = conn.wait_close(FINAL_WAIT_S)
        rec["closed_by_server"] = closed
        if extra:
            rec["trailing_output"] = latin1(extra)
    finally:
        conn.close()
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=10025)
    ap.add_argument("-o", "--output", help="write JSON here (default stdout)")
    ap.add_argument("--only", help="only dialogs whose name matches this regex")
    ap.add_argument("--timing", action="store_true",
                    help="add per-step timings (ms) to the output")
    ap.add_argument("--quiet-ms", type=int, default=300)
    ap.add_argument("--step-timeout", type=float, default=60.0)
    ap.add_argument("--jobs", type=int, default=1,
                    help="dialogs played at once (each on its own connection); "
                         "the output keeps corpus order")
    args = ap.parse_args()

    try:
        addrs = {ai[4][0] for ai in socket.getaddrinfo(args.host, args.port,
                                                        proto=socket.IPPROTO_TCP)}
    except socket.gaierror as e:
        sys.exit("cannot resolve %s: %s" % (args.host, e))
    for a in addrs:
        if not ipaddress.ip_address(a).is_loopback:
            sys.exit("refusing non-loopback target %s (%s)" % (args.host, a))

    try:
        dialogs = parse_corpus(args.corpus)
    except CorpusError as e:
        sys.exit("corpus error: %s" % e)
    if args.only:
        rx = re.compile(args.only)
        dialogs = [d for d in dialogs if rx.search(d["name"])]

    def timed(d):
        t0 = time.monotonic()
        r = run_dialog(d, args)
        print("%-45s %5.1fs" % (d["name"], time.monotonic() - t0), file=sys.stderr)
        return r

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(timed, dialogs))

    text = json.dumps(results, indent=1, ensure_ascii=True) + "\n"
    if args.output:
        with open(args.output, "w", encoding="ascii") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
