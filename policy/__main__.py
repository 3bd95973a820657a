"""Entry point of the sv2-k8s policy pack: `pulumi preview --policy-pack policy`."""

import importlib
import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, PolicyPack

# Pulumi puts only policy/ on sys.path, but the validators read the program's tables
# (components/) from the repository root. Appended, so that no top-level folder of the
# repository shadows an installed package; imported after that, hence importlib.
sys.path.append(str(Path(__file__).resolve().parent.parent))
validators = importlib.import_module("sv2_policies")

PolicyPack(
    name="sv2-k8s",
    policies=validators.POLICIES,
    # Every policy guards funds, keys or uptime: a violation blocks the update.
    enforcement_level=EnforcementLevel.MANDATORY,
)
