#!/usr/bin/env bash
# Installs the Python stand-ins for the two plugins no registry serves (issue 10): the `python`
# language host, next to the CLI in CACHE/bin with the SDK's executor script beside it, and the
# random resource provider, as plugin resource-random in CACHE/pulumi-home. Needs CACHE/bin/pulumi.
# Idempotent and quick: files already in place are left alone.
#   usage: install.sh CACHE [PYTHON]
#   PYTHON  interpreter, with pulumi and grpcio, that runs the stand-ins
#           (default: $SV2_E2E_PYTHON, else the checkout's .venv/bin/python)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../versions.env
. "$here/../versions.env"
[ $# -ge 1 ] || { echo "usage: $0 CACHE [PYTHON]" >&2; exit 2; }
cache="$1"
python="${2:-${SV2_E2E_PYTHON:-$here/../../../.venv/bin/python}}"
say() { printf 'install-standins: %s\n' "$*"; }
die() { say "$*" >&2; exit 1; }

[ -x "$python" ] || die "no interpreter at $python (run make setup, or pass PYTHON)"
# Absolute but not symlink-resolved: a venv's python finds the venv's packages only by its own path.
python="$(cd "$(dirname "$python")" && pwd)/$(basename "$python")"
"$python" -c 'import grpc, pulumi.runtime.proto' 2>/dev/null || die "$python lacks pulumi or grpcio"
bin="$cache/bin"
[ -x "$bin/pulumi" ] || die "no Pulumi CLI at $bin/pulumi (make e2e-tools builds it)"
mkdir -p "$cache/work/standins"

# put SRC DEST: SRC with its shebang pointing at $python, replacing DEST only if that changes it.
put() {
    local tmp="$2.tmp.$$"
    { printf '#!%s\n' "$python"; tail -n +2 "$1"; } >"$tmp"
    chmod 755 "$tmp"
    if cmp -s "$tmp" "$2"; then rm -f "$tmp"; else mv -f "$tmp" "$2"; fi
}

# The executor ships in the sdk/v3 module zip, which the CLI build has usually downloaded already.
module="github.com/pulumi/pulumi/sdk/v3@$PULUMI_CLI_VERSION"
modcache="$(go env GOMODCACHE 2>/dev/null || true)"
executor="${modcache:-${GOPATH:-$HOME/go}/pkg/mod}/$module/python/cmd/pulumi-language-python-exec"
if [ ! -f "$executor" ]; then
    say "downloading $module for its pulumi-language-python-exec"
    executor="$(cd "$cache/work" && GOFLAGS=-mod=mod go mod download -json "$module" |
        sed -n 's/.*"Dir": "\(.*\)".*/\1/p')/python/cmd/pulumi-language-python-exec"
    [ -f "$executor" ] || die "no executor in $module"
fi
# The host runs the executor with the project's interpreter, as upstream; its shebang is for direct runs.
put "$executor" "$bin/pulumi-language-python-exec"
put "$here/pulumi-language-python" "$bin/pulumi-language-python"

# `plugin install --file` takes a single executable as the plugin's binary.
provider="$cache/work/standins/pulumi-resource-random"
put "$here/pulumi-resource-random" "$provider"
installed="$cache/pulumi-home/plugins/resource-random-v$PULUMI_RANDOM_PLUGIN_VERSION/pulumi-resource-random"
if ! cmp -s "$provider" "$installed"; then
    say "installing plugin resource random $PULUMI_RANDOM_PLUGIN_VERSION (stand-in)"
    PULUMI_HOME="$cache/pulumi-home" PULUMI_SKIP_UPDATE_CHECK=true \
        "$bin/pulumi" plugin install resource random "$PULUMI_RANDOM_PLUGIN_VERSION" \
        --file "$provider" --reinstall >/dev/null
    cmp -s "$provider" "$installed" || die "the plugin did not land at $installed"
fi
say "python language host and random $PULUMI_RANDOM_PLUGIN_VERSION stand-ins in place (interpreter $python)"
