#!/usr/bin/env bash
# Installs what `cargo bench --bench registry` runs beside Berth (Debian 12 packages):
#   docker-registry  CNCF distribution 2.8.2, the registry Berth is compared with
#   nginx-light      static-file ceiling for pulls and small GETs
#   iperf3           loopback TCP ceiling
#   openssl, coreutils (dd)  SHA-256 and fsync'd-write ceilings (usually present)
# No service is started or enabled: the bench starts each server itself on a
# loopback port with a config in its own temp directory.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
pkgs=(docker-registry nginx-light iperf3 openssl coreutils)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    $SUDO apt-get update -q
    # Debian's packages may try to start their daemons; nothing here needs them.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
for b in /usr/bin/docker-registry /usr/sbin/nginx /usr/bin/iperf3 /usr/bin/openssl /bin/dd; do
    [ -x "$b" ] || { echo "setup.sh: $b missing" >&2; exit 1; }
done
echo "bench prerequisites ready: $(/usr/bin/docker-registry --version 2>&1 | head -1); $(/usr/sbin/nginx -v 2>&1); $(/usr/bin/iperf3 --version | head -1)"
