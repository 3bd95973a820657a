# Sourced by chain.sh and plugins.sh: checks an upstream source archive before it is built.
# The caller defines say, die, $src (the archives' folder) and $pins (its env file's name).
# shellcheck shell=bash disable=SC2154

# verify ARCHIVE PINNED: the archive is listed in SHA256SUMS with the pinned hash, and hashes to it.
verify() {
    local archive="$1" pinned="$2" listed actual
    [ -d "$src" ] || die "no upstream sources at $src: lay shared/upstream-src beside the checkout, or set SV2_UPSTREAM_SRC"
    [ -f "$src/SHA256SUMS" ] || die "$src/SHA256SUMS is missing"
    [ -f "$src/$archive" ] || die "$src/$archive is missing"
    listed="$(awk -v f="$archive" '$2 == f || $2 == "*" f {print $1}' "$src/SHA256SUMS")"
    [ "$listed" = "$pinned" ] ||
        die "SHA256SUMS lists ${listed:-nothing} for $archive, $pins pins $pinned: refusing"
    actual="$(sha256sum "$src/$archive" | cut -d' ' -f1)"
    [ "$actual" = "$pinned" ] || die "$archive hashes to $actual, not the pinned $pinned: refusing"
    say "verified $archive ($pinned)"
}
