"""The stack's config read into `Settings`: raw values in, validated settings or one error naming
every bad key out. Nothing is created before `load_settings` returns, so a bad value costs only
an error message.
"""

import contextlib
import json
from collections.abc import Mapping
from typing import Any

import pulumi
from pydantic import ValidationError

from components.addresses import accepted_address_forms, address_problem
from components.networks import NETWORKS, minimum_storage
from components.quantities import mebibytes, parse_quantity
from components.setting_keys import (
    ALL_KEYS,
    MERGED_KEYS,
    SECRET_SETTINGS,
    STRUCTURED_KEYS,
    field_default,
    field_info,
)
from components.setting_types import HEX
from components.settings import (
    MIN_NODE_MEMORY_MIB,
    MIN_PRUNE_MIB,
    PER_NETWORK_DEFAULTS,
    PROJECT,
    Settings,
)


class SettingsError(Exception):
    """Invalid stack settings; the message names each bad key and what it accepts."""


def _cross_checks(settings: Settings, stack: str) -> list[tuple[str, str, str]]:
    """Rules that involve more than one setting: (key, problem, accepted)."""
    problems: list[tuple[str, str, str]] = []
    net = settings.facts
    if settings.payout_address is None:
        problems.append(
            (
                "payoutAddress",
                "is not set; this stack has no default payout address",
                f"{accepted_address_forms(net)}; run: pulumi config set "
                f"{PROJECT}:payoutAddress <your {net.bech32_hrp}1… address> -s {stack}",
            )
        )
    else:
        problem = address_problem(settings.payout_address, net)
        if problem:
            problems.append(("payoutAddress", problem, accepted_address_forms(net)))
    if settings.translator_max_replicas < settings.min_translators:
        minimum = (
            "translatorMinReplicas"
            if settings.translator_min_replicas
            else f"the {settings.min_translators} replicas expectedMiners needs"
        )
        problems.append(("translatorMaxReplicas", f"is below {minimum}", "a value ≥ the minimum"))
    if settings.translator_scale_on_miners and not settings.monitoring_enabled:
        problems.append(
            (
                "translatorScaleOnMiners",
                "needs monitoringEnabled (Prometheus scrapes the miner counts)",
                "false",
            )
        )
    minimum = minimum_storage(net, pruned=settings.pruned)
    if parse_quantity(settings.storage_size) < parse_quantity(minimum):
        if settings.pruned:
            problems.append(("storageSize", "is too small for a node volume", f"at least {minimum}"))
        else:
            problems.append(
                (
                    "storageSize",
                    f"{settings.storage_size} cannot hold the {net.name} chain of an unpruned node "
                    f"(pruneMib 0)",
                    f"at least {minimum}, or a pruned node: pruneMib ≥ {MIN_PRUNE_MIB}",
                )
            )
    if 0 < settings.prune_mib < MIN_PRUNE_MIB:
        problems.append(("pruneMib", "is below Bitcoin Core's minimum", f"0 or ≥ {MIN_PRUNE_MIB}"))
    if mebibytes(settings.node_resources.limits.memory) < MIN_NODE_MEMORY_MIB:
        problems.append(("nodeResources", "limits.memory is too small for a node", "a limit of 2Gi or more"))
    if settings.network != "signet":
        for key, value in (
            ("signetChallenge", settings.signet_challenge),
            ("signetConnect", settings.signet_connect),
            ("signetAddnode", settings.signet_addnode),
        ):
            if value:
                problems.append((key, f"applies to signet only, not {net.name}", "unset"))
    if settings.signet_challenge is not None and not HEX.match(settings.signet_challenge):
        problems.append(("signetChallenge", "is not hex", "hex bytes such as 51"))
    if (settings.registry_username is None) != (settings.registry_server is None):
        missing, present = (
            ("registryServer", "registryUsername")
            if settings.registry_server is None
            else ("registryUsername", "registryServer")
        )
        problems.append((missing, f"is unset while {present} is set", "both set or both unset"))
    return problems


def _describe_pydantic_error(error: Mapping[str, Any]) -> tuple[str, str, str]:
    loc = [str(part) for part in error["loc"]]
    key = loc[0] if loc else "settings"
    _, accepted = field_info(key)
    where = ".".join(loc[1:])
    message = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    shown = ""
    if isinstance(value, str | int | float) and repr(value) not in message:
        text = repr(value)
        shown = f" (got {text if len(text) <= 40 else text[:37] + '…'})"
    return key, f"{where + ': ' if where else ''}{message}{shown}", accepted


def format_problems(problems: list[tuple[str, str, str]]) -> str:
    lines = [f"invalid stack settings ({len(problems)}):"]
    for key, problem, accepted in problems:
        hint = f" Accepted: {accepted}." if accepted else ""
        lines.append(f"  {PROJECT}:{key} {problem}.{hint}")
    return "\n".join(lines)


def _merged(default: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(default)
    for key, value in given.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def _needs_network_default(error: Mapping[str, Any]) -> bool:
    """A part missing from a setting whose default depends on the network: with the network
    itself invalid (and reported), nothing can be said about it."""
    return error["type"] == "missing" and bool(error["loc"]) and error["loc"][0] in PER_NETWORK_DEFAULTS


def parse_settings(raw: Mapping[str, Any], stack: str = "<stack>") -> Settings:
    """Validate config values (text as Pulumi stores scalars; lists and maps as objects or as
    JSON text) into Settings, or raise SettingsError naming every bad key."""
    problems: list[tuple[str, str, str]] = []
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in SECRET_SETTINGS:
            continue
        if key not in ALL_KEYS:
            problems.append((key, "is not a setting of this project", "see README's reference"))
        elif key in STRUCTURED_KEYS:
            if value == "":
                continue  # older stack files spelled "unset" as ""
            if isinstance(value, str):  # JSON text, as stack files had it before native objects
                with contextlib.suppress(json.JSONDecodeError):
                    value = json.loads(value)
            if not isinstance(value, dict | list):
                _, accepted = field_info(key)
                problems.append((key, "is not a list or map", accepted))
                continue
            # An empty resources object (Pulumi.yaml's declaration) merges into the default below.
            values[key] = value
        elif value != "":  # Pulumi.yaml declares optional scalar settings with "" for "unset"
            values[key] = value
    network = NETWORKS.get(str(values.get("network", "signet")))
    if network is not None:
        for key, default in PER_NETWORK_DEFAULTS.items():
            values.setdefault(key, default(network, values))
    for key in MERGED_KEYS:
        given = values.get(key)
        if network is None or not isinstance(given, Mapping):
            continue
        base = PER_NETWORK_DEFAULTS[key](network, values) if key in PER_NETWORK_DEFAULTS else None
        values[key] = _merged(base or field_default(key), given)
    try:
        settings = Settings.model_validate(values)
    except ValidationError as error:
        problems.extend(
            _describe_pydantic_error(e)
            for e in error.errors()
            if network is not None or not _needs_network_default(e)
        )
    else:
        if not problems:  # a key refused above would be judged by its default
            problems.extend(_cross_checks(settings, stack))
    if problems:
        raise SettingsError(format_problems(problems))
    return settings


def _project_config_keys() -> list[str]:
    """Every `sv2-k8s:*` key the engine passed to the program, typos included."""
    from pulumi.runtime import config as runtime_config

    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = f"{PROJECT}:"
    return [key.removeprefix(prefix) for key in merged if key.startswith(prefix)]


def load_settings() -> tuple[Settings, pulumi.Output[str] | None]:
    """Read the stack's config. Returns the settings and the registry password (a secret)."""
    config = pulumi.Config(PROJECT)
    raw: dict[str, Any] = {}
    for key in _project_config_keys():
        if key in SECRET_SETTINGS:
            continue
        # Lists and maps are native config objects; get_object parses them (and JSON text).
        # Anything else goes on as text, for parse_settings to name the key.
        value: Any = config.get(key)
        if key in STRUCTURED_KEYS:
            with contextlib.suppress(pulumi.ConfigTypeError, json.JSONDecodeError):
                parsed = config.get_object(key)
                value = parsed if isinstance(parsed, dict | list) else value
        raw[key] = value
    settings = parse_settings(raw, pulumi.get_stack())
    # Not declared in Pulumi.yaml: a declared secret with a default breaks every preview
    # (pulumi/pulumi#21865), and one without a default is required.
    # docs/upstream-behaviour.md#a-declared-secret-with-a-default-breaks-every-run
    return settings, config.get_secret("registryPassword")
