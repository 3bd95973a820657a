#!/usr/bin/env bash
# Installs everything the program and its tests need, from the pinned requirements files.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"

# The node image's tests verify signatures with gpg and fetch with curl.
if ! command -v gpg >/dev/null || ! command -v curl >/dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq gnupg curl >/dev/null
    else
        echo "note: install gpg and curl, or the image's signature tests will be skipped" >&2
    fi
fi

"$python" -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -r requirements-dev.txt
# The operator's probe as the command .venv/bin/sv2-probe (pyproject.toml), editable: no copy.
.venv/bin/pip install --quiet --no-deps --editable .

# checkov pins packaging<24, which the Pulumi SDK refuses: it gets a virtualenv of its own.
"$python" -m venv .venv-checkov
.venv-checkov/bin/pip install --quiet -r requirements-checkov.txt

echo "set up: .venv (program and tests), .venv-checkov (security scan)"
