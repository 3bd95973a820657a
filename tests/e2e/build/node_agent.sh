#!/usr/bin/env bash
# The node agent's pieces besides kubelet, kube-scheduler and kube-proxy (tools.sh builds those like
# the API server), for the pods stage (docs/testing.md#node-agent):
#   - from Debian: containerd, runc, the CNI plugins, the Docker engine, iptables, conntrack,
#     busybox-static (the self-test's image) and gcc with the static libc (for pause);
#   - from the Go module proxy: the OCI registry (distribution) and crictl, at versions.env's pins;
#   - pause.c beside this script, built static: the pods' sandbox process (the cluster makes it an
#     image at start).
# Idempotent: what is installed and at its pin is skipped.
#   SV2_E2E_CACHE  the cache (default ~/.cache/sv2-k8s-e2e); results in its bin/
#   usage: node_agent.sh            install and build what is missing
#          node_agent.sh --check    says what is there; fails when something is missing
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../versions.env
. "$here/../versions.env"
cache="${SV2_E2E_CACHE:-$HOME/.cache/sv2-k8s-e2e}"
bin="$cache/bin"
packages=(containerd runc containernetworking-plugins docker.io iptables conntrack busybox-static gcc libc6-dev)
# binary, module, command package, pinned version
go_tools=(
    "registry github.com/distribution/distribution/v3 github.com/distribution/distribution/v3/cmd/registry $DISTRIBUTION_VERSION"
    "crictl sigs.k8s.io/cri-tools sigs.k8s.io/cri-tools/cmd/crictl $CRI_TOOLS_VERSION"
)

say() { printf 'node agent: %s\n' "$*"; }
die() { say "$*" >&2; exit 1; }
# shellcheck source-path=SCRIPTDIR source=debian.sh
. "$here/debian.sh"

# The version of MODULE a Go binary was built from (its embedded build info), or nothing.
built_version() { go version -m "$1" 2>/dev/null | awk -v m="$2" '$1 == "mod" && $2 == m {print $3}'; }
pause_digest() { sha256sum "$here/pause.c" | cut -c1-16; }
pause_built() { [ -x "$bin/pause" ] && [ -f "$cache/stamps/pause.$(pause_digest)" ]; }

build() {
    debian_packages "${packages[@]}"
    local entry name module package version
    for entry in "${go_tools[@]}"; do
        read -r name module package version <<<"$entry"
        [ "$(built_version "$bin/$name" "$module")" = "$version" ] && continue
        say "building $name $version from the Go module proxy"
        # go install checks the module against go.sum and the checksum database; its own go.mod
        # decides the dependencies (GOFLAGS=-mod=mod is for the throwaway modules of tools.sh).
        GOFLAGS='' GOBIN="$cache/work/gobin" nice -n 10 go install -trimpath -ldflags "-s -w" "$package@$version"
        install -m 0755 "$cache/work/gobin/$name" "$bin/$name.new" && mv -f "$bin/$name.new" "$bin/$name"
    done
    if ! pause_built; then
        say "building pause (static, gcc)"
        gcc -static -Os -Wall -Wextra -Werror -o "$bin/pause.new" "$here/pause.c"
        mv -f "$bin/pause.new" "$bin/pause"
        mkdir -p "$cache/stamps" && rm -f "$cache/stamps/pause".* && touch "$cache/stamps/pause.$(pause_digest)"
    fi
}

check() {
    local missing=() entry name module package version
    mapfile -t missing < <(debian_missing "${packages[@]}")
    for entry in "${go_tools[@]}"; do
        read -r name module package version <<<"$entry"
        [ "$(built_version "$bin/$name" "$module")" = "$version" ] || missing+=("$name $version")
    done
    pause_built || missing+=("pause ($(pause_digest))")
    if [ ${#missing[@]} -eq 0 ]; then
        say "installed: ${packages[*]}; cached: registry $DISTRIBUTION_VERSION, crictl $CRI_TOOLS_VERSION, pause"
        return 0
    fi
    say "missing: ${missing[*]} (run tests/e2e/tools.sh node)"
    return 1
}

case "${1:-}" in
    --check) check ;;
    "") build && check ;;
    *) die "usage: node_agent.sh [--check]" ;;
esac
