"""The node's metrics: Bitcoin Core serves none, so the node pod runs an exporter sidecar that
reads RPC on the pod's loopback with the generated credentials. The node component adds it
(monitoringEnabled), the monitoring component scrapes it.
"""

from typing import Final

import pulumi

from components import workload
from components.setting_types import Resources

EXPORTER_SOURCE: Final = "jvstein/bitcoin-prometheus-exporter v0.7.0"
EXPORTER_CONTAINER: Final = "bitcoin-exporter"
EXPORTER_PORT: Final = 9332  # the exporter's default METRICS_PORT
EXPORTER_UID: Final = 10030
# Keys of the Secret that holds the exporter's RPC credentials.
RPC_USER_KEY: Final = "rpc-user"
RPC_PASSWORD_KEY: Final = "rpc-password"


def node_exporter_container(
    image: str, resources: Resources, rpc_port: int, credentials_secret_name: pulumi.Input[str]
) -> workload.Fields:
    """The exporter sidecar: RPC over the pod's loopback, credentials from the Secret only."""

    def from_secret(key: str) -> workload.Fields:
        return {"valueFrom": {"secretKeyRef": {"name": credentials_secret_name, "key": key}}}

    return {
        "name": EXPORTER_CONTAINER,
        "image": image,
        "imagePullPolicy": workload.pull_policy(image),
        "env": [
            {"name": "BITCOIN_RPC_HOST", "value": "127.0.0.1"},
            {"name": "BITCOIN_RPC_PORT", "value": str(rpc_port)},
            {"name": "BITCOIN_RPC_USER", **from_secret(RPC_USER_KEY)},
            {"name": "BITCOIN_RPC_PASSWORD", **from_secret(RPC_PASSWORD_KEY)},
            {"name": "METRICS_PORT", "value": str(EXPORTER_PORT)},
        ],
        "ports": [{"name": workload.METRICS_PORT_NAME, "containerPort": EXPORTER_PORT, "protocol": "TCP"}],
        "resources": workload.resources(resources),
        "securityContext": workload.container_security(EXPORTER_UID),
        # TCP, not /metrics: a scrape makes RPC calls, which stall while the node warms up.
        "readinessProbe": workload.tcp_probe(EXPORTER_PORT),
        "livenessProbe": workload.tcp_probe(EXPORTER_PORT, period=30, delay=10),
        "volumeMounts": [workload.scratch_mount()],
    }
