#!/usr/bin/env bash
# Drive a registry that asks for credentials with skopeo, podman and containerd
# (Debian) and the oras SDK, as real clients log in and push and pull.
#
# Usage: login_roundtrip.sh REGISTRY_HOSTPORT    (plain HTTP, e.g. 127.0.0.1:5000)
#   with LOGIN_USER and LOGIN_PASSWORD in the environment: a user who may pull and
#   push team/**; nothing may be pulled there anonymously.
#
# skopeo refuses a wrong password and logs in (the auth file is the script's own);
# podman pushes with the stored credentials and pulls back; after logout skopeo is
# refused; containerd (private daemon) pulls and pushes with --user, which takes
# containerd's OAuth2 POST to the token endpoint; without it, it is refused.
set -euo pipefail

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
client_script "$@" -- skopeo podman containerd ctr python3 tar
: "${LOGIN_USER:?LOGIN_USER is not set}" "${LOGIN_PASSWORD:?LOGIN_PASSWORD is not set}"
containers_config
SKOPEO=(skopeo --policy "$HOME/.config/containers/policy.json" --registries.d "$T/registries.d" --tmpdir "$T/tmp" --command-timeout 300s)
PODMAN=(podman --root "$T/storage/root" --runroot "$T/storage/run" --storage-driver vfs
    --cgroup-manager cgroupfs --events-backend none --tmpdir "$T/tmp")
cleanup() {
    stop_containerd
    chmod -R u+w "$T" 2>/dev/null || true
}
REPO=team/login

step="skopeo login"
if echo "not-the-password" | "${SKOPEO[@]}" login --tls-verify=false -u "$LOGIN_USER" --password-stdin "$HOST" >"$T/out" 2>&1; then
    fail "skopeo login with a wrong password succeeded: $(cat "$T/out")"
fi
echo "$LOGIN_PASSWORD" | run "${SKOPEO[@]}" login --tls-verify=false -u "$LOGIN_USER" --password-stdin "$HOST"
grep -q "\"$HOST\"" "$REGISTRY_AUTH_FILE" || fail "skopeo stored nothing for $HOST: $(cat "$REGISTRY_AUTH_FILE")"
ok "skopeo login: a wrong password refused, the right one stored in the auth file"

step="podman push and pull with the stored credentials"
mkdir -p "$T/rootfs/etc"
echo "hello from a login" >"$T/rootfs/etc/hello.txt"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$T/rootfs" -cf "$T/rootfs.tar" .
run "${PODMAN[@]}" import "$T/rootfs.tar" localhost/login-src:v1
run "${PODMAN[@]}" push --tls-verify=false localhost/login-src:v1 "docker://$HOST/$REPO:v1"
run "${PODMAN[@]}" rmi --all --force
run "${PODMAN[@]}" pull --tls-verify=false "$HOST/$REPO:v1"
run "${SKOPEO[@]}" inspect --tls-verify=false "docker://$HOST/$REPO:v1"
ok "podman push and pull, skopeo inspect, with the stored credentials"

step="logged out"
run "${SKOPEO[@]}" logout "$HOST"
if "${SKOPEO[@]}" inspect --tls-verify=false "docker://$HOST/$REPO:v1" >"$T/out" 2>&1; then
    fail "skopeo inspect without credentials succeeded"
fi
grep -Eiq "unauthorized|authentication required" "$T/out" || fail "refused, but not for authentication: $(cat "$T/out")"
ok "after skopeo logout: refused as unauthorized"

step="start containerd"
start_containerd

step="ctr pull and push with --user"
if "${CTR[@]}" images pull --plain-http "$HOST/$REPO:v1" >"$T/out" 2>&1; then
    fail "ctr pulled without credentials"
fi
run "${CTR[@]}" images pull --plain-http --user "$LOGIN_USER:$LOGIN_PASSWORD" "$HOST/$REPO:v1"
run "${CTR[@]}" images check "name==$HOST/$REPO:v1"
grep -Eq '(^|[[:space:]])complete \(' "$T/out" || fail "ctr images check: $(cat "$T/out")"
run "${CTR[@]}" images tag "$HOST/$REPO:v1" "$HOST/team/login-ctr:v1"
run "${CTR[@]}" images push --plain-http --user "$LOGIN_USER:$LOGIN_PASSWORD" "$HOST/team/login-ctr:v1"
ok "ctr: refused without credentials; pulled complete and pushed with --user"

step="oras SDK login"
run python3 "$(dirname "$0")/oras_login.py" "$HOST"
ok "oras SDK: refused before login, pushed and pulled back after"

step=""
echo "login roundtrip: all steps passed"
