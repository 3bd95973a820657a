#!/bin/sh
# Build-time: takes the Bitcoin Core and sv2-tp release tarballs for TARGETARCH, verified,
# and installs their binaries into OUT (bin/bitcoin, bin/bitcoin-cli, libexec/bitcoin-node,
# bin/sv2-tp).
#
# usage: take-releases.sh OUT
#
# RELEASES selects where the tarballs come from:
#   download   (the default) from bitcoincore.org and GitHub, by fetch-verified.sh: each
#              must hash to its pin (BITCOIN_SHA256_*, SV2_TP_SHA256_*), and Bitcoin Core's
#              SHA256SUMS must carry MIN_GOOD_SIGS signatures by the keys pinned in
#              TRUSTED_BUILDERS. curl and gpg are installed for this, with apt-get.
#   directory  from RELEASES_DIR (the build context's releases/), checked against the
#              SHA256SUMS there by verify-releases.sh. Nothing is installed or downloaded.
# Both expect upstream's names and layout: bitcoin-<BITCOIN_VERSION>-<host>.tar.gz holding
# bitcoin-<BITCOIN_VERSION>/{bin/bitcoin,bin/bitcoin-cli,libexec/bitcoin-node}, and
# sv2-tp-<SV2_TP_VERSION>-<host>.tar.gz holding sv2-tp-<SV2_TP_VERSION>/bin/sv2-tp.
set -eu

[ "$#" -eq 1 ] || { echo "usage: take-releases.sh OUT" >&2; exit 2; }
out=$1

fail() {
    echo "take-releases: $*" >&2
    exit 1
}

: "${BITCOIN_VERSION:?}" "${SV2_TP_VERSION:?}"
case "${TARGETARCH:-}" in
    amd64) host=x86_64-linux-gnu bitcoin_sha256=${BITCOIN_SHA256_X86_64:-} sv2_tp_sha256=${SV2_TP_SHA256_X86_64:-} ;;
    arm64) host=aarch64-linux-gnu bitcoin_sha256=${BITCOIN_SHA256_AARCH64:-} sv2_tp_sha256=${SV2_TP_SHA256_AARCH64:-} ;;
    *) fail "TARGETARCH must be amd64 or arm64 (got '${TARGETARCH:-}')" ;;
esac
bitcoin=bitcoin-$BITCOIN_VERSION
sv2_tp=sv2-tp-$SV2_TP_VERSION
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

download() {
    commit=${GUIX_SIGS_COMMIT:-}
    if [ "${#commit}" -ne 40 ] || [ "${commit#*[!0-9a-f]}" != "$commit" ]; then
        fail "GUIX_SIGS_COMMIT must be a full commit hash (got '$commit')"
    fi
    # Versions are not pinned: Debian stable serves only the current, security-patched
    # build of each package, so a pin would break the build at the next update.
    apt-get update
    apt-get install -y --no-install-recommends ca-certificates curl gpg
    rm -rf /var/lib/apt/lists/*
    release=https://bitcoincore.org/bin/bitcoin-core-$BITCOIN_VERSION
    SUMS_URL=$release/SHA256SUMS \
        TRUSTED_BUILDERS=${TRUSTED_BUILDERS:-/usr/local/share/trusted-builders.txt} \
        KEYS_BASE_URL=https://raw.githubusercontent.com/bitcoin-core/guix.sigs/$commit/builder-keys \
        fetch-verified.sh "$release/$bitcoin-$host.tar.gz" "$bitcoin_sha256" "$work/$bitcoin-$host.tar.gz"
    fetch-verified.sh \
        "https://github.com/stratum-mining/sv2-tp/releases/download/v$SV2_TP_VERSION/$sv2_tp-$host.tar.gz" \
        "$sv2_tp_sha256" "$work/$sv2_tp-$host.tar.gz"
}

case "${RELEASES:-download}" in
    download) download ;;
    directory)
        releases=${RELEASES_DIR:-/releases}
        verify-releases.sh "$releases" "$bitcoin-$host.tar.gz" "$sv2_tp-$host.tar.gz"
        cp "$releases/$bitcoin-$host.tar.gz" "$releases/$sv2_tp-$host.tar.gz" "$work/"
        ;;
    *) fail "RELEASES must be download or directory (got '$RELEASES')" ;;
esac

# unpack TARBALL MEMBER...: extracts the members, each of which the tarball must hold.
unpack() {
    tarball=$1
    shift
    tar -xzf "$work/$tarball" -C "$work" "$@" || fail "$tarball does not hold $* (upstream's layout)"
}
unpack "$bitcoin-$host.tar.gz" "$bitcoin/bin/bitcoin" "$bitcoin/bin/bitcoin-cli" "$bitcoin/libexec/bitcoin-node"
unpack "$sv2_tp-$host.tar.gz" "$sv2_tp/bin/sv2-tp"
mkdir -p "$out/bin" "$out/libexec"
install -m 0755 "$work/$bitcoin/bin/bitcoin" "$work/$bitcoin/bin/bitcoin-cli" "$work/$sv2_tp/bin/sv2-tp" "$out/bin/"
install -m 0755 "$work/$bitcoin/libexec/bitcoin-node" "$out/libexec/"
echo "take-releases: $bitcoin and $sv2_tp ($host, RELEASES=${RELEASES:-download}) in $out" >&2
