"""Settings as properties (issue #6).

- Any combination with at least one invalid value stops the program with one SettingsError that
  names an invalid key, and nothing is registered.
- Any valid combination renders objects that are schema-valid for Kubernetes 1.30.

The settings come from the strategies in tests/support/strategies.py (how they are built, and why
the invalid ones do not ask the code under test).
"""

import functools
import re
from collections.abc import Iterator

import kubernetes_validate
import kubernetes_validate.utils
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.setting_keys import ALL_KEYS
from components.stack_config import SettingsError
from tests.support.constants import STACKS
from tests.support.harness import run_stack
from tests.support.strategies import invalid_overrides, valid_overrides

# Each example draws a whole stack's settings and runs the program: slow to generate by design.
SLOW_EXAMPLES = settings(suppress_health_check=[HealthCheck.too_slow])

_NAMED_KEY = re.compile(r"^  sv2-k8s:(\S+) ", re.MULTILINE)


@SLOW_EXAMPLES
@given(stack=st.sampled_from(STACKS), data=st.data())
def test_any_invalid_setting_stops_the_program_naming_it(stack: str, data: st.DataObject) -> None:
    overrides, blamable = data.draw(invalid_overrides(stack))
    run = run_stack(stack, overrides)
    assert isinstance(run.error, SettingsError), f"{overrides} → {run.error!r}"
    message = str(run.error)
    named = set(_NAMED_KEY.findall(message))
    assert named & blamable, f"no invalid key of {sorted(blamable)} named in:\n{message}"
    assert named <= blamable, f"a valid key was blamed ({sorted(named - blamable)}):\n{message}"
    assert run.resources == [], "resources were registered before the settings were valid"


# --- valid combinations render schema-valid objects ---------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _cached_schemas() -> Iterator[None]:
    """kubernetes_validate reads its JSON schemas from disk at every call (~10 ms a manifest);
    cache them for this module so a hundred examples stay within the suite's time budget."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            kubernetes_validate.utils,
            "schema_contents",
            functools.cache(kubernetes_validate.utils.schema_contents),
        )
        yield


@SLOW_EXAMPLES
@given(stack=st.sampled_from(STACKS), data=st.data())
def test_any_valid_combination_renders_schema_valid_objects(stack: str, data: st.DataObject) -> None:
    overrides = data.draw(valid_overrides(stack))
    run = run_stack(stack, overrides)
    assert run.error is None, f"{overrides} → {run.error}"
    manifests = run.manifests()
    assert {"Namespace", "StatefulSet", "Deployment", "Service"} <= {m["kind"] for m in manifests}
    for manifest in manifests:
        if manifest["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # CRDs of the Prometheus Operator: not in Kubernetes' schema
        kubernetes_validate.validate(manifest, "1.30", strict=True)


def test_the_p2p_node_port_key_is_spelled_as_documented() -> None:
    # pydantic's to_camel spells p2p_node_port "p2PNodePort", which once made the documented
    # `p2pNodePort` an unknown key (whose error message still named it, so no test noticed).
    assert "p2pNodePort" in ALL_KEYS
    run = run_stack("signet", {"p2pNodePort": "30080"})
    assert run.error is None, run.error
