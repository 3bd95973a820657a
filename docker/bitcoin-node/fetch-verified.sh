#!/bin/sh
# Downloads one release file and keeps it only if it is exactly the pinned one.
#
# usage: fetch-verified.sh URL SHA256 DEST
#
# The file's SHA-256 must equal SHA256. With SUMS_URL set (Bitcoin Core), also:
#   - SUMS_URL (a SHA256SUMS file) must list the file with that same SHA-256;
#   - SUMS_URL.asc must hold at least MIN_GOOD_SIGS (default 3) good signatures made by
#     distinct keys among KEYS_BASE_URL/<name>.gpg, <name> in BUILDER_KEYS (a space-
#     separated list), and no bad signature from any of them.
# DEST is written only when every check passed. URLs may be file:// (the tests run this
# offline with throwaway keys).
set -eu

if [ "$#" -ne 3 ]; then
    echo "usage: fetch-verified.sh URL SHA256 DEST" >&2
    exit 2
fi
url=$1 expected=$2 dest=$3
name=${url##*/}

fail() {
    echo "fetch-verified: $name: $*" >&2
    exit 1
}

case $expected in
    *[!0-9a-f]*) fail "pinned SHA-256 '$expected' is not lowercase hex" ;;
esac
[ "${#expected}" -eq 64 ] || fail "pinned SHA-256 '$expected' is not 64 hex digits"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Redirects may only go to https, so a mirror cannot downgrade the transport.
fetch() {
    curl --fail --silent --show-error --location --retry 3 \
        --proto '=https,file' --proto-redir '=https' --output "$2" "$1"
}

# Counts good signatures on SHA256SUMS ($1) by distinct builder keys; fails on a bad one.
check_signatures() {
    : "${KEYS_BASE_URL:?KEYS_BASE_URL is required with SUMS_URL}"
    : "${BUILDER_KEYS:?BUILDER_KEYS is required with SUMS_URL}"
    min=${MIN_GOOD_SIGS:-3}

    # A keyring of our own, holding only the pinned builders' keys.
    GNUPGHOME=$work/gnupg
    export GNUPGHOME
    mkdir -m 0700 "$GNUPGHOME"
    for builder in $BUILDER_KEYS; do
        # A builder who left guix.sigs only lowers the count; MIN_GOOD_SIGS is the gate.
        if fetch "$KEYS_BASE_URL/$builder.gpg" "$work/key.gpg" &&
            gpg --batch --quiet --no-autostart --import "$work/key.gpg" 2>>"$work/gpg.log"; then
            :
        else
            echo "fetch-verified: warning: no usable key for builder '$builder'" >&2
        fi
    done

    fetch "$SUMS_URL.asc" "$work/SHA256SUMS.asc"
    # gpg exits non-zero whenever one signature is by a key we did not import (most of
    # them), so its exit status says nothing here: read its status lines instead.
    gpg --batch --no-autostart --status-fd 3 --verify "$work/SHA256SUMS.asc" "$1" \
        3>"$work/status" 2>>"$work/gpg.log" || true

    if grep -q '^\[GNUPG:\] BADSIG ' "$work/status"; then
        cat "$work/gpg.log" >&2
        fail "SHA256SUMS has a BAD signature from a builder key"
    fi
    # A GOODSIG line is followed by VALIDSIG, whose last field is the primary key's
    # fingerprint: count distinct ones. Expired or revoked keys give no GOODSIG.
    good=$(awk '
        $2 == "NEWSIG" { good = 0 }
        $2 == "GOODSIG" { good = 1 }
        $2 == "VALIDSIG" && good && !seen[$NF]++ { n++ }
        END { print n + 0 }' "$work/status")
    sed -n 's/^\[GNUPG:\] GOODSIG [^ ]* /fetch-verified: good signature: /p' "$work/status" >&2
    if [ "$good" -lt "$min" ]; then
        cat "$work/gpg.log" >&2
        fail "SHA256SUMS has $good good builder signature(s), $min required"
    fi
}

fetch "$url" "$work/$name"

if [ -n "${SUMS_URL:-}" ]; then
    fetch "$SUMS_URL" "$work/SHA256SUMS"
    check_signatures "$work/SHA256SUMS"
    listed=$(awk -v file="$name" '$2 == file { print $1 }' "$work/SHA256SUMS")
    [ "$listed" = "$expected" ] ||
        fail "signed SHA256SUMS lists '${listed:-nothing}', pinned is $expected"
fi

actual=$(sha256sum "$work/$name")
actual=${actual%% *}
[ "$actual" = "$expected" ] || fail "SHA-256 is $actual, pinned is $expected"

mv "$work/$name" "$dest"
echo "fetch-verified: $name: OK ($actual)"
