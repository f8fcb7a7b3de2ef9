#!/usr/bin/env bash
# install.sh -- install the real mail servers used by the integration tests
# (Postfix + Dovecot IMAP/LMTP + openssl), non-interactively, on Debian 12 as root.
#
# Idempotent: does nothing (and contacts no package server) when everything is
# already installed. No service is enabled or started: start.sh runs private
# instances with their own configuration under a temporary folder.
set -euo pipefail

[[ $(id -u) -eq 0 ]] || { echo "install.sh: must run as root" >&2; exit 1; }

# iproute2 gives `ss`, util-linux gives `setpriv`/`script`: used by start.sh/stop.sh
PACKAGES=(postfix dovecot-core dovecot-imapd dovecot-lmtpd openssl iproute2 util-linux)

need=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]} == 0)); then
  echo "install.sh: mail servers already installed"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# Postfix asks debconf questions at install time: preseed "No configuration" so its
# postinst writes no /etc/postfix/main.cf we would have to undo.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
echo "postfix postfix/mailname string localhost" | debconf-set-selections

echo "install.sh: installing ${need[*]}"
# a third-party source that cannot be reached must not stop us: Debian's own lists suffice
apt-get update -qq || echo "install.sh: apt-get update reported errors, trying to install anyway" >&2
apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confdef \
  -o Dpkg::Options::=--force-confold "${need[@]}"

command -v postfix >/dev/null && command -v dovecot >/dev/null \
  || { echo "install.sh: postfix/dovecot still missing after apt-get install" >&2; exit 1; }
echo "install.sh: done"
