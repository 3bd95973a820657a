"""The node cluster's network on the host (docs/testing.md#node-agent): a bridge of our own with a
private address, which the API server, the kubelet and the registry listen on and the pods hang
off (the CNI bridge plugin attaches their veths to it); routes that send the Service and
load-balancer ranges to it; and a guard that drops whatever reaches those addresses from any other
interface, so that nothing we run answers beyond this machine.

Teardown deletes the bridge (its routes go with it) and every iptables chain of ours, of kube-proxy
and kube-router (KUBE-*) and of the CNI plugins (CNI-*), with the rules that jump to them, in IPv4
and IPv6; then kube-router's ipsets (KUBE-*, which those rules referred to).
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tests.e2e.cluster.control_plane import SERVICE_CIDR
from tests.e2e.processes import E2EError, output_of

BRIDGE = "sv2e2e0"
GATEWAY = "10.88.0.1"  # the bridge's address: API server, kubelet, registry; the pods' gateway
POD_SUBNET = "10.88.0.0/24"
POD_RANGE = ("10.88.0.10", "10.88.0.250")
LOAD_BALANCER_SUBNET = "10.88.1.0/24"  # the load-balancer stand-in's pool; kube-proxy routes it
CNI_NETWORK = "sv2-e2e"
GUARD_CHAIN = "SV2-E2E-GUARD"
OWNED_CHAIN_PREFIXES = ("KUBE-", "CNI-", "SV2-E2E-")
OWNED_IPSET_PREFIXES = ("KUBE-", "inet6:KUBE-")  # kube-router's (policy_enforcer.py)
TABLES = ("raw", "mangle", "nat", "filter")
FAMILIES = ("iptables", "ip6tables")


def ip(*args: str) -> str:
    return output_of(["ip", *args], timeout=30)


def load_balancer_pool() -> list[str]:
    network = ipaddress.ip_network(LOAD_BALANCER_SUBNET)
    return [str(address) for address in network.hosts()][9:]  # from .10, as the pods' range


def our_ranges() -> list[ipaddress.IPv4Network]:
    return [ipaddress.IPv4Network(cidr) for cidr in (POD_SUBNET, LOAD_BALANCER_SUBNET, SERVICE_CIDR)]


def conflicts() -> list[str]:
    """Why the host cannot take our bridge now: it exists, or a route overlaps our ranges (another
    cluster of ours still up, or a network of the machine's), or chains of ours are there."""
    found = []
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        found.append(f"interface {BRIDGE} exists")
    for route in json.loads(ip("-j", "-4", "route", "show", "table", "all")):
        destination = route.get("dst", "")
        if destination in ("default", "") or route.get("type") in ("local", "broadcast"):
            continue
        network = ipaddress.ip_network(
            destination if "/" in destination else f"{destination}/32", strict=False
        )
        if any(network.overlaps(ours) for ours in our_ranges()):
            found.append(f"route {destination} dev {route.get('dev', '?')} overlaps our ranges")
    found += [f"iptables {chain} exists" for chain in owned_iptables()]
    found += [f"ipset {name} exists" for name in owned_ipsets()]
    return found


def up() -> None:
    """The bridge with its address, the routes of the Service and load-balancer ranges through it,
    and the guard (on a host where `conflicts` is empty)."""
    ip("link", "add", BRIDGE, "type", "bridge")
    ip("addr", "add", f"{GATEWAY}/{POD_SUBNET.split('/')[1]}", "dev", BRIDGE)
    ip("link", "set", BRIDGE, "up")
    # Host-originated traffic to a Service or load-balancer address leaves by the bridge (kube-proxy
    # rewrites it there), never by the default route: unanswered, it stays on the machine.
    for cidr in (SERVICE_CIDR, LOAD_BALANCER_SUBNET):
        ip("route", "add", cidr, "dev", BRIDGE, "src", GATEWAY)
    guard = [f"-A {GUARD_CHAIN} -i lo -j RETURN", f"-A {GUARD_CHAIN} -i {BRIDGE} -j RETURN"]
    guard += [
        f"-A {GUARD_CHAIN} -d {cidr} -j DROP" for cidr in (POD_SUBNET, LOAD_BALANCER_SUBNET, SERVICE_CIDR)
    ]
    _restore("iptables", "raw", [f":{GUARD_CHAIN} - [0:0]", f"-I PREROUTING -j {GUARD_CHAIN}", *guard])


def down() -> list[str]:
    """Deletes the bridge and every owned iptables chain and the rules jumping to them; returns what
    failed (empty when all went)."""
    failed = []
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        try:
            ip("link", "del", BRIDGE)
        except E2EError as error:
            failed.append(str(error))
    for family in FAMILIES:
        for table in TABLES:
            try:
                _sweep(family, table)
            except E2EError as error:
                failed.append(str(error))
    for name in owned_ipsets():  # after the rules that refer to them
        try:
            output_of(["ipset", "destroy", name], timeout=30)
        except E2EError as error:
            failed.append(str(error))
    return failed


def cni_config(ipam_dir: Path) -> dict[str, Any]:
    """The pods' network: veths on our bridge, addresses from POD_RANGE (allocations kept in
    `ipam_dir`, not /var/lib/cni), the default route through the bridge; no masquerade (pods have
    nowhere else to go); hostPort through portmap."""
    return {
        "cniVersion": "0.4.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,  # a pod reaches itself through its own Service
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(ipam_dir),
                    "ranges": [
                        [
                            {
                                "subnet": POD_SUBNET,
                                "rangeStart": POD_RANGE[0],
                                "rangeEnd": POD_RANGE[1],
                                "gateway": GATEWAY,
                            }
                        ]
                    ],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def owned_iptables() -> list[str]:
    """'family table chain' of every owned chain, and 'family table: rule' of every rule elsewhere
    that jumps to one."""
    found = []
    for family in FAMILIES:
        for table in TABLES:
            chains, jumps = _owned(family, table)
            found += [f"{family} {table} {chain}" for chain in chains]
            found += [f"{family} {table}: {rule}" for rule in jumps]
    return found


def owned_ipsets() -> list[str]:
    """Names of every owned ipset (none where the ipset tool is not installed)."""
    if shutil.which("ipset") is None:
        return []
    names = output_of(["ipset", "list", "-name"], timeout=30).split()
    return [name for name in names if name.startswith(OWNED_IPSET_PREFIXES)]


def _owned(family: str, table: str) -> tuple[list[str], list[str]]:
    """Owned chains of a table, and the rules of other chains that jump to them."""
    try:
        text = output_of([f"{family}-save", "-t", table], timeout=60)
    except E2EError as error:
        if "does not exist" in str(error) or "Table does not exist" in str(error):
            return [], []
        raise
    chains, jumps = [], []
    for line in text.splitlines():
        if line.startswith(":") and line[1:].startswith(OWNED_CHAIN_PREFIXES):
            chains.append(line[1:].split()[0])
        elif line.startswith("-A "):
            words = shlex.split(line)
            target = next((words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-j", "-g")), "")
            if not words[1].startswith(OWNED_CHAIN_PREFIXES) and target.startswith(OWNED_CHAIN_PREFIXES):
                jumps.append(line)
    return chains, jumps


def _sweep(family: str, table: str) -> None:
    chains, jumps = _owned(family, table)
    if chains or jumps:
        deletes = ["-D" + rule[2:] for rule in jumps]
        _restore(family, table, [*deletes, *(f"-F {c}" for c in chains), *(f"-X {c}" for c in chains)])


def _restore(family: str, table: str, lines: list[str]) -> None:
    """Applies `lines` to `table` in one transaction, leaving everything else as it is."""
    with tempfile.NamedTemporaryFile("w", prefix="sv2-e2e-rules-", suffix=".txt") as rules:
        rules.write(f"*{table}\n" + "".join(f"{line}\n" for line in lines) + "COMMIT\n")
        rules.flush()
        output_of([f"{family}-restore", "--noflush", rules.name], timeout=60)
