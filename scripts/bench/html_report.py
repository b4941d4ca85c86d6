#!/usr/bin/env python3
"""html_report.py - the cost of `latrine analyze`'s HTML report (DIR/html/)
on a spool of --sessions generated sessions (scripts/gen_spool.py, kept in
--work and reused when complete).

Reference, measured in the same run: the same analyze with --no-html. The
two alternate --reps times (page cache warm); the fastest of each is kept.
Reported, as one JSON line: html/'s size on disk (du) and file count, the
time to write the report as a ratio against the reference, and the seconds
until the dashboard and the biggest table (by rows) are usable in headless
Chromium (tests/html/check_report.py --timing; goal < 3 s). That needs
chromium, chromedriver and a venv with selenium (--python, default
target/venv/bin/python).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def timed(cmd):
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - start
    if status != 0:
        raise SystemExit(f"html_report bench: {cmd} failed with status {status}")
    return seconds, usage.ru_maxrss


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--latrine", default=os.path.join(ROOT, "target/release/latrine"))
    p.add_argument("--work", required=True)
    p.add_argument("--sessions", type=int, default=100_000)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--python", default=os.path.join(ROOT, "target/venv/bin/python"))
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    spool = os.path.join(a.work, f"html-spool-{a.sessions}")
    if not os.path.exists(spool + ".complete"):
        shutil.rmtree(spool, ignore_errors=True)
        print(f"html_report bench: generating {a.sessions} sessions in {spool}", file=sys.stderr, flush=True)
        subprocess.run(
            [sys.executable, os.path.join(ROOT, "scripts/gen_spool.py"), "--latrine", a.latrine,
             "--spool", spool, "--sessions", str(a.sessions), "--parallel", "4", "--clients", "200"],
            check=True, stdout=subprocess.DEVNULL,
        )
        open(spool + ".complete", "w").close()
    plain_out = os.path.join(a.work, "html-out-plain")
    html_out = os.path.join(a.work, "html-out")
    plain_cmd = [a.latrine, "analyze", "--offline", "-q", "--no-html", spool, "--out", plain_out]
    html_cmd = [a.latrine, "analyze", "--offline", "-q", spool, "--out", html_out]
    plain, html = [], []
    subprocess.run(["sh", "-c", f"find '{spool}' -type f -print0 | xargs -0 cat > /dev/null"], check=True)
    for _ in range(a.reps):
        shutil.rmtree(plain_out, ignore_errors=True)
        plain.append(timed(plain_cmd))
        shutil.rmtree(html_out, ignore_errors=True)
        html.append(timed(html_cmd))
    report = os.path.join(html_out, "html")
    size_kib = int(subprocess.run(["du", "-sk", report], capture_output=True, text=True).stdout.split()[0])
    files = sum(len(f) for _, _, f in os.walk(report))
    tables = {}
    for name in os.listdir(os.path.join(report, "data")):
        m = re.match(r"LATRINE\.table\(\"(\w+)\",.*,(\d+),(\d+)\);", open(os.path.join(report, "data", name)).read(400))
        if m and "-" not in name:
            tables[m.group(1)] = int(m.group(2))
    biggest = max(sorted(tables), key=lambda t: tables[t])
    browser = subprocess.run(
        [a.python, os.path.join(ROOT, "tests/html/check_report.py"), "--out", html_out,
         "--timing", "--biggest", biggest],
        capture_output=True, text=True,
    )
    if browser.returncode != 0:
        raise SystemExit(f"html_report bench: check_report.py --timing failed:\n{browser.stdout}\n{browser.stderr}")
    usable = json.loads(browser.stdout.strip().splitlines()[-1])
    best_plain, best_html = min(plain), min(html)
    print(json.dumps({
        "bench": "html_report", "sessions": a.sessions,
        "html_kib": size_kib, "html_files": files,
        "biggest_table": biggest, "biggest_rows": tables[biggest],
        "no_html_seconds": round(best_plain[0], 2), "html_seconds": round(best_html[0], 2),
        "ratio": round(best_html[0] / best_plain[0], 2),
        "extra_seconds": round(best_html[0] - best_plain[0], 2),
        "no_html_peak_rss_kib": max(r[1] for r in plain),
        "html_peak_rss_kib": max(r[1] for r in html),
        "dashboard_usable_seconds": usable["index.html"],
        "biggest_table_usable_seconds": usable[biggest + ".html"],
        "proxy_requests": usable["proxy_requests"],
    }), flush=True)


if __name__ == "__main__":
    main()
