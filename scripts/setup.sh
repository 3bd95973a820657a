#!/usr/bin/env bash
# Installs everything the program and its tests need, from the pinned requirements files.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"

"$python" -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -r requirements-dev.txt

# checkov pins packaging<24, which the Pulumi SDK refuses: it gets a virtualenv of its own.
"$python" -m venv .venv-checkov
.venv-checkov/bin/pip install --quiet -r requirements-checkov.txt

echo "set up: .venv (program and tests), .venv-checkov (security scan)"
