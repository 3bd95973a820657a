#!/bin/sh
# Downloads one release file and keeps it only if it is exactly the pinned one.
#
# usage: fetch-verified.sh URL SHA256 DEST
#
# The file's SHA-256 must equal SHA256. With SUMS_URL set (Bitcoin Core), also:
#   - SUMS_URL (a SHA256SUMS file) must list the file with that same SHA-256;
#   - each builder pinned in the file TRUSTED_BUILDERS ("<name> <fingerprint>" lines, see
#     trusted-builders.txt) whose key file KEYS_BASE_URL/<name>.gpg can be fetched must
#     find in it exactly the pinned primary key, and no other;
#   - SUMS_URL.asc must hold at least MIN_GOOD_SIGS (default 3) good signatures made by
#     distinct pinned keys, and no bad signature from any of them.
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

# Whether "$1 $2 $3" is a pin line: a name safe in a URL and a file name, then the full
# fingerprint as gpg prints it (40 uppercase hex digits; a short key ID can be forged).
is_pin() {
    case $1 in '' | *[!0-9A-Za-z._-]*) return 1 ;; esac
    case $2 in *[!0-9A-F]*) return 1 ;; esac
    [ "${#2}" -eq 40 ] && [ -z "$3" ]
}

# Prints the fingerprints of the primary keys in the key file $1, one a line, without
# importing them.
primary_fingerprints() {
    gpg --batch --no-autostart --with-colons --import-options show-only --import "$1" \
        2>>"$work/gpg.log" | awk -F: '$1 == "pub" { want = 1 } $1 == "fpr" && want { print $10; want = 0 }'
}

# Counts good signatures on SHA256SUMS ($1) by distinct pinned keys; fails on a bad one.
check_signatures() {
    : "${KEYS_BASE_URL:?KEYS_BASE_URL is required with SUMS_URL}"
    : "${TRUSTED_BUILDERS:?TRUSTED_BUILDERS is required with SUMS_URL}"
    min=${MIN_GOOD_SIGS:-3}

    # A keyring of our own, holding only keys whose fingerprints are pinned.
    GNUPGHOME=$work/gnupg
    export GNUPGHOME
    mkdir -m 0700 "$GNUPGHOME"
    : >"$work/pinned"
    while read -r builder pin extra || [ -n "$builder" ]; do
        case $builder in '' | '#'*) continue ;; esac
        is_pin "$builder" "$pin" "$extra" ||
            fail "$TRUSTED_BUILDERS: '$builder $pin${extra:+ $extra}' is not '<name> <40 uppercase hex digits>'"
        echo "$pin" >>"$work/pinned"
        # A builder absent at that commit only lowers the count; MIN_GOOD_SIGS is the gate.
        if ! fetch "$KEYS_BASE_URL/$builder.gpg" "$work/key.gpg"; then
            echo "fetch-verified: warning: no key file for builder '$builder'" >&2
            continue
        fi
        found=$(primary_fingerprints "$work/key.gpg")
        if [ "$found" != "$pin" ]; then
            cat "$work/gpg.log" >&2
            fail "key file of builder '$builder' holds [$(printf '%s' "$found" | tr '\n' ' ')], not only the pinned key $pin"
        fi
        gpg --batch --quiet --no-autostart --import "$work/key.gpg" 2>>"$work/gpg.log" ||
            fail "could not import the pinned key of builder '$builder'"
    done <"$TRUSTED_BUILDERS"
    [ -s "$work/pinned" ] || fail "$TRUSTED_BUILDERS pins no builder"

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
    # fingerprint: count distinct pinned ones. Expired or revoked keys give no GOODSIG.
    good=$(awk '
        FILENAME == ARGV[1] { pinned[$1] = 1; next }
        $2 == "NEWSIG" { good = 0 }
        $2 == "GOODSIG" { good = 1 }
        $2 == "VALIDSIG" && good && ($NF in pinned) && !seen[$NF]++ { n++ }
        END { print n + 0 }' "$work/pinned" "$work/status")
    sed -n 's/^\[GNUPG:\] GOODSIG [^ ]* /fetch-verified: good signature: /p' "$work/status" >&2
    if [ "$good" -lt "$min" ]; then
        cat "$work/gpg.log" >&2
        fail "SHA256SUMS has $good good signature(s) by pinned builder keys, $min required"
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
