"""Hypothesis strategies for stack settings, as Pulumi stores them (strings; structured ones JSON):
valid ones (a random subset of every setting, and the settings only valid together) and invalid
ones (one bad entry per key, with the keys an error may name).

Invalid values are built per key, independently of the program's own checks, so the tests do not
use the code under test as their oracle. Valid values stay within what the API server accepts, not
only what the schema describes (label keys, toleration rules), so a valid stack would also deploy.
The property tests (tests/test_properties.py) and the e2e's random stacks (tests/e2e/draws.py)
draw from them.
"""

import functools
import ipaddress
import json
import math
import string
from typing import Any

from hypothesis import strategies as st

from components.networks import NETWORKS, minimum_storage
from components.quantities import parse_quantity
from components.setting_keys import ALL_KEYS
from tests.support.constants import EXAMPLE_AUTHORITY_PUBKEY, MAINNET_ADDRESSES, TEST_NETWORK_ADDRESSES

BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
# Strings pydantic reads as numbers or booleans although they contain letters only.
_NUMBER_WORDS = {"inf", "infinity", "nan"}
_BOOL_WORDS = {"true", "false", "yes", "no", "on", "off", "t", "f", "y", "n"}


def addresses(stack: str) -> tuple[str, ...]:
    return MAINNET_ADDRESSES if stack == "mainnet" else TEST_NETWORK_ADDRESSES


def other_network_addresses(stack: str) -> tuple[str, ...]:
    return TEST_NETWORK_ADDRESSES if stack == "mainnet" else MAINNET_ADDRESSES


def as_json(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[str]:
    return strategy.map(json.dumps)


# --- building blocks --------------------------------------------------------------------

dns_labels = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)
# Kubernetes label keys (optional DNS prefix) and values, as the API server validates them.
label_keys = st.from_regex(
    r"([a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?\.[a-z]{2,5}/)?[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,15}[a-zA-Z0-9])?",
    fullmatch=True,
)
label_values = st.from_regex(r"([a-zA-Z0-9]([a-zA-Z0-9_.-]{0,15}[a-zA-Z0-9])?)?", fullmatch=True)
label_maps = st.dictionaries(label_keys, label_values, max_size=3)
letters_only = st.text(alphabet=string.ascii_letters, min_size=1, max_size=8)
non_numeric = letters_only.filter(lambda s: s.lower() not in _NUMBER_WORDS)


def cidrs() -> st.SearchStrategy[str]:
    v4 = st.builds(
        lambda a, p: str(ipaddress.ip_network(f"{a}/{p}", strict=False)),
        st.ip_addresses(v=4),
        st.integers(0, 32),
    )
    v6 = st.builds(
        lambda a, p: str(ipaddress.ip_network(f"{a}/{p}", strict=False)),
        st.ip_addresses(v=6),
        st.integers(0, 128),
    )
    return st.one_of(v4, v6)


def cpu(millis: int, whole: bool) -> str:
    return str(millis // 1000) if whole and millis % 1000 == 0 else f"{millis}m"


def memory(mib: int, unit: str) -> str:
    if unit == "Gi" and mib % 1024 == 0:
        return f"{mib // 1024}Gi"
    if unit == "bytes":
        return str(mib * 1024 * 1024)
    return f"{mib}Mi"


@st.composite
def resources(draw: st.DrawFn, min_memory_limit_mib: int = 1) -> str:
    """requests ≤ limits, in millicores or cores, Mi, Gi or bytes."""
    cpu_request = draw(st.integers(1, 4000))
    cpu_limit = draw(st.integers(cpu_request, 16000))
    memory_request = draw(st.integers(1, 16384))
    memory_limit = draw(st.integers(max(memory_request, min_memory_limit_mib), 65536))
    whole, unit = draw(st.booleans()), draw(st.sampled_from(["Mi", "Gi", "bytes"]))
    return json.dumps(
        {
            "requests": {"cpu": cpu(cpu_request, whole), "memory": memory(memory_request, unit)},
            "limits": {"cpu": cpu(cpu_limit, whole), "memory": memory(memory_limit, unit)},
        }
    )


_repositories = st.from_regex(
    r"([a-z0-9]+(\.[a-z0-9]+)+(:[0-9]{2,5})?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*){1,2}",
    fullmatch=True,
)
_tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}", fullmatch=True).filter(lambda t: t != "latest")
_digests = st.binary(min_size=32, max_size=32).map(lambda b: f"@sha256:{b.hex()}")
images = st.one_of(
    st.builds(lambda r, t: f"{r}:{t}", _repositories, _tags),
    st.builds(lambda r, d: f"{r}{d}", _repositories, _digests),
    st.builds(lambda r, t, d: f"{r}:{t}{d}", _repositories, _tags, _digests),
)

_effects = st.sampled_from(["NoSchedule", "PreferNoSchedule", "NoExecute"])
# API rules the schema does not carry: Exists has no value, Equal needs a key, and
# Text YAML can carry: no controls (but tab and newlines), no surrogates, no U+FFFE/U+FFFF.
yaml_characters = st.characters(
    blacklist_categories=("Cc", "Cs"), blacklist_characters="\ufffe\uffff"
) | st.sampled_from("\t\n")
# tolerationSeconds goes with NoExecute only.
tolerations = st.one_of(
    st.builds(
        lambda k, e: {"key": k, "operator": "Exists", **({"effect": e} if e else {})},
        label_keys,
        st.none() | _effects,
    ),
    st.builds(
        lambda k, v, e: {"key": k, "operator": "Equal", "value": v, **({"effect": e} if e else {})},
        label_keys,
        label_values,
        st.none() | _effects,
    ),
    st.builds(
        lambda k, s: {"key": k, "effect": "NoExecute", "tolerationSeconds": s},
        label_keys,
        st.integers(0, 86400),
    ),
    st.just({"operator": "Exists"}),
)
failover_upstreams = st.fixed_dictionaries(
    {
        "address": st.ip_addresses().map(str),
        "port": st.integers(1, 65535),
        "authorityPubkey": st.just(EXAMPLE_AUTHORITY_PUBKEY),
    }
)


def decimal(low: float, high: float) -> st.SearchStrategy[str]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False).map(repr)


def in_range(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(str)


# --- valid settings ---------------------------------------------------------------------


@functools.cache
def valid_scalars(stack: str) -> dict[str, st.SearchStrategy[str]]:
    """Valid values of independent settings for a stack of this network."""
    strategies: dict[str, st.SearchStrategy[str]] = {
        "payoutAddress": st.sampled_from(addresses(stack)),
        "namespace": dns_labels,
        "nodeSelector": as_json(label_maps),
        "tolerations": as_json(st.lists(tolerations, max_size=3)),
        "poolImage": images,
        "translatorImage": images,
        "nodeImage": images,
        "nodePlatform": st.sampled_from(["amd64", "arm64"]),
        "storageClass": dns_labels,
        "nodeVolumeSnapshot": dns_labels,
        "retainChainData": st.sampled_from(["true", "false"]),
        "nodeResources": resources(min_memory_limit_mib=2048),
        "p2pNodePort": st.just("0") | in_range(30000, 32767),
        "tpIntervalSecs": in_range(1, 3600),
        "tpFeeDeltaSats": in_range(0, 10**8),
        "poolSignature": st.text(
            st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="/"),
            min_size=1,
            max_size=32,
        ),
        "poolSharesPerMinute": decimal(0.01, 1000),
        "shareBatchSize": in_range(1, 1000),
        "serverId": in_range(0, 65535),
        "certValiditySecs": in_range(60, 10**7),
        "poolResources": resources(),
        "translatorCpuTarget": in_range(1, 100),
        "translatorMemoryTarget": in_range(1, 100),
        "translatorResources": resources(),
        # ≤ 236 bytes in UTF-8, within the 238 allowed; YAML (the API server's input) has no controls.
        "userIdentity": st.text(yaml_characters, min_size=1, max_size=59),
        "p2pExternalAddress": st.ip_addresses(v=4).map(str),
        "minIndividualMinerHashrate": decimal(1, 1e18),
        "translatorSharesPerMinute": decimal(0.01, 1000),
        "enableVardiff": st.sampled_from(["true", "false"]),
        "aggregateChannels": st.sampled_from(["true", "false"]),
        "jobKeepaliveIntervalSecs": in_range(0, 3600),
        "downstreamExtranonce2Size": in_range(2, 8),
        "failoverUpstreams": as_json(st.lists(failover_upstreams, max_size=3)),
        "lbSourceRanges": as_json(st.lists(cidrs(), max_size=3)),
        "lbExternalTrafficPolicy": st.sampled_from(["Local", "Cluster"]),
        "lbAnnotations": as_json(
            st.dictionaries(label_keys, st.text(yaml_characters, max_size=20), max_size=3)
        ),
        "monitoringEnabled": st.sampled_from(["true", "false"]),
        "nodeExporterImage": images,
        "nodeExporterResources": resources(),
        "alertNoMinersMinutes": in_range(1, 1440),
        "alertHashrateDropPercent": in_range(1, 99),
        "alertTipStaleMinutes": in_range(10, 1440),
        "alertVolumeFullPercent": in_range(50, 99),
        "alertRestartsPerHour": in_range(1, 100),
        "prometheusNamespace": dns_labels,
        "prometheusLabels": as_json(label_maps),
        "rpcAllowedNamespaces": as_json(st.lists(dns_labels, max_size=3)),
        "poolKeyRotation": st.text(min_size=1, max_size=16),
        "tpKeyRotation": st.text(min_size=1, max_size=16),
        "rpcCredentialsRotation": st.text(min_size=1, max_size=16),
    }
    if stack == "signet":
        peers = st.builds(
            lambda ip, port: f"{ip}:{port}" if port else str(ip),
            st.ip_addresses(v=4),
            st.none() | st.integers(1, 65535),
        )
        strategies |= {
            "signetChallenge": st.binary(min_size=1, max_size=40).map(bytes.hex),
            "signetConnect": as_json(st.lists(peers, max_size=2)),
            "signetAddnode": as_json(st.lists(peers, max_size=2)),
        }
    return strategies


@functools.cache
def _optional_scalars(stack: str) -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries({}, optional=valid_scalars(stack))


QUANTITY_UNITS = {"Gi": 2**30, "Ti": 2**40, "G": 10**9}


@st.composite
def node_volume(draw: st.DrawFn, stack: str) -> dict[str, str]:
    """pruneMib and storageSize, each maybe left to its default, drawn together: the volume
    must hold what the node keeps, by the one rule the settings and the policy pack apply."""
    chosen: dict[str, str] = {}
    prune = draw(st.none() | st.just("0") | in_range(550, 500_000))
    if prune is not None:
        chosen["pruneMib"] = prune
    if draw(st.booleans()):
        floor = parse_quantity(minimum_storage(NETWORKS[stack], pruned=prune not in (None, "0")))
        unit = draw(st.sampled_from(sorted(QUANTITY_UNITS)))
        # Rounded up: parse_quantity gives a Decimal, whose // rounds towards zero, not down.
        least = max(math.ceil(floor / QUANTITY_UNITS[unit]), 1)
        chosen["storageSize"] = f"{draw(st.integers(least, least + 2000))}{unit}"
    return chosen


@st.composite
def valid_overrides(draw: st.DrawFn, stack: str) -> dict[str, str]:
    """A random subset of valid settings, plus the settings that are only valid together."""
    overrides = dict(draw(_optional_scalars(stack))) | draw(node_volume(stack))
    if draw(st.booleans()):
        low = draw(st.integers(1, 100))
        overrides["translatorMinReplicas"] = str(low)
        overrides["translatorMaxReplicas"] = str(draw(st.integers(low, 100)))
    if draw(st.booleans()):
        overrides["registryServer"] = draw(st.sampled_from(["ghcr.io", "registry.example.com:5000"]))
        overrides["registryUsername"] = draw(st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True))
    return overrides


# --- invalid settings -------------------------------------------------------------------

# (group, overrides, keys the message may name): entries of one group would interfere
# (two halves of the registry pair make a valid pair), so a combination draws each group once.
Bad = tuple[str, dict[str, str], frozenset[str]]


def bad(key: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[Bad]:
    return values.map(lambda value: (key, {key: value}, frozenset({key})))


@st.composite
def mutated_address(draw: st.DrawFn, stack: str) -> str:
    """A valid address of the stack's network with one data character replaced."""
    address = draw(st.sampled_from(addresses(stack)))
    bech32 = address[:3].lower() in ("bc1", "tb1")
    alphabet, start = (BECH32_CHARSET, 3) if bech32 else (BASE58_ALPHABET, 1)
    index = draw(st.integers(start, len(address) - 1))
    replacement = draw(st.sampled_from(alphabet).filter(lambda c: c != address[index]))
    return address[:index] + replacement + address[index + 1 :]


def bad_ints(low: int, high: int | None = None) -> st.SearchStrategy[str]:
    outside = st.integers(max_value=low - 1)
    if high is not None:
        outside |= st.integers(min_value=high + 1)
    return outside.map(str) | non_numeric


# Not positive, or beyond the f32 that sv2-apps parses rates into.
bad_rates = (
    st.floats(max_value=0, allow_nan=False, allow_infinity=False).map(repr)
    | st.floats(min_value=3.5e38, allow_infinity=False).map(repr)
    | non_numeric
)
bad_quantities = st.one_of(
    st.builds(lambda n, u: f"{n}{u}", st.integers(-(10**6), 0), st.sampled_from(["", "m", "Mi", "Gi", "k"])),
    st.builds(
        lambda n, u: f"{n}{u}", st.integers(1, 10**4), st.sampled_from(["GB", "MB", "gi", "Gib", " G"])
    ),
    letters_only,
)
bad_dns_labels = st.one_of(
    st.from_regex(r"[A-Z][a-zA-Z0-9]{0,10}", fullmatch=True),
    st.from_regex(r"[a-z0-9]{1,5}[_.][a-z0-9]{1,5}", fullmatch=True),
    st.from_regex(r"-[a-z0-9]{1,10}", fullmatch=True),
    st.text(alphabet="abc", min_size=64, max_size=80),
)
bad_images = st.one_of(
    _repositories.map(lambda r: f"{r}:latest"),
    _repositories,  # untagged
    st.builds(lambda r, t: f"{r.upper()}:{t}", _repositories, _tags),
    st.builds(lambda r, n: f"{r}@sha256:{'a' * n}", _repositories, st.integers(1, 63)),
)
bad_booleans = st.sampled_from(["maybe", "enabled", "2", "-1", "truthy", "nein"]) | letters_only.filter(
    lambda s: s.lower() not in _BOOL_WORDS
)
# JSON of the wrong shape for a list setting or a map setting.
not_a_list = as_json(
    st.one_of(st.dictionaries(st.text(max_size=5), st.text(max_size=5), min_size=1), st.text(), st.integers())
)
not_a_map = as_json(st.one_of(st.lists(st.text(max_size=5), max_size=3), st.text(), st.integers(), st.none()))
not_json = st.sampled_from(["not json", "[unclosed", "{'single': 'quotes'}", "{key: value}"])


def bad_string_maps() -> st.SearchStrategy[str]:
    wrong_values = st.one_of(
        st.integers(), st.none(), st.lists(st.text(max_size=3), max_size=2), st.booleans()
    )
    return not_a_map | not_json | as_json(st.dictionaries(label_keys, wrong_values, min_size=1, max_size=2))


@st.composite
def bad_resources(draw: st.DrawFn, node: bool) -> str:
    good_amounts = {"cpu": "1", "memory": "4Gi"}
    choice = draw(st.integers(0, 5 if node else 4))
    if choice == 0:  # a zero or negative amount
        kind = draw(st.sampled_from(["requests", "limits"]))
        field = draw(st.sampled_from(["cpu", "memory"]))
        value = draw(bad_quantities)
        spec = {"requests": dict(good_amounts), "limits": dict(good_amounts)}
        spec[kind][field] = value
        return json.dumps(spec)
    if choice == 1:  # requests above limits
        return json.dumps(
            {"requests": {"cpu": "4", "memory": "8Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
        )
    if choice == 2:  # a part that is not a map (a missing part merges onto the defaults)
        return json.dumps({draw(st.sampled_from(["requests", "limits"])): draw(st.sampled_from(["1", 4]))})
    if choice == 3:  # wrong shape
        return draw(not_a_map | not_json | as_json(st.just({"cpu": "1", "memory": "1Gi"})))
    if choice == 4:  # an unknown field
        return json.dumps({"requests": good_amounts, "limits": good_amounts, "storage": "1Gi"})
    # The node needs at least 2Gi.
    return json.dumps({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2047Mi"}})


@functools.cache
def invalid_entries(stack: str) -> st.SearchStrategy[Bad]:
    payout = st.one_of(
        st.sampled_from(other_network_addresses(stack)),
        mutated_address(stack),
        st.sampled_from(["not-an-address", "bc1", "tb1qqqqq", "1111111111"]),
    )
    bad_tolerations = st.one_of(
        not_a_list,
        not_json,
        as_json(st.lists(st.text(max_size=5), min_size=1, max_size=2)),
        as_json(
            st.sampled_from([{"operator": "Sometimes"}, {"effect": "NoRun"}, {"tolerationSeconds": -1}])
        ).map(lambda t: f"[{t}]"),
        as_json(st.just([{"key": "a", "colour": "blue"}])),
    )
    bad_upstreams = st.one_of(
        not_a_list,
        not_json,
        as_json(
            st.one_of(
                failover_upstreams.map(lambda u: {**u, "address": "pool.example.com"}),
                failover_upstreams.map(lambda u: {**u, "port": 0}),
                failover_upstreams.map(lambda u: {**u, "port": 70000}),
                failover_upstreams.map(
                    lambda u: {**u, "authorityPubkey": "9" + EXAMPLE_AUTHORITY_PUBKEY[1:-1] + "x"}
                ),
                failover_upstreams.map(lambda u: {k: v for k, v in u.items() if k != "port"}),
            ).map(lambda u: [u])
        ),
    )
    bad_ranges = st.one_of(
        not_a_list,
        not_json,
        as_json(st.sampled_from([["10.0.0.1/8"], ["203.0.113.0/33"], ["everyone"], [8]])),
    )
    bad_peer_lists = not_a_list | not_json | as_json(st.sampled_from([[1], [None], [["a"]]]))
    inverted_replicas = st.integers(1, 99).flatmap(
        lambda high: st.integers(high + 1, 10_000).map(
            lambda low: (
                "replicas",
                {"translatorMinReplicas": str(low), "translatorMaxReplicas": str(high)},
                frozenset({"translatorMinReplicas", "translatorMaxReplicas"}),
            )
        )
    )
    half_registry = st.sampled_from(["registryServer", "registryUsername"]).map(
        lambda key: ("registry", {key: "ghcr.io"}, frozenset({"registryServer", "registryUsername"}))
    )
    full_chain_gib = math.ceil(parse_quantity(minimum_storage(NETWORKS[stack], pruned=False)) / 2**30)
    unpruned_volume_too_small = st.integers(1, full_chain_gib - 1).map(
        lambda gib: ("node-volume", {"pruneMib": "0", "storageSize": f"{gib}Gi"}, frozenset({"storageSize"}))
    )
    unknown_keys = st.builds(
        lambda key, value: (f"unknown:{key}", {key: value}, frozenset({key})),
        st.from_regex(r"[a-z][a-zA-Z0-9]{0,24}", fullmatch=True).filter(lambda k: k not in ALL_KEYS),
        st.text(min_size=1, max_size=10),
    )
    entries = [
        bad("network", st.text(min_size=1, max_size=12).filter(lambda s: s not in NETWORKS)),
        bad("network", st.sampled_from(["regtest", "Mainnet", "testnet", "testnet3", "main", " signet"])),
        bad("payoutAddress", payout),
        bad("namespace", bad_dns_labels),
        bad("storageClass", bad_dns_labels),
        bad("nodeVolumeSnapshot", bad_dns_labels),
        bad("prometheusNamespace", bad_dns_labels),
        bad("rpcAllowedNamespaces", as_json(st.lists(bad_dns_labels, min_size=1, max_size=2)) | not_a_list),
        bad("storageSize", bad_quantities),
        bad("pruneMib", in_range(1, 549) | st.integers(max_value=-1).map(str) | non_numeric),
        bad(
            "p2pNodePort", in_range(1, 29999) | in_range(32768, 10**6) | in_range(-(10**6), -1) | non_numeric
        ),
        bad("translatorMinReplicas", bad_ints(0)),
        bad("translatorMaxReplicas", bad_ints(1, 100)),
        bad("translatorCpuTarget", bad_ints(1, 100)),
        bad("translatorMemoryTarget", bad_ints(1, 100)),
        bad("shareBatchSize", bad_ints(1, 2**63 - 1)),
        bad("serverId", bad_ints(0, 65535)),
        bad("certValiditySecs", bad_ints(60, 2**31 - 1)),
        bad("poolSignature", st.text(min_size=33, max_size=60) | st.text(min_size=1).map(lambda t: t + "/")),
        bad("userIdentity", st.text(st.characters(min_codepoint=0x80), min_size=120, max_size=200)),
        bad("userIdentity", st.sampled_from(["\x00", "a\x1fb", "\x7f", "c1\x9d"])),
        bad("lbAnnotations", st.sampled_from(["\x07", "x\x89"]).map(lambda v: json.dumps({"a.io/b": v}))),
        bad("p2pExternalAddress", st.sampled_from(["203.0.113.5:8333", "two words", "a,b"])),
        bad("tpIntervalSecs", bad_ints(1)),
        bad("tpFeeDeltaSats", bad_ints(0)),
        bad("jobKeepaliveIntervalSecs", bad_ints(0, 65535)),
        bad("downstreamExtranonce2Size", bad_ints(2, 8)),
        bad("poolSharesPerMinute", bad_rates),
        bad("translatorSharesPerMinute", bad_rates),
        bad("minIndividualMinerHashrate", bad_rates),
        bad("enableVardiff", bad_booleans),
        bad("aggregateChannels", bad_booleans),
        bad("retainChainData", bad_booleans),
        bad("monitoringEnabled", bad_booleans),
        bad("lbExternalTrafficPolicy", st.sampled_from(["local", "cluster", "Global", "Sometimes"])),
        bad("nodePlatform", st.sampled_from(["riscv64", "x86_64", "AMD64", "arm"])),
        bad("poolImage", bad_images),
        bad("translatorImage", bad_images),
        bad("nodeImage", bad_images),
        bad("nodeExporterImage", bad_images),
        bad("nodeExporterResources", bad_resources(node=False)),
        bad("alertNoMinersMinutes", bad_ints(1, 1440)),
        bad("alertHashrateDropPercent", bad_ints(1, 99)),
        bad("alertTipStaleMinutes", bad_ints(10, 1440)),
        bad("alertVolumeFullPercent", bad_ints(50, 99)),
        bad("alertRestartsPerHour", bad_ints(1, 100)),
        bad("nodeResources", bad_resources(node=True)),
        bad("poolResources", bad_resources(node=False)),
        bad("translatorResources", bad_resources(node=False)),
        bad("tolerations", bad_tolerations),
        bad("nodeSelector", bad_string_maps()),
        bad("lbAnnotations", bad_string_maps()),
        bad("prometheusLabels", bad_string_maps()),
        bad("failoverUpstreams", bad_upstreams),
        bad("lbSourceRanges", bad_ranges),
        bad("signetConnect", bad_peer_lists),
        bad("signetAddnode", bad_peer_lists),
        inverted_replicas,
        half_registry,
        unpruned_volume_too_small,
        unknown_keys,
    ]
    if stack == "signet":
        entries.append(bad("signetChallenge", st.sampled_from(["zz", "5", "0x51", "51 51", "g1"])))
    else:  # signet-only settings, however well-formed, are refused elsewhere
        entries += [
            bad("signetChallenge", st.sampled_from(["51", "512102"])),
            bad("signetConnect", as_json(st.lists(st.ip_addresses(v=4).map(str), min_size=1, max_size=2))),
        ]
    return st.one_of(entries)


@st.composite
def invalid_overrides(draw: st.DrawFn, stack: str) -> tuple[dict[str, str], frozenset[str]]:
    """Valid settings with one or more invalid entries on top; the keys that may be named."""
    overrides = draw(valid_overrides(stack))
    entries = draw(st.lists(invalid_entries(stack), min_size=1, max_size=3, unique_by=lambda e: e[0]))
    blamable: set[str] = set()
    for _, values, keys in entries:
        for key in keys:
            # The keys an entry is about go (both halves of a pair): a valid registryUsername
            # left next to an invalid lone registryServer would complete the pair.
            overrides.pop(key, None)
        overrides |= values
        blamable |= keys
    return overrides, frozenset(blamable)
