#!/usr/bin/env python3
"""Sends mail with Python's smtplib, for tests/real_clients.rs.

Usage: smtplib_send.py CONFIG.json

The config (JSON) says where and how:
  host, port, mode ("plain", "starttls": starttls() then login(),
  "smtps": SMTP_SSL), sni (server name sent with SMTP_SSL, or null),
  auth (null, "login" for smtplib's own choice of mechanism, or a mechanism
  name such as "PLAIN" to use SMTP.auth() with exactly that one),
  user, passwords (a list: one session per password; every session but
  the last expects the login to fail with 535), helo, from, to (list),
  subject, text, wire_out, message_out.

Every byte smtplib writes to the socket outside the TLS handshake is
recorded (wire_out, one file per session: wire_out.N), so the test can
compare it with the honeypot's transcript. The certificate is not verified.
Prints one JSON object: the replies to AUTH and to the message.
"""

import email.message
import email.policy
import json
import smtplib
import ssl
import sys


class Recording:
    """Mixin: keep a copy of every byte sent."""

    def send(self, s):
        data = s.encode(self.command_encoding) if isinstance(s, str) else s
        self.wire.extend(data)
        return super().send(s)


class RecordingSMTP(Recording, smtplib.SMTP):
    pass


class RecordingSMTPSSL(Recording, smtplib.SMTP_SSL):
    pass


def tls_context():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def connect(config):
    host, port, helo = config["host"], config["port"], config["helo"]
    if config["mode"] == "smtps":
        # SMTP_SSL sends SNI = the host it connects to; the test connects to
        # 127.0.0.1, so wrap the socket ourselves when a name is wanted.
        context = tls_context()
        if config.get("sni"):
            sni = config["sni"]

            class Named(RecordingSMTPSSL):
                def _get_socket(self, host, port, timeout):
                    sock = smtplib.socket.create_connection((host, port), timeout)
                    return self.context.wrap_socket(sock, server_hostname=sni)

            cls = Named
        else:
            cls = RecordingSMTPSSL
        s = cls.__new__(cls)
        s.wire = bytearray()
        cls.__init__(s, host, port, local_hostname=helo, timeout=20, context=context)
        s.ehlo()
        return s
    s = RecordingSMTP.__new__(RecordingSMTP)
    s.wire = bytearray()
    RecordingSMTP.__init__(s, host, port, local_hostname=helo, timeout=20)
    s.ehlo()
    if config["mode"] == "starttls":
        # starttls() names the server by the host it connected to (an IP
        # address here, so no SNI).
        s.starttls(context=tls_context())
        s.ehlo()
    return s


def message(config):
    msg = email.message.EmailMessage(policy=email.policy.SMTP)
    msg["From"] = config["from"]
    msg["To"] = ", ".join(config["to"])
    msg["Subject"] = config["subject"]
    msg["Date"] = "Fri, 27 Nov 2026 16:22:31 +0000"
    msg["Message-ID"] = "<smtplib.%d@client.example>" % config["port"]
    msg.set_content(config["text"])
    return msg


def main():
    config = json.load(open(sys.argv[1]))
    passwords = config.get("passwords") or [None]
    result = {"auth": [], "sent": None}
    for i, password in enumerate(passwords):
        last = i == len(passwords) - 1
        s = connect(config)
        try:
            if config["auth"] == "login":
                code, reply = s.login(config["user"], password)
                result["auth"].append([code, reply.decode()])
            elif config["auth"]:
                s.user, s.password = config["user"], password
                mechanism = config["auth"]
                method = {"PLAIN": s.auth_plain, "LOGIN": s.auth_login, "CRAM-MD5": s.auth_cram_md5}
                try:
                    code, reply = s.auth(mechanism, method[mechanism], initial_response_ok=True)
                except smtplib.SMTPAuthenticationError as e:
                    code, reply = e.smtp_code, e.smtp_error
                result["auth"].append([code, reply.decode()])
            if last:
                msg = message(config)
                with open(config["message_out"], "wb") as f:
                    f.write(msg.as_bytes(policy=email.policy.SMTP))
                refused = s.send_message(msg, config["from"], config["to"])
                result["sent"] = {"refused": refused}
            s.quit()
        finally:
            with open("%s.%d" % (config["wire_out"], i), "wb") as f:
                f.write(s.wire)
            s.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
