#!/usr/bin/env bash
# scripts/reference/exim.sh — run a REAL Debian Exim 4 (4.96, bookworm) as a
# reference SMTP server on loopback, next to an installed Postfix.
#
# Usage (as root):
#   scripts/reference/exim.sh [start]   # unpack if needed, write config, start, wait for port
#   scripts/reference/exim.sh stop
#   scripts/reference/exim.sh status    # exit 0 if running
#   scripts/reference/exim.sh unpack    # only fetch and unpack the .debs, create Debian-exim
#   scripts/reference/exim.sh config    # only write the config; print the exim binary and it
#                                       # (for `exim4 -C CONF -bs -oMa 127.0.0.1.1025`)
#
# Environment:
#   REF_PORT   listening port on 127.0.0.1    (default 10026)
#   REF_DIR    this instance's config, spool and logs (default /var/lib/latrine-exim-ref)
#   EXIM_ROOT  where the .debs are unpacked   (default /opt/latrine-exim)
#
# Debian's exim4 packages conflict with postfix, so they are not installed:
# `apt-get download` fetches exim4-daemon-light, exim4-base and exim4-config,
# `dpkg-deb -x` unpacks them into $EXIM_ROOT, and the binary runs from there
# with its own config (-C). The compiled-in user Debian-exim is created.
#
# The config is what Debian's update-exim4.conf generates for an "internet
# site" (the package's own exim4.conf.template, unchanged, after the same
# macro block), with local macros as exim4.conf.localmacros would hold them:
#   - primary_hostname mx.example.com (MAIN_HARDCODE_PRIMARY_HOSTNAME)
#   - OPEN RELAY: MAIN_RELAY_NETS = 0.0.0.0/0 (every client is in
#     relay_from_hosts, so the stock RCPT ACL accepts every recipient)
#   - NOTHING CAN LEAVE THE MACHINE: queue_only (no delivery is attempted on
#     reception), no queue runner is ever started (no -q), and the spool is
#     $REF_DIR/spool, which `stop` empties.
#   - listens only on 127.0.0.1:$REF_PORT.
set -euo pipefail

REF_PORT="${REF_PORT:-10026}"
REF_DIR="${REF_DIR:-/var/lib/latrine-exim-ref}"
EXIM_ROOT="${EXIM_ROOT:-/opt/latrine-exim}"
EXIM="$EXIM_ROOT/usr/sbin/exim4"
CONF="$REF_DIR/exim4.conf"
PIDFILE="$REF_DIR/exim.pid"
ACTION="${1:-start}"

die() { echo "exim.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"

unpack() {
    if [ ! -x "$EXIM" ]; then
        local tmp
        tmp="$(mktemp -d)"
        (cd "$tmp" && { apt-get download exim4-daemon-light exim4-base exim4-config >/dev/null 2>&1 ||
            { apt-get update -qq && apt-get download exim4-daemon-light exim4-base exim4-config; }; })
        mkdir -p "$EXIM_ROOT"
        for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$EXIM_ROOT"; done
        rm -rf "$tmp"
    fi
    getent group Debian-exim >/dev/null || groupadd --system Debian-exim
    getent passwd Debian-exim >/dev/null ||
        useradd --system --gid Debian-exim --no-create-home --home-dir /var/spool/exim4 \
            --shell /usr/sbin/nologin Debian-exim
}


write_config() {
    mkdir -p "$REF_DIR/spool" "$REF_DIR/log"
    chown -R Debian-exim:Debian-exim "$REF_DIR/spool" "$REF_DIR/log"
    {
        cat <<EOF
# latrine reference instance (scripts/reference/exim.sh): local macros.
CONFDIR = $REF_DIR
SPOOLDIR = $REF_DIR/spool
MAIN_HARDCODE_PRIMARY_HOSTNAME = mx.example.com
MAIN_LOCAL_INTERFACES = <; 127.0.0.1.$REF_PORT
MAIN_LOG_SELECTOR = +all
log_file_path = $REF_DIR/log/%slog
# Nothing is ever delivered: accepted messages stay in \$REF_DIR/spool.
queue_only = true
EOF
        # What update-exim4.conf puts after the template's UPEX4CmacrosUPEX4C line
        # for dc_eximconfig_configtype='internet', except relay nets (open relay).
        sed '/^UPEX4CmacrosUPEX4C/q' "$EXIM_ROOT/etc/exim4/exim4.conf.template"
        cat <<EOF
MAIN_PACKAGE_VERSION=4.96-15+deb12u10
MAIN_LOCAL_DOMAINS=@:localhost:mx.example.com
MAIN_RELAY_TO_DOMAINS=empty
ETC_MAILNAME=mx.example.com
LOCAL_DELIVERY=mail_spool
MAIN_RELAY_NETS=0.0.0.0/0 : ::::0/0
DCreadhost=
DCsmarthost=
DC_eximconfig_configtype=internet
DCconfig_internet=1
EOF
        sed '1,/^UPEX4CmacrosUPEX4C/d' "$EXIM_ROOT/etc/exim4/exim4.conf.template"
    } > "$CONF.new"
    mv "$CONF.new" "$CONF"
    "$EXIM" -C "$CONF" -bV >/dev/null 2>&1 || die "exim refuses $CONF"
}

pid() { [ -f "$PIDFILE" ] && cat "$PIDFILE"; }

is_running() {
    local p
    p="$(pid)" && [ -n "$p" ] && kill -0 "$p" 2>/dev/null
}

do_stop() {
    if is_running; then
        kill "$(pid)"
        for _ in $(seq 1 50); do is_running || break; sleep 0.1; done
    fi
    rm -f "$PIDFILE"
    # Whatever was "accepted" is thrown away.
    rm -rf "$REF_DIR/spool/input" "$REF_DIR/spool/msglog"
    echo "exim.sh: reference Exim stopped"
}

wait_port() {
    python3 "$(dirname "$0")/wait_greeting.py" exim.sh "$REF_PORT"
}

case "$ACTION" in
    start|"")
        unpack
        if is_running; then do_stop; fi
        write_config
        "$EXIM" -C "$CONF" -bd -oP "$PIDFILE"
        if ! wait_port; then
            tail -n 20 "$REF_DIR/log/paniclog" "$REF_DIR/log/mainlog" >&2 || true
            do_stop
            exit 1
        fi
        ;;
    unpack)
        unpack
        ;;
    config)
        unpack
        write_config
        echo "$EXIM $CONF"
        ;;
    stop)
        do_stop
        ;;
    status)
        if is_running; then echo running; else echo stopped; exit 1; fi
        ;;
    *)
        die "usage: $0 [start|stop|status|unpack|config]"
        ;;
esac
