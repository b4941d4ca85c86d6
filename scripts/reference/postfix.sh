#!/usr/bin/env bash
# scripts/reference/postfix.sh — run a REAL Debian Postfix 3.7 as a reference
# SMTP server on loopback, so that latrine's replies can be compared with it.
#
# Usage (as root):
#   scripts/reference/postfix.sh [start]   # install if needed, (re)write config, start, wait for port
#   scripts/reference/postfix.sh stop      # stop the reference instance
#   scripts/reference/postfix.sh status    # exit 0 if running
#
# Environment:
#   REF_PORT  listening port on 127.0.0.1            (default 10025)
#   REF_DIR   directory holding this instance's config, queue, data and log
#             (default /var/lib/latrine-postfix-ref). Layout:
#               $REF_DIR/conf/{main.cf,master.cf,aliases}   config_directory
#               $REF_DIR/spool                              queue_directory
#               $REF_DIR/data                               data_directory
#               $REF_DIR/maillog                            log (maillog_file)
#
# What it does:
#   1. If /usr/sbin/postfix is missing: preseeds debconf
#      postfix/main_mailer_type="No configuration" and installs Debian's
#      `postfix` (and `ssl-cert`, for the snakeoil certificate) with
#      DEBIAN_FRONTEND=noninteractive. "No configuration" means the package
#      does NOT create /etc/postfix/main.cf and the system instance is never
#      started; this script never touches /etc/postfix.
#   2. Writes a dedicated, separate Postfix instance under $REF_DIR (own
#      config_directory, queue_directory and data_directory) and starts it with
#      `postfix -c $REF_DIR/conf start`. main.cf is what a stock Debian 12
#      install writes (/usr/share/postfix/main.cf.debian + main.cf.tls,
#      compatibility_level = 3.6, banner "$myhostname ESMTP $mail_name
#      (Debian/GNU)", STARTTLS with the ssl-cert snakeoil pair), plus:
#        - myhostname = mx.example.com (so mydomain = example.com)
#        - OPEN RELAY: mynetworks = 0.0.0.0/0 [::]/0,
#          smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
#          (smtpd refuses a bare "permit"; with mynetworks matching every
#          address this is equivalent), smtpd_recipient_restrictions = permit
#        - NOTHING CAN LEAVE THE MACHINE: default/relay/local/virtual transports
#          are all `discard`, and master.cf has no smtp/lmtp/relay/local/virtual/
#          pipe services at all (only the internal daemons + discard/error).
#        - listens only on 127.0.0.1:$REF_PORT (master.cf), inet_interfaces =
#          127.0.0.1, no DNS: smtpd_peername_lookup = no, smtp_host_lookup =
#          native, smtp_dns_support_level = disabled.
#        - mydestination = $myhostname, localhost.$mydomain, localhost (Debian's
#          usual "Internet Site" value) with an alias map in $REF_DIR/conf, so
#          local-recipient validation (User unknown ...) behaves as on a stock
#          install; all such local mail is discarded too.
#        - chroot disabled in master.cf (does not change any SMTP reply).
#      Every other parameter is left at the Debian/Postfix default
#      (message_size_limit = 10240000, smtpd_recipient_limit = 1000,
#      smtpd_soft_error_limit = 10, smtpd_hard_error_limit = 20,
#      smtpd_error_sleep_time = 1s, line_length_limit = 2048, ...).
#   3. Waits until 127.0.0.1:$REF_PORT answers with a 220 greeting.
#
# Idempotent: re-running rewrites the config, and restarts the instance if it
# was already running.
set -euo pipefail

REF_PORT="${REF_PORT:-10025}"
REF_DIR="${REF_DIR:-/var/lib/latrine-postfix-ref}"
CONF="$REF_DIR/conf"
ACTION="${1:-start}"

die() { echo "postfix.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"

is_running() {
    [ -f "$CONF/main.cf" ] && command -v postfix >/dev/null 2>&1 &&
        postfix -c "$CONF" status >/dev/null 2>&1
}

do_stop() {
    if is_running; then
        postfix -c "$CONF" stop
        # wait for master to go away
        for _ in $(seq 1 50); do is_running || break; sleep 0.2; done
    fi
    echo "postfix.sh: reference Postfix stopped"
}

install_postfix() {
    if [ -x /usr/sbin/postfix ] && [ -f /etc/ssl/certs/ssl-cert-snakeoil.pem ]; then
        return
    fi
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends postfix ssl-cert; then
        apt-get update
        apt-get install -y --no-install-recommends postfix ssl-cert
    fi
    if [ ! -f /etc/ssl/certs/ssl-cert-snakeoil.pem ] && command -v make-ssl-cert >/dev/null; then
        make-ssl-cert generate-default-snakeoil
    fi
}

write_config() {
    mkdir -p "$CONF" "$REF_DIR/spool" "$REF_DIR/data"
    chown root:root "$REF_DIR" "$CONF" "$REF_DIR/spool"
    chmod 755 "$REF_DIR" "$CONF" "$REF_DIR/spool"
    chown postfix:postfix "$REF_DIR/data"
    chmod 700 "$REF_DIR/data"

    local tls=""
    if [ -f /etc/ssl/certs/ssl-cert-snakeoil.pem ] && [ -f /etc/ssl/private/ssl-cert-snakeoil.key ]; then
        tls=yes
    else
        echo "postfix.sh: warning: snakeoil certificate missing; STARTTLS disabled" >&2
    fi

    {
        # --- exactly what Debian 12's postinst starts from ---
        cat /usr/share/postfix/main.cf.debian
        [ -n "$tls" ] && cat /usr/share/postfix/main.cf.tls
        cat <<EOF

# ===== latrine reference instance (scripts/reference/postfix.sh) =====
# Separate instance: own config, queue and data directories.
config_directory = $CONF
queue_directory = $REF_DIR/spool
data_directory = $REF_DIR/data
maillog_file = $REF_DIR/maillog

myhostname = mx.example.com
mydestination = \$myhostname, localhost.\$mydomain, localhost
alias_maps = hash:$CONF/aliases
alias_database = hash:$CONF/aliases
mailbox_size_limit = 0
recipient_delimiter = +
relayhost =

# Loopback only.
inet_interfaces = 127.0.0.1
inet_protocols = ipv4

# Open relay. smtpd refuses to run with a bare "permit" here (it demands a
# "working instance" of reject_unauth_destination or similar, and one placed
# after "permit" does not count), so every client is made a mynetworks client
# and permit_mynetworks always matches first.
mynetworks = 0.0.0.0/0 [::]/0
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = permit

# Nothing may ever leave this machine.
default_transport = discard
relay_transport = discard
local_transport = discard
virtual_transport = discard

# No DNS that could hang.
smtpd_peername_lookup = no
smtp_host_lookup = native
smtp_dns_support_level = disabled
EOF
    } > "$CONF/main.cf.new"
    mv "$CONF/main.cf.new" "$CONF/main.cf"

    # master.cf: Debian's internal services, chroot off, NO outbound transports.
    cat > "$CONF/master.cf" <<EOF
# latrine reference instance. No smtp/lmtp/relay/local/virtual/pipe services:
# every transport is discard.
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$REF_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF

    printf '# latrine reference instance\npostmaster: root\n' > "$CONF/aliases"
    postalias -c "$CONF" "hash:$CONF/aliases"

    postfix -c "$CONF" check
}

wait_port() {
    python3 "$(dirname "$0")/wait_greeting.py" postfix.sh "$REF_PORT"
}

case "$ACTION" in
    start|"")
        install_postfix
        if is_running; then do_stop; fi
        write_config
        postfix -c "$CONF" start
        if ! wait_port; then
            tail -n 20 "$REF_DIR/maillog" >&2 || true
            do_stop
            exit 1
        fi
        ;;
    stop)
        do_stop
        ;;
    status)
        if is_running; then echo running; else echo stopped; exit 1; fi
        ;;
    *)
        die "usage: $0 [start|stop|status]"
        ;;
esac
