#!/usr/bin/env bash
# What a Bearer token costs a manifest GET, in instructions (callgrind counts
# instructions, not seconds: the same figure on a busy or a quiet machine).
#
#   cargo build --release && benches/auth_instructions.sh [N]
#
# Starts target/release/berth with an auth file (anyone may pull; user `bench`
# may pull) under `valgrind --tool=callgrind` four times: idle, N anonymous
# manifest GETs by tag, N with a Bearer token, N with Basic credentials (each
# after one warm-up request of its kind), and prints the instructions per request
# of each beyond the idle run, and their ratio to anonymous.
set -euo pipefail
N=${1:-2000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$ROOT/target/release/berth
[ -x "$B" ] || { echo "build first: cargo build --release" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind is needed (Debian package valgrind)" >&2; exit 2; }
W=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; rm -rf "$W"' EXIT
cd "$W"
PID=
start() {
    "$@" >out.txt 2>err.txt &
    PID=$!
    for _ in $(seq 1200); do grep -q listening out.txt 2>/dev/null && break; sleep 0.1; done
    ADDR=$(sed -n 's/berth listening on //p' out.txt)
    [ -n "$ADDR" ] || { cat err.txt >&2; exit 1; }
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; }
python3 - >push.py <<'PY'
print('''
import hashlib, http.client, json, sys
host, port = sys.argv[1].split(":")
def sha(b): return "sha256:" + hashlib.sha256(b).hexdigest()
c = http.client.HTTPConnection(host, int(port))
cfg = b'{"architecture":"amd64","os":"linux"}'; layer = b"layer bytes" * 100
for b in (cfg, layer):
    c.request("POST", f"/v2/bench/meta/blobs/uploads/?digest={sha(b)}", body=b)
    r = c.getresponse(); r.read(); assert r.status == 201, r.status
m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(cfg), "size": len(cfg)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(layer), "size": len(layer)}]}).encode()
c.request("PUT", "/v2/bench/meta/manifests/latest", body=m, headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
r = c.getresponse(); r.read(); assert r.status == 201, r.status
''')
PY
cat >load.py <<'PY'
import http.client, sys
addr, n, auth = sys.argv[1], int(sys.argv[2]), sys.argv[3]
host, port = addr.split(":")
c = http.client.HTTPConnection(host, int(port))
h = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
if auth:
    h["Authorization"] = auth
for _ in range(n):
    c.request("GET", "/v2/bench/meta/manifests/latest", headers=h)
    r = c.getresponse(); r.read(); assert r.status == 200, r.status
PY
start "$B" serve --addr 127.0.0.1:0 --data-dir data
python3 push.py "$ADDR"
stop
echo "bench-password" | "$B" user add bench --password-stdin --auth auth.toml >/dev/null
printf '\n[[grant]]\nto = ["user:bench"]\nrepos = "**"\nactions = ["pull"]\n\n[[grant]]\nto = ["anonymous"]\nrepos = "**"\nactions = ["pull"]\n\n[token]\nlifetime_secs = 86400\n' >>auth.toml
start "$B" serve --addr 127.0.0.1:0 --data-dir data --auth auth.toml
TOKEN=$(python3 -c '
import base64, http.client, json, sys
c = http.client.HTTPConnection(*sys.argv[1].split(":"))
c.request("GET", "/v2/token?service=berth&scope=repository:bench/meta:pull",
          headers={"Authorization": "Basic " + base64.b64encode(b"bench:bench-password").decode()})
print(json.loads(c.getresponse().read())["token"])' "$ADDR")
stop
BASIC="Basic $(printf 'bench:bench-password' | base64)"
count() { # name n authorization -> instructions of the run
    start valgrind --tool=callgrind --callgrind-out-file="cg.$1" "$B" serve --addr 127.0.0.1:0 --data-dir data --auth auth.toml
    python3 load.py "$ADDR" 1 "$3"
    [ "$2" -eq 0 ] || python3 load.py "$ADDR" "$2" "$3"
    stop
    sed -n 's/^summary: //p' "cg.$1"
}
idle=$(count idle 0 "")
anon=$(count anonymous "$N" "")
bearer=$(count bearer "$N" "Bearer $TOKEN")
basic=$(count basic "$N" "$BASIC")
python3 - "$N" "$idle" "$anon" "$bearer" "$basic" <<'PY'
import sys
n, idle, anon, bearer, basic = map(int, sys.argv[1:])
per = lambda x: (x - idle) / n
a = per(anon)
print(f"instructions per manifest GET by tag ({n} requests each, beyond an idle run):")
for name, x in (("anonymous", anon), ("Bearer token", bearer), ("Basic credentials", basic)):
    print(f"  {name:<18} {per(x):>10.0f}  {per(x) / a:6.1%} of anonymous")
PY
