"""The e2e must catch each first-contact defect: every mutant breaks one fix in a throwaway copy
of the project (the checkout is never touched), and the step that guards that fix must fail.
A mutant that survives means the suite could no longer see the defect come back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # in the project copy
    old: str
    new: str
    stack: str
    # The step of that stack that must fail; "A or B" where the cluster's state decides which
    # (a Namespace kept by the stacks before the mutants exists at the first `up`).
    caught_by: str
    evidence: str  # in its failure: caught for this reason, not another

    def apply(self, project_dir: Path) -> None:
        target = project_dir / self.path
        text = target.read_text()
        if text.count(self.old) != 1:
            raise AssertionError(f"mutant {self.name}: {self.old!r} is not once in {self.path}")
        target.write_text(text.replace(self.old, self.new))


MUTANTS = (
    Mutant(
        "a declared secret with a default",
        "Pulumi.yaml",
        "config:\n  network:\n",
        "config:\n  registryPassword:\n    type: string\n    secret: true\n    default: ''\n  network:\n",
        "signet",
        "preview",
        "must be encrypted as it's secret",
    ),
    Mutant(
        "Secrets and ConfigMaps immutable",
        "components/namespace.py",
        "enable_secret_mutable=True,\n        enable_config_map_mutable=True,",
        "enable_secret_mutable=False,\n        enable_config_map_mutable=False,",
        "signet",
        "update",
        "would replace",
    ),
    Mutant(
        "an absolute build context",
        "components/bitcoin_node.py",
        "context=contract.BUILD_CONTEXT,",
        "context=str(Path(contract.BUILD_CONTEXT).resolve()),",
        "signet",
        "image build inputs",
        "image inputs differ by checkout path",
    ),
    Mutant(
        "containers without limits (the policy pack's guard)",
        "components/workload.py",
        "    return amounts.model_dump()\n",
        '    return {"requests": amounts.requests.model_dump()}\n',
        "signet",
        "preview",
        "sets no resources.limits.cpu",
    ),
    Mutant(
        "the kept Namespace not adopted (pulumi-kubernetes >= 4.29 creates client-side)",
        "components/namespace.py",
        "upsert_existing_objects=True,",
        "upsert_existing_objects=False,",
        "signet",
        "up or up after destroy",
        "already exists",
    ),
    Mutant(
        "a namespace that enforces less than restricted",
        "components/namespace.py",
        '"pod-security.kubernetes.io/enforce": "restricted",',
        '"pod-security.kubernetes.io/enforce": "baseline",',
        "signet",
        "up",
        "enforces Pod Security level 'baseline'",
    ),
    Mutant(
        "one rotation setting replacing two keys",
        "components/credentials.py",
        'f"{name}-pool-authority", settings.pool_key_rotation, child',
        'f"{name}-pool-authority", settings.tp_key_rotation, child',
        "signet",
        "rotate tpKeyRotation",
        "credentials-pool-authority', 'RandomPassword::credentials-tp-authority'], expected",
    ),
    Mutant(
        "quantities as the operator spelled them",
        "components/setting_types.py",
        "    return canonical_quantity(text)\n",
        "    return text\n",
        "all-settings",
        "up",
        "are stored as",
    ),
)
