#!/bin/sh
# Build-time check that a downloaded binary is the pinned release.
#
# usage: check-version.sh EXPECTED COMMAND [ARG...]
#   Runs COMMAND (e.g. "sv2-tp -version") and succeeds only if the word after "version"
#   on the first line of its output is vEXPECTED or vEXPECTED.0 (Bitcoin Core prints
#   "v30.2.0" for 30.2). A release candidate such as v30.2.0rc1 does not match.
set -eu

[ "$#" -ge 2 ] || { echo "usage: check-version.sh EXPECTED COMMAND [ARG...]" >&2; exit 2; }
expected=$1
shift

output=$("$@")
first_line=$(printf '%s\n' "$output" | head -n 1)
found=$(printf '%s\n' "$first_line" | sed -n 's/.* version v\{0,1\}\([^ ]*\).*/\1/p')

case $found in
    "$expected" | "$expected.0")
        echo "check-version: $1 is version $found"
        exit 0
        ;;
esac
echo "check-version: '$*' reports '$first_line'; expected version $expected" >&2
exit 1
