#!/usr/bin/env python3
"""table.py - prints the benchmarks' JSON lines (from run.sh) as one
Markdown table of rates, ratios and goals, with the machine it ran on."""

import json
import os
import platform
import subprocess
import sys


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}"


def mark(ok):
    return "yes" if ok else "**no**"


def main():
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
    out = []
    tp = [r for r in rows if r["bench"] == "throughput"]
    if tp:
        servers = []
        for r in tp:
            if r["server"] not in servers:
                servers.append(r["server"])
        loads = []
        for r in tp:
            if r["load"] not in loads:
                loads.append(r["load"])
        rate = {(r["load"], r["server"]): r["rate"] for r in tp}
        reps = max(len(r["rates"]) for r in tp)
        out.append(f"Listener throughput, messages/s (smtp-source, 20 sessions; median of {reps}):\n")
        out.append("| load | " + " | ".join(servers) +
                   " | latrine ÷ Postfix (goal ≥ 2) | --no-fsync ÷ smtp-sink (goal ≥ 0.5) |")
        out.append("|---" * (len(servers) + 3) + "|")
        for load in loads:
            cells = [str(rate.get((load, s), "")) for s in servers]
            lat, pf = rate.get((load, "latrine")), rate.get((load, "Postfix"))
            nf, sink = rate.get((load, "latrine --no-fsync")), rate.get((load, "smtp-sink"))
            r1 = f"{lat / pf:.2f} {mark(lat / pf >= 2)}" if lat and pf else ""
            r2 = f"{nf / sink:.2f} {mark(nf / sink >= 0.5)}" if nf and sink else ""
            out.append(f"| {load} | " + " | ".join(cells) + f" | {r1} | {r2} |")
        out.append("")
    mem = [r for r in rows if r["bench"] in ("idle", "big_message")]
    if mem:
        out.append("| memory | measured | goal |")
        out.append("|---|---|---|")
        for r in mem:
            if r["bench"] == "idle":
                mb = r["rss_kib"] * 1024 / 1e6
                out.append(
                    f"| {r['connections']:,} idle connections | {mb:.0f} MB resident "
                    f"(+{r['growth_kib'] / 1024:.0f} MiB, {r['bytes_per_connection'] / 1024:.1f} KiB "
                    f"each; {r['listener_fds']:,} descriptors) | < 100 MB: {mark(mb < 100)} |")
            else:
                flat = r["sealing_growth_kib"] < 16 * 1024 and r["receiving_growth_kib"] < 16 * 1024
                out.append(
                    f"| one {r['bytes'] / 1e9:.1f} GB message | +{r['receiving_growth_kib'] / 1024:.1f} MiB "
                    f"receiving ({r['receive_seconds']} s), +{r['sealing_growth_kib'] / 1024:.1f} MiB sealing "
                    f"({r['seal_seconds']} s); flags {', '.join(r['flags']) or 'none'} | flat: {mark(flat)} |")
        out.append("")
    an = [r for r in rows if r["bench"] == "analyze"]
    if an:
        out.append("| analyze --offline | files | floor (find + sha256sum) | analyze | ratio (goal ≤ 2) | peak RSS |")
        out.append("|---|---|---|---|---|---|")
        for r in an:
            out.append(
                f"| {r['sessions']:,} sessions ({r['bytes'] / 1e9:.2f} GB) | {r['files']:,} | "
                f"{r['floor_seconds']} s | {r['analyze_seconds']} s ({r['analyze_cpu_seconds']} s CPU) | "
                f"{r['ratio']} {mark(r['ratio'] <= 2)} | {r['analyze_peak_rss_kib'] / 1024:.0f} MiB |")
        if len(an) >= 2:
            a, b = an[0], an[-1]
            k = b["sessions"] / a["sessions"]
            t = b["analyze_seconds"] / a["analyze_seconds"]
            f = b["floor_seconds"] / a["floor_seconds"]
            m = b["analyze_peak_rss_kib"] / a["analyze_peak_rss_kib"]
            # Reading the files is the floor's cost too: time is linear when it
            # grows no faster than the sessions or than the floor on the same files.
            linear = t <= max(k, f) * 1.1 and m <= k * 1.1
            out.append(
                f"\nFrom {a['sessions']:,} to {b['sessions']:,} sessions (×{k:g}): analyze time ×{t:.1f} "
                f"(the floor's ×{f:.1f}: the bigger spool is read less from the page cache), "
                f"peak memory ×{m:.1f}; linear or better: {mark(linear)}.")
        out.append("")
    for r in [r for r in rows if r["bench"] == "html_report"]:
        usable = max(r["dashboard_usable_seconds"], r["biggest_table_usable_seconds"])
        out.append("| HTML report | measured | goal |")
        out.append("|---|---|---|")
        out.append(f"| size of html/ ({r['sessions']:,} sessions) | {r['html_kib'] / 1024:.0f} MiB in "
                   f"{r['html_files']:,} files | bounded |")
        out.append(f"| analyze with it ÷ `--no-html` | {r['html_seconds']} s ÷ {r['no_html_seconds']} s = "
                   f"{r['ratio']} (peak RSS {r['html_peak_rss_kib'] / 1024:.0f} MiB ÷ "
                   f"{r['no_html_peak_rss_kib'] / 1024:.0f} MiB) | |")
        out.append(f"| usable in headless Chromium: dashboard, {r['biggest_table']} "
                   f"({r['biggest_rows']:,} rows) | {r['dashboard_usable_seconds']} s, "
                   f"{r['biggest_table_usable_seconds']} s | < 3 s: {mark(usable < 3)} |")
        out.append("")
    out.append(f"Machine: {machine()}.")
    print("\n".join(out))


if __name__ == "__main__":
    main()
