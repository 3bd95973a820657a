"""make bench-e2e: wall time of `preview`, `up` and a no-op `up` of each stack against the engine's
floor — a minimal program registering as many plain ConfigMaps through the same CLI, language
host and kubernetes provider, in the same run on the same control plane.

Prints one line per stack and step with both times and their ratio.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from tests.e2e.cluster.connect import start_cluster
from tests.e2e.project import Project
from tests.e2e.run import e2e_settings, stack_file
from tests.support.constants import STACKS

STEPS = ("preview", "up", "no-op up")


def floor_program(count: int, namespace: str) -> str:
    return textwrap.dedent(
        f'''\
        import pulumi
        import pulumi_kubernetes as k8s

        provider = k8s.Provider("kubernetes", enable_config_map_mutable=True)
        opts = pulumi.ResourceOptions(provider=provider)
        namespace = k8s.core.v1.Namespace("floor", metadata={{"name": "{namespace}"}}, opts=opts)
        for index in range({count} - 1):
            k8s.core.v1.ConfigMap(
                f"floor-{{index}}",
                metadata={{"name": f"floor-{{index}}", "namespace": "{namespace}"}},
                data={{"index": str(index)}},
                opts=pulumi.ResourceOptions(provider=provider, depends_on=[namespace]),
            )
        '''
    )


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
                count = sum(
                    1 for r in project.state(stack) if str(r.get("type", "")).startswith("kubernetes:")
                )
                project.destroy(stack)
                # The floor: the same project folder (CLI, host, venv), another program.
                (project.dir / "__main__.py").write_text(floor_program(count, f"floor-{stack}"))
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
                    f"({count} objects): {ratio:.2f}x",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
