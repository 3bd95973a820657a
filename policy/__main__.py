"""Entry point of the sv2-k8s policy pack: `pulumi preview --policy-pack policy`."""

from pulumi_policy import EnforcementLevel, PolicyPack
from sv2_policies import POLICIES

PolicyPack(
    name="sv2-k8s",
    policies=POLICIES,
    # Every policy guards funds or keys: a violation blocks the update.
    enforcement_level=EnforcementLevel.MANDATORY,
)
