"""sv2-k8s: Stratum V2 mining on Kubernetes.

miners ──SV1──▶ Translator (LB :34255) ──SV2──▶ Pool (:34254) ──SV2 TDP──▶ BitcoinNode (sv2-tp :8442)
"""

import pulumi

from components.bitcoin_node import BitcoinNode, BitcoinNodeArgs
from components.credentials import Credentials, CredentialsArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.namespace import cluster_connection, kubernetes_provider, mining_namespace
from components.network_policies import NetworkPolicies, NetworkPoliciesArgs
from components.networks import TEMPLATE_PROVIDER_PORT
from components.pool import Pool, PoolArgs
from components.stack_config import load_settings
from components.translator import Translator, TranslatorArgs

settings, registry_password = load_settings()

connection = cluster_connection()
cluster = kubernetes_provider(connection)
namespace = mining_namespace(settings, connection)
in_namespace = pulumi.ResourceOptions(depends_on=[namespace], providers=[cluster])
credentials = Credentials("credentials", CredentialsArgs(settings))
NetworkPolicies("network-policy", NetworkPoliciesArgs(settings), opts=in_namespace)

node = BitcoinNode(
    f"bitcoin-{settings.facts.core_chain}",
    BitcoinNodeArgs(
        settings=settings,
        template_provider_keys=credentials.template_provider_keys,
        rpcauth=credentials.rpcauth,
        rpc_user=credentials.rpc_user,
        rpc_password=credentials.rpc_password,
        registry_password=registry_password,
    ),
    opts=in_namespace,
)
pool = Pool(
    "pool",
    PoolArgs(
        settings=settings,
        pool_keys=credentials.pool_keys,
        template_provider_ip=node.template_provider_ip,
        template_provider_public_key=credentials.template_provider_public_key,
    ),
    opts=in_namespace,
)
translator = Translator(
    "translator",
    TranslatorArgs(settings=settings, pool_ip=pool.address, pool_public_key=credentials.pool_public_key),
    opts=in_namespace,
)
if settings.monitoring_enabled:
    Monitoring("monitoring", MonitoringArgs(settings, node_claim=node.chain_data_claim), opts=in_namespace)

pulumi.export("network", settings.network)
pulumi.export("namespace", settings.namespace)
pulumi.export("minersUrl", translator.miners_url)
pulumi.export("loadBalancerAddress", translator.load_balancer_address)
pulumi.export("poolPublicKey", credentials.pool_public_key)
pulumi.export("templateProviderPublicKey", credentials.template_provider_public_key)
pulumi.export(
    "templateProviderAddress", node.template_provider_ip.apply(lambda ip: f"{ip}:{TEMPLATE_PROVIDER_PORT}")
)
pulumi.export("rpcUser", credentials.rpc_user)
pulumi.export("rpcPassword", credentials.rpc_password)
pulumi.export("nodeImage", node.image)
