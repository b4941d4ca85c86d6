#!/usr/bin/env python3
"""aiosmtpd_files.py - the reference "Python honeypot engine": aiosmtpd with a
handler that writes each message to its own file (no fsync, as those
honeypots do), then answers 250.

Usage: aiosmtpd_files.py PORT DIR   (runs until SIGTERM)
"""

import asyncio
import itertools
import os
import signal
import sys

from aiosmtpd.smtp import SMTP


class WriteFiles:
    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        path = os.path.join(self.directory, f"{os.getpid()}-{next(self.counter)}.eml")
        with open(path, "wb") as out:
            out.write(envelope.original_content)
        return "250 2.0.0 Ok: queued"


async def main(port, directory):
    handler = WriteFiles(directory)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="mx.example.com", data_size_limit=0),
        host="127.0.0.1",
        port=port,
        backlog=256,
    )
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    os.makedirs(sys.argv[2], exist_ok=True)
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
