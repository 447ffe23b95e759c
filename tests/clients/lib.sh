# Sourced by the client scripts in this directory, first thing. Gives them:
#   client_script "$@" -- CMD...
#                      sets HOST from the script's one argument (else usage, exit 2) and
#                      exits 2 unless every CMD is installed
#   T                  a temp dir, removed on exit (after the script's own `cleanup`, if defined)
#   step, ok, fail     the step being run, and how a script reports it
#   run CMD...         runs CMD keeping its output in $T/out and $T/err; fails the step on error
#   containers_config  client configuration under $T for containers/image tools (skopeo,
#                      podman): registries.conf marking $HOST insecure, policy.json accepting
#                      anything (through HOME), a vfs storage.conf, an empty auth file.
#                      Nothing under /etc is read for them or changed.
#   start_containerd   a private containerd (config, root, state and socket under $T),
#                      its pid in $T/containerd.pid; CTR is the ctr command for it.
#                      A script's `cleanup` stops it with stop_containerd.
T=$(mktemp -d -t berth-client-XXXXXX)

client_script() {
    local args=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
        args+=("$1")
        shift
    done
    if [ ${#args[@]} -ne 1 ] || [ $# -eq 0 ]; then
        echo "usage: $0 REGISTRY_HOSTPORT   (plain HTTP, e.g. 127.0.0.1:5000)" >&2
        exit 2
    fi
    HOST=${args[0]}
    shift
    local cmd
    for cmd in "$@"; do
        if ! command -v "$cmd" >/dev/null 2>&1; then
            echo "FAIL: $cmd is not installed: run scripts/install-test-deps.sh" >&2
            exit 2
        fi
    done
}

step=""
ok() { echo "ok   $*"; }
fail() {
    echo "FAIL${step:+ in step '$step'}: $*" >&2
    exit 1
}
run() {
    if ! "$@" >"$T/out" 2>"$T/err"; then
        echo "command failed: $*" >&2
        echo "--- stdout" >&2
        cat "$T/out" >&2
        echo "--- stderr" >&2
        cat "$T/err" >&2
        fail "command exited non-zero: $*"
    fi
}
on_exit() {
    local rc=$?
    if [ $rc -ne 0 ] && [ -n "$step" ]; then echo "(failed during: $step)" >&2; fi
    if declare -F cleanup >/dev/null; then cleanup || true; fi
    rm -rf "$T" || echo "warning: could not remove $T" >&2
    exit $rc
}
trap on_exit EXIT

containers_config() {
    mkdir -p "$T/home/.config/containers" "$T/storage/root" "$T/storage/run" "$T/registries.d" "$T/tmp" "$T/run"
    # containers/image reads $HOME/.config/containers/registries.conf before /etc (skopeo 1.9
    # ignores CONTAINERS_REGISTRIES_CONF, which is set too for newer versions).
    cat >"$T/home/.config/containers/registries.conf" <<CONF
    unqualified-search-registries = []
    short-name-mode = "disabled"

    [[registry]]
    location = "$HOST"
    insecure = true
CONF
    echo '{"default": [{"type": "insecureAcceptAnything"}]}' >"$T/home/.config/containers/policy.json"
    cat >"$T/storage.conf" <<CONF
    [storage]
    driver = "vfs"
    graphroot = "$T/storage/root"
    runroot = "$T/storage/run"
CONF
    echo '{"auths": {}}' >"$T/auth.json"
    : >"$T/containers.conf"
    export HOME="$T/home"
    export CONTAINERS_REGISTRIES_CONF="$T/home/.config/containers/registries.conf"
    export CONTAINERS_STORAGE_CONF="$T/storage.conf"
    export CONTAINERS_CONF="$T/containers.conf"
    export REGISTRY_AUTH_FILE="$T/auth.json"
    export XDG_RUNTIME_DIR="$T/run"
    export XDG_CONFIG_HOME="$T/home/.config"
}

CTR=(ctr --address "$T/containerd/containerd.sock" --namespace berth-test)

start_containerd() {
    mkdir -p "$T/containerd/root" "$T/containerd/state"
    cat >"$T/containerd/config.toml" <<CONF
version = 2
root = "$T/containerd/root"
state = "$T/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$T/containerd/containerd.sock"
CONF
    containerd --config "$T/containerd/config.toml" >"$T/containerd.log" 2>&1 &
    echo $! >"$T/containerd.pid"
    for _ in $(seq 1 100); do
        "${CTR[@]}" version >/dev/null 2>&1 && break
        sleep 0.1
    done
    "${CTR[@]}" version >/dev/null 2>&1 || fail "containerd did not start: $(tail -20 "$T/containerd.log")"
}

# containerd is the script shell's child: stop it and wait, so that nothing is
# still writing under $T when it is removed.
stop_containerd() {
    if [ -f "$T/containerd.pid" ]; then
        kill "$(cat "$T/containerd.pid")" 2>/dev/null || true
        wait "$(cat "$T/containerd.pid")" 2>/dev/null || true
    fi
}
