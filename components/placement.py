"""Where a stack's workloads live: the small part of the settings that every object needs."""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Placement:
    """The namespace and network every object is labelled with, and where pods may run."""

    namespace: str
    network: str
    node_selector: dict[str, str]
    # As the API spells them (camelCase), unset fields left out.
    tolerations: tuple[dict[str, Any], ...] = ()
