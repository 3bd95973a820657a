"""Rendered configs for check.py: the program's pool.toml and translator.toml,
their key names against the binaries' config structs, and the loopback remap.

The structs are read from the crate sources cargo built the binaries from (unknown keys are
silently ignored by the apps, so a typo would otherwise go unnoticed).
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import base58
from embit.script import address_to_scriptpubkey

from tests.e2e.processes import LOOPBACK, E2EError, free_port
from tests.e2e.toolchain import pinned
from tests.support.constants import SHARED_REFERENCE
from tests.support.harness import Run, run_stack

V020_EXAMPLES = SHARED_REFERENCE / "upstream-examples"
Path_ = tuple[str | int, ...]


def crate_source(name: str, version: str) -> Path:
    """The unpacked crate cargo built from (cargo install leaves it in the registry)."""
    cargo_home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    found = sorted(cargo_home.glob(f"registry/src/*/{name}-{version}"))
    for path in [*found, Path("/tmp/crates") / f"{name}-{version}"]:
        if (path / "Cargo.toml").is_file():
            return path
    raise E2EError(f"crate source {name}-{version} not found under {cargo_home}/registry/src")


def locked_version(crate: Path, dependency: str) -> str:
    """The version of `dependency` in the crate's own Cargo.lock (what cargo install --locked used)."""
    lock = (crate / "Cargo.lock").read_text()
    match = re.search(rf'name = "{re.escape(dependency)}"\nversion = "([^"]+)"', lock)
    if not match:
        raise E2EError(f"{dependency} is not in {crate}/Cargo.lock")
    return match.group(1)


@dataclass(frozen=True)
class Fields:
    where: str
    required: frozenset[str]
    optional: frozenset[str]  # #[serde(default)]: a typo here is silently ignored

    @property
    def names(self) -> frozenset[str]:
        return self.required | self.optional


def rust_fields(source: Path, opening: str, enum: bool = False) -> Fields:
    """Field names of the struct whose body opens with `opening`, or the variants of an enum.

    Refuses serde renames, aliases and flattening, which would make TOML keys differ from names.
    """
    text = source.read_text()
    start = text.find(opening)
    if start < 0:
        raise E2EError(f"`{opening}` not found in {source}")
    indent = opening[: len(opening) - len(opening.lstrip())]
    body = text[start + len(opening) : text.index(f"\n{indent}}}", start)]
    where = f"{source.name} `{opening.strip().removesuffix(' {')}`"
    if enum:
        variants = frozenset(re.findall(r"^    ([A-Z]\w*)\b", body, re.MULTILINE))
        return Fields(where, frozenset(), variants)
    required: set[str] = set()
    optional: set[str] = set()
    defaulted = False
    for raw in body.splitlines():
        line = raw.strip()
        if line.startswith("#[serde("):
            if any(word in line for word in ("rename", "flatten", "alias")):
                raise E2EError(f"{source}: `{line}` in `{opening}`: key names need a closer reading")
            defaulted = defaulted or "default" in line
        elif match := re.match(r"(?:pub(?:\([a-z]+\))? )?([a-z_][a-z0-9_]*)\s*:\s*(\S+)", line):
            # serde fills a missing Option<…> with None, as it fills #[serde(default)] fields.
            missing_ok = defaulted or match.group(2).startswith("Option<")
            (optional if missing_ok else required).add(match.group(1))
            defaulted = False
    return Fields(where, frozenset(required), frozenset(optional))


def _example_keys(folder: Path) -> set[str] | None:
    if not folder.is_dir():
        return None
    keys: set[str] = set()
    for path in folder.glob("*.toml"):
        keys |= dotted_keys(tomllib.loads(path.read_text()))
    return keys


def dotted_keys(table: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in table.items():
        name = f"{prefix}{key}"
        keys.add(name)
        if isinstance(value, dict):
            keys |= dotted_keys(value, f"{name}.")
        elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            for item in value:
                keys |= dotted_keys(item, f"{name}[].")
    return keys


@dataclass(frozen=True)
class Sources:
    """Config structs by table path ("" top level, "a.b" nested, "a[]" list items), per binary."""

    pool_fields: dict[str, Fields]
    translator_fields: dict[str, Fields]
    v020_pool_keys: set[str] | None  # upstream's v0.2.0 example files, where the reference has them
    v020_translator_keys: set[str] | None

    @classmethod
    def load(cls) -> Sources:
        pool = crate_source("pool_sv2", pinned("SV2_POOL_CRATE_VERSION"))
        translator = crate_source("translator_sv2", pinned("SV2_TRANSLATOR_CRATE_VERSION"))
        apps = crate_source("stratum-apps", locked_version(pool, "stratum-apps"))
        tp_type = apps / "src/tp_type.rs"
        pool_config, translator_config = pool / "src/lib/config.rs", translator / "src/lib/config.rs"
        return cls(
            {
                "": rust_fields(pool_config, "pub struct PoolConfig {"),
                "template_provider_type": rust_fields(tp_type, "pub enum TemplateProviderType {", enum=True),
                "template_provider_type.Sv2Tp": rust_fields(tp_type, "    Sv2Tp {"),
            },
            {
                "": rust_fields(translator_config, "pub struct TranslatorConfig {"),
                "downstream_difficulty_config": rust_fields(
                    translator_config, "pub struct DownstreamDifficultyConfig {"
                ),
                "upstreams[]": rust_fields(translator_config, "pub struct Upstream {"),
            },
            _example_keys(V020_EXAMPLES / "pool"),
            _example_keys(V020_EXAMPLES / "translator"),
        )


def check_keys(file: str, table: dict[str, Any], structs: dict[str, Fields], v020: set[str] | None) -> str:
    """Every rendered key names a field; every required field is rendered."""
    rendered = dotted_keys(table)
    for path, fields in structs.items():
        prefix = f"{path}." if path else ""
        keys = {k[len(prefix) :] for k in rendered if k.startswith(prefix) and "." not in k[len(prefix) :]}
        keys = {k.removesuffix("[]") for k in keys}
        if unknown := keys - fields.names:
            raise E2EError(f"{file}: {sorted(prefix + k for k in unknown)} are not fields of {fields.where}")
        if (missing := fields.required - keys) and keys:
            raise E2EError(f"{file}: required {sorted(missing)} of {fields.where} not rendered")
        if fields.where.split("`")[1].startswith("pub enum") and len(keys) != 1:
            raise E2EError(
                f"{file}: {path} must name exactly one of {sorted(fields.names)}, has {sorted(keys)}"
            )
    optional = sorted(k for k in rendered if k.rsplit(".", 1)[-1] in _optional(structs))
    if v020 is None:
        against = "v0.2.0 example files not available"
    elif extra := rendered - v020:
        raise E2EError(f"{file}: {sorted(extra)} appear in no v0.2.0 upstream example")
    else:
        against = "each also in upstream's v0.2.0 example files"
    wheres = ", ".join(fields.where for fields in structs.values())
    return (
        f"{len(rendered)} keys, each a field of {wheres}; every required field rendered; "
        f"optional (typo-prone) keys {', '.join(optional)} matched by name; {against}"
    )


def _optional(structs: dict[str, Fields]) -> set[str]:
    return {name for fields in structs.values() if "enum" not in fields.where for name in fields.optional}


@dataclass(frozen=True)
class Change:
    file: str
    key: str
    old: object
    new: object
    why: str

    def __str__(self) -> str:
        return f"{self.file} {self.key}: {self.old!r} → {self.new!r} ({self.why})"


@dataclass
class Rendered:
    stack: str
    run: Run
    pool: dict[str, Any]
    translator: dict[str, Any]
    tp_secret: str  # base58check, as pool_sv2 and fake-tp read authority secrets

    @property
    def pool_public_key(self) -> str:
        return str(self.pool["authority_public_key"])

    @property
    def tp_public_key(self) -> str:
        return str(self.pool["template_provider_type"]["Sv2Tp"]["public_key"])


def render(stack: str) -> Rendered:
    run = run_stack(stack)
    if run.error is not None:
        raise E2EError(f"{stack}: the program failed under the mock engine: {run.error}")
    manifests = run.manifests()

    def one(kind: str, name: str) -> dict[str, Any]:
        (found,) = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
        return found

    secrets = [m for m in manifests if m["kind"] == "Secret" and "sv2_authority_key" in (m.get("data") or {})]
    (tp_key,) = secrets
    key_file = base64.b64decode(tp_key["data"]["sv2_authority_key"])
    if len(key_file) != 33 or key_file[0] != 1:
        raise E2EError(f"{stack}: the TP key file is not 0x01 || 32-byte secret")
    return Rendered(
        stack,
        run,
        tomllib.loads(one("Secret", "pool-config")["stringData"]["pool.toml"]),
        tomllib.loads(one("ConfigMap", "translator-config")["data"]["translator.toml"]),
        base58.b58encode_check(key_file[1:]).decode(),
    )


def payout_script(rendered: Rendered) -> str:
    """The scriptPubKey hex that coinbase_reward_script = addr(<address>) pays to."""
    match = re.fullmatch(r"addr\((\w+)\)", str(rendered.pool["coinbase_reward_script"]))
    if not match:
        raise E2EError(f"coinbase_reward_script {rendered.pool['coinbase_reward_script']!r} is not addr(…)")
    return str(address_to_scriptpubkey(match.group(1)).data.hex())


def with_changes(table: dict[str, Any], changes: dict[Path_, object]) -> dict[str, Any]:
    """A deep copy with values set at the given key paths (for the negative runs)."""
    result = copy.deepcopy(table)
    for path, value in changes.items():
        target: Any = result
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return result


def _is_cluster(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return address.is_private and not address.is_loopback


@dataclass
class Local:
    """The loopback copies of one stack's configs, and what was changed to get them."""

    pool: dict[str, Any]
    translator: dict[str, Any]
    tp_port: int
    changes: list[Change] = field(default_factory=list)

    @property
    def pool_port(self) -> int:
        return int(self.pool["listen_address"].rsplit(":", 1)[1])

    @property
    def pool_monitoring(self) -> str:
        return str(self.pool["monitoring_address"])

    @property
    def sv1_port(self) -> int:
        return int(self.translator["downstream_port"])

    @property
    def translator_monitoring(self) -> str:
        return str(self.translator["monitoring_address"])


def localise(rendered: Rendered) -> Local:
    """Only what points at cluster addresses or binds 0.0.0.0 changes; every change is recorded."""
    local = Local(copy.deepcopy(rendered.pool), copy.deepcopy(rendered.translator), free_port())

    def change(file: str, table: dict[str, Any], key: str, new: object, why: str, name: str = "") -> None:
        local.changes.append(Change(file, name or key, table[key], new, why))
        table[key] = new

    for file, table in (("pool.toml", local.pool), ("translator.toml", local.translator)):
        for key in ("listen_address", "monitoring_address"):
            if key in table:
                host, port = str(table[key]).rsplit(":", 1)
                if host != "0.0.0.0":
                    raise E2EError(f"{file} {key} = {table[key]!r}: expected a 0.0.0.0 bind")
                change(file, table, key, f"{LOOPBACK}:{free_port()}", f"0.0.0.0:{port} bind → loopback port")
    tp = local.pool["template_provider_type"]["Sv2Tp"]
    if not _is_cluster(str(tp["address"]).rsplit(":", 1)[0]):
        raise E2EError(f"pool.toml TP address {tp['address']!r} is not a cluster address")
    where = "template_provider_type.Sv2Tp.address"
    change(
        "pool.toml",
        tp,
        "address",
        f"{LOOPBACK}:{local.tp_port}",
        "sv2-tp clusterIP → the local template provider",
        where,
    )
    translator = local.translator
    if translator["downstream_address"] != "0.0.0.0":
        raise E2EError(f"translator.toml downstream_address = {translator['downstream_address']!r}")
    change("translator.toml", translator, "downstream_address", LOOPBACK, "0.0.0.0 bind → loopback")
    change("translator.toml", translator, "downstream_port", free_port(), "SV1 port → free port")
    upstreams = []
    for index, upstream in enumerate(translator["upstreams"]):
        if index == 0 and _is_cluster(upstream["address"]):
            name = f"upstreams[{index}]"
            change(
                "translator.toml",
                upstream,
                "address",
                LOOPBACK,
                "pool clusterIP → local pool",
                f"{name}.address",
            )
            change(
                "translator.toml", upstream, "port", local.pool_port, "→ local pool's port", f"{name}.port"
            )
            upstreams.append(upstream)
        else:
            # A failover pool outside the cluster: this check never leaves loopback.
            note = Change(
                "translator.toml", f"upstreams[{index}]", upstream["address"], None, "dropped: not ours"
            )
            local.changes.append(note)
    translator["upstreams"] = upstreams
    _assert_loopback(local.pool, "pool.toml")
    _assert_loopback(translator, "translator.toml")
    return local


def _assert_loopback(value: object, where: str) -> None:
    """No address left in a localised config may point outside 127.0.0.0/8."""
    if isinstance(value, dict):
        for key, item in value.items():
            _assert_loopback(item, f"{where} {key}")
    elif isinstance(value, list):
        for item in value:
            _assert_loopback(item, where)
    elif isinstance(value, str):
        host = value.rsplit(":", 1)[0] if value.count(":") == 1 else value
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return
        if not address.is_loopback:
            raise E2EError(f"{where} = {value!r} is not on loopback after the remap")
