"""The cluster of a run: SV2_E2E_KUBECONFIG's (kind on GitHub), or a private loopback control plane."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from tests.e2e.cluster.control_plane import ControlPlane, kubectl


class Kube(Protocol):
    @property
    def env(self) -> dict[str, str]:
        """Environment for tools (kubectl, pulumi) that should talk to this cluster."""

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str: ...

    def describe(self) -> str: ...


@contextlib.contextmanager
def start_cluster() -> Iterator[Kube]:
    """The cluster of SV2_E2E_KUBECONFIG, or a private loopback control plane."""
    external = os.environ.get("SV2_E2E_KUBECONFIG")
    if external:
        cluster = ExternalCluster(Path(external))
        cluster.install_crds(os.environ.get("SV2_E2E_CRDS", ""))
        yield cluster
        return
    with ControlPlane() as plane:
        yield plane


class ExternalCluster:
    """A cluster given by kubeconfig (kind on GitHub)."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.env = {"KUBECONFIG": str(kubeconfig)}

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return kubectl(self.kubeconfig, *args, input=input, check=check)

    def install_crds(self, source: str) -> None:
        if source:
            self.kubectl("apply", "--server-side", "-f", source)
            self.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=120s")

    def describe(self) -> str:
        return f"cluster of {self.env['KUBECONFIG']}"
