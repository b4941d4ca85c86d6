#!/usr/bin/env python3
"""check_report.py - drive headless Chromium (selenium) over latrine's HTML
report, opened from the file system, behind a recording HTTP proxy.

Usage:
    check_report.py --out DIR --spam-subject TEXT [--screenshot PNG]
    check_report.py --out DIR --timing

DIR is `latrine analyze --out DIR`: DIR/html/ is the report, DIR/report.json
the figures it must show. Checks, each a failure with a reason:

- every page (the dashboard, each table page, the session view) loads with
  no console message of level SEVERE (a CSP violation is one);
- the dashboard's figures equal report.json's summary totals;
- sorting a table by a column (both ways) and filtering it give what
  report.json's rows give;
- the session view of the message with subject TEXT (a spam carrying remote
  images, a remote script, a meta refresh and a CSS url()) shows its body as
  text and makes no network request: Chromium runs with --proxy-server at a
  recording proxy on loopback (loopback not bypassed) which must have seen
  nothing, and then a positive control (a plain http:// navigation) must be
  recorded by it.

--timing instead prints, as JSON, the seconds until the dashboard and the
biggest table are usable (body[data-ready], first rows drawn).

Exit status 0 when all checks pass; the failures go to standard error.
"""

import argparse
import http.server
import json
import os
import shutil
import socketserver
import sys
import tempfile
import threading
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

FAILURES = []


def fail(message):
    FAILURES.append(message)
    print("FAIL: " + message, file=sys.stderr)


# Chromium's own service traffic, which the flags above do not stop (Debian's
# build: network time, component and account checks, its default search
# engine's preconnect). It goes to the proxy too, which answers it without
# forwarding anything; it is told apart here by host, and none of these
# hosts is ever named in the report's test data (its hosts end in .example).
CHROMIUM_OWN = (".google.com", ".googleapis.com", ".gstatic.com", ".gvt1.com", ".duckduckgo.com")


def chromium_own(request):
    target = request.split(" ", 1)[1]
    host = target.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].lower()
    return any(("." + host).endswith(suffix) for suffix in CHROMIUM_OWN)


class RecordingProxy(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), ProxyHandler)
        self.seen = []
        self.chromium_own = 0
        self.lock = threading.Lock()

    def record(self, line):
        with self.lock:
            self.seen.append(line)

    def take(self):
        """What was requested since the last call, but Chromium's own."""
        with self.lock:
            seen, self.seen = self.seen, []
        self.chromium_own += sum(1 for s in seen if chromium_own(s))
        return [s for s in seen if not chromium_own(s)]


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self):
        self.server.record(f"{self.command} {self.path}")
        body = b"recorded by the test proxy"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_CONNECT(self):
        self.server.record(f"CONNECT {self.path}")
        self.send_response(403)
        self.send_header("Connection", "close")
        self.end_headers()

    do_GET = do_POST = do_HEAD = do_PUT = do_OPTIONS = answer


def chromium(proxy_port, profile):
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("LATRINE_CHROMIUM", "/usr/bin/chromium")
    for flag in [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        f"--user-data-dir={profile}",
        f"--proxy-server=http://127.0.0.1:{proxy_port}",
        "--proxy-bypass-list=<-loopback>",
    ]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(os.environ.get("LATRINE_CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=options)


def wait_ready(driver, what, timeout=20):
    try:
        WebDriverWait(driver, timeout).until(
            lambda d: d.execute_script("return document.body && document.body.dataset.ready === 'true'")
        )
        return True
    except Exception:
        fail(f"{what}: not ready after {timeout} s")
        return False


def console_errors(driver, what):
    for entry in driver.get_log("browser"):
        if entry.get("level") == "SEVERE":
            fail(f"{what}: console error: {entry.get('message')}")


def show(v):
    """The text report.js makes of a cell (its show())."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return ", ".join(show(x) for x in v)
    return str(v)


def column_texts(driver, index):
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#rows tr')).map("
        "function (r) { return r.children[arguments[0]].textContent; });".replace("arguments[0]", str(index))
    )


def check_dashboard(driver, html, report):
    driver.get((html / "index.html").as_uri())
    if not wait_ready(driver, "index.html"):
        return
    console_errors(driver, "index.html")
    totals = report["summary"]["totals"]
    figures = driver.find_elements(By.CSS_SELECTOR, ".figure")
    if len(figures) != 6:
        fail(f"dashboard: {len(figures)} figures, expected 6")
    for f in figures:
        key = f.get_attribute("data-key")
        value = f.find_element(By.CSS_SELECTOR, ".value").text
        if key not in totals or str(totals[key]) != value:
            fail(f"dashboard: figure {key} shows {value!r}, report.json has {totals.get(key)!r}")
    charts = driver.find_elements(By.CSS_SELECTOR, "figure svg")
    if len(charts) < 5:
        fail(f"dashboard: only {len(charts)} charts")


def table_pages(driver, html):
    driver.get((html / "index.html").as_uri())
    links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "nav a")]
    return [l for l in links if not l.endswith("/index.html")]


def check_table_page(driver, url, report):
    name = url.rsplit("/", 1)[1].removesuffix(".html")
    driver.get(url)
    if not wait_ready(driver, f"{name}.html"):
        return
    console_errors(driver, f"{name}.html")
    rows = report.get(name, [])
    drawn = len(driver.find_elements(By.CSS_SELECTOR, "#rows tr"))
    if drawn != min(len(rows), 100):
        fail(f"{name}.html: {drawn} rows drawn, report.json has {len(rows)}")
    if name == "clients":
        # A flag before each country code.
        want = sorted(set(r["country_iso"] for r in rows[:100] if r.get("country_iso")))
        shown = driver.execute_script(
            "return Array.from(document.querySelectorAll('#rows td.country')).map(function (t) { return t.textContent; });"
        )
        for iso in want:
            flag = "".join(chr(0x1F1E6 + ord(c) - ord("A")) for c in iso)
            if f"{flag} {iso}" not in shown:
                fail(f"clients.html: no {flag} {iso} among {shown[:10]}")


def check_sort_and_filter(driver, html, report, table, column, needle):
    driver.get((html / f"{table}.html").as_uri())
    if not wait_ready(driver, f"{table}.html"):
        return
    rows = report[table]
    columns = [th.text.rstrip(" ▲▼") for th in driver.find_elements(By.CSS_SELECTOR, "#table th")]
    if column not in columns:
        fail(f"{table}.html: no column {column} in {columns}")
        return
    index = columns.index(column)
    values = [r[column] for r in rows]
    header = driver.find_elements(By.CSS_SELECTOR, "#table th")[index]
    for descending in (False, True):
        header.click()
        want = sorted((v for v in values if v is not None), reverse=descending)
        want += [None] * (len(values) - len(want))
        got = column_texts(driver, index)
        if got != [show(v) for v in want[:100]]:
            fail(f"{table}.html sorted by {column} ({'descending' if descending else 'ascending'}): "
                 f"first rows {got[:5]}, expected {[show(v) for v in want[:5]]}")
        state = header.get_attribute("aria-sort")
        if state != ("descending" if descending else "ascending"):
            fail(f"{table}.html: aria-sort {state!r} after sorting")
    box = driver.find_element(By.ID, "filter")
    box.send_keys(needle)
    expected = [r for r in rows if needle.lower() in "\u0001".join(show(v) for v in r.values()).lower()]
    want = f"{len(expected)} of {len(rows)} rows" if len(expected) < len(rows) else f"{len(rows)} rows"
    try:
        WebDriverWait(driver, 5).until(lambda d: d.find_element(By.ID, "count").text == want)
    except Exception:
        fail(f"{table}.html filtered by {needle!r}: count {driver.find_element(By.ID, 'count').text!r}, expected {want!r}")
    shown = driver.execute_script(
        "return Array.from(document.querySelectorAll('#rows tr')).map(function (r) { return r.textContent; });"
    )
    if not expected or len(shown) != min(len(expected), 100):
        fail(f"{table}.html filtered by {needle!r}: {len(shown)} rows shown, {len(expected)} expected (need > 0)")
    for text in shown:
        if needle.lower() not in text.lower():
            fail(f"{table}.html filtered by {needle!r}: a row without it: {text[:120]!r}")
            break
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    want = f"{len(rows)} rows"
    try:
        WebDriverWait(driver, 5).until(lambda d: d.find_element(By.ID, "count").text == want)
    except Exception:
        fail(f"{table}.html: clearing the filter shows {driver.find_element(By.ID, 'count').text!r}")
    console_errors(driver, f"{table}.html (sort, filter)")


def spam_session(report, subject):
    """The index of the session view of the message with that subject."""
    files = [m["first_file"] for m in report["messages"] if m.get("subject") == subject]
    if len(files) != 1:
        fail(f"report.json: {len(files)} messages with subject {subject!r}, expected 1")
        return None
    for i, s in enumerate(report["sessions"]):
        if f"/{s['path']}/" in files[0]:
            return i
    fail(f"report.json: no session holds {files[0]}")
    return None


def check_spam_view(driver, html, report, subject, proxy):
    index = spam_session(report, subject)
    if index is None:
        return
    driver.get((html / "session.html").as_uri() + f"#{index}")
    if not wait_ready(driver, f"session.html#{index}"):
        return
    time.sleep(1.5)  # time for anything that would load to try
    console_errors(driver, f"session.html#{index}")
    text = driver.find_element(By.ID, "session").text
    for marker in ["pixel.tracker.example", "script.tracker.example", "http-equiv", "css.tracker.example"]:
        if marker not in text:
            fail(f"session.html#{index}: the spam's source lacks {marker!r} (is it the spam?)")
    title = driver.find_element(By.ID, "title").text
    if report["sessions"][index]["session_id"] not in title:
        fail(f"session.html#{index}: title {title!r} is not that of the session")
    if driver.current_url.split("#")[0] != (html / "session.html").as_uri():
        fail(f"session.html#{index}: navigated away, to {driver.current_url}")
    foreign = driver.execute_script(
        "return Array.from(document.querySelectorAll('img,iframe,object,embed,link,script,meta[http-equiv=refresh]'))"
        ".map(function (e) { return e.outerHTML; })"
        ".filter(function (h) { return !/^<(link rel=\"stylesheet\" href=\"assets\\/report.css\"|script src=\"(assets\\/report.js|sessions\\/s\\d+.js)\")/.test(h); });"
    )
    if foreign:
        fail(f"session.html#{index}: elements from the message in the page: {foreign[:3]}")


def run_checks(args):
    out = Path(args.out).resolve()
    html = out / "html"
    report = json.loads((out / "report.json").read_text())
    proxy = RecordingProxy()
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    profile = tempfile.mkdtemp(prefix="latrine-chromium-")
    driver = chromium(proxy.server_address[1], profile)
    try:
        check_dashboard(driver, html, report)
        for url in table_pages(driver, html):
            check_table_page(driver, url, report)
        check_sort_and_filter(driver, html, report, "messages", "count", args.filter)
        check_sort_and_filter(driver, html, report, "sessions", "started_at", "host1")
        # A session view opened from the Sessions page.
        driver.get((html / "sessions.html").as_uri())
        if wait_ready(driver, "sessions.html"):
            driver.find_element(By.CSS_SELECTOR, "#rows a").click()
            if wait_ready(driver, "session.html from the Sessions page"):
                if not driver.find_elements(By.CSS_SELECTOR, "table.transcript tr"):
                    fail("session.html: no transcript")
            console_errors(driver, "session.html from the Sessions page")
        check_spam_view(driver, html, report, args.spam_subject, proxy)
        seen = proxy.take()
        if seen:
            fail(f"the proxy saw requests while the report was open: {seen[:5]}")
        # Positive control: a request that must go through the proxy.
        driver.get("http://control.latrine.test/positive-control")
        time.sleep(0.5)
        seen = proxy.take()
        if not any("control.latrine.test/positive-control" in s for s in seen):
            fail(f"positive control: the proxy did not record the control request (saw {seen})")
        if args.screenshot:
            driver.get((html / "index.html").as_uri())
            wait_ready(driver, "index.html")
            driver.set_window_size(1280, 1400)
            driver.save_screenshot(args.screenshot)
    finally:
        driver.quit()
        proxy.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    if FAILURES:
        print(f"{len(FAILURES)} failures", file=sys.stderr)
        return 1
    print(f"all checks passed (the proxy also saw {proxy.chromium_own} requests of Chromium's own services)")
    return 0


def run_timing(args):
    html = Path(args.out).resolve() / "html"
    proxy = RecordingProxy()
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    profile = tempfile.mkdtemp(prefix="latrine-chromium-")
    driver = chromium(proxy.server_address[1], profile)
    result = {}
    try:
        driver.get("about:blank")
        for page in ["index.html", args.biggest + ".html"]:
            start = time.monotonic()
            driver.get((html / page).as_uri())
            WebDriverWait(driver, 120, poll_frequency=0.02).until(
                lambda d: d.execute_script(
                    "return document.body && document.body.dataset.ready === 'true'"
                    " && (!document.body.dataset.table || document.querySelectorAll('#rows tr').length > 0)"
                )
            )
            result[page] = round(time.monotonic() - start, 3)
            console_errors(driver, page)
        result["proxy_requests"] = len(proxy.take())
    finally:
        driver.quit()
        proxy.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    print(json.dumps(result))
    return 1 if FAILURES else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="the analyze --out directory")
    parser.add_argument("--spam-subject", help="subject of the spam whose view must load nothing")
    parser.add_argument("--filter", default="mailbox", help="text to filter the Messages page by")
    parser.add_argument("--screenshot", help="write a PNG of the dashboard here")
    parser.add_argument("--timing", action="store_true")
    parser.add_argument("--biggest", default="sessions", help="table timed with --timing")
    args = parser.parse_args()
    if args.timing:
        return run_timing(args)
    if not args.spam_subject:
        parser.error("--spam-subject is required")
    return run_checks(args)


if __name__ == "__main__":
    sys.exit(main())
