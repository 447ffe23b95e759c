#!/usr/bin/env bash
# Drive a registry with skopeo (Debian) as a real client would.
#
# Usage: skopeo_roundtrip.sh REGISTRY_HOSTPORT      (plain HTTP, e.g. 127.0.0.1:5000)
#
# Builds a small OCI image layout (a gzip layer and an uncompressed layer, a real
# config, annotations), copies it into the registry and back out with
# --preserve-digests, compares manifest and blob digests, copies registry-to-registry
# (same repository and another one), lists tags, inspects, deletes and checks that the
# deleted image is gone while the other repository's copy stays.
#
# skopeo reads only config files this script owns, in a temp dir (lib.sh).
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
client_script "$@" -- skopeo umoci python3 sha256sum tar gzip
containers_config
SKOPEO=(skopeo --policy "$HOME/.config/containers/policy.json" --registries.d "$T/registries.d" --tmpdir "$T/tmp" --command-timeout 300s)

REPO=berth-test/skopeo-image
OTHER=berth-test/skopeo-copy
SRC="$T/src-layout"
OUT="$T/out-layout"

# --- a small OCI image layout written by hand ----------------------------------------
step="build OCI layout"
sha() { sha256sum "$1" | cut -d' ' -f1; }
blob() { # blob FILE -> moves FILE into $SRC/blobs/sha256/<hex>, prints <hex>
    local h
    h=$(sha "$1")
    mv "$1" "$SRC/blobs/sha256/$h"
    echo "$h"
}
mkdir -p "$SRC/blobs/sha256" "$T/rootfs1/etc" "$T/rootfs1/usr/share/berth" "$T/rootfs2/data"
echo "hello from berth" >"$T/rootfs1/etc/hello.txt"
head -c 300000 /dev/urandom >"$T/rootfs1/usr/share/berth/random.bin"
printf 'layer two\n%.0s' $(seq 1 2000) >"$T/rootfs2/data/two.txt"
ln -s ../etc/hello.txt "$T/rootfs2/data/link"
TAR_OPTS=(--sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime)
tar "${TAR_OPTS[@]}" -C "$T/rootfs1" -cf "$T/l1.tar" .
tar "${TAR_OPTS[@]}" -C "$T/rootfs2" -cf "$T/l2.tar" .
DIFF1=$(sha "$T/l1.tar")
DIFF2=$(sha "$T/l2.tar")
gzip -n -9 "$T/l1.tar" # layer 1 gzip-compressed, layer 2 left uncompressed
L1_SIZE=$(stat -c %s "$T/l1.tar.gz")
L2_SIZE=$(stat -c %s "$T/l2.tar")
L1=$(blob "$T/l1.tar.gz")
L2=$(blob "$T/l2.tar")
cat >"$T/config.json" <<EOF
{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/bin:/bin"],"Cmd":["/bin/sh"],"Labels":{"org.berth.test":"skopeo"}},"rootfs":{"type":"layers","diff_ids":["sha256:$DIFF1","sha256:$DIFF2"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"berth test layer 1"},{"created":"1970-01-01T00:00:00Z","created_by":"berth test layer 2"}]}
EOF
CFG_SIZE=$(stat -c %s "$T/config.json")
CFG=$(blob "$T/config.json")
cat >"$T/manifest.json" <<EOF
{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:$CFG", "size": $CFG_SIZE},
  "layers": [
    {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:$L1", "size": $L1_SIZE},
    {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:$L2", "size": $L2_SIZE}
  ],
  "annotations": {"org.opencontainers.image.description": "berth skopeo test image"}
}
EOF
MAN_SIZE=$(stat -c %s "$T/manifest.json")
MAN=$(blob "$T/manifest.json")
echo '{"imageLayoutVersion": "1.0.0"}' >"$SRC/oci-layout"
cat >"$SRC/index.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$MAN","size":$MAN_SIZE,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}
EOF
run umoci stat --image "$SRC:v1"
ok "OCI layout built: manifest sha256:$MAN, config sha256:$CFG, layers sha256:${L1:0:12}… (gzip) sha256:${L2:0:12}… (tar); umoci stat accepts it"

# --- copy in -----------------------------------------------------------------------------
step="skopeo copy oci -> registry"
run "${SKOPEO[@]}" copy --quiet --preserve-digests --dest-tls-verify=false \
    "oci:$SRC:v1" "docker://$HOST/$REPO:v1"
ok "skopeo copy oci:LAYOUT:v1 docker://$HOST/$REPO:v1 (--preserve-digests)"

step="skopeo inspect --raw"
run "${SKOPEO[@]}" inspect --raw --tls-verify=false "docker://$HOST/$REPO:v1"
cmp -s "$T/out" "$SRC/blobs/sha256/$MAN" || fail "inspect --raw: manifest bytes differ from the layout's (got sha256:$(sha "$T/out"), expected sha256:$MAN)"
run "${SKOPEO[@]}" inspect --config --raw --tls-verify=false "docker://$HOST/$REPO:v1"
cmp -s "$T/out" "$SRC/blobs/sha256/$CFG" || fail "inspect --config --raw: config bytes differ from the layout's"
run "${SKOPEO[@]}" inspect --tls-verify=false "docker://$HOST/$REPO:v1"
python3 - "$T/out" "sha256:$MAN" "sha256:$L1" "sha256:$L2" <<'EOF' || fail "skopeo inspect: unexpected output: $(cat "$T/out")"
import json, sys
info = json.load(open(sys.argv[1]))
assert info["Digest"] == sys.argv[2], ("Digest", info["Digest"])
assert info["Layers"] == sys.argv[3:5], ("Layers", info["Layers"])
assert info["Labels"] == {"org.berth.test": "skopeo"}, ("Labels", info["Labels"])
assert info["Architecture"] == "amd64" and info["Os"] == "linux"
EOF
ok "skopeo inspect: raw manifest and config byte-identical, Digest sha256:${MAN:0:12}…, layers and labels as built"

# --- registry to registry ----------------------------------------------------------------
step="skopeo copy registry -> registry"
run "${SKOPEO[@]}" copy --quiet --preserve-digests --src-tls-verify=false --dest-tls-verify=false \
    "docker://$HOST/$REPO:v1" "docker://$HOST/$REPO:v2"
run "${SKOPEO[@]}" copy --quiet --preserve-digests --src-tls-verify=false --dest-tls-verify=false \
    "docker://$HOST/$REPO:v1" "docker://$HOST/$OTHER:v1"
for ref in "$REPO:v2" "$OTHER:v1"; do
    run "${SKOPEO[@]}" inspect --raw --tls-verify=false "docker://$HOST/$ref"
    [ "$(sha "$T/out")" = "$MAN" ] || fail "$ref: manifest digest sha256:$(sha "$T/out"), expected sha256:$MAN"
done
ok "skopeo copy $REPO:v1 -> $REPO:v2 and -> $OTHER:v1: same manifest digest"

# --- list tags ---------------------------------------------------------------------------
step="skopeo list-tags"
run "${SKOPEO[@]}" list-tags --tls-verify=false "docker://$HOST/$REPO"
python3 - "$T/out" "$HOST/$REPO" <<'EOF' || fail "list-tags $REPO: unexpected output: $(cat "$T/out")"
import json, sys
out = json.load(open(sys.argv[1]))
assert out["Repository"] == sys.argv[2], out["Repository"]
assert sorted(out["Tags"]) == ["v1", "v2"], out["Tags"]
EOF
ok "skopeo list-tags docker://$HOST/$REPO: [v1, v2]"

# --- copy out ----------------------------------------------------------------------------
step="skopeo copy registry -> oci"
run "${SKOPEO[@]}" copy --quiet --preserve-digests --src-tls-verify=false --dest-oci-accept-uncompressed-layers \
    "docker://$HOST/$REPO:v1" "oci:$OUT:v1"
python3 - "$SRC" "$OUT" "sha256:$MAN" <<'EOF' || fail "pulled OCI layout differs from the source layout"
import hashlib, json, os, sys
src, out, man = sys.argv[1:4]
idx = json.load(open(os.path.join(out, "index.json")))
descs = [m for m in idx["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "v1"]
assert len(descs) == 1, f"index.json of the pulled layout: {idx}"
assert descs[0]["digest"] == man, f"pulled manifest digest {descs[0]['digest']}, expected {man}"
def blobs(root):
    d = os.path.join(root, "blobs", "sha256")
    for name in os.listdir(d):
        data = open(os.path.join(d, name), "rb").read()
        assert hashlib.sha256(data).hexdigest() == name, f"{root}: blob {name} has digest {hashlib.sha256(data).hexdigest()}"
    return set(os.listdir(d))
s, o = blobs(src), blobs(out)
assert s == o, f"blob sets differ: only in source {sorted(s - o)}, only in pulled {sorted(o - s)}"
EOF
ok "skopeo copy docker://$HOST/$REPO:v1 oci:OUT:v1: manifest and all 4 blob digests identical"

step="umoci unpack of the pulled image"
run umoci unpack --image "$OUT:v1" "$T/bundle"
mkdir -p "$T/expected-rootfs"
cp -a "$T/rootfs1/." "$T/rootfs2/." "$T/expected-rootfs/"
diff -r --no-dereference "$T/expected-rootfs" "$T/bundle/rootfs" >"$T/diff" 2>&1 || fail "unpacked rootfs differs from the source files: $(cat "$T/diff")"
ok "umoci unpack of the pulled image: rootfs files identical to the source"

# --- delete ------------------------------------------------------------------------------
step="skopeo delete"
run "${SKOPEO[@]}" delete --tls-verify=false "docker://$HOST/$REPO:v1"
ok "skopeo delete docker://$HOST/$REPO:v1 (deletes manifest sha256:${MAN:0:12}…)"
for ref in "$REPO:v1" "$REPO:v2" "$REPO@sha256:$MAN"; do
    if "${SKOPEO[@]}" inspect --raw --tls-verify=false "docker://$HOST/$ref" >"$T/out" 2>"$T/err"; then
        fail "$ref still resolves after skopeo delete: $(head -c 300 "$T/out")"
    fi
    grep -qiE "manifest unknown|not found|404" "$T/err" || fail "inspect $ref after delete failed for another reason: $(cat "$T/err")"
done
ok "after delete: $REPO:v1, :v2 (same digest) and @digest no longer resolve (manifest unknown)"
if "${SKOPEO[@]}" list-tags --tls-verify=false "docker://$HOST/$REPO" >"$T/out" 2>"$T/err"; then
    python3 - "$T/out" <<'EOF' || fail "list-tags after delete still lists deleted tags: $(cat "$T/out")"
import json, sys
tags = json.load(open(sys.argv[1]))["Tags"] or []
assert not set(tags) & {"v1", "v2"}, tags
EOF
    ok "list-tags $REPO after delete: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["Tags"])' "$T/out")"
else
    grep -qiE "name unknown|repository.*not found|404" "$T/err" || fail "list-tags after delete failed: $(cat "$T/err")"
    ok "list-tags $REPO after delete: repository unknown"
fi
run "${SKOPEO[@]}" inspect --raw --tls-verify=false "docker://$HOST/$OTHER:v1"
[ "$(sha "$T/out")" = "$MAN" ] || fail "$OTHER:v1 changed after deleting from $REPO"
run "${SKOPEO[@]}" list-tags --tls-verify=false "docker://$HOST/$OTHER"
grep -q '"v1"' "$T/out" || fail "list-tags $OTHER: $(cat "$T/out")"
ok "$OTHER:v1 unaffected by the delete in $REPO"

step=""
echo "skopeo roundtrip: all steps passed"
