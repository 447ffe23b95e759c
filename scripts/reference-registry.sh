#!/usr/bin/env bash
# Runs CNCF distribution (Debian's `docker-registry`, 2.8.x) as a reference registry on a
# loopback port, with its storage in a temporary (or given) directory and deletion enabled.
#
#   scripts/reference-registry.sh PORT [DATA_DIR]
#
# Runs in the foreground until killed (SIGINT/SIGTERM); callers background it:
#
#   scripts/reference-registry.sh 5000 & reg=$!
#   cargo run -p berth-conformance -- --url http://127.0.0.1:5000
#   kill $reg
#
# Without DATA_DIR a temporary directory is created and removed on exit; a given DATA_DIR is
# kept. With HTPASSWD=FILE (a bcrypt htpasswd file, e.g. from `htpasswd -Bbn USER PASS`) the
# registry asks for Basic credentials (realm "reference-registry"). The generated config file lives next to the data, never under /etc. Install the binary
# with scripts/install-test-deps.sh (Debian package docker-registry).
set -euo pipefail

usage() {
    echo "usage: $0 PORT [DATA_DIR]" >&2
    exit 2
}

[ $# -ge 1 ] && [ $# -le 2 ] || usage
PORT=$1
case "$PORT" in
    '' | *[!0-9]*) usage ;;
esac
[ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ] || usage

REGISTRY_BIN=${REGISTRY_BIN:-/usr/bin/docker-registry}
if [ ! -x "$REGISTRY_BIN" ]; then
    echo "reference-registry: $REGISTRY_BIN not found; run scripts/install-test-deps.sh" >&2
    exit 1
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/reference-registry.XXXXXX")
if [ $# -eq 2 ]; then
    DATA=$2
    mkdir -p "$DATA"
    DATA=$(cd "$DATA" && pwd)
else
    DATA=$WORK/data
    mkdir -p "$DATA"
fi
CONFIG=$WORK/config.yml

# A random secret so that upload state tokens are signed; loopback only.
SECRET=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')

cat >"$CONFIG" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $DATA
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$PORT
  secret: $SECRET
EOF

if [ -n "${HTPASSWD:-}" ]; then
    [ -r "$HTPASSWD" ] || { echo "reference-registry: HTPASSWD=$HTPASSWD is not readable" >&2; exit 1; }
    cat >>"$CONFIG" <<EOF
auth:
  htpasswd:
    realm: reference-registry
    path: $(cd "$(dirname "$HTPASSWD")" && pwd)/$(basename "$HTPASSWD")
EOF
fi

child=""
cleanup() {
    if [ -n "$child" ]; then
        kill "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# Keep the environment from overriding the generated config.
env -u REGISTRY_HTTP_ADDR -u REGISTRY_STORAGE "$REGISTRY_BIN" serve "$CONFIG" &
child=$!
wait "$child"
