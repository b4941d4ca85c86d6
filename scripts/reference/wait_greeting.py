#!/usr/bin/env python3
"""wait_greeting.py NAME PORT - waits up to 30 s for a 220 greeting on
127.0.0.1:PORT (then says QUIT); exits non-zero if none came. NAME prefixes
the messages (the calling script's name)."""

import socket
import sys
import time

name, port = sys.argv[1], int(sys.argv[2])
deadline = time.time() + 30
while True:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.settimeout(10)
            data = s.recv(512)
            s.sendall(b"QUIT\r\n")
        if data.startswith(b"220"):
            print("%s: 127.0.0.1:%d answers: %r" % (name, port, data))
            sys.exit(0)
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit("%s: 127.0.0.1:%d did not answer within 30s" % (name, port))
    time.sleep(0.1)
