#!/usr/bin/env python3
"""replay_corpus.py - send each message file to an SMTP server with smtplib and
say, per file, exactly what the server should have stored (stdlib only).

Usage:
    replay_corpus.py [--eol raw|crlf] HOST PORT FILE...

One SMTP session per file, in the order given: EHLO, MAIL, RCPT, DATA, QUIT,
all done by smtplib.SMTP.sendmail(). One JSON object per file is printed on
standard output, one a line:

    {"file": ..., "local_port": ..., "eol": "raw"|"crlf",
     "sent_sha256": ..., "size": ..., "wire_sha256": ..., "wire_size": ...,
     "file_sha256": ..., "equals_file": ...,
     "refused": [...],
     "attachments": [{"filename", "content_type", "cte", "sha256", "size",
                      "text_sha256", "depth", "defects"}, ...],
     "parse_error": ...}

WHAT GOES ON THE WIRE (CPython 3.11 Lib/smtplib.py, read, not assumed)
----------------------------------------------------------------------
sendmail(from, to, msg) only calls _fix_eols() when msg is a str; a bytes msg
is sent as it is. SMTP.data() then applies _quote_periods(), which is
re.sub(br'(?m)^\\.', b'..', msg): a '.' is doubled at the very start and after
EVERY b'\\n' (a bare LF too, since (?m)^ matches after any LF), appends CRLF if
the result does not already end with CRLF, and finally b'.\\r\\n'.

--eol raw (default) sends the file's bytes as they are, bare LFs included.
--eol crlf first applies smtplib's own _fix_eols() to the bytes (what
sendmail() would have done with a str, without its ASCII-only encode), so
that the wire carries CRLF lines only.

WHAT THE SERVER SHOULD STORE (sent_sha256, size)
------------------------------------------------
The wire content (without the final '.\\r\\n') unstuffed by RFC 5321 4.5.2:
the content is split into lines at CRLF only (a bare LF does not end an SMTP
line); a line that starts with '.' loses that first '.'. For CRLF-only
content this gives back exactly the bytes given to sendmail() (plus the CRLF
smtplib appended, if any). For content with bare LFs, a '.' that smtplib
doubled after a bare LF is NOT a line start for SMTP and stays doubled;
equals_file says whether the expected content is the (EOL-fixed) file plus
smtplib's CRLF, byte for byte. wire_sha256 and wire_size are those of the
DATA bytes smtplib sent, final '.\\r\\n' included.

ATTACHMENTS (independent of the server's MIME parser)
-----------------------------------------------------
email.message_from_bytes(expected, policy=email.policy.default); every leaf
part found by walking the tree, descending into message/rfc822 parts (whose
depth is one more), is an attachment when it has Content-Disposition:
attachment, or a file name (filename= or name=) and no Content-Disposition,
or a main type other than text (an explicitly inline text part is body text,
RFC 2183). Multipart and other message/* leaves (external-body, partial...)
have no content of their own and are skipped. sha256 is that of
get_payload(decode=True) (the transfer-decoded bytes). For text parts,
text_sha256 is that of get_content() encoded as UTF-8 (the part's text after
charset decoding), or null when it cannot be decoded.
defects names the defects Python found on the part (decoding included) and
on every multipart or message/rfc822 part above it.
"""

import argparse
import email
import email.policy
import hashlib
import json
import smtplib
import sys

MAIL_FROM = "corpus@replay.example"
RCPT_TO = "victim@honeypot.example"


def wire_bytes(msg: bytes) -> bytes:
    """The exact bytes smtplib.SMTP.data() sends for a bytes message."""
    q = smtplib._quote_periods(msg)
    if q[-2:] != smtplib.bCRLF:
        q = q + smtplib.bCRLF
    return q + b"." + smtplib.bCRLF


def fix_eols(msg: bytes) -> bytes:
    """smtplib._fix_eols(), which works on str, applied byte for byte."""
    return smtplib._fix_eols(msg.decode("latin-1")).encode("latin-1")


def unstuff(wire: bytes) -> bytes:
    """What an RFC 5321 server stores for these DATA bytes."""
    assert wire.endswith(b"\r\n.\r\n"), "no end of data"
    content = wire[: -len(b".\r\n")]
    lines = content.split(b"\r\n")
    assert b"" == lines[-1]
    # No line but the terminator may be a lone dot.
    assert b"." not in lines[:-1], "end of data inside the content"
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def attachments(content: bytes):
    """Attachments found by Python's email package (see the module doc)."""
    found = []
    msg = email.message_from_bytes(content, policy=email.policy.default)

    def defects_of(part):
        return [type(d).__name__ for d in part.defects]

    def visit(part, depth, path_defects):
        ctype = part.get_content_type()
        maintype = part.get_content_maintype()
        if ctype == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if inner is not None and hasattr(inner, "walk"):
                visit(inner, depth + 1, path_defects + defects_of(part))
            return
        if part.is_multipart() and maintype != "message":
            for sub in part.iter_parts():
                visit(sub, depth, path_defects + defects_of(part))
            return
        if maintype in ("multipart", "message"):
            # A multipart Python could not split (no boundary...), or
            # message/external-body, message/partial, message/delivery-status:
            # no content of its own here.
            return
        filename = part.get_filename()
        disposition = part.get_content_disposition()
        if not (
            disposition == "attachment"
            or (disposition is None and filename is not None)
            or maintype != "text"
        ):
            return
        data = part.get_payload(decode=True)  # may add decoding defects
        if data is None:
            data = b""
        text_sha = None
        if maintype == "text":
            try:
                text_sha = sha256(part.get_content().encode("utf-8"))
            except Exception:  # unknown charset, undecodable bytes...
                text_sha = None
        found.append(
            {
                "filename": filename,
                "content_type": ctype,
                "cte": part.get("content-transfer-encoding", "").strip().lower() or None,
                "sha256": sha256(data),
                "text_sha256": text_sha,
                "size": len(data),
                "depth": depth,
                "defects": path_defects + defects_of(part),
            }
        )

    visit(msg, 0, [])
    return found


def replay(host, port, path, eol):
    with open(path, "rb") as f:
        raw = f.read()
    message = fix_eols(raw) if eol == "crlf" else raw
    wire = wire_bytes(message)
    expected = unstuff(wire)
    appended = message if message.endswith(b"\r\n") else message + b"\r\n"
    record = {
        "file": path,
        "eol": eol,
        "sent_sha256": sha256(expected),
        "wire_sha256": sha256(wire),
        "wire_size": len(wire),
        "size": len(expected),
        "file_sha256": sha256(raw),
        "equals_file": expected == appended,
    }
    try:
        record["attachments"] = attachments(expected)
    except Exception as e:  # a message Python cannot parse at all
        record["attachments"] = []
        record["parse_error"] = f"{type(e).__name__}: {e}"
    with smtplib.SMTP(host, port, local_hostname="replay.example", timeout=30) as smtp:
        record["local_port"] = smtp.sock.getsockname()[1]
        refused = smtp.sendmail(MAIL_FROM, [RCPT_TO], message)
        record["refused"] = sorted(refused)
    return record


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eol", choices=["raw", "crlf"], default="raw")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    for path in args.files:
        record = replay(args.host, args.port, path, args.eol)
        print(json.dumps(record, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
