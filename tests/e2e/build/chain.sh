#!/usr/bin/env bash
# Builds the real chain once per machine: Bitcoin Core's multiprocess node (bitcoin, bitcoin-node,
# bitcoin-cli) and the Template Provider sv2-tp, from the pinned source archives in
# shared/upstream-src (no registry serves them), into a cache outside the checkout.
# Idempotent: each build is skipped when its result is cached for the archive's sha256.
#   SV2_UPSTREAM_SRC  folder of the archives and their SHA256SUMS (default <repo>/../shared/upstream-src)
#   SV2_E2E_CACHE     the cache (default ~/.cache/sv2-k8s-e2e); results in $SV2_E2E_CACHE/chain:
#                     bin/bitcoin (the `bitcoin -m node` wrapper), libexec/bitcoin-node, bin/bitcoin-cli,
#                     bin/sv2-tp; sources and build trees in $SV2_E2E_CACHE/work/chain
#   SV2_CHAIN_JOBS    parallel compile jobs (default 2); compilers run under `nice -n 10`
#   usage: chain.sh [bitcoin|sv2-tp ...]   build these (default: both)
#          chain.sh --check                says what is cached; fails when something is missing
# Cold, on 2 cores next to another build: Bitcoin Core 16-25 minutes, sv2-tp 3-5 (seen: 16 and 3).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=chain.env
. "$here/chain.env"
src="${SV2_UPSTREAM_SRC:-$repo/../shared/upstream-src}"
cache="${SV2_E2E_CACHE:-$HOME/.cache/sv2-k8s-e2e}"
chain="$cache/chain"
work="$cache/work/chain"
jobs="${SV2_CHAIN_JOBS:-2}"

# Build switches. Bitcoin Core: the node with its IPC interface, nothing else.
bitcoin_cmake=(-DCMAKE_BUILD_TYPE=Release -DENABLE_IPC=ON -DENABLE_WALLET=OFF -DBUILD_GUI=OFF
    -DBUILD_TESTS=OFF -DBUILD_BENCH=OFF -DBUILD_FUZZ_BINARY=OFF -DWITH_ZMQ=OFF)
bitcoin_targets=(bitcoin-node bitcoin-cli bitcoin)
sv2_tp_cmake=(-DCMAKE_BUILD_TYPE=Release -DENABLE_IPC=ON -DBUILD_TESTS=OFF -DBUILD_FUZZ_BINARY=OFF
    -DWITH_CCACHE=OFF -DINSTALL_MAN=OFF)

say() { printf 'chain: %s\n' "$*"; }
die() { say "$*" >&2; exit 1; }
# have NAME SHA256 FILE...: the stamp for this archive exists and so does every installed file.
have() {
    local name="$1" sum="$2" file
    shift 2
    [ -f "$cache/stamps/$name.$sum" ] || return 1
    for file in "$@"; do [ -x "$chain/$file" ] || return 1; done
}
stamp() { mkdir -p "$cache/stamps" && rm -f "$cache/stamps/$1".* && touch "$cache/stamps/$1.$2"; }

bitcoin_files=(bin/bitcoin libexec/bitcoin-node bin/bitcoin-cli)
sv2_tp_files=(bin/sv2-tp)

pins=chain.env
# shellcheck source-path=SCRIPTDIR source=verify.sh
. "$here/verify.sh"

# shellcheck source-path=SCRIPTDIR source=debian.sh
. "$here/debian.sh"
# Debian's build packages, installed when missing (needs root).
# shellcheck disable=SC2086 # a list on purpose
packages() { debian_packages $CHAIN_BUILD_PACKAGES; }

# unpack ARCHIVE DIR: a fresh tree of the archive's single top folder at DIR.
unpack() {
    local archive="$1" dir="$2" top
    rm -rf "$dir" "$dir.tmp" && mkdir -p "$dir.tmp"
    tar -xzf "$src/$archive" -C "$dir.tmp"
    top="$(find "$dir.tmp" -mindepth 1 -maxdepth 1 -type d)"
    [ "$(printf '%s\n' "$top" | wc -l)" -eq 1 ] || die "$archive does not hold one top folder"
    mv "$top" "$dir" && rmdir "$dir.tmp"
}

# place FILE DEST: a new file renamed into place, so a running binary keeps its old one.
place() {
    mkdir -p "$(dirname "$2")"
    install -m 0755 "$1" "$2.new"
    mv -f "$2.new" "$2"
}

cmake_build() {
    local dir="$1"
    shift
    local configure=() targets=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do configure+=("$1"); shift; done
    shift
    targets=("$@")
    nice -n 10 cmake -S "$dir" -B "$dir/build" "${configure[@]}" >"$dir/configure.log" 2>&1 ||
        { tail -40 "$dir/configure.log" >&2; die "configuring $(basename "$dir") failed (log: $dir/configure.log)"; }
    nice -n 10 cmake --build "$dir/build" -j "$jobs" --target "${targets[@]}"
}

build_bitcoin() {
    if have bitcoin "$BITCOIN_SHA256" "${bitcoin_files[@]}"; then
        say "cached: Bitcoin Core ($BITCOIN_ARCHIVE)"; return
    fi
    verify "$BITCOIN_ARCHIVE" "$BITCOIN_SHA256"
    packages
    local dir="$work/bitcoin" start=$SECONDS
    say "building Bitcoin Core from $BITCOIN_ARCHIVE (about 25 min on 2 cores)"
    unpack "$BITCOIN_ARCHIVE" "$dir"
    cmake_build "$dir" "${bitcoin_cmake[@]}" -- "${bitcoin_targets[@]}"
    place "$dir/build/bin/bitcoin" "$chain/bin/bitcoin"
    place "$dir/build/bin/bitcoin-cli" "$chain/bin/bitcoin-cli"
    place "$dir/build/bin/bitcoin-node" "$chain/libexec/bitcoin-node"
    local version
    version="$("$chain/bin/bitcoin" -m node -version)" || die "the built node does not start"
    say "${version%%$'\n'*}"
    stamp bitcoin "$BITCOIN_SHA256"
    say "Bitcoin Core built in $(((SECONDS - start) / 60)) min"
}

build_sv2-tp() {
    if have sv2-tp "$SV2_TP_SHA256" "${sv2_tp_files[@]}"; then
        say "cached: sv2-tp ($SV2_TP_ARCHIVE)"; return
    fi
    verify "$SV2_TP_ARCHIVE" "$SV2_TP_SHA256"
    packages
    local dir="$work/sv2-tp" start=$SECONDS
    say "building sv2-tp from $SV2_TP_ARCHIVE (about 5 min on 2 cores)"
    unpack "$SV2_TP_ARCHIVE" "$dir"
    cmake_build "$dir" "${sv2_tp_cmake[@]}" -- sv2-tp
    place "$dir/build/bin/sv2-tp" "$chain/bin/sv2-tp"
    local version
    version="$("$chain/bin/sv2-tp" -version)" || die "the built sv2-tp does not start"
    version="${version%%$'\n'*}"
    say "$version"
    [[ "$version" == *"v$SV2_TP_VERSION"* ]] || die "the built sv2-tp does not report version $SV2_TP_VERSION"
    stamp sv2-tp "$SV2_TP_SHA256"
    say "sv2-tp built in $(((SECONDS - start) / 60)) min"
}

check() {
    local missing=()
    if have bitcoin "$BITCOIN_SHA256" "${bitcoin_files[@]}"; then
        say "cached: Bitcoin Core ($BITCOIN_ARCHIVE) in $chain: ${bitcoin_files[*]}"
    else
        missing+=("bitcoin ($BITCOIN_ARCHIVE)")
    fi
    if have sv2-tp "$SV2_TP_SHA256" "${sv2_tp_files[@]}"; then
        say "cached: sv2-tp ($SV2_TP_ARCHIVE) in $chain: ${sv2_tp_files[*]}"
    else
        missing+=("sv2-tp ($SV2_TP_ARCHIVE)")
    fi
    [ ${#missing[@]} -eq 0 ] && return 0
    say "missing: ${missing[*]} (run tests/e2e/build/chain.sh)"
    return 1
}

main() {
    case "${1:-}" in
        --check) check; return ;;
        -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; return ;;
    esac
    local pieces=("$@") piece
    [ ${#pieces[@]} -gt 0 ] || pieces=(bitcoin sv2-tp)
    for piece in "${pieces[@]}"; do
        case "$piece" in
            bitcoin | sv2-tp) ;;
            *) die "unknown piece '$piece' (pieces: bitcoin sv2-tp)" ;;
        esac
    done
    mkdir -p "$work"
    # One build at a time per cache.
    exec 9>"$work/.lock"
    flock -n 9 || { say "another chain.sh is building in $cache; waiting"; flock 9; }
    for piece in "${pieces[@]}"; do
        "build_$piece"
    done
    check
}

main "$@"
