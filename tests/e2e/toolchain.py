"""The toolchain `make e2e-tools` (tests/e2e/tools.sh) builds once per machine: the one place in the
harness that knows its cache folder, its binaries and the versions pinned in versions.env."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.e2e.processes import E2EError
from tests.support.constants import ROOT, SHARED_REFERENCE

HERE = Path(__file__).resolve().parent
VERSIONS = HERE / "versions.env"


def cache_dir() -> Path:
    """$SV2_E2E_CACHE, else ~/.cache/sv2-k8s-e2e, as tools.sh has it."""
    return Path(os.environ.get("SV2_E2E_CACHE") or Path.home() / ".cache" / "sv2-k8s-e2e")


def bin_dir() -> Path:
    return cache_dir() / "bin"


def missing(*names: str) -> list[str]:
    """Those of `names` that are not built (no executable in the cache's bin)."""
    return [name for name in names if not os.access(bin_dir() / name, os.X_OK)]


def binary(name: str) -> Path:
    """The cached build of `name`, which must be there."""
    if missing(name):
        raise E2EError(f"{bin_dir() / name} is missing: build it first (make e2e-tools)")
    return bin_dir() / name


def tool(name: str) -> Path:
    """The cached build of `name` where there is one; elsewhere (GitHub) the one on PATH."""
    cached = bin_dir() / name
    return cached if cached.exists() else Path(shutil.which(name) or name)


def pinned(key: str, pins: Path = VERSIONS) -> str:
    """A version pinned in versions.env (or another env file of the toolchain: build/plugins.env)."""
    for line in pins.read_text().splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1].strip().strip('"')
    raise E2EError(f"{key} is not in {pins.relative_to(ROOT)}")


PLUGIN_PINS = HERE / "build" / "plugins.env"


def required_version(package: str) -> str:
    """The exact version requirements.txt pins for a Python package (what users install)."""
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        if name.strip().lower() == package:
            return version.strip()
    raise E2EError(f"requirements.txt pins no {package}")


def default_crd_dir() -> Path | None:
    """The Prometheus Operator CRDs: $SV2_E2E_CRDS (a folder), else the workplace's reference copy,
    else the pinned ones `make e2e-tools` took from the operator's Go module (the same files)."""
    candidates = [
        os.environ.get("SV2_E2E_CRDS", ""),
        str(SHARED_REFERENCE / "crds"),
        str(cache_dir() / "crds"),
    ]
    return next((Path(c) for c in candidates if c and Path(c).is_dir()), None)
