#!/usr/bin/env bash
# Drive a registry with podman and containerd (Debian) as real clients would.
#
# Usage: podman_containerd_roundtrip.sh REGISTRY_HOSTPORT   (plain HTTP, e.g. 127.0.0.1:5000)
#
# podman imports a small root filesystem, pushes it as a Docker schema 2 manifest and
# as an OCI manifest, checks what the registry serves for each (media type, digest
# header, bytes), removes its local copies and pulls both back. containerd (a private
# daemon with its own config, root, state and socket in a temp dir) pulls both with
# `ctr images pull`, unpacks them, and pushes one to another repository, byte-identical.
# Client configuration is the script's own (lib.sh); nothing under /etc is changed.
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
client_script "$@" -- podman containerd ctr python3 sha256sum tar
containers_config
PODMAN=(podman --root "$T/storage/root" --runroot "$T/storage/run" --storage-driver vfs
    --cgroup-manager cgroupfs --events-backend none --tmpdir "$T/tmp")
cleanup() {
    stop_containerd
    # podman's vfs layers may carry read-only directories.
    chmod -R u+w "$T" 2>/dev/null || true
}

REPO=berth-test/podman
sha() { sha256sum "$1" | cut -d' ' -f1; }
# manifest REF ACCEPT -> $T/manifest.json; prints "<content-type> <docker-content-digest>"
manifest() {
    python3 - "http://$HOST/v2/$REPO/manifests/$1" "$2" "$T/manifest.json" <<'PY'
import sys, urllib.request
url, accept, out = sys.argv[1:4]
with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": accept}), timeout=60) as r:
    open(out, "wb").write(r.read())
    print(r.headers["Content-Type"], r.headers["Docker-Content-Digest"])
PY
}
ACCEPT_ALL="application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json"

# --- podman ----------------------------------------------------------------------------
step="podman import"
mkdir -p "$T/rootfs/etc" "$T/rootfs/opt/berth"
echo "hello from podman" >"$T/rootfs/etc/hello.txt"
head -c 200000 /dev/urandom >"$T/rootfs/opt/berth/random.bin"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$T/rootfs" -cf "$T/rootfs.tar" .
run "${PODMAN[@]}" import --change 'CMD ["/bin/sh"]' "$T/rootfs.tar" localhost/berth-src:v1
IMAGE_ID=$(tr -d '[:space:]' <"$T/out" | sed 's/^sha256://')
ok "podman import: image ${IMAGE_ID:0:12}…"

step="podman push"
for format in v2s2 oci; do
    run "${PODMAN[@]}" push --tls-verify=false --format "$format" localhost/berth-src:v1 "docker://$HOST/$REPO:$format"
done
out=$(manifest v2s2 "$ACCEPT_ALL") || fail "GET manifest v2s2 failed"
read -r TYPE DIGEST <<<"$out"
[ "$TYPE" = "application/vnd.docker.distribution.manifest.v2+json" ] || fail "v2s2 tag served as $TYPE"
[ "$DIGEST" = "sha256:$(sha "$T/manifest.json")" ] || fail "v2s2: Docker-Content-Digest $DIGEST is not the body's"
V2S2=$DIGEST
out=$(manifest oci "$ACCEPT_ALL") || fail "GET manifest oci failed"
read -r TYPE DIGEST <<<"$out"
[ "$TYPE" = "application/vnd.oci.image.manifest.v1+json" ] || fail "oci tag served as $TYPE"
[ "$DIGEST" = "sha256:$(sha "$T/manifest.json")" ] || fail "oci: Docker-Content-Digest $DIGEST is not the body's"
OCI=$DIGEST
python3 - "$T/manifest.json" "sha256:$IMAGE_ID" <<'PY' || fail "oci manifest does not name the imported image's config: $(cat "$T/manifest.json")"
import json, sys
m = json.load(open(sys.argv[1]))
assert m["config"]["digest"] == sys.argv[2], m["config"]
assert len(m["layers"]) == 1, m["layers"]
PY
ok "podman push --format v2s2 and --format oci: served with their media types, digests match the bytes"

step="podman pull"
run "${PODMAN[@]}" rmi --all --force
for format in v2s2 oci; do
    run "${PODMAN[@]}" pull --tls-verify=false "$HOST/$REPO:$format"
    run "${PODMAN[@]}" image inspect --format '{{.Id}} {{.RepoDigests}}' "$HOST/$REPO:$format"
    read -r id digests <"$T/out"
    [ "$id" = "$IMAGE_ID" ] || fail "pulled $format: image id $id, pushed $IMAGE_ID"
    want=$([ "$format" = v2s2 ] && echo "$V2S2" || echo "$OCI")
    [[ "$digests" == *"$HOST/$REPO@$want"* ]] || fail "pulled $format: repo digests $digests, registry serves $want"
done
ok "podman pull of both tags after removing every local image: same image id ${IMAGE_ID:0:12}…, repo digests as served"

# --- containerd --------------------------------------------------------------------------
step="start containerd"
start_containerd
ok "containerd started (private config, root, state and socket)"

step="ctr images pull"
for format in v2s2 oci; do
    run "${CTR[@]}" images pull --plain-http --snapshotter native "$HOST/$REPO:$format"
    run "${CTR[@]}" images ls --quiet
    grep -Fqx "$HOST/$REPO:$format" "$T/out" || fail "ctr images ls: $(cat "$T/out")"
    run "${CTR[@]}" images check "name==$HOST/$REPO:$format"
    # STATUS reads "complete (N/N)"; "incomplete (x/N)" would mean content is missing.
    grep -Eq '(^|[[:space:]])complete \(' "$T/out" && ! grep -q incomplete "$T/out" ||
        fail "ctr images check: $(cat "$T/out")"
done
run "${CTR[@]}" images ls
grep -Fq "$V2S2" "$T/out" && grep -Fq "$OCI" "$T/out" || fail "ctr images ls does not show the served digests: $(cat "$T/out")"
hello=$(find "$T/containerd/root" -path '*snapshots*' -name hello.txt -print -quit)
[ -n "$hello" ] && [ "$(cat "$hello")" = "hello from podman" ] || fail "unpacked snapshot has no etc/hello.txt"
ok "ctr images pull --plain-http of both tags: complete, digests as served, unpacked (etc/hello.txt)"

step="ctr images push"
run "${CTR[@]}" images tag "$HOST/$REPO:oci" "$HOST/berth-test/containerd:v1"
run "${CTR[@]}" images push --plain-http "$HOST/berth-test/containerd:v1"
REPO=berth-test/containerd
out=$(manifest v1 "$ACCEPT_ALL") || fail "GET manifest berth-test/containerd:v1 failed"
read -r TYPE DIGEST <<<"$out"
[ "$DIGEST" = "$OCI" ] || fail "ctr push: berth-test/containerd:v1 is $DIGEST, pushed $OCI"
ok "ctr images push to another repository: same manifest digest ${OCI:7:12}…"

step=""
echo "podman and containerd roundtrip: all steps passed"
