"""The sv2-k8s policies: validators over (resource_type, props), and their adapters.

Each validator returns the violation messages for one resource: none when it complies
or when the policy does not apply to its type. Props arrive as the Kubernetes API
shapes them (camelCase). During a preview some inputs are unknown (a Service address not
yet assigned, a TOML that embeds it): the adapter hands the validators `UNKNOWN` in their
place, each validator passes over a value it cannot know, and the advisory policy
`checked-at-up` names those values, which `pulumi up` checks once they are known. A value
pulumi-policy would otherwise refuse to read stops the whole policy for that resource.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Final

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    ReportViolation,
    ResourceValidation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

# The program's own tables: the repository root is on sys.path (see __main__.py).
from components.networks import MONITORING_PORT, NETWORKS, TEMPLATE_PROVIDER_PORT, minimum_storage
from components.quantities import parse_quantity

Props = Mapping[str, object]
Validator = Callable[[str, Props], list[str]]
Container = tuple[str, Mapping[str, object]]

# Where each workload kind keeps its pod spec.
POD_SPEC_PATHS: Final[Mapping[str, tuple[str, ...]]] = {
    "kubernetes:core/v1:Pod": ("spec",),
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
SERVICE: Final = "kubernetes:core/v1:Service"
CONFIG_MAP: Final = "kubernetes:core/v1:ConfigMap"
STATEFUL_SET: Final = "kubernetes:apps/v1:StatefulSet"

# Bitcoin Core's regtest RPC port: no stack runs regtest, but an experiment might.
REGTEST_RPC_PORT: Final = 18443
RPC_PORTS: Final = {REGTEST_RPC_PORT} | {net.rpc_port for net in NETWORKS.values()}
INTERNAL_PORTS: Final = frozenset({TEMPLATE_PROVIDER_PORT} | RPC_PORTS)
PUBLIC_SERVICE_TYPES: Final = frozenset({"LoadBalancer", "NodePort"})
METRICS_PORT_NAMES: Final = frozenset({"metrics", "monitoring"})

SECRET_KEY_WORDS: Final = ("secret", "password", "rpcauth", "token", "private")
SECRET_VALUE_MARKERS: Final = ("authority_secret_key", "rpcauth=", "rpcpassword=")

NAME_LABEL: Final = "app.kubernetes.io/name"
NODE_APP_NAME: Final = "bitcoin-node"
NETWORK_LABEL: Final = "sv2-k8s/network"
PRUNED_ANNOTATION: Final = "sv2-k8s/pruned"

HOST_NAMESPACES: Final = ("hostNetwork", "hostPID", "hostIPC")
ALLOWED_ADDED_CAPABILITIES: Final = frozenset({"NET_BIND_SERVICE"})
ALLOWED_SECCOMP_TYPES: Final = frozenset({"RuntimeDefault", "Localhost"})
SECCOMP_HINT: Final = "RuntimeDefault or Localhost"


# Reading props: tolerant of missing levels, so that each policy names what is absent.


class _Unknown:
    """A value the engine cannot know during a preview."""

    def __repr__(self) -> str:
        return "<unknown during preview>"


UNKNOWN: Final = _Unknown()


def resolve_unknowns(value: object, path: str = "") -> tuple[object, list[str]]:
    """A plain copy of pulumi-policy's props proxy with `UNKNOWN` where a value is unknown
    (the proxy raises on reading one), and the paths of those values."""
    if value is UNKNOWN:
        return UNKNOWN, [path]
    if isinstance(value, Mapping):
        plain: dict[str, object] = {}
        unknown: list[str] = []
        for key in value:
            plain[key], below = _resolve_item(value, key, f"{path}.{key}")
            unknown += below
        return plain, unknown
    if isinstance(value, Sequence) and not isinstance(value, str):
        items: list[object] = []
        unknown = []
        for index in range(len(value)):
            item, below = _resolve_item(value, index, f"{path}[{index}]")
            items.append(item)
            unknown += below
        return items, unknown
    return value, []


def _resolve_item(container: object, key: object, path: str) -> tuple[object, list[str]]:
    try:
        item = container[key]  # type: ignore[index]
    except UnknownValueError:
        return UNKNOWN, [path]
    return resolve_unknowns(item, path)


def _field(obj: object, *path: str) -> object:
    """The value at `path` below `obj`; None where a level is missing or no mapping, UNKNOWN
    below an unknown level."""
    for key in path:
        if obj is UNKNOWN:
            return UNKNOWN
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _mapping(obj: object) -> Mapping[str, object]:
    return obj if isinstance(obj, Mapping) else {}


def _mappings(obj: object) -> list[Mapping[str, object]]:
    """The mapping elements of a list prop (containers, ports, volumes, …)."""
    if isinstance(obj, Sequence) and not isinstance(obj, str):
        return [item for item in obj if isinstance(item, Mapping)]
    return []


def _strings(obj: object) -> set[str]:
    """The string elements of a list prop (capability names)."""
    if isinstance(obj, Sequence) and not isinstance(obj, str):
        return {item for item in obj if isinstance(item, str)}
    return set()


def pod_spec(resource_type: str, props: Props) -> Mapping[str, object] | None:
    """The pod spec of a workload resource; None for other resource types."""
    path = POD_SPEC_PATHS.get(resource_type)
    return None if path is None else _mapping(_field(props, *path))


def _containers(spec: Mapping[str, object], *, init: bool) -> list[Container]:
    """(label, container) pairs; the label names the container in messages."""
    kinds = ("containers", "initContainers") if init else ("containers",)
    return [
        (f"{kind[:-1]} '{container.get('name')}'", container)
        for kind in kinds
        for container in _mappings(spec.get(kind))
    ]


# Validators.


def image_problem(image: object) -> str | None:
    """Why an image reference is not pinned; None with a version tag or a digest, or unknown."""
    if image is UNKNOWN:
        return None
    if not isinstance(image, str) or not image:
        return "has no image"
    if "@sha256:" in image:
        return None
    # A colon before the last slash belongs to a registry's host:port, not to a tag.
    name = image.rsplit("/", 1)[-1]
    if ":" not in name:
        return f"image '{image}' has no tag"
    if name.rsplit(":", 1)[1] == "latest":
        return f"image '{image}' uses the 'latest' tag"
    return None


def check_pinned_images(resource_type: str, props: Props) -> list[str]:
    """No container or initContainer runs an untagged or `latest` image."""
    spec = pod_spec(resource_type, props)
    if spec is None:
        return []
    messages = []
    for label, container in _containers(spec, init=True):
        problem = image_problem(container.get("image"))
        if problem is not None:
            messages.append(
                f"{label} {problem}: pin a version tag or an @sha256 digest",
            )
    return messages


def check_resources_and_probes(resource_type: str, props: Props) -> list[str]:
    """Every container sets cpu and memory requests and limits, and both probes."""
    spec = pod_spec(resource_type, props)
    if spec is None:
        return []
    messages = []
    for label, container in _containers(spec, init=False):
        for bound in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if _field(container, "resources", bound, resource) is None:
                    messages.append(f"{label} sets no resources.{bound}.{resource}")
        for probe in ("livenessProbe", "readinessProbe"):
            if not _mapping(container.get(probe)):
                messages.append(f"{label} has no {probe}")
    return messages


def check_no_secrets_in_configmaps(resource_type: str, props: Props) -> list[str]:
    """ConfigMaps carry no credentials: Secrets do, guarded by RBAC and encryption."""
    if resource_type != CONFIG_MAP:
        return []
    messages = []
    for section in ("data", "binaryData"):
        for key, value in _mapping(props.get(section)).items():
            words = [word for word in SECRET_KEY_WORDS if word in key.lower()]
            if words:
                found = ", ".join(words)
                messages.append(f"{section} key '{key}' names {found}: use a Secret")
            text = value.lower() if isinstance(value, str) else ""
            markers = [marker for marker in SECRET_VALUE_MARKERS if marker in text]
            if markers:
                found = ", ".join(markers)
                messages.append(f"{section} '{key}' contains {found}: use a Secret")
    return messages


def _service_ports(props: Props) -> list[Mapping[str, object]]:
    return _mappings(_field(props, "spec", "ports"))


def _port_numbers(port: Mapping[str, object]) -> set[int]:
    """The service port and, when numeric, the container port it forwards to."""
    numbers = (port.get("port"), port.get("targetPort"))
    return {number for number in numbers if isinstance(number, int)}


def check_internal_services_cluster_ip(resource_type: str, props: Props) -> list[str]:
    """Services of the template provider or Bitcoin Core RPC are ClusterIP only."""
    if resource_type != SERVICE:
        return []
    ports = {number for port in _service_ports(props) for number in _port_numbers(port)}
    internal = sorted(ports & INTERNAL_PORTS)
    if not internal:
        return []
    messages = []
    service_type = _field(props, "spec", "type") or "ClusterIP"
    if service_type not in ("ClusterIP", UNKNOWN):
        messages.append(f"exposes ports {internal} as {service_type}, not ClusterIP")
    if _field(props, "spec", "externalIPs"):
        messages.append(f"exposes ports {internal} on spec.externalIPs")
    return messages


def check_metrics_not_public(resource_type: str, props: Props) -> list[str]:
    """LoadBalancer and NodePort Services expose no monitoring or metrics port."""
    service_type = _field(props, "spec", "type")
    if resource_type != SERVICE or service_type not in PUBLIC_SERVICE_TYPES:
        return []
    messages = []
    for port in _service_ports(props):
        names = {str(port.get("name")).lower(), str(port.get("targetPort")).lower()}
        if MONITORING_PORT in _port_numbers(port) or names & METRICS_PORT_NAMES:
            messages.append(
                f"port {port.get('name') or port.get('port')} serves metrics on a "
                f"{service_type} Service: expose it through a ClusterIP Service",
            )
    return messages


def _is_node(props: Props) -> bool:
    # The name label may sit on the StatefulSet or only on its pod template.
    names = (
        _field(props, "metadata", "labels", NAME_LABEL),
        _field(props, "spec", "template", "metadata", "labels", NAME_LABEL),
    )
    return NODE_APP_NAME in names


def check_node_volume(resource_type: str, props: Props) -> list[str]:
    """An unpruned node's volume holds its network's chain (components/networks.py)."""
    if resource_type != STATEFUL_SET or not _is_node(props):
        return []
    network = _field(props, "metadata", "labels", NETWORK_LABEL)
    pruned = _field(props, "metadata", "annotations", PRUNED_ANNOTATION)
    facts = NETWORKS.get(network) if isinstance(network, str) else None
    messages = []
    if facts is None:
        expected = ", ".join(NETWORKS)
        messages.append(f"label {NETWORK_LABEL} is {network!r}, not one of {expected}")
    if pruned not in ("true", "false"):
        messages.append(f"annotation {PRUNED_ANNOTATION} is {pruned!r}, not true/false")
    if facts is None or pruned != "false":
        return messages
    minimum = minimum_storage(facts, pruned=False)
    claims = _field(props, "spec", "volumeClaimTemplates")
    templates = _mappings(claims)
    if claims is UNKNOWN:
        return messages
    if not templates:
        return [f"an unpruned {network} node needs a volume claim of {minimum} or more"]
    for template in templates:
        name = _field(template, "metadata", "name")
        storage = _field(template, "spec", "resources", "requests", "storage")
        if storage is UNKNOWN:
            continue
        try:
            size = parse_quantity(storage if isinstance(storage, str) else "")
        except ValueError:
            messages.append(f"volume claim '{name}' requests storage {storage!r}")
            continue
        if size < parse_quantity(minimum):
            messages.append(
                f"volume claim '{name}' requests {storage}, below the {minimum} an "
                f"unpruned {network} node needs: enlarge it or prune the node",
            )
    return messages


def _security_context(obj: Mapping[str, object]) -> Mapping[str, object]:
    return _mapping(obj.get("securityContext"))


def _pod_level_problems(spec: Mapping[str, object]) -> list[str]:
    messages = [f"pod sets {name}: true" for name in HOST_NAMESPACES if spec.get(name)]
    messages += [
        f"volume '{volume.get('name')}' is a hostPath volume"
        for volume in _mappings(spec.get("volumes"))
        if volume.get("hostPath") is not None
    ]
    context = _security_context(spec)
    if context.get("runAsUser") == 0:
        messages.append("pod runs as user 0 (root)")
    seccomp = _field(context, "seccompProfile", "type")
    if seccomp is not None and seccomp not in ALLOWED_SECCOMP_TYPES | {UNKNOWN}:
        messages.append(f"pod seccompProfile is {seccomp}, not {SECCOMP_HINT}")
    return messages


def _container_problems(
    label: str,
    context: Mapping[str, object],
    pod_context: Mapping[str, object],
) -> list[str]:
    messages = []
    # A container's own setting wins; without one, the pod's applies.
    non_root = context.get("runAsNonRoot")
    if non_root is None:
        non_root = pod_context.get("runAsNonRoot")
    if non_root not in (True, UNKNOWN):
        messages.append(f"{label} does not set runAsNonRoot: true (nor does the pod)")
    if context.get("runAsUser") == 0:
        messages.append(f"{label} runs as user 0 (root)")
    if context.get("privileged") is True:
        messages.append(f"{label} is privileged")
    if context.get("allowPrivilegeEscalation") not in (False, UNKNOWN):
        messages.append(f"{label} does not set allowPrivilegeEscalation: false")
    capabilities = _mapping(context.get("capabilities"))
    if capabilities.get("drop") is not UNKNOWN and "ALL" not in _strings(capabilities.get("drop")):
        messages.append(f"{label} does not drop ALL capabilities")
    added = sorted(_strings(capabilities.get("add")) - ALLOWED_ADDED_CAPABILITIES)
    if added:
        messages.append(f"{label} adds capabilities {added}, not only NET_BIND_SERVICE")
    seccomp = _field(context, "seccompProfile", "type")
    if seccomp is None:
        seccomp = _field(pod_context, "seccompProfile", "type")
    if seccomp not in ALLOWED_SECCOMP_TYPES | {UNKNOWN}:
        messages.append(f"{label} seccompProfile is {seccomp}, not {SECCOMP_HINT}")
    return messages


def check_pod_security_restricted(resource_type: str, props: Props) -> list[str]:
    """Pods meet the Pod Security Standards' `restricted` profile."""
    spec = pod_spec(resource_type, props)
    if spec is None:
        return []
    pod_context = _security_context(spec)
    messages = _pod_level_problems(spec)
    for label, container in _containers(spec, init=True):
        context = _security_context(container)
        messages += _container_problems(label, context, pod_context)
    return messages


# The pulumi-policy adapters.


def adapt(validator: Validator) -> ResourceValidation:
    """A pulumi-policy validation that reports each message of `validator`."""

    def validate(
        args: ResourceValidationArgs,
        report_violation: ReportViolation,
    ) -> None:
        props, _ = resolve_unknowns(args.props)
        for message in validator(args.resource_type, _mapping(props)):
            report_violation(message, None)

    return validate


def check_values_known(resource_type: str, props: Props) -> list[str]:
    """Values unknown during a preview are checked by `pulumi up`, once the engine knows them."""
    _, unknown = resolve_unknowns(props)
    if not unknown:
        return []
    return [f"not checked during preview, unknown until up: {', '.join(unknown)}"]


def _policy(
    name: str, validator: Validator, level: EnforcementLevel = EnforcementLevel.MANDATORY
) -> ResourceValidationPolicy:
    # The validator's docstring is the description Pulumi prints beside a violation.
    return ResourceValidationPolicy(
        name=name,
        description=validator.__doc__ or name,
        validate=adapt(validator),
        enforcement_level=level,
    )


POLICIES: Final[list[Policy]] = [
    _policy("pinned-images", check_pinned_images),
    _policy("container-resources-and-probes", check_resources_and_probes),
    _policy("no-secrets-in-configmaps", check_no_secrets_in_configmaps),
    _policy("internal-services-cluster-ip", check_internal_services_cluster_ip),
    _policy("metrics-not-public", check_metrics_not_public),
    _policy("node-volume-minimum", check_node_volume),
    _policy("pod-security-restricted", check_pod_security_restricted),
    _policy("checked-at-up", check_values_known, EnforcementLevel.ADVISORY),
]
