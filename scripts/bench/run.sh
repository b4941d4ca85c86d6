#!/usr/bin/env bash
# scripts/bench/run.sh — every benchmark in one command, one table at the end.
#
#   sudo scripts/bench/run.sh            # as root (Postfix, smtp-sink -u nobody)
#
# Prepares what it needs from the registries: builds latrine (release), unpacks
# Debian's postfix package for smtp-source/smtp-sink (apt-get download, not
# installed), installs aiosmtpd from PyPI into a venv, and starts a real
# Postfix 3.7 reference instance with scripts/reference/postfix.sh (Debian's
# package, all transports `discard`) on 127.0.0.1:27025. Then runs:
#   throughput.py   smtp-source against smtp-sink, Postfix, aiosmtpd writing
#                   files, latrine (default: fsync before 250), latrine --no-fsync
#   idle.py         resident memory with 10,000 idle connections
#   big_message.py  resident memory receiving and sealing a 1 GB message
#   analyze.py      analyze --offline vs find|xargs sha256sum, 10k and 100k sessions
#   html_report.py  (only with ONLY=...,html: needs chromium, chromium-driver and
#                   target/venv with selenium, as .ci/run makes) the HTML report
#                   at 100k sessions against analyze --no-html
# and prints the table (table.py). Everything is measured in this run: only the
# ratios mean something on a shared machine.
#
# Environment: BENCH_DIR (default /var/tmp/latrine-bench; spools for analyze
# are kept there and reused), REPS (3), IDLE (10000), BIG (1000000000 bytes),
# ANALYZE_SESSIONS (10000,100000), ONLY (e.g. "throughput,idle"),
# COMPARE ("before=/path/to/old/latrine": one more latrine in the throughput runs).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
BENCH_DIR=${BENCH_DIR:-/var/tmp/latrine-bench}
REPS=${REPS:-3}
IDLE=${IDLE:-10000}
BIG=${BIG:-1000000000}
ANALYZE_SESSIONS=${ANALYZE_SESSIONS:-10000,100000}
ONLY=${ONLY:-throughput,idle,big,analyze}
export REF_DIR=${REF_DIR:-/var/lib/latrine-postfix-bench} REF_PORT=${REF_PORT:-27025}
[ "$(id -u)" = 0 ] || { echo "run.sh: run as root (Postfix reference, smtp-sink -u nobody)" >&2; exit 1; }
mkdir -p "$BENCH_DIR"
want() { [[ ",$ONLY," == *",$1,"* ]]; }
say() { echo "run.sh: $*" >&2; }

say "building latrine"
cargo build --release --quiet
LATRINE=$REPO/target/release/latrine

if want throughput; then
    if [ ! -x "$BENCH_DIR/pfx/usr/sbin/smtp-source" ]; then
        say "unpacking Debian's postfix package for smtp-source and smtp-sink"
        (cd "$BENCH_DIR" && rm -f postfix_*.deb &&
            { apt-get download postfix 2>/dev/null || { apt-get update -qq && apt-get download postfix; }; } &&
            dpkg-deb -x postfix_*.deb pfx)
    fi
    if ! "$BENCH_DIR/venv/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
        say "installing aiosmtpd from PyPI"
        python3 -m venv "$BENCH_DIR/venv" 2>/dev/null || {
            apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$BENCH_DIR/venv"; }
        "$BENCH_DIR/venv/bin/pip" install --quiet aiosmtpd
    fi
    say "starting the reference Postfix on 127.0.0.1:$REF_PORT"
    scripts/reference/postfix.sh start >&2
    trap 'scripts/reference/postfix.sh stop >&2 || true' EXIT
fi

RESULTS=$BENCH_DIR/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl
: > "$RESULTS"
if want throughput; then
    compare=()
    [ -n "${COMPARE:-}" ] && compare=(--compare "$COMPARE")
    python3 scripts/bench/throughput.py --latrine "$LATRINE" --tools "$BENCH_DIR/pfx" \
        --python "$BENCH_DIR/venv/bin/python" --work "$BENCH_DIR/throughput" \
        --postfix-port "$REF_PORT" --postfix-conf "$REF_DIR/conf" --reps "$REPS" \
        "${compare[@]}" >> "$RESULTS"
fi
want idle && python3 scripts/bench/idle.py --latrine "$LATRINE" --work "$BENCH_DIR" \
    --connections "$IDLE" >> "$RESULTS"
want big && python3 scripts/bench/big_message.py --latrine "$LATRINE" --work "$BENCH_DIR" \
    --size "$BIG" >> "$RESULTS"
want analyze && python3 scripts/bench/analyze.py --latrine "$LATRINE" --work "$BENCH_DIR" \
    --sessions "$ANALYZE_SESSIONS" >> "$RESULTS"
want html && python3 scripts/bench/html_report.py --latrine "$LATRINE" --work "$BENCH_DIR" \
    --python "$REPO/target/venv/bin/python" >> "$RESULTS"

say "results in $RESULTS"
python3 scripts/bench/table.py "$RESULTS"
