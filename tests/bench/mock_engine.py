"""Evaluation time of the program under the mock engine, next to Pulumi's own floor.

    .venv/bin/python -m tests.bench.mock_engine [--rounds N]      (make bench)

For each stack: the median time to run __main__.py and its resource count, the median time of
a minimal program registering as many empty ConfigMaps in the same engine (Pulumi's floor), and
of one registering the very objects the program produced as plain values (the floor for those
objects: what any program creating them pays, whatever its structure).
"""

import argparse
import functools
import importlib
import statistics
import time
from collections.abc import Callable
from typing import Any

import pulumi_kubernetes as k8s
from pydantic.alias_generators import to_snake

from tests.support.constants import STACKS
from tests.support.harness import run_stack


def _empty_config_maps(count: int) -> Callable[[], None]:
    def program() -> None:
        for index in range(count):
            k8s.core.v1.ConfigMap(f"floor-{index}")

    return program


def _resource_class(type_token: str) -> Any:
    """kubernetes:apps/v1:StatefulSet → pulumi_kubernetes.apps.v1.StatefulSet."""
    _, module, kind = type_token.split(":")
    group, version = module.split("/")
    return getattr(importlib.import_module(f"pulumi_kubernetes.{group.split('.')[0]}.{version}"), kind)


def _same_objects(inputs: list[tuple[str, dict[str, Any]]], count: int) -> Callable[[], None]:
    def program() -> None:
        for index, (type_token, fields) in enumerate(inputs):
            name = f"object-{index}"
            if type_token.startswith("kubernetes:monitoring.coreos.com/"):
                api_version, kind = fields["apiVersion"], fields["kind"]
                k8s.apiextensions.CustomResource(
                    name, api_version, kind, spec=fields["spec"], metadata=fields["metadata"]
                )
                continue
            arguments = {to_snake(k): v for k, v in fields.items() if k not in ("apiVersion", "kind")}
            _resource_class(type_token)(name, **arguments)
        _empty_config_maps(count - len(inputs))()

    return program


def _median_ms(action: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    rounds = parser.parse_args().rounds
    run_stack("signet")  # warm imports and caches before measuring
    header = ("stack", "resources", "program", "empty floor", "ratio", "same objects", "ratio")
    print("{:9} {:>9} {:>8} {:>12} {:>6} {:>13} {:>6}".format(*header))
    for stack in STACKS:
        run = run_stack(stack)
        count = len(run.resources)
        objects = [(r.type, r.plain_inputs) for r in run.resources if r.type.startswith("kubernetes:")]
        program = _median_ms(functools.partial(run_stack, stack), rounds)
        floors = [
            _median_ms(functools.partial(run_stack, stack, program=floor), rounds)
            for floor in (_empty_config_maps(count), _same_objects(objects, count))
        ]
        print(
            f"{stack:9} {count:9d} {program:6.1f}ms {floors[0]:10.1f}ms {program / floors[0]:6.2f}"
            f" {floors[1]:11.1f}ms {program / floors[1]:6.2f}"
        )


if __name__ == "__main__":
    main()
