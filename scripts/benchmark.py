"""Evaluation time of the program under the mock engine, next to Pulumi's own floor.

    .venv/bin/python -m scripts.benchmark [--rounds N]

For each stack: the median time to run __main__.py and its resource count, and the median
time of a minimal program registering the same number of empty ConfigMaps in the same engine.
"""

import argparse
import statistics
import time
from collections.abc import Callable

import pulumi_kubernetes as k8s

from tests.harness import STACKS, run_stack


def _floor_program(count: int) -> Callable[[], None]:
    def program() -> None:
        for index in range(count):
            k8s.core.v1.ConfigMap(f"floor-{index}")

    return program


def _median_seconds(action: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    rounds = parser.parse_args().rounds
    run_stack("signet")  # warm imports and caches before measuring
    print(f"{'stack':10} {'resources':>9} {'program ms':>11} {'floor ms':>9} {'ratio':>6}")
    for stack in STACKS:
        count = len(run_stack(stack).resources)
        floor_program = _floor_program(count)
        program = _median_seconds(lambda stack=stack: run_stack(stack), rounds)
        floor = _median_seconds(
            lambda stack=stack, floor_program=floor_program: run_stack(stack, program=floor_program), rounds
        )
        print(f"{stack:10} {count:9d} {program * 1000:11.1f} {floor * 1000:9.1f} {program / floor:6.2f}")


if __name__ == "__main__":
    main()
