#!/bin/sh
# Checks a directory of release files the operator supplied against the checksum list beside
# them (air-gapped builds: README.md, "Air-gapped builds").
#
# usage: verify-releases.sh DIR FILE...
#
# DIR/SHA256SUMS lists "<sha256>  <file name>" lines, as upstream's SHA256SUMS files do (a
# '*' before the name, blank lines and '#' comments are allowed). Every file in DIR (but
# SHA256SUMS and the repository's .gitignore) must be listed there and hash to its entry,
# and each FILE (the tarballs the build takes) must be both listed and present. Entries for
# files that are not in DIR are fine: an upstream list names every platform's tarball.
# The first problem fails, naming the file.
set -eu

if [ "$#" -lt 2 ]; then
    echo "usage: verify-releases.sh DIR FILE..." >&2
    exit 2
fi
dir=$1
shift

fail() {
    echo "verify-releases: $*" >&2
    exit 1
}

[ -d "$dir" ] || fail "$dir is not a directory"
sums=$dir/SHA256SUMS
[ -f "$sums" ] || fail "$sums is missing: list each release file there as '<sha256>  <file name>'"

# The SHA-256 SHA256SUMS lists for file $1; fails when it lists none, or two different ones.
listed() {
    found=$(sed -n 's/^\([0-9a-f]\{64\}\)  *\**\(.*\)$/\1 \2/p' "$sums" |
        while read -r hash name; do [ "$name" != "$1" ] || echo "$hash"; done | sort -u)
    [ -n "$found" ] || fail "$1: no entry in SHA256SUMS"
    [ "$(echo "$found" | wc -l)" -eq 1 ] || fail "$1: SHA256SUMS lists it with different hashes"
    echo "$found"
}

# Each line is a checksum entry, a comment or blank: a typo must not hide an entry.
line_number=0
while IFS= read -r line || [ -n "$line" ]; do
    line_number=$((line_number + 1))
    case $line in '' | '#'*) continue ;; esac
    echo "$line" | grep -Eq '^[0-9a-f]{64} +\*?[^/ ]+$' ||
        fail "SHA256SUMS line $line_number is not '<sha256 in lowercase hex>  <file name>': $line"
done <"$sums"

for file in "$@"; do
    listed "$file" >/dev/null
    [ -f "$dir/$file" ] || fail "$file: listed in SHA256SUMS but missing from $dir"
done

checked=0
for path in "$dir"/* "$dir"/.[!.]*; do
    [ -e "$path" ] || continue
    name=${path##*/}
    case $name in SHA256SUMS | .gitignore) continue ;; esac
    [ -f "$path" ] || fail "$name: not a regular file"
    expected=$(listed "$name")
    actual=$(sha256sum "$path" | cut -d' ' -f1)
    [ "$actual" = "$expected" ] || fail "$name: SHA-256 is $actual, SHA256SUMS lists $expected"
    echo "verify-releases: $name: SHA-256 $actual as listed" >&2
    checked=$((checked + 1))
done
echo "verify-releases: $checked file(s) in $dir match SHA256SUMS" >&2
