"""listener.py - the latrine process under test, shared by the benchmarks
that start one (throughput.py, idle.py, big_message.py)."""

import os
import socket
import subprocess
import time


def start(binary, port, spool, work, extra, log):
    """Starts `latrine listen` on 127.0.0.1:port (sensor `bench`, state in
    WORK/latrine-state) and waits for its greeting."""
    proc = subprocess.Popen(
        [binary, "listen", "--listen", f"127.0.0.1:{port}", "--spool", spool,
         "--state-dir", os.path.join(work, "latrine-state"), "--sensor", "bench",
         "--hostname", "mx.example.com"] + extra,
        stdout=subprocess.DEVNULL, stderr=log,
    )
    try:
        wait_greeting(port)
    except BaseException:
        stop(proc)
        raise
    return proc


def stop(proc):
    """SIGTERM (the listener seals what is open), SIGKILL after 120 s."""
    proc.terminate()
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_greeting(port, limit=30.0):
    """Waits until 127.0.0.1:port answers 220 (then says QUIT)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.settimeout(10)
                if s.recv(512).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"nothing answered 220 on port {port}")


def status_kib(pid, field):
    """A /proc/PID/status field in KiB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise SystemExit(f"no {field} in /proc/{pid}/status")


def reset_peak(pid):
    """Resets VmHWM to the current resident size."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")
