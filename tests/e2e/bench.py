"""make bench-e2e: wall time of `preview`, `up` and a no-op `up` of each stack against the engine's
floor — a minimal program registering as many resources of each provider as the stack (plain
ConfigMaps for its Kubernetes objects, RandomPasswords for its random ones, empty components for
its components) through the same CLI, language host and providers, in the same run on the same
control plane: the ratio measures the program, not the count.

Prints one line per stack and step with both times and their ratio.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.e2e.cluster.connect import start_cluster
from tests.e2e.project import Project
from tests.e2e.run import e2e_settings, stack_file
from tests.support.constants import STACKS

STEPS = ("preview", "up", "no-op up")


def floor_program(counts: Mapping[str, int], namespace: str) -> str:
    return textwrap.dedent(
        f'''\
        import pulumi
        import pulumi_kubernetes as k8s
        import pulumi_random as random

        provider = k8s.Provider("kubernetes", enable_config_map_mutable=True)
        opts = pulumi.ResourceOptions(provider=provider)
        namespace = k8s.core.v1.Namespace("floor", metadata={{"name": "{namespace}"}}, opts=opts)
        for index in range({counts["kubernetes"]} - 1):
            k8s.core.v1.ConfigMap(
                f"floor-{{index}}",
                metadata={{"name": f"floor-{{index}}", "namespace": "{namespace}"}},
                data={{"index": str(index)}},
                opts=pulumi.ResourceOptions(provider=provider, depends_on=[namespace]),
            )
        for index in range({counts["random"]}):
            random.RandomPassword(f"floor-{{index}}", length=16)
        for index in range({counts["component"]}):
            pulumi.ComponentResource("floor:index:Component", f"floor-{{index}}", None).register_outputs({{}})
        '''
    )


def provider_counts(state: list[dict[str, Any]]) -> dict[str, int]:
    """How many resources of each kind of provider a stack's state holds."""
    types = [str(r.get("type", "")) for r in state]
    return {
        "kubernetes": sum(t.startswith("kubernetes:") for t in types),
        "random": sum(t.startswith("random:") for t in types),
        "component": sum(t.startswith("sv2:") for t in types),
    }


def timed_steps(project: Project, stack: str) -> dict[str, float]:
    return {
        "preview": project.preview(stack).seconds,
        "up": project.up(stack).seconds,
        "no-op up": project.up(stack, "--expect-no-changes").seconds,
    }


def main() -> int:
    with start_cluster() as kube:
        for stack in STACKS:
            project = Project(kube.env)
            try:
                project.init_stack(stack, stack_file(stack), e2e_settings(stack))
                ours = timed_steps(project, stack)
                counts = provider_counts(project.state(stack))
                project.destroy(stack)
                # The floor: the same project folder (CLI, host, venv), another program.
                (project.dir / "__main__.py").write_text(floor_program(counts, f"floor-{stack}"))
                floor_stack = f"floor-{stack}"
                project.init_stack(floor_stack, Path("/dev/null"), {})
                floor = timed_steps(project, floor_stack)
                project.destroy(floor_stack)
            finally:
                project.close()
            for step in STEPS:
                ratio = ours[step] / floor[step]
                print(
                    f"bench-e2e {stack} {step}: {ours[step]:.1f} s vs floor {floor[step]:.1f} s "
                    f"({', '.join(f'{n} {kind}' for kind, n in counts.items())}): {ratio:.2f}x",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
