"""The local OCI registry of the node cluster (distribution's `registry`, built by make e2e-tools):
plain HTTP on the bridge's address, so the host, dockerd and containerd reach it, and nothing
beyond the machine (host_network.py). Images live in the cluster's working folder."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from tests.e2e.processes import Process, ProcessGroup, wait
from tests.e2e.toolchain import binary

CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {folder}/data
  delete:
    enabled: true
http:
  addr: {address}
  secret: sv2-e2e-local-registry-only
"""


def start(group: ProcessGroup, folder: Path, address: str, timeout: float) -> Process:
    """The registry listening at `address` (host:port), ready to answer /v2/."""
    folder.mkdir(parents=True)
    config = folder / "config.yml"
    config.write_text(CONFIG.format(folder=folder, address=address))
    process = group.start("registry", [binary("registry"), "serve", config])

    def answers() -> bool:
        with urllib.request.urlopen(f"http://{address}/v2/", timeout=5) as response:
            return int(response.status) == 200

    wait(lambda: answers() or None, timeout, f"the registry at {address}", [process], interval=0.2)
    return process
