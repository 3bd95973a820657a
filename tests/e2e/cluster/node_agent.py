"""The kubelet and kube-proxy of the node cluster's one node (docs/testing.md#node-agent).

The kubelet registers the node with the bridge's address, runs pods through containerd's CRI with
the cgroupfs driver under its own cgroup root, keeps its files in the working folder, and serves
logs and exec on the bridge's address with a certificate of the cluster's CA (the API server checks
it, and shows its own). kube-proxy (iptables mode) programs Services, NodePorts on the bridge's
address only, and the load-balancer stand-in's addresses; it is told not to write the conntrack
and route_localnet sysctls, which it would otherwise raise.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.cluster.control_plane import ControlPlane
from tests.e2e.cluster.host_network import GATEWAY, POD_SUBNET
from tests.e2e.processes import Process, ProcessGroup, free_port, output_of, wait
from tests.e2e.toolchain import binary


class NodeAgent:
    def __init__(self, folder: Path, plane: ControlPlane, node_name: str, runtime_endpoint: str, cgroup: str):
        self.folder, self.plane, self.node_name = folder, plane, node_name
        self.runtime_endpoint, self.cgroup = runtime_endpoint, cgroup
        self.root = folder / "kubelet"
        self.kubelet: Process | None = None
        self.proxy: Process | None = None

    def start_kubelet(self, group: ProcessGroup, timeout: float) -> Process:
        """The kubelet, once the node it registers is Ready."""
        pki = self.plane.pki
        assert pki is not None, "the control plane is up"
        pki.issue("kubelet-serving", f"/CN={self.node_name}", server_names=[GATEWAY, self.node_name])
        kubeconfig = self.plane.client_kubeconfig(
            "kubelet", f"/O=system:nodes/CN=system:node:{self.node_name}"
        )
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": GATEWAY,
            "port": free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(pki.path("ca.crt"))},
            },
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(pki.path("kubelet-serving.crt")),
            "tlsPrivateKeyFile": str(pki.path("kubelet-serving.key")),
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            "containerRuntimeEndpoint": self.runtime_endpoint,
            "cgroupDriver": "cgroupfs",  # containerd 1.6 cannot tell the kubelet (no RuntimeConfig)
            "cgroupRoot": f"/{self.cgroup}",
            "failCgroupV1": False,  # this machine kind has cgroup v1; 1.34 still runs on it
            "failSwapOn": False,
            "resolvConf": "/etc/resolv.conf",
            "volumePluginDir": str(self.folder / "volume-plugins"),
            "podLogsDir": str(self.folder / "pod-logs"),
            # The disk is shared with everything else on the machine: evict only when nearly full.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "2%",
                "imagefs.available": "2%",
            },
            "imageGCHighThresholdPercent": 99,
            "imageGCLowThresholdPercent": 98,
            "serializeImagePulls": False,
        }
        config_file = self.folder / "kubelet.json"
        config_file.write_text(json.dumps(config, indent=2))
        self.kubelet = group.start(
            "kubelet",
            [
                binary("kubelet"),
                f"--config={config_file}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.root}",
                f"--hostname-override={self.node_name}",
                f"--node-ip={GATEWAY}",
            ],
        )
        wait(
            lambda: self.ready() or None,
            timeout,
            f"node {self.node_name} Ready",
            [self.kubelet],
            interval=0.5,
        )
        return self.kubelet

    def ready(self) -> bool:
        """The node is Ready, and schedulable: the node-lifecycle controller lifted the not-ready
        taint the kubelet registered it with."""
        query = '{.status.conditions[?(@.type=="Ready")].status} {.spec.taints}'
        found = self.plane.kubectl("get", "node", self.node_name, "-o", f"jsonpath={query}", check=False)
        return found.strip() == "True"

    def start_proxy(self, group: ProcessGroup, timeout: float) -> Process:
        """kube-proxy, once it has programmed the `kubernetes` Service."""
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {
                "kubeconfig": str(self.plane.client_kubeconfig("kube-proxy", "/CN=system:kube-proxy"))
            },
            "mode": "iptables",
            "hostnameOverride": self.node_name,
            "bindAddress": GATEWAY,
            "healthzBindAddress": f"127.0.0.1:{free_port()}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            "clusterCIDR": POD_SUBNET,
            "nodePortAddresses": [POD_SUBNET],
            # Zero: leave the host's conntrack table size and timeouts as they are.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            # NodePorts on 127.0.0.1 would need route_localnet=1.
            "iptables": {"localhostNodePorts": False},
        }
        config_file = self.folder / "kube-proxy.json"
        config_file.write_text(json.dumps(config, indent=2))
        self.proxy = group.start("kube-proxy", [binary("kube-proxy"), f"--config={config_file}"])
        wait(
            lambda: "default/kubernetes:https" in output_of(["iptables-save", "-t", "nat"]) or None,
            timeout,
            "kube-proxy's rules for the kubernetes Service",
            [self.proxy],
            interval=0.5,
        )
        return self.proxy

    def proxy_cleanup(self) -> str:
        """kube-proxy's own removal of its rules (after it stopped); what it said."""
        try:
            return output_of([binary("kube-proxy"), "--cleanup"], timeout=60)
        except AssertionError as error:  # it also reports what it could not find
            return str(error)
