"""Stacks of valid settings drawn at random by the property tests' own strategy (valid_overrides in
tests/support/strategies.py), reproducibly: every draw comes from a seed, a run's seeds from one
run seed (CI derives it from the commit, so a commit's verdict never changes between runs), and a
failing draw prints the command that replays it. Draws that once failed are kept as regression
cases (stacks/random-regressions.json).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as with_seed

from tests.support.constants import STACKS
from tests.support.strategies import valid_overrides

REGRESSIONS = Path(__file__).with_name("stacks") / "random-regressions.json"


@dataclass(frozen=True)
class Draw:
    """One stack of drawn settings (as native config values) and how to get it again."""

    name: str
    stack: str
    settings: dict[str, Any]
    replay: str
    # For a regression case that the program must refuse: the key its error names.
    refused_key: str | None = None


def run_seed() -> tuple[str, str]:
    """The run's seed and where it came from: SV2_E2E_SEED (CI: the commit) or a new one."""
    given = os.environ.get("SV2_E2E_SEED")
    if given:
        return given, "SV2_E2E_SEED"
    return str(secrets.randbits(32)), "new"


def draw_seeds(seed: str, count: int) -> list[int]:
    """`count` draw seeds from one run seed, the same for the same run seed."""
    return [int.from_bytes(hashlib.sha256(f"{seed}/{i}".encode()).digest()[:4], "big") for i in range(count)]


def draw(seed: int) -> Draw:
    """The stack and valid settings that `seed` draws."""
    stack = random.Random(seed).choice(STACKS)
    drawn = _example(stack, seed)
    drawn.pop("nodeImage", None)  # the e2e presets it
    return Draw(f"{stack}-seed{seed}", stack, native_values(drawn), replay_command(seed))


def replay_command(seed: int) -> str:
    return f"SV2_E2E_RANDOM_SEEDS={seed} SV2_E2E_SKIP=stacks,regressions,mutants,sv2-apps,chain make e2e"


def regressions() -> list[Draw]:
    """Draws that once failed, kept with their settings exactly as drawn."""
    cases = json.loads(REGRESSIONS.read_text(encoding="utf-8"))
    return [
        Draw(
            case["name"],
            case["stack"],
            case["settings"],
            f"SV2_E2E_SKIP=stacks,random,mutants,sv2-apps,chain make e2e  # {case['name']}",
            case.get("refusedKey"),
        )
        for case in cases
    ]


def native_values(drawn: dict[str, str]) -> dict[str, Any]:
    """Settings as Pulumi stores them (strings, structured ones JSON) → native config values."""
    settings: dict[str, Any] = {}
    for key, text in drawn.items():
        with contextlib.suppress(ValueError):
            parsed = json.loads(text)
            if isinstance(parsed, dict | list):
                settings[key] = parsed
                continue
        settings[key] = text
    return settings


def _example(stack: str, seed: int) -> dict[str, str]:
    """One example of the valid-settings strategy, fixed by `seed`. Hypothesis tries the simplest
    example (no settings at all) first; the second one is the seed's own."""
    found: list[dict[str, str]] = []

    @with_seed(seed)
    @settings(
        max_examples=2,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(valid_overrides(stack))
    def capture(value: dict[str, str]) -> None:
        found.append(value)

    capture()
    return dict(found[-1])
