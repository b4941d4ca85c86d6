#!/usr/bin/env bash
# Ships a sensor's sealed sessions to an evidence store, then frees the
# sensor's disk of what arrived intact:
#
#   scripts/ship.sh [--dry-run] [--latrine BIN] SPOOL DEST
#
# 1. rsync -a --exclude=.incoming SPOOL/ DEST/   (sessions being written stay)
# 2. latrine verify DEST                         (any problem: stop, nothing pruned)
# 3. latrine prune --verified-in DEST SPOOL --yes
#    (only sessions whose copy at DEST verifies and is byte-identical)
#
# DEST must be a local directory (a mounted evidence volume, or a directory
# on the evidence host when this runs there). For a remote store, run the
# verification where the evidence is: rsync to host:path, then on that host
# `latrine verify path`, and prune on the sensor only against a local copy
# that verified (for instance the store mounted read-only, or rsync'd back).
#
# --dry-run: copy and verify, then only list what prune would delete.
# --latrine BIN, or the environment's LATRINE: the latrine binary (default:
# `latrine` on PATH).
# Environment: RSYNC_OPTS adds rsync options (e.g. "--bwlimit=10m").
#
# Exit status: 0 when all went well, otherwise that of the step that failed.
set -euo pipefail

die() {
    echo "ship.sh: $*" >&2
    exit 2
}

dry_run=0
latrine=${LATRINE:-latrine}
while [[ $# -gt 0 ]]; do
    case $1 in
    --dry-run) dry_run=1 ;;
    --latrine)
        [[ $# -ge 2 ]] || die "--latrine needs the binary's path"
        latrine=$2
        shift
        ;;
    --) shift; break ;;
    -*) die "unknown option $1" ;;
    *) break ;;
    esac
    shift
done
[[ $# -eq 2 ]] || die "usage: ship.sh [--dry-run] [--latrine BIN] SPOOL DEST"
spool=$1
dest=$2

[[ -d $spool ]] || die "SPOOL $spool: not a directory"
[[ $dest != *:* ]] || die "DEST $dest: a remote destination; ship.sh verifies and prunes only against a local one (see the comment at the top)"
command -v rsync >/dev/null || die "rsync is not installed"
command -v "$latrine" >/dev/null || die "latrine binary '$latrine' not found (set LATRINE)"

mkdir -p -- "$dest"
echo "== rsync $spool/ -> $dest/"
# shellcheck disable=SC2086 # RSYNC_OPTS is a list of options
rsync -a --exclude=.incoming ${RSYNC_OPTS:-} -- "$spool/" "$dest/"

echo "== latrine verify $dest"
if ! "$latrine" verify -- "$dest"; then
    echo "ship.sh: $dest does not verify: nothing pruned" >&2
    exit 1
fi

if [[ $dry_run -eq 1 ]]; then
    echo "== latrine prune --verified-in $dest $spool (dry run)"
    exec "$latrine" prune --verified-in "$dest" -- "$spool"
fi
echo "== latrine prune --verified-in $dest $spool --yes"
exec "$latrine" prune --verified-in "$dest" --yes -- "$spool"
