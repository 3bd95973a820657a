"""Settings: every bad value stops the program before any resource, naming the key."""

import json
import re

import pytest
from pydantic import ValidationError

from components.addresses import address_problem
from components.networks import NETWORKS
from components.quantities import parse_quantity
from components.settings import Settings
from components.stack_config import SettingsError, parse_settings
from tests.support.constants import (
    EXAMPLE_AUTHORITY_PUBKEY,
    MAINNET_ADDRESSES,
    MAINNET_TEST_ADDRESS,
    TEST_NETWORK_ADDRESSES,
)
from tests.support.constants import TEST_NETWORK_ADDRESS as SIGNET_ADDRESS
from tests.support.harness import run_stack

# Invalid everywhere: broken checksums, the wrong bech32 variant, garbage.
MALFORMED_ADDRESSES = [
    "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5",  # last character changed
    "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh",  # v0 with a bech32m checksum
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd",  # v1 with a bech32 checksum
    "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsy",
    "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3",
    "2MzQwSSnBHWHqSAqtTVQ6v47XtaisrJa1Vd",
    "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
    "not-an-address",
    "",
]


@pytest.mark.parametrize("address", MAINNET_ADDRESSES)
def test_mainnet_accepts_mainnet_addresses_only(address: str) -> None:
    assert address_problem(address, NETWORKS["mainnet"]) is None
    for network in ("signet", "testnet4"):
        assert address_problem(address, NETWORKS[network]) is not None


@pytest.mark.parametrize("address", TEST_NETWORK_ADDRESSES)
@pytest.mark.parametrize("network", ["signet", "testnet4"])
def test_test_networks_accept_test_addresses_only(address: str, network: str) -> None:
    assert address_problem(address, NETWORKS[network]) is None
    assert address_problem(address, NETWORKS["mainnet"]) is not None


@pytest.mark.parametrize("address", MALFORMED_ADDRESSES)
@pytest.mark.parametrize("network", list(NETWORKS))
def test_malformed_addresses_are_rejected(address: str, network: str) -> None:
    assert address_problem(address, NETWORKS[network]) is not None


def test_per_network_defaults() -> None:
    expected = {"signet": "10Gi", "testnet4": "50Gi", "mainnet": "1Ti"}  # mainnet: a full chain through 2027
    for network, storage in expected.items():
        address = MAINNET_TEST_ADDRESS if network == "mainnet" else SIGNET_ADDRESS
        settings = parse_settings({"network": network, "payoutAddress": address})
        assert settings.storage_size == storage
        assert settings.namespace == "sv2-mining"
    pruned = parse_settings(
        {"network": "mainnet", "payoutAddress": MAINNET_TEST_ADDRESS, "pruneMib": "10000"}
    )
    assert pruned.pruned and pruned.storage_size == "25Gi"  # 10000 MiB of blocks + chainstate


@pytest.mark.parametrize("node_resources", [{}, {"limits": {"memory": "8Gi"}}])
def test_an_invalid_network_is_blamed_alone_for_what_depends_on_it(node_resources: dict) -> None:
    # The node's resource and storage defaults come from the network: with the network invalid
    # (and named), a partial nodeResources must not be blamed for the parts it leaves out.
    with pytest.raises(SettingsError) as error:
        parse_settings({"network": "0", "payoutAddress": SIGNET_ADDRESS, "nodeResources": node_resources})
    assert re.findall(r"sv2-k8s:(\S+) ", str(error.value)) == ["network"]
    with pytest.raises(SettingsError, match=r"sv2-k8s:nodeResources limits.memory"):
        parse_settings({"network": "0", "nodeResources": {"limits": {"memory": "lots"}}})


def test_mainnet_refuses_to_run_without_a_payout_address() -> None:
    # As committed: Pulumi.mainnet.yaml has no address, Pulumi.yaml declares it as "".
    run = run_stack("mainnet", {"payoutAddress": ""})
    assert isinstance(run.error, SettingsError)
    assert "pulumi config set sv2-k8s:payoutAddress <your bc1… address> -s mainnet" in str(run.error)
    assert run.resources == []


BAD_SETTINGS = [
    ("network", "regtest"),
    ("network", "Mainnet"),
    ("payoutAddress", MAINNET_TEST_ADDRESS),  # a mainnet address on signet
    ("payoutAddress", "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsy"),
    ("namespace", "SV2_Mining"),
    ("storageSize", "50GB"),
    ("storageSize", "0"),
    ("storageSize", "-10Gi"),
    ("storageSize", "lots"),
    ("pruneMib", "100"),
    ("pruneMib", "-1"),
    ("p2pNodePort", "80"),
    ("p2pNodePort", "70000"),
    ("translatorMinReplicas", "-1"),
    ("translatorMaxReplicas", "1"),  # below the default minimum of 2
    ("translatorCpuTarget", "150"),
    ("poolSharesPerMinute", "0"),
    ("poolSharesPerMinute", "-6"),
    ("translatorSharesPerMinute", "many"),
    ("minIndividualMinerHashrate", "0"),
    ("shareBatchSize", "0"),
    ("poolImage", "stratumv2/pool_sv2:latest"),
    ("translatorImage", "stratumv2/translator_sv2"),
    ("nodePlatform", "riscv64"),
    (
        "nodeResources",
        json.dumps({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}}),
    ),
    (
        "nodeResources",
        json.dumps({"requests": {"cpu": "1", "memory": "8Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}),
    ),
    ("poolResources", json.dumps({"requests": {"cpu": "2"}})),  # above the default limit of 1
    ("poolResources", json.dumps({"limits": {"gpu": "1"}})),
    ("tolerations", json.dumps({"key": "gpu"})),
    ("tolerations", json.dumps([{"operator": "Sometimes"}])),
    ("nodeSelector", json.dumps(["disk=ssd"])),
    (
        "failoverUpstreams",
        json.dumps(
            [
                {
                    "address": "pool.example.com",
                    "port": 3333,
                    "authorityPubkey": EXAMPLE_AUTHORITY_PUBKEY,
                }
            ]
        ),
    ),
    ("failoverUpstreams", json.dumps([{"address": "192.0.2.1", "port": 3333, "authorityPubkey": "nope"}])),
    ("lbSourceRanges", json.dumps(["10.0.0.1/8"])),
    ("lbSourceRanges", "not json"),
    ("lbExternalTrafficPolicy", "Sometimes"),
    ("enableVardiff", "maybe"),
    ("signetChallenge", "zz"),
    ("downstreamExtranonce2Size", "1"),
    ("storageSize", " 10Gi"),  # the API server refuses surrounding spaces
    ("storageSize", "1m"),
    ("poolSharesPerMinute", "inf"),
    ("minIndividualMinerHashrate", "nan"),
    ("signetConnect", json.dumps(["192.0.2.7\nrpcallowip=0.0.0.0/0"])),  # config injection
    ("signetAddnode", json.dumps(["peer one"])),
    ("tolerations", json.dumps([{"key": "gpu", "operator": "Exists", "value": "yes"}])),
    ("tolerations", json.dumps([{"key": "gpu", "value": "a", "tolerationSeconds": 30}])),
    ("nodeSelector", json.dumps({"bad key!": "x"})),
    ("prometheusLabels", json.dumps({"release": "not a label value"})),
    ("lbAnnotations", json.dumps({"pulumi.com/skipAwait": "true"})),
    ("payoutAdress", SIGNET_ADDRESS),  # a typo of a real key
    # What sv2-apps v0.2.0 cannot parse or carry (config.rs field types, Str0255, the coinbase).
    ("jobKeepaliveIntervalSecs", "65536"),  # u16
    ("userIdentity", "m" * 239),  # + ".miner<u32>" must fit a Str0255
    ("userIdentity", "é" * 120),  # 240 bytes in UTF-8
    ("poolSignature", "s" * 33),
    ("poolSignature", "my/pool"),  # "/" delimits the coinbase tag
    ("poolSignature", "pool\n"),
    ("poolSharesPerMinute", "1e39"),  # f32
    ("translatorSharesPerMinute", "1e-40"),  # below f32's smallest normal
    ("minIndividualMinerHashrate", "4e38"),
    ("shareBatchSize", str(2**63)),  # TOML integers are i64
    ("certValiditySecs", str(2**31)),  # noise_sv2 keeps it as u32 added to the Unix time
    ("serverId", "65536"),
    ("p2pExternalAddress", "203.0.113.5:8333"),  # the port is the NodePort's
    ("p2pExternalAddress", "node one"),
    ("storageSize", "１０Gi"),  # fullwidth digits: Python's \d takes them, the API server does not
    ("tpIntervalSecs", "3601"),
    ("tpIntervalSecs", str(10**23)),
    ("tpFeeDeltaSats", str(21_000_000 * 10**8 + 1)),
    # The API server receives objects as YAML, which carries no control characters (seen in e2e).
    ("lbAnnotations", json.dumps({"example.com/note": "bell\u0007"})),
    ("lbAnnotations", json.dumps({"example.com/note": "c1 \u0089 control"})),
    ("userIdentity", "farm\u009d"),
    ("tolerations", json.dumps([{"key": "gpu", "value": "two words"}])),
    ("tolerations", json.dumps([{"key": "not a key!", "operator": "Exists"}])),
    # Spellings Python reads as numbers, which an operator did not mean as one.
    ("translatorMinReplicas", "1_0"),
    ("translatorMinReplicas", "3.0"),
    ("translatorMinReplicas", " 3 "),
    ("poolSharesPerMinute", "1_0"),
    ("poolSharesPerMinute", "inf"),
]


def test_a_refused_number_does_not_let_its_default_blame_another_key() -> None:
    # translatorMinReplicas "1_0" is refused; its default (2) must not make a maximum of 1 look wrong.
    run = run_stack("signet", {"translatorMinReplicas": "1_0", "translatorMaxReplicas": "1"})
    assert isinstance(run.error, SettingsError)
    assert re.findall(r"sv2-k8s:(\S+) ", str(run.error)) == ["translatorMinReplicas"]


def test_numbers_take_their_usual_spellings() -> None:
    settings = parse_settings(
        {
            "payoutAddress": SIGNET_ADDRESS,
            "translatorMinReplicas": "4",
            "poolSharesPerMinute": "9.5",
            "minIndividualMinerHashrate": "1.5e12",
        }
    )
    assert settings.translator_min_replicas == 4
    assert settings.pool_shares_per_minute == 9.5
    assert settings.min_individual_miner_hashrate == 1.5e12


@pytest.mark.parametrize(("key", "value"), BAD_SETTINGS)
def test_bad_setting_is_named_and_nothing_is_created(key: str, value: str) -> None:
    run = run_stack("signet", {key: value})
    assert isinstance(run.error, SettingsError), run.error
    message = str(run.error)
    named = [line for line in message.splitlines() if f"sv2-k8s:{key} " in line]
    assert named, message
    # A real key must be refused for its value, not mistaken for an unknown one.
    assert key == "payoutAdress" or "is not a setting" not in named[0]
    assert "Accepted:" in message
    assert run.resources == [], "resources were registered before the settings were valid"


@pytest.mark.parametrize("key", ["signetChallenge", "signetConnect"])
def test_signet_only_settings_are_refused_elsewhere(key: str) -> None:
    value = "51" if key == "signetChallenge" else json.dumps(["192.0.2.7"])
    run = run_stack("testnet4", {key: value})
    assert isinstance(run.error, SettingsError)
    assert f"sv2-k8s:{key} applies to signet only" in str(run.error)


def test_settings_are_immutable() -> None:
    settings = parse_settings({"payoutAddress": SIGNET_ADDRESS})
    with pytest.raises(ValidationError):
        settings.network = "mainnet"  # type: ignore[misc]


def test_keys_are_plain_camel_case() -> None:
    # Operators type these keys; pydantic's to_camel alone would spell p2p_node_port p2PNodePort.
    for name, info in Settings.model_fields.items():
        key = info.alias or name
        assert re.fullmatch(r"[a-z][a-z0-9]*(?:[A-Z][a-z0-9]+)*", key), key


def test_a_fixed_p2p_node_port_reaches_the_service() -> None:
    run = run_stack("signet", {"p2pNodePort": "30333"})
    assert run.error is None, run.error
    p2p = next(r for r in run.resources if r.name == "bitcoin-signet-p2p")
    assert p2p.state["spec"]["ports"][0]["nodePort"] == 30333


def test_registry_login_needs_server_and_user_together() -> None:
    run = run_stack("signet", {"registryServer": "ghcr.io"})
    assert isinstance(run.error, SettingsError)
    assert "sv2-k8s:registryUsername is unset while registryServer is set" in str(run.error)
    assert run.resources == []


def test_a_partial_resources_object_overrides_only_what_it_names() -> None:
    # `pulumi config set --path 'sv2-k8s:nodeResources.limits.memory' 8Gi` writes this object.
    run = run_stack("mainnet", {"nodeResources": json.dumps({"limits": {"memory": "8Gi"}})})
    assert run.error is None, run.error
    node = next(r for r in run.resources if r.type == "kubernetes:apps/v1:StatefulSet")
    resources = node.plain_inputs["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == {"requests": {"cpu": "3", "memory": "8Gi"}, "limits": {"cpu": "5", "memory": "8Gi"}}


def test_structured_settings_accept_native_objects_and_json_text() -> None:
    native = {"tolerations": [{"key": "gpu", "operator": "Exists"}], "nodeSelector": {"disk": "ssd"}}
    as_objects = parse_settings({"payoutAddress": SIGNET_ADDRESS, **native})
    as_text = parse_settings(
        {"payoutAddress": SIGNET_ADDRESS, **{k: json.dumps(v) for k, v in native.items()}}
    )
    assert as_objects == as_text
    assert as_objects.node_selector == {"disk": "ssd"}


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("1.5", "1500m"),
        ("0.5", "500m"),
        ("1000m", "1"),
        ("1024Mi", "1Gi"),
        ("0.5Gi", "512Mi"),
        ("2048Ki", "2Mi"),
    ],
)
def test_quantities_are_written_as_the_api_server_stores_them(given: str, stored: str) -> None:
    # A second `pulumi up` must not see "1.5" against the live "1500m".
    # docs/upstream-behaviour.md#pulumi-kubernetes-does-not-normalise-quantities
    kind = "memory" if given.endswith("i") else "cpu"
    settings = parse_settings({"payoutAddress": SIGNET_ADDRESS, "nodeResources": {"requests": {kind: given}}})
    assert getattr(settings.node_resources.requests, kind) == stored
    assert parse_settings({"payoutAddress": SIGNET_ADDRESS, "storageSize": "0.5Ti"}).storage_size == "512Gi"


def test_limits_of_the_sv2_apps_are_accepted_at_the_edge() -> None:
    settings = parse_settings(
        {
            "payoutAddress": SIGNET_ADDRESS,
            "jobKeepaliveIntervalSecs": "65535",
            "userIdentity": "m" * 238,
            "poolSignature": "s" * 32,
            "certValiditySecs": str(2**31 - 1),
        }
    )
    assert settings.job_keepalive_interval_secs == 65535


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_a_volume_too_small_for_an_unpruned_chain_is_refused_naming_both_keys(network: str) -> None:
    # Found by the e2e's random settings (issue 18): mainnet with 240Gi and pruneMib 0 passed the
    # settings and was refused only by the policy pack, after the preview had begun.
    minimum = NETWORKS[network].min_full_storage
    smaller = f"{parse_quantity(minimum) // 2**30 - 1}Gi"
    address = MAINNET_TEST_ADDRESS if network == "mainnet" else SIGNET_ADDRESS
    run = run_stack(network, {"payoutAddress": address, "storageSize": smaller, "pruneMib": "0"})
    assert isinstance(run.error, SettingsError)
    message = str(run.error)
    assert f"sv2-k8s:storageSize {smaller} cannot hold the {network} chain" in message
    assert minimum in message and "pruneMib" in message
    assert run.resources == []
    enough = run_stack(network, {"payoutAddress": address, "storageSize": minimum, "pruneMib": "0"})
    assert enough.error is None, enough.error
    pruned = run_stack(network, {"payoutAddress": address, "storageSize": smaller, "pruneMib": "550"})
    assert pruned.error is None, pruned.error
