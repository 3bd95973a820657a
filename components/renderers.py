"""Configuration files, rendered as text from settings, addresses and keys (pure functions)."""

from collections.abc import Iterable

import tomli_w

from components.networks import MONITORING_PORT, POOL_PORT, TEMPLATE_PROVIDER_PORT
from components.quantities import mebibytes
from components.settings import Settings

# What the node needs besides dbcache: mempool (300 MB default) plus code, peers and indexes.
_NODE_MEMORY_OVERHEAD_MIB = 1024
_MIN_DBCACHE_MIB = 450


def dbcache_mib(memory_limit: str) -> int:
    """dbcache that keeps the node under its memory limit during initial sync (no OOM kill)."""
    return max(_MIN_DBCACHE_MIB, (mebibytes(memory_limit) - _NODE_MEMORY_OVERHEAD_MIB) * 3 // 4)


def _ini(
    top: Iterable[tuple[str, object]], section: str | None, network_only: list[tuple[str, object]]
) -> str:
    """An INI-style config where network-only options sit in the chain's section.

    At top level they apply to mainnet only: Core refuses to start and sv2-tp silently
    ignores them on other chains. Mainnet has no section, so they go on top. See
    docs/upstream-behaviour.md#bitcoin-core-refuses-network-only-options-at-the-top-of-its-config-on-other-chains
    docs/upstream-behaviour.md#sv2-tp-ignores-network-options-at-the-top-of-its-config-on-other-chains
    """
    lines = ["# Rendered by sv2-k8s from the stack settings; do not edit in the cluster."]
    lines += [f"{key}={value}" for key, value in top]
    if section is None:
        lines += [f"{key}={value}" for key, value in network_only]
    else:
        lines += ["", f"[{section}]"] + [f"{key}={value}" for key, value in network_only]
    return "\n".join(lines) + "\n"


def bitcoin_conf(settings: Settings, rpcauth: str, p2p_node_port: int | None = None) -> str:
    """bitcoin.conf; `p2p_node_port` is where peers reach the node from outside the cluster."""
    facts = settings.facts
    top: list[tuple[str, object]] = [
        ("chain", facts.core_chain),
        ("server", 1),
        ("printtoconsole", 1),
        ("rpcauth", rpcauth),
        # Any pod may connect at the TCP level; the NetworkPolicies decide who can reach RPC.
        ("rpcallowip", "0.0.0.0/0"),
        ("dbcache", dbcache_mib(settings.node_resources.limits.memory)),
    ]
    if settings.pruned:
        top.append(("prune", settings.prune_mib))
    network_only: list[tuple[str, object]] = [
        ("port", facts.p2p_port),
        ("bind", "0.0.0.0"),
        ("rpcport", facts.rpc_port),
        # Bound to the pod's interfaces so the RPC Service reaches it.
        ("rpcbind", "0.0.0.0"),
    ]
    if settings.signet_challenge:
        network_only.append(("signetchallenge", settings.signet_challenge))
    if settings.p2p_external_address and p2p_node_port:
        # Peers learn the node's address from what it advertises: the NodePort, not the
        # container's port (Core takes a port in -externalip; it also stops -discover).
        host = settings.p2p_external_address
        host = f"[{host}]" if ":" in host else host
        network_only.append(("externalip", f"{host}:{p2p_node_port}"))
    network_only += [("connect", peer) for peer in settings.signet_connect]
    network_only += [("addnode", peer) for peer in settings.signet_addnode]
    return _ini(top, facts.section, network_only)


def sv2_tp_conf(settings: Settings) -> str:
    facts = settings.facts
    network_only: list[tuple[str, object]] = [
        # sv2-tp defaults to 127.0.0.1 and a per-chain port; the pool is in another pod.
        ("sv2bind", "0.0.0.0"),
        ("sv2port", TEMPLATE_PROVIDER_PORT),
        ("sv2interval", settings.tp_interval_secs),
        ("sv2feedelta", settings.tp_fee_delta_sats),
        ("ipcconnect", "unix"),
    ]
    return _ini([facts.sv2_tp_chain_option, ("printtoconsole", 1)], facts.section, network_only)


def pool_toml(
    settings: Settings,
    *,
    authority_public_key: str,
    authority_secret_key: str,
    template_provider_ip: str,
    template_provider_public_key: str,
) -> str:
    return tomli_w.dumps(
        {
            "listen_address": f"0.0.0.0:{POOL_PORT}",
            "monitoring_address": f"0.0.0.0:{MONITORING_PORT}",
            "authority_public_key": authority_public_key,
            "authority_secret_key": authority_secret_key,
            "cert_validity_sec": settings.cert_validity_secs,
            "coinbase_reward_script": f"addr({settings.payout_address})",
            "server_id": settings.server_id,
            "pool_signature": settings.pool_signature,
            "shares_per_minute": settings.pool_shares_per_minute,
            "share_batch_size": settings.share_batch_size,
            "supported_extensions": [],
            "required_extensions": [],
            "template_provider_type": {
                "Sv2Tp": {
                    # An IP literal: v0.2.0 refuses DNS names
                    # (docs/upstream-behaviour.md#sv2-apps-v020-takes-ip-literals-only).
                    "address": f"{template_provider_ip}:{TEMPLATE_PROVIDER_PORT}",
                    "public_key": template_provider_public_key,
                }
            },
        }
    )


def translator_toml(settings: Settings, *, downstream_port: int, pool_ip: str, pool_public_key: str) -> str:
    upstreams = [{"address": pool_ip, "port": POOL_PORT, "authority_pubkey": pool_public_key}]
    upstreams += [
        {"address": u.address, "port": u.port, "authority_pubkey": u.authority_pubkey}
        for u in settings.failover_upstreams
    ]
    return tomli_w.dumps(
        {
            "downstream_address": "0.0.0.0",
            "downstream_port": downstream_port,
            "monitoring_address": f"0.0.0.0:{MONITORING_PORT}",
            "max_supported_version": 2,
            "min_supported_version": 2,
            "downstream_extranonce2_size": settings.downstream_extranonce2_size,
            "user_identity": settings.user_identity,
            "aggregate_channels": settings.aggregate_channels,
            "supported_extensions": [],
            "required_extensions": [],
            "downstream_difficulty_config": {
                "min_individual_miner_hashrate": settings.min_individual_miner_hashrate,
                "shares_per_minute": settings.translator_shares_per_minute,
                "enable_vardiff": settings.enable_vardiff,
                "job_keepalive_interval_secs": settings.job_keepalive_interval_secs,
            },
            "upstreams": upstreams,
        }
    )
