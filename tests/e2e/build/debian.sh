# Sourced by the build scripts (chain.sh, node_agent.sh): Debian packages they need.
# The caller defines say and die.
# shellcheck shell=bash

# debian_missing PACKAGE...: prints those that are not installed, one a line.
debian_missing() {
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || printf '%s\n' "$pkg"
    done
}

# debian_packages PACKAGE...: installs those that are missing (needs root).
debian_packages() {
    local missing=()
    mapfile -t missing < <(debian_missing "$@")
    [ ${#missing[@]} -eq 0 ] && return
    [ "$(id -u)" -eq 0 ] || die "missing Debian packages (install them as root): ${missing[*]}"
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
}
