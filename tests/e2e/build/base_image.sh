#!/usr/bin/env bash
# Builds the root filesystem of the e2e's base image once per machine: Debian bookworm (variant
# minbase) with supervisor, ca-certificates and the runtime libraries of the chain built here,
# debootstrapped from the host's apt mirror (the Release file checked against Debian's archive
# keyring) into a tarball in the cache. A locally built STAND-IN for debian:bookworm-slim: no image
# registry is reachable here. tests/e2e/images imports it with `docker import` (docs/testing.md#images).
#   SV2_E2E_CACHE      the cache (default ~/.cache/sv2-k8s-e2e); results in $SV2_E2E_CACHE/images:
#                      <BASE_ROOTFS> (images.env), .packages (each package and version), .sha256
#   SV2_DEBIAN_MIRROR  the mirror (default: the host's apt source of the suite)
#   usage: base_image.sh           build it unless cached (needs root: debootstrap, chroot)
#          base_image.sh --check   says whether it is cached; fails when not
# Reproducible enough: names sorted, numeric owners, no logs, apt lists or host files, and every
# file time clamped to the mirror's Release date; the same mirror state gives the same tarball.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=images.env
. "$here/images.env"
cache="${SV2_E2E_CACHE:-$HOME/.cache/sv2-k8s-e2e}"
images="$cache/images"
work="$cache/work/base-image"
tarball="$images/$BASE_ROOTFS"

say() { printf 'base-image: %s\n' "$*"; }
die() { say "$*" >&2; exit 1; }
# shellcheck source-path=SCRIPTDIR source=debian.sh
. "$here/debian.sh"

# Rebuilt when this script or the pins change.
digest() { cat "$0" "$here/images.env" | sha256sum | cut -c1-16; }
stamp_file() { printf '%s/stamps/base-image.%s' "$cache" "$(digest)"; }

# The URI of the host's apt source that serves the suite (deb822 .sources files, then sources.list).
host_mirror() {
    local file
    for file in /etc/apt/sources.list.d/*.sources; do
        [ -f "$file" ] || continue
        awk -v suite="$BASE_SUITE" '
            /^[ \t]*$/ { if (deb && has && uri) { print uri; exit } deb = has = 0; uri = ""; next }
            /^Types:/ { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) has = 1 }
            /^URIs:/ { uri = $2 }
            END { if (deb && has && uri) print uri }' "$file"
    done
    [ -f /etc/apt/sources.list ] &&
        awk -v suite="$BASE_SUITE" '$1 == "deb" && $3 == suite { print $2 }' /etc/apt/sources.list
    return 0
}

# Mounts debootstrap may leave under the tree (proc, sys) when it fails half way: unmounted here.
unmount_under() {
    local target
    awk -v root="$1" '$5 == root || index($5, root "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        while read -r target; do umount -l "$target" && say "unmounted $target left by debootstrap"; done
}

build() {
    [ "$(id -u)" -eq 0 ] || die "debootstrap and chroot need root"
    debian_packages debootstrap debian-archive-keyring
    local mirror="${SV2_DEBIAN_MIRROR:-$(host_mirror | head -n 1)}"
    [ -n "$mirror" ] || die "no apt source of $BASE_SUITE on this host: set SV2_DEBIAN_MIRROR"
    local root="$work/rootfs" log="$work/debootstrap.log" start=$SECONDS
    local packages="$BASE_PACKAGES $CHAIN_RUNTIME_PACKAGES"
    mkdir -p "$work/debs" "$images"
    unmount_under "$root"
    rm -rf "$root"
    say "debootstrap $BASE_SUITE ($BASE_VARIANT) + ${packages// /, } from $mirror (2-5 min; log: $log)"
    trap 'unmount_under "$root"' EXIT
    nice -n 10 debootstrap --variant="$BASE_VARIANT" --include="${packages// /,}" --components=main \
        --arch="$(dpkg --print-architecture)" --cache-dir="$work/debs" \
        --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
        "$BASE_SUITE" "$root" "$mirror" >"$log" 2>&1 ||
        { tail -20 "$log" >&2; die "debootstrap failed (log: $log)"; }
    unmount_under "$root"
    trap - EXIT

    local release epoch
    release="$(find "$root/var/lib/apt/lists" -name "*_dists_${BASE_SUITE}_Release" | head -n 1)"
    [ -n "$release" ] || die "debootstrap left no Release file of $BASE_SUITE"
    epoch="$(date -d "$(sed -n 's/^Date: //p' "$release")" +%s)"
    # shellcheck disable=SC2016 # dpkg-query's format, not the shell's
    chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' | LC_ALL=C sort >"$work/packages"

    # Nothing of this host or of this run: logs, apt lists and caches, backups, the resolver and
    # host name debootstrap copies in (the container runtime mounts its own).
    find "$root/var/log" "$root/var/cache/apt" "$root/var/lib/apt/lists" -type f -delete
    rm -f "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old "$root/var/cache/ldconfig/aux-cache"
    : >"$root/etc/resolv.conf"
    : >"$root/etc/hostname"
    [ ! -e "$root/etc/machine-id" ] || : >"$root/etc/machine-id"
    chmod 1777 "$root/tmp"

    LC_ALL=C tar --sort=name --numeric-owner --format=posix \
        --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
        --mtime="@$epoch" --clamp-mtime -C "$root" -cf "$tarball.new" .
    mv -f "$tarball.new" "$tarball"
    mv -f "$work/packages" "${tarball%.tar}.packages"
    sha256sum "$tarball" | cut -d' ' -f1 >"${tarball%.tar}.sha256"
    rm -rf "$root"
    mkdir -p "$cache/stamps" && rm -f "$cache"/stamps/base-image.* && touch "$(stamp_file)"
    say "$tarball: $(du -m "$tarball" | cut -f1) MiB, sha256 $(cat "${tarball%.tar}.sha256"), $(wc -l <"${tarball%.tar}.packages") packages, $((SECONDS - start)) s"
}

check() {
    if [ -f "$(stamp_file)" ] && [ -f "$tarball" ]; then
        say "cached: $tarball (sha256 $(cat "${tarball%.tar}.sha256"))"
        return 0
    fi
    say "missing: $tarball (run tests/e2e/build/base_image.sh)"
    return 1
}

main() {
    case "${1:-}" in
        --check) check; return ;;
        -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; return ;;
        "") ;;
        *) die "unknown argument '$1' (usage: base_image.sh [--check])" ;;
    esac
    if check >/dev/null; then check; return; fi
    mkdir -p "$work"
    exec 9>"$work/.lock"
    flock -n 9 || { say "another base_image.sh is building in $cache; waiting"; flock 9; }
    build
}

main "$@"
