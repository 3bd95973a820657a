"""Per-network facts: the one table that says how signet, testnet4 and mainnet differ."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class NetworkFacts:
    """What Bitcoin Core, sv2-tp and address validation need to know about one network."""

    name: str  # the stack setting's value
    core_chain: str  # Bitcoin Core's and sv2-tp's `chain=` value
    rpc_port: int
    p2p_port: int
    bech32_hrp: str  # segwit addresses: bc1… / tb1…
    p2pkh_version: int  # base58check version byte of 1… / m…, n… addresses
    p2sh_version: int  # base58check version byte of 3… / 2… addresses
    default_storage: str  # node volume for an unpruned node, with room to grow
    # The node container's default requests and limits (nodeResources). The CPU includes a
    # core for sv2-tp, which keeps one busy while the pool is connected:
    # docs/upstream-behaviour.md#sv2-tp-keeps-a-core-busy-while-a-client-is-connected
    node_resources: Mapping[str, Mapping[str, str]]
    min_full_storage: str  # the least an unpruned node can live with today (the policy pack's floor)
    is_mainnet: bool
    # sv2-tp serves templates during initial block download on signet only; a private signet
    # stays "in IBD" until somebody mines.
    # docs/upstream-behaviour.md#sv2-tp-serves-templates-during-initial-block-download-on-signet-only
    templates_during_ibd: bool = False

    @property
    def sv2_tp_chain_option(self) -> tuple[str, object]:
        """sv2-tp checks -signet itself (not -chain=signet) for a signet-only template rule:
        docs/upstream-behaviour.md#sv2-tp-checks-the-signet-option-itself-for-its-segwit-rule"""
        return ("signet", 1) if self.core_chain == "signet" else ("chain", self.core_chain)

    @property
    def section(self) -> str | None:
        """The config-file section for network-only options; mainnet reads the top level."""
        return None if self.core_chain == "main" else self.core_chain


# Room a pruned node needs besides its kept block files: mainnet's chainstate alone
# exceeds 10 GiB, and grows.
PRUNED_OVERHEAD_GIB: Final = 15


def pruned_storage(prune_mib: int) -> str:
    """Volume of a node that keeps `prune_mib` MiB of block files."""
    return f"{-(-prune_mib // 1024) + PRUNED_OVERHEAD_GIB}Gi"


# The smallest node volume of any kind, a pruned node's included.
MIN_NODE_VOLUME: Final = "1Gi"


def minimum_storage(network: NetworkFacts, *, pruned: bool) -> str:
    """The smallest node volume the program accepts: an unpruned node holds its network's whole
    chain. One rule for the settings, the policy pack and the tests' valid settings."""
    return MIN_NODE_VOLUME if pruned else network.min_full_storage


def _resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> dict[str, dict[str, str]]:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu_limit, "memory": memory_limit}}


NETWORKS: Final[dict[str, NetworkFacts]] = {
    "signet": NetworkFacts(
        name="signet",
        core_chain="signet",
        rpc_port=38332,
        p2p_port=38333,
        bech32_hrp="tb",
        p2pkh_version=0x6F,
        p2sh_version=0xC4,
        default_storage="10Gi",
        min_full_storage="10Gi",
        node_resources=_resources("1500m", "2Gi", "3", "4Gi"),
        is_mainnet=False,
        templates_during_ibd=True,
    ),
    "testnet4": NetworkFacts(
        name="testnet4",
        core_chain="testnet4",
        rpc_port=48332,
        p2p_port=48333,
        bech32_hrp="tb",
        p2pkh_version=0x6F,
        p2sh_version=0xC4,
        default_storage="50Gi",
        min_full_storage="50Gi",
        node_resources=_resources("2", "3Gi", "3", "6Gi"),
        is_mainnet=False,
    ),
    "mainnet": NetworkFacts(
        name="mainnet",
        core_chain="main",
        rpc_port=8332,
        p2p_port=8333,
        bech32_hrp="bc",
        p2pkh_version=0x00,
        p2sh_version=0x05,
        # A full chain with room to grow through 2027 (about 700 GB at the end of 2025).
        default_storage="1Ti",
        min_full_storage="750Gi",
        node_resources=_resources("3", "8Gi", "5", "16Gi"),
        is_mainnet=True,
    ),
}

# Ports of the sv2 services; fixed by the design, identical on every network.
TEMPLATE_PROVIDER_PORT: Final = 8442
POOL_PORT: Final = 34254
TRANSLATOR_PORT: Final = 34255
MONITORING_PORT: Final = 8080
