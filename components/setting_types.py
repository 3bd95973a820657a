"""Value types of the settings: checks for one value each, and the small models (resources,
upstreams, tolerations) that settings are made of. components/settings.py assembles them."""

import ipaddress
import re
from collections.abc import Callable
from types import UnionType
from typing import Annotated, Any, Final, Literal, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from components.quantities import canonical_quantity, parse_quantity

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_IMAGE_REF = re.compile(r"^[a-z0-9]([a-z0-9._/:-]*[a-z0-9])?(:[\w][\w.-]{0,127})?(@sha256:[0-9a-f]{64})?$")
# host[:port] of a peer: a name or IPv4 address, or [IPv6]; nothing that could end a config line.
_PEER = re.compile(r"^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?$")
# Kubernetes label/annotation keys: an optional DNS-subdomain prefix and a name.
_QUALIFIED_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
HEX = re.compile(r"^([0-9a-fA-F]{2})+$")

# Field types of sv2-apps: rates and hashrates are f32, counts usize, ports and keepalive u16.
# TOML integers are i64 whatever the Rust type.
# docs/upstream-behaviour.md#sv2-apps-config-fields-have-fixed-rust-types
F32_MAX: Final = 3.4028234663852886e38
F32_MIN_NORMAL: Final = 1.1754943508222875e-38
I64_MAX: Final = 2**63 - 1
U16_MAX: Final = 65535
# noise_sv2 1.4.2 (responder.rs) keeps the certificate validity as u32 seconds added to the
# current Unix time, itself a u32: past 2**31 the sum overflows before 2038.
MAX_CERT_VALIDITY_SECS: Final = 2**31 - 1
# The translator sends "<userIdentity>.miner<u32 id>" and, when aggregating,
# "<userIdentity up to its first dot>.translator-proxy", each as a Str0255 (at most 255 bytes).
# docs/upstream-behaviour.md#the-translator-sends-the-user-identity-in-a-255-byte-field
MAX_USER_IDENTITY_BYTES: Final = 255 - max(len(".miner") + len(str(2**32 - 1)), len(".translator-proxy"))
# The pool writes "/<poolSignature>/<miner tag>/" in one push of the coinbase scriptSig, which
# consensus caps at 100 bytes next to the BIP34 height and the pool's 20-byte extranonce push.
# docs/upstream-behaviour.md#the-pool-signature-shares-one-coinbase-push-with-the-miner-tag
MAX_POOL_SIGNATURE_BYTES: Final = 32


# --- reusable value checks -------------------------------------------------------------


def _quantity(text: str) -> str:
    if parse_quantity(text) <= 0:
        raise ValueError("must be greater than zero")
    # The API server stores the canonical form: anything else is a diff on every `pulumi up`.
    # docs/upstream-behaviour.md#pulumi-kubernetes-does-not-normalise-quantities
    return canonical_quantity(text)


def utf8_at_most(limit: int) -> Callable[[str], str]:
    def check(text: str) -> str:
        if len(text.encode()) > limit:
            raise ValueError(f"is {len(text.encode())} bytes in UTF-8, more than {limit}")
        return text

    return check


def coinbase_tag_check(text: str) -> str:
    if not text.isascii() or not text.isprintable() or "/" in text:
        raise ValueError("must be printable ASCII without '/' (the coinbase tag delimiter)")
    return utf8_at_most(MAX_POOL_SIGNATURE_BYTES)(text)


def _f32(value: float) -> float:
    if not F32_MIN_NORMAL <= value <= F32_MAX:
        raise ValueError(f"is outside what a 32-bit float holds ({F32_MIN_NORMAL:.3g} to {F32_MAX:.3g})")
    return value


def _dns_label(text: str) -> str:
    if not _DNS_LABEL.match(text):
        raise ValueError("must be a DNS-1123 label (lowercase letters, digits, '-', at most 63)")
    return text


def _image(text: str) -> str:
    if "@sha256:" not in text:
        tag = text.rsplit("/", 1)[-1].partition(":")[2]
        if not tag:
            raise ValueError("needs an explicit tag or @sha256 digest")
        if tag == "latest":
            raise ValueError("'latest' is not a reproducible tag")
    if not _IMAGE_REF.match(text):
        raise ValueError("is not an image reference")
    return text


def _peer(text: str) -> str:
    if not _PEER.match(text):
        raise ValueError("is not host[:port]")
    return text


def host_check(text: str) -> str:
    if not _PEER.match(text) or (":" in text and not text.startswith("[")):
        raise ValueError("is not an IP address or DNS name")
    return text.strip("[]")


def _labels(values: dict[str, str]) -> dict[str, str]:
    for key, value in values.items():
        if not _QUALIFIED_KEY.match(key):
            raise ValueError(f"{key!r} is not a Kubernetes label key")
        if not _LABEL_VALUE.match(value):
            raise ValueError(f"{value!r} is not a Kubernetes label value")
    return values


def _outside_yaml(char: str) -> bool:
    """Characters YAML cannot carry (YAML 1.2 §5.1): most C0 and C1 controls, DEL, U+FFFE/FFFF."""
    code = ord(char)
    return (
        (code < 0x20 and char not in "\t\n\r")
        or (0x7F <= code <= 0x9F and code != 0x85)
        or code in (0xFFFE, 0xFFFF)
        or 0xD800 <= code <= 0xDFFF
    )


def yaml_text_check(text: str) -> str:
    # pulumi-kubernetes hands objects to the API server through YAML, which refuses these
    # ("yaml: control characters are not allowed"):
    # docs/upstream-behaviour.md#values-with-control-characters-are-refused
    bad = sorted({f"U+{ord(c):04X}" for c in text if _outside_yaml(c)})
    if bad:
        raise ValueError(f"contains control characters ({', '.join(bad)})")
    return text


def annotations_check(values: dict[str, str]) -> dict[str, str]:
    for key, value in values.items():
        if not _QUALIFIED_KEY.match(key):
            raise ValueError(f"{key!r} is not a Kubernetes annotation key")
        yaml_text_check(value)
        if key.startswith("pulumi.com/"):
            # The program decides how long `pulumi up` waits for the miners' address.
            raise ValueError(f"{key!r} is reserved: the program sets pulumi.com/ annotations")
    return values


def node_port_check(port: int) -> int:
    if port != 0 and not 30000 <= port <= 32767:
        raise ValueError("is outside the NodePort range")
    return port


def _ip_literal(text: str) -> str:
    # docs/upstream-behaviour.md#sv2-apps-v020-takes-ip-literals-only
    ipaddress.ip_address(text)
    return text


def cidr_check(text: str) -> str:
    ipaddress.ip_network(text, strict=True)
    return text


def _authority_pubkey(text: str) -> str:
    # Imported here to keep settings free of the secp256k1 dependency at import time.
    from components.keys import is_authority_public_key

    if not is_authority_public_key(text):
        raise ValueError("is not an SV2 authority public key (base58check, starts with 9)")
    return text


Quantity = Annotated[str, AfterValidator(_quantity)]
# A positive f32 of sv2-apps (rates, hashrates).
PositiveF32 = Annotated[float, Field(gt=0, allow_inf_nan=False), AfterValidator(_f32)]
Labels = Annotated[dict[str, str], AfterValidator(_labels)]
Peer = Annotated[str, AfterValidator(_peer)]
DnsLabel = Annotated[str, AfterValidator(_dns_label)]
Image = Annotated[str, AfterValidator(_image)]
Port = Annotated[int, Field(ge=1, le=65535)]
Percent = Annotated[int, Field(ge=1, le=100)]


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)


class ResourceAmounts(Model):
    cpu: Quantity
    memory: Quantity


class Resources(Model):
    """Requests and limits of one container."""

    requests: ResourceAmounts
    limits: ResourceAmounts

    @model_validator(mode="after")
    def _requests_within_limits(self) -> "Resources":
        for kind in ("cpu", "memory"):
            request = parse_quantity(getattr(self.requests, kind))
            limit = parse_quantity(getattr(self.limits, kind))
            if request > limit:
                raise ValueError(f"requests.{kind} exceeds limits.{kind}")
        return self


class Upstream(Model):
    """A failover pool for the translator, tried after our own pool."""

    address: Annotated[str, AfterValidator(_ip_literal)]
    port: Port
    authority_pubkey: Annotated[str, AfterValidator(_authority_pubkey)]


# A release version as the binaries report it (30.2, 1.0.5, 30.99.0-g9f744fffc39d): part of the
# release tarballs' names and of the image tag, so digits first, then letters, digits, '.', '-'.
_VERSION = re.compile(r"^[0-9]+\.[0-9]+[0-9A-Za-z.-]*$")
MAX_VERSION_LENGTH: Final = 56  # two of them and the platform stay within a 128-character tag


def _version(text: str) -> str:
    if len(text) > MAX_VERSION_LENGTH or not _VERSION.match(text):
        raise ValueError("is not a version such as 30.2 or 30.99.0-g9f744fffc39d")
    return text


Version = Annotated[str, AfterValidator(_version)]


class NodeBuild(Model):
    """Build arguments of docker/bitcoin-node (docker/bitcoin-node/README.md, "Air-gapped builds")."""

    base_image: Image | None = None
    releases: Literal["download", "directory"] = "download"
    bitcoin_version: Version | None = None
    sv2_tp_version: Version | None = None

    @model_validator(mode="after")
    def _versions_come_with_their_tarballs(self) -> "NodeBuild":
        # Downloads are checked against hashes pinned per version in the Dockerfile.
        if self.releases == "download" and (self.bitcoin_version or self.sv2_tp_version):
            raise ValueError("bitcoinVersion and sv2TpVersion need releases: directory")
        return self


class Toleration(Model):
    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _as_the_api_server_requires(self) -> "Toleration":
        if self.key is not None and not _QUALIFIED_KEY.match(self.key):
            raise ValueError(f"key {self.key!r} is not a Kubernetes label key")
        if self.value is not None and not _LABEL_VALUE.match(self.value):
            raise ValueError(f"value {self.value!r} is not a Kubernetes label value")
        if self.operator == "Exists" and self.value:
            raise ValueError("operator Exists takes no value")
        if self.operator == "Equal" and not self.key:
            raise ValueError("operator Equal needs a key")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds needs effect NoExecute")
        return self


def bare_type(annotation: Any) -> Any:
    """The type under Optional[...] and Annotated[...], or None for a real union."""
    if get_origin(annotation) in (Union, UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) != 1:
            return None
        annotation = members[0]
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation
