#!/usr/bin/env bash
# start.sh DIR -- start a throwaway, loopback-only Postfix + Dovecot mail stack
# whose config, queue, maildirs, pid files, sockets and logs all live under DIR.
# Used by the integration tests (tests/conftest.py, fixture `mailstack`), which
# pick free ports and pass them in the MAILSTACK_*_PORT variables below.
#
#   SMTP      127.0.0.1:$MAILSTACK_SMTP_PORT   (2525)  plain, AUTH optional, no STARTTLS
#   submission127.0.0.1:$MAILSTACK_SUBM_PORT   (2587)  STARTTLS required, AUTH required
#   SMTPS     127.0.0.1:$MAILSTACK_SMTPS_PORT  (2465)  implicit TLS, AUTH required
#   IMAP      127.0.0.1:$MAILSTACK_IMAP_PORT   (1143)  plain (LOGIN allowed), STARTTLS offered
#   IMAPS     127.0.0.1:$MAILSTACK_IMAPS_PORT  (1993)  implicit TLS
#   LMTP      127.0.0.1:$MAILSTACK_LMTP_PORT   (2424)  direct delivery into mailboxes (Dovecot)
#
# Every address in $MAILSTACK_DOMAINS (default: example.test) is accepted and
# delivered (Postfix -> LMTP -> Dovecot, mail under DIR/mail/<domain>/<user>/).
# Users who may log in (IMAP / SMTP AUTH): $MAILSTACK_USERS, space separated
# "address:password" (default: coordinator@example.test and partner1..5@example.test,
# password "secret"). Nothing is relayed off the machine: other domains are
# rejected at RCPT time (554 Relay access denied).
#
# Other knobs: MAILSTACK_MAIL_FORMAT=maildir|sdbox|mdbox (default maildir),
# MAILSTACK_IN_FLOW_DELAY (Postfix in_flow_delay, default 1s),
# MAILSTACK_DOVECOT_EXTRA (raw lines appended to dovecot.conf).
# Bounces (opt-in, both unset by default): every address in MAILSTACK_BOUNCE_DOMAIN
# (e.g. bounce.test) is accepted at RCPT time and then bounced by Postfix itself
# (5.1.1): the envelope sender gets a real DSN (multipart/report) within ~0.1 s.
# Every address in MAILSTACK_DEFER_DOMAIN (e.g. defer.test) is deferred (4.2.1):
# the sender at once gets a "delayed" DSN, the message stays queued (retried, then
# bounced after maximal_queue_lifetime = 1h).
# OAuth2 (opt-in, unset by default): MAILSTACK_OAUTH2_INTROSPECT_URL (an RFC 7662 token
# introspection URL, e.g. http://127.0.0.1:45100/introspect) makes Dovecot also offer SASL
# XOAUTH2 and OAUTHBEARER on IMAP and IMAPS, and Postfix (Dovecot SASL) on submission after
# STARTTLS, SMTPS and SMTP ("AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER"). A passdb
# { driver = oauth2 } POSTs token=<access token> to that endpoint and accepts the
# login when the JSON answer has "active": true and "email" equal to the login name;
# inactive or mismatch = IMAP NO [AUTHENTICATIONFAILED] / SMTP 535; endpoint down = IMAP
# NO [UNAVAILABLE] Temporary authentication failure / SMTP 535 (Postfix hides the difference).
# No caching: every login asks. Passwords keep working (PLAIN/LOGIN only). XOAUTH2 initial
# response: base64("user=" USER "\x01auth=Bearer " TOKEN "\x01\x01"); on a bad token the
# server first sends a JSON error challenge (XOAUTH2: answer with an empty line; OAUTHBEARER:
# with "\x01"). In this mode failed logins from 127.0.0.1 are refused at once: no 2 s
# failure delay and no growing per-IP penalty (else a few bad tokens stall every later login
# and Postfix answers 454). Files: DIR/etc/dovecot/oauth2.conf.ext, DIR/etc/dovecot/nodelay.
# Re-running start.sh on a stopped DIR keeps its mail and certificate.
#
# Must run as root (Postfix/Dovecot drop privileges to postfix / dovecot /
# dovenull / mail). Requires: install.sh beside this script (postfix, dovecot-imapd,
# dovecot-lmtpd, openssl).
# Writes DIR/stack.env and DIR/stack.json describing ports, users and paths.
# Stop with: stop.sh DIR [--purge]
set -euo pipefail

die() { echo "start.sh: $*" >&2; exit 1; }
[[ $# -eq 1 ]] || die "usage: start.sh DIR"
[[ $(id -u) -eq 0 ]] || die "must run as root"
command -v dovecot >/dev/null && command -v postfix >/dev/null \
  || die "postfix/dovecot not installed (run $(dirname "$0")/install.sh)"

mkdir -p "$1"
D=$(realpath "$1")

SMTP_PORT=${MAILSTACK_SMTP_PORT:-2525}
SUBM_PORT=${MAILSTACK_SUBM_PORT:-2587}
SMTPS_PORT=${MAILSTACK_SMTPS_PORT:-2465}
IMAP_PORT=${MAILSTACK_IMAP_PORT:-1143}
IMAPS_PORT=${MAILSTACK_IMAPS_PORT:-1993}
LMTP_PORT=${MAILSTACK_LMTP_PORT:-2424}
DOMAINS=${MAILSTACK_DOMAINS:-example.test}
BOUNCE_DOMAIN=${MAILSTACK_BOUNCE_DOMAIN:-}
DEFER_DOMAIN=${MAILSTACK_DEFER_DOMAIN:-}
OAUTH2_URL=${MAILSTACK_OAUTH2_INTROSPECT_URL:-}
DELAY_WARNING=0; [[ -z $DEFER_DOMAIN ]] || DELAY_WARNING=1s  # 0 = never send "delayed" DSNs
USERS=${MAILSTACK_USERS:-"coordinator@example.test:secret partner1@example.test:secret partner2@example.test:secret partner3@example.test:secret partner4@example.test:secret partner5@example.test:secret"}
# Postfix throttles SMTP input by up to in_flow_delay per message when the
# queue manager falls behind; 1s is Postfix's default. 0 = never throttle.
IN_FLOW_DELAY=${MAILSTACK_IN_FLOW_DELAY:-1s}
# Dovecot mailbox format: maildir (default; one file per message, easy to inspect),
# sdbox or mdbox (Dovecot's own formats)
MAIL_FORMAT=${MAILSTACK_MAIL_FORMAT:-maildir}
case $MAIL_FORMAT in
  maildir) MAIL_LOCATION='maildir:~/Maildir' ;;
  sdbox|mdbox) MAIL_LOCATION="$MAIL_FORMAT:~/$MAIL_FORMAT" ;;
  *) die "MAILSTACK_MAIL_FORMAT must be maildir, sdbox or mdbox" ;;
esac
MAIL_UID=$(id -u mail); MAIL_GID=$(id -g mail)

PF_PID="$D/spool/postfix/pid/master.pid"
DC_PID="$D/run/dovecot/master.pid"
alive() {  # pid file names a live (non-zombie) process
  local p st; [[ -s $1 ]] || return 1; p=$(head -n1 "$1" | tr -d ' ')
  st=$(cut -d')' -f2 "/proc/$p/stat" 2>/dev/null | awk '{print $1}'); [[ -n $st && $st != Z ]]
}
if alive "$PF_PID" || alive "$DC_PID"; then die "stack in $D seems to be running already (stop.sh $D)"; fi

for p in $SMTP_PORT $SUBM_PORT $SMTPS_PORT $IMAP_PORT $IMAPS_PORT $LMTP_PORT; do
  if [[ -n $(ss -Hltn "sport = :$p") ]]; then die "port $p already in use"; fi
done

# ---------------------------------------------------------------- layout
# DIR must be traversable by the unprivileged users (postfix, dovecot, mail).
chmod 0755 "$D"
mkdir -p "$D"/{etc/postfix,etc/dovecot,spool/postfix,lib/postfix,lib/dovecot,run/dovecot,log,ssl,mail}
chmod 0755 "$D"/etc "$D"/etc/postfix "$D"/etc/dovecot "$D"/spool "$D"/lib "$D"/run "$D"/log "$D"/ssl
chown "$MAIL_UID:$MAIL_GID" "$D/mail"; chmod 0750 "$D/mail"
chown postfix:postfix "$D/lib/postfix"; chmod 0700 "$D/lib/postfix"   # data_directory: must be owned by mail_owner
for u in postfix dovecot mail; do
  setpriv --reuid="$u" --regid="$u" --clear-groups test -x "$D/run" 2>/dev/null \
    || die "user '$u' cannot traverse $D: a parent directory is not world-executable (e.g. pytest's /tmp/pytest-of-root is 0700: chmod o+x it, or use a dir under /tmp made with mode 0755)"
done

# ---------------------------------------------------------------- TLS
if [[ ! -s $D/ssl/cert.pem ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$D/ssl/key.pem" -out "$D/ssl/cert.pem" 2>/dev/null
  chmod 0644 "$D/ssl/cert.pem"; chmod 0600 "$D/ssl/key.pem"
fi

# ---------------------------------------------------------------- Dovecot
: > "$D/etc/dovecot/users"
for ent in $USERS; do
  addr=${ent%%:*}; pw=${ent#*:}
  printf '%s:{PLAIN}%s::::::\n' "${addr,,}" "$pw" >> "$D/etc/dovecot/users"
done
chmod 0644 "$D/etc/dovecot/users"

# OAuth2 (MAILSTACK_OAUTH2_INTROSPECT_URL): an oauth2 passdb for XOAUTH2/OAUTHBEARER only;
# the passwd-file passdb then serves PLAIN/LOGIN only (`mechanisms` in each), so a password
# is never POSTed to the introspection endpoint nor a token compared with a password.
OAUTH2_PASSDB=""; PASSWD_MECHS=""; NODELAY_PASSDB=""
rm -f "$D/etc/dovecot/oauth2.conf.ext" "$D/etc/dovecot/nodelay"
if [[ -n $OAUTH2_URL ]]; then
  [[ $OAUTH2_URL == http://* || $OAUTH2_URL == https://* ]] \
    || die "MAILSTACK_OAUTH2_INTROSPECT_URL must be an http:// or https:// URL"
  cat > "$D/etc/dovecot/oauth2.conf.ext" <<EOF
# generated by start.sh (MAILSTACK_OAUTH2_INTROSPECT_URL); see PasswordDatabase.oauth2 in
# /usr/share/doc/dovecot-core/wiki. POST token=<bearer token>, RFC 7662 style answer.
introspection_mode = post
introspection_url = $OAUTH2_URL
force_introspection = yes
username_attribute = email
active_attribute = active
active_value = true
timeout_msecs = 5000
EOF
  chmod 0644 "$D/etc/dovecot/oauth2.conf.ext"
  printf '127.0.0.1:::::::nodelay=yes\n' > "$D/etc/dovecot/nodelay"; chmod 0644 "$D/etc/dovecot/nodelay"
  NODELAY_PASSDB="# failures from 127.0.0.1 are answered at once: no auth_failure_delay (2 s) and no
# per-IP auth penalty (2, 4, 8, 15 s before *every* later login from the IP, after which
# Postfix gives up with 454 'Connection lost to authentication server'). Only adds the
# field nodelay (noauthenticate): the passdbs below decide. (Dovecot 2.3 Upgrading notes)
passdb {
  driver = passwd-file
  args = username_format=%{rip} $D/etc/dovecot/nodelay
  default_fields = noauthenticate=y
}
"
  OAUTH2_PASSDB="passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $D/etc/dovecot/oauth2.conf.ext
}
"
  PASSWD_MECHS="  mechanisms = plain login
"
fi

INSTANCE="mailstack-$(printf '%s' "$D" | md5sum | cut -c1-8)"
cat > "$D/etc/dovecot/dovecot.conf" <<EOF
# generated by start.sh -- self-contained, does not read /etc/dovecot
instance_name = $INSTANCE
base_dir = $D/run/dovecot
state_dir = $D/lib/dovecot
listen = 127.0.0.1
protocols = imap lmtp
log_path = $D/log/dovecot.log
log_timestamp = "%Y-%m-%d %H:%M:%S "
auth_verbose = yes

ssl = yes
ssl_cert = <$D/ssl/cert.pem
ssl_key = <$D/ssl/key.pem
ssl_dh = </usr/share/dovecot/dh.pem
disable_plaintext_auth = no
auth_mechanisms = plain login${OAUTH2_URL:+ xoauth2 oauthbearer}
auth_username_format = %Lu
auth_cache_size = 0
# a throwaway test stack: answer failed logins at once (default: 2 s penalty each)
auth_failure_delay = 0

# all virtual mail is owned by the Debian 'mail' user (uid $MAIL_UID); Dovecot refuses
# uid 0 for mail access and refuses uids below first_valid_uid (default 500).
first_valid_uid = $MAIL_UID
last_valid_uid = $MAIL_UID
first_valid_gid = $MAIL_GID
mail_location = $MAIL_LOCATION
mail_fsync = never
recipient_delimiter = +

${NODELAY_PASSDB}passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%Lu $D/etc/dovecot/users
${PASSWD_MECHS}}
$OAUTH2_PASSDB# any user@domain gets a mailbox on delivery (allow_all_users), login needs passdb
userdb {
  driver = static
  args = uid=$MAIL_UID gid=$MAIL_GID home=$D/mail/%Ld/%Ln allow_all_users=yes
}

protocol imap {
  mail_max_userip_connections = 512
}
protocol lmtp {
  postmaster_address = postmaster@example.test
}

service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $IMAPS_PORT
    ssl = yes
  }
}
service imap {
  process_limit = 1024
}
# the unix socket run/dovecot/lmtp (default mode 0666) is what Postfix delivers to
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $LMTP_PORT
  }
}
# no growing brute-force penalty (2, 4, 8.. 15 s per failed login from one IP): tests
# that check refused logins must not slow down the whole suite
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
# SASL for Postfix smtpd (runs as user postfix, hence 0666)
service auth {
  unix_listener auth-postfix {
    mode = 0666
  }
}
EOF
# extra raw dovecot.conf lines, e.g. MAILSTACK_DOVECOT_EXTRA='maildir_very_dirty_syncs = yes'
if [[ -n ${MAILSTACK_DOVECOT_EXTRA:-} ]]; then
  printf '%s\n' "$MAILSTACK_DOVECOT_EXTRA" >> "$D/etc/dovecot/dovecot.conf"
fi

# ---------------------------------------------------------------- Postfix
cat > "$D/etc/postfix/main.cf" <<EOF
# generated by start.sh -- used via 'postfix -c $D/etc/postfix'
compatibility_level = 3.6
queue_directory = $D/spool/postfix
data_directory = $D/lib/postfix
meta_directory = /etc/postfix
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-mailstack
maillog_file = $D/log/postfix.log
maillog_file_prefixes = $D/log

myhostname = mailstack.example.test
mydomain = example.test
myorigin = \$myhostname
mydestination =
local_transport = error:local delivery is disabled in mailstack
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
biff = no
append_dot_mydomain = no
readme_directory = no

# never relay off the box: unknown domains are refused at RCPT time,
# and anything generated locally for another domain bounces.
relay_domains =
smtpd_relay_restrictions = reject_unauth_destination
default_transport = error:outbound delivery is disabled in mailstack
relay_transport = error:outbound delivery is disabled in mailstack

virtual_mailbox_domains = $DOMAINS${BOUNCE_DOMAIN:+ $BOUNCE_DOMAIN}${DEFER_DOMAIN:+ $DEFER_DOMAIN}
virtual_transport = lmtp:unix:$D/run/dovecot/lmtp

smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = $D/run/dovecot/auth-postfix
smtpd_sasl_security_options = noanonymous
smtpd_tls_auth_only = no
smtpd_tls_security_level = none
smtpd_tls_cert_file = $D/ssl/cert.pem
smtpd_tls_key_file = $D/ssl/key.pem
smtpd_banner = \$myhostname ESMTP mailstack

message_size_limit = 52428800
# refusals are answered at once (default: sleep 1s per error, e.g. after a failed AUTH)
smtpd_error_sleep_time = 0
in_flow_delay = $IN_FLOW_DELAY
maximal_queue_lifetime = 1h
bounce_queue_lifetime = 1h
delay_warning_time = $DELAY_WARNING
EOF
# bounce/defer domains: accepted at RCPT time (virtual_mailbox_domains), then routed to
# Postfix's error(8) agent, which bounces (service "error") or defers (service "retry")
# every recipient; Postfix's bounce(8) daemon then mails a DSN to the envelope sender.
# smtpd_reject_unlisted_recipient = no: else smtpd refuses error: addresses at RCPT.
if [[ -n $BOUNCE_DOMAIN$DEFER_DOMAIN ]]; then
  TMAP=""
  [[ -z $BOUNCE_DOMAIN ]] || TMAP+=" { $BOUNCE_DOMAIN = error:5.1.1 mailbox does not exist }"
  [[ -z $DEFER_DOMAIN ]] || TMAP+=" { $DEFER_DOMAIN = retry:4.2.1 mailbox temporarily unavailable }"
  printf '%s\n' "transport_maps = inline:{$TMAP }" "smtpd_reject_unlisted_recipient = no" \
    >> "$D/etc/postfix/main.cf"
fi

cat > "$D/etc/postfix/master.cf" <<EOF
# generated by start.sh -- no chroot anywhere (chroot would need copies of /etc files)
127.0.0.1:$SMTP_PORT inet n - n - - smtpd
127.0.0.1:$SUBM_PORT inet n - n - - smtpd
  -o syslog_name=postfix-mailstack/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_tls_auth_only=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
127.0.0.1:$SMTPS_PORT inet n - n - - smtpd
  -o syslog_name=postfix-mailstack/smtps
  -o smtpd_tls_wrappermode=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
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
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF

# Postfix (dict_load_file) sleeps until main.cf/master.cf are >1-2s old when it
# reads a file modified "just now" -- this alone cost ~2s per start. Backdate them.
touch -d "@$(( $(date +%s) - 10 ))" "$D/etc/postfix/main.cf" "$D/etc/postfix/master.cf"

# ---------------------------------------------------------------- describe
cat > "$D/stack.env" <<EOF
MAILSTACK_DIR=$D
MAILSTACK_HOST=127.0.0.1
MAILSTACK_SMTP_PORT=$SMTP_PORT
MAILSTACK_SUBM_PORT=$SUBM_PORT
MAILSTACK_SMTPS_PORT=$SMTPS_PORT
MAILSTACK_IMAP_PORT=$IMAP_PORT
MAILSTACK_IMAPS_PORT=$IMAPS_PORT
MAILSTACK_LMTP_PORT=$LMTP_PORT
MAILSTACK_CA_FILE=$D/ssl/cert.pem
MAILSTACK_DOVECOT_CONF=$D/etc/dovecot/dovecot.conf
MAILSTACK_POSTFIX_CONF=$D/etc/postfix
MAILSTACK_DOMAINS="$DOMAINS"
MAILSTACK_BOUNCE_DOMAIN="$BOUNCE_DOMAIN"
MAILSTACK_DEFER_DOMAIN="$DEFER_DOMAIN"
MAILSTACK_OAUTH2_INTROSPECT_URL="$OAUTH2_URL"
MAILSTACK_MAIL_FORMAT=$MAIL_FORMAT
MAILSTACK_USERS="$USERS"
EOF
python3 - "$D" <<'PY'
import json, sys, shlex
d = sys.argv[1]
env = dict(l.split("=", 1) for l in open(f"{d}/stack.env").read().splitlines() if l)
env = {k: shlex.split(v)[0] if v.startswith('"') else v for k, v in env.items()}
users = dict(e.split(":", 1) for e in env["MAILSTACK_USERS"].split())
out = {"dir": d, "host": "127.0.0.1",
       "ports": {k[len("MAILSTACK_"):-len("_PORT")].lower(): int(v) for k, v in env.items() if k.endswith("_PORT")},
       "ca_file": env["MAILSTACK_CA_FILE"], "dovecot_conf": env["MAILSTACK_DOVECOT_CONF"],
       "postfix_conf": env["MAILSTACK_POSTFIX_CONF"], "domains": env["MAILSTACK_DOMAINS"].split(),
       "mail_format": env["MAILSTACK_MAIL_FORMAT"],
       "bounce_domain": env["MAILSTACK_BOUNCE_DOMAIN"] or None,
       "defer_domain": env["MAILSTACK_DEFER_DOMAIN"] or None,
       "oauth2_introspect_url": env["MAILSTACK_OAUTH2_INTROSPECT_URL"] or None,
       "users": users}
json.dump(out, open(f"{d}/stack.json", "w"), indent=2)
PY

# ---------------------------------------------------------------- start
HERE=$(dirname "$(realpath "$0")")
on_exit() {
  local rc=$?
  if ((rc != 0)); then
    echo "start.sh: failed (rc=$rc), stopping what was started; logs in $D/log" >&2
    "$HERE/stop.sh" "$D" >/dev/null 2>&1 || true
  fi
}
trap on_exit EXIT
wait_port() {  # wait_port PORT NAME
  for _ in $(seq 1 200); do
    [[ -n $(ss -Hltn "sport = :$1") ]] && return 0
    sleep 0.05
  done
  echo "start.sh: $2 did not start listening on port $1 (see $D/log/)" >&2; return 1
}

doveconf -c "$D/etc/dovecot/dovecot.conf" -n >/dev/null 2>"$D/log/doveconf.err" \
  || { cat "$D/log/doveconf.err" >&2; die "dovecot config invalid"; }
# redirect stdio: daemons inherit it, and a caller that captures start.sh's
# output (subprocess.run(capture_output=True), $(...), | tee) would hang forever.
dovecot -c "$D/etc/dovecot/dovecot.conf" </dev/null >>"$D/log/dovecot-start.out" 2>&1 \
  || { cat "$D/log/dovecot-start.out" >&2; tail -n 5 "$D/log/dovecot.log" >&2; die "dovecot failed to start"; }
wait_port "$IMAP_PORT" dovecot; wait_port "$LMTP_PORT" dovecot
for _ in $(seq 1 100); do [[ -S $D/run/dovecot/lmtp && -S $D/run/dovecot/auth-postfix ]] && break; sleep 0.05; done

postfix -c "$D/etc/postfix" start </dev/null >"$D/log/postfix-start.out" 2>&1 \
  || { cat "$D/log/postfix-start.out" >&2; tail -n 5 "$D/log/postfix.log" >&2
       # postfix prints fatal errors to stderr only when it is a tty (else: syslog,
       # which does not exist here, or postlogd, which is not running yet)
       script -qc "postfix -c $D/etc/postfix check" /dev/null >&2 || true
       die "postfix failed to start"; }
wait_port "$SMTP_PORT" postfix; wait_port "$SUBM_PORT" postfix; wait_port "$SMTPS_PORT" postfix

echo "mailstack up in $D: smtp=$SMTP_PORT submission=$SUBM_PORT smtps=$SMTPS_PORT imap=$IMAP_PORT imaps=$IMAPS_PORT lmtp=$LMTP_PORT"
