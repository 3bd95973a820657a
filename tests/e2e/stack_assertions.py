"""What the e2e asserts of a stack in the cluster after each step (run.py): objects as rendered,
pods admitted, no secret outside Secrets, which pods rolled, what `destroy` kept. (The control
plane's own self-test is cluster/control_plane_selftest.py.)"""

from __future__ import annotations

import base64
import hashlib
import json
import tomllib
from collections.abc import Mapping
from typing import Any

from pulumi.runtime import rpc

from tests.e2e.cluster.connect import Kube
from tests.e2e.processes import wait

PART_OF = "app.kubernetes.io/part-of=sv2-k8s"
# Shorter strings (ports, "true") occur everywhere by chance; secrets here are keys and passwords.
MIN_SECRET_LENGTH = 8


class StackAssertions:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def get(self, *args: str) -> Any:
        return json.loads(self.kube.kubectl("get", "-o", "json", *args))

    def items(self, kinds: str, namespace: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.get(kinds, "-n", namespace)["items"]
        return found

    def as_rendered(
        self, state: list[dict[str, Any]], registered: Mapping[tuple[str, str], Any]
    ) -> list[str]:
        """Every Kubernetes object in the stack's state exists, labelled and filled as Pulumi says;
        workloads hold the quantities the program registered (`registered`: (type, name) → inputs)."""
        checked = 0
        for resource in state:
            kind_type = str(resource.get("type", ""))
            if not kind_type.startswith("kubernetes:"):
                continue
            outputs = resource.get("outputs") or {}
            meta = outputs.get("metadata") or {}
            # Type tokens read kubernetes:<group>/<version>:<Kind>; kubectl takes Kind.version.group.
            group, version = kind_type.split(":")[1].split("/")
            kind = str(outputs.get("kind"))
            target = kind if group == "core" else f"{kind}.{version}.{group}"
            args = [target.lower(), str(meta["name"])]
            if meta.get("namespace"):
                args += ["-n", str(meta["namespace"])]
            live = self.get(*args)
            labels = live["metadata"].get("labels") or {}
            if {k: v for k, v in (meta.get("labels") or {}).items() if labels.get(k) != v}:
                raise AssertionError(f"{kind} {meta['name']}: labels differ from the rendered ones")
            if kind in ("Deployment", "StatefulSet"):
                # The API server keeps quantities in canonical form ("0.75" → 750m): anything
                # else the program writes is a difference between Pulumi and the cluster. Compared
                # with what the program registered, since a provider may normalise in Check.
                name = str(resource["urn"]).rsplit("::", 1)[-1]
                wanted, stored = _quantities(registered[(kind_type, name)]), _quantities(live)
                if wanted != stored:
                    raise AssertionError(f"{kind} {meta['name']}: quantities {wanted} are stored as {stored}")
            if kind == "ConfigMap" and live.get("data") != outputs.get("data"):
                raise AssertionError(f"ConfigMap {meta['name']}: data differs from the rendered data")
            if kind == "Secret":
                # Compare as base64: the TP key file is binary.
                wanted = dict(outputs.get("data") or {})
                wanted.update(
                    {
                        k: base64.b64encode(v.encode()).decode()
                        for k, v in (outputs.get("stringData") or {}).items()
                    }
                )
                got = live.get("data") or {}
                if got != wanted:
                    differ = sorted(k for k in set(got) | set(wanted) if got.get(k) != wanted.get(k))
                    raise AssertionError(f"Secret {meta['name']}: {differ} differ from the rendered data")
            name = str(resource["urn"]).rsplit("::", 1)[-1]
            differences = _differences(_as_stored(kind, _plain(registered[(kind_type, name)])), live)
            if differences:
                shown = "; ".join(differences[:4])
                raise AssertionError(f"{kind} {meta['name']} is not what the program registered: {shown}")
            checked += 1
        return [f"{checked} objects as the program registered them, field by field"]

    def pods_admitted(self, namespace: str, count: int, timeout: float = 120.0) -> list[str]:
        """The controllers created every Pod, and Pod Security let them in at the level the
        namespace enforces, which must be `restricted` (read from its label, not assumed)."""
        labels = self.get("namespace", namespace)["metadata"].get("labels") or {}
        level = labels.get("pod-security.kubernetes.io/enforce")
        if level != "restricted":
            raise AssertionError(
                f"namespace {namespace} enforces Pod Security level {level!r}, not restricted"
            )

        def admitted() -> list[str] | None:
            pods = self.items("pods", namespace)
            events = self.items("events", namespace)
            denied = [e["message"] for e in events if "violates PodSecurity" in e.get("message", "")]
            if denied:
                raise AssertionError("Pod Security refused pods: " + "; ".join(sorted(set(denied))[:3]))
            return (
                [f"{len(pods)} pods admitted ({level}, the namespace's enforce label)"]
                if len(pods) >= count
                else None
            )

        found: list[str] = wait(
            admitted,
            timeout,
            f"{count} pods created in {namespace}",
            interval=1,
            status=lambda: f"{len(self.items('pods', namespace))} created",
        )
        return found

    def no_secret_outside_secrets(
        self, namespace: str, state: list[dict[str, Any]], extra: set[str]
    ) -> list[str]:
        """No credential appears in a ConfigMap, an annotation or an env literal.

        The credentials: every random result in the state, the pool's authority secret key (from
        its TOML), the template provider's key file (hex and base64), the RPC user and password
        of the exporter's Secret, and `extra` (secret settings)."""
        secrets = set(extra)
        for resource in state:
            if str(resource.get("type", "")).startswith("random:"):
                secrets.add(str((resource.get("outputs") or {}).get("result", "")))
        for secret in self.items("secrets", namespace):
            for key, value in (secret.get("data") or {}).items():
                raw = base64.b64decode(value)
                if key == "pool.toml":
                    secrets.add(str(tomllib.loads(raw.decode())["authority_secret_key"]))
                elif key == "sv2_authority_key":
                    secrets.update({raw[1:].hex(), value})
                elif "\n" not in raw.decode(errors="replace").strip():
                    secrets.add(raw.decode(errors="replace"))  # single values: user, password
        secrets = {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}
        exposed: list[str] = []
        objects = self.items("configmaps,services,deployments,statefulsets,pods,serviceaccounts", namespace)
        for obj in objects:
            where = f"{obj['kind']} {obj['metadata']['name']}"
            texts = list((obj["metadata"].get("annotations") or {}).values())
            if obj["kind"] == "ConfigMap":
                texts += list((obj.get("data") or {}).values())
            texts += [env.get("value", "") for env in _env_vars(obj)]
            exposed += [where for text in texts for secret in secrets if secret in text]
        if exposed:
            raise AssertionError(f"secret values outside Secrets: {sorted(set(exposed))}")
        return [f"{len(secrets)} secret values, none outside Secrets"]

    def pod_templates(self, namespace: str) -> dict[str, tuple[str, str]]:
        """Workload → (uid, digest of its pod template)."""
        found: dict[str, tuple[str, str]] = {}
        for obj in self.items("statefulsets,deployments", namespace):
            key = "StatefulSet" if obj["kind"] == "StatefulSet" else f"Deployment::{obj['metadata']['name']}"
            template = json.dumps(obj["spec"]["template"], sort_keys=True)
            found[key] = (obj["metadata"]["uid"], hashlib.sha256(template.encode()).hexdigest())
        return found

    def rolled(
        self, namespace: str, before: dict[str, tuple[str, str]], *, rolls: set[str], stays: set[str]
    ) -> list[str]:
        after = self.pod_templates(namespace)
        replaced = [k for k in before if k in after and after[k][0] != before[k][0]]
        if replaced:
            raise AssertionError(f"replaced (new uid): {replaced}")
        changed = {k for k in before if k in after and after[k][1] != before[k][1]}
        if rolls - changed or changed & stays:
            raise AssertionError(f"pod templates changed: {sorted(changed)}; expected {sorted(rolls)} only")
        return [f"rolled {', '.join(sorted(changed))}", "no workload replaced"]

    def claim_uids(self, namespace: str) -> dict[str, str]:
        return {
            c["metadata"]["name"]: c["metadata"]["uid"]
            for c in self.items("persistentvolumeclaims", namespace)
        }

    def namespace_exists(self, namespace: str) -> bool:
        found = self.kube.kubectl("get", "namespace", namespace, "--ignore-not-found", "-o", "name")
        return bool(found.strip())

    def after_destroy(self, namespace: str, *, retained: bool, timeout: float = 90.0) -> list[str]:
        if not retained:
            wait(
                lambda: None if self.namespace_exists(namespace) else True,
                timeout,
                f"deletion of namespace {namespace}",
                interval=1,
            )
            return ["namespace and claims deleted (retainChainData false)"]
        if not self.namespace_exists(namespace):
            raise AssertionError(f"namespace {namespace} was deleted")
        claims = [c["metadata"]["name"] for c in self.items("persistentvolumeclaims", namespace)]
        if not any(name.startswith("chain-data-") for name in claims):
            raise AssertionError(f"the chain-data claim is gone (claims: {claims})")
        left = self.get(
            "statefulsets,deployments,services,configmaps,secrets", "-n", namespace, "-l", PART_OF
        )
        if left["items"]:
            raise AssertionError(
                f"left behind: {[o['kind'] + ' ' + o['metadata']['name'] for o in left['items']]}"
            )
        return [f"kept namespace and {', '.join(claims)}"]


def _plain(value: Any) -> Any:
    """Registered inputs with the SDK's secret wrappers ({<sig key>: <secret sig>, value: …})
    replaced by their values."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return _plain(value.get("value"))
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _as_stored(kind: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Registered inputs as the API server stores them: a Secret's stringData lands in data,
    base64-encoded."""
    stored = dict(inputs)
    if kind == "Secret" and "stringData" in stored:
        texts = stored.pop("stringData") or {}
        encoded = {k: base64.b64encode(str(v).encode()).decode() for k, v in texts.items()}
        stored["data"] = {**(stored.get("data") or {}), **encoded}
    return stored


def _differences(wanted: Any, live: Any, path: str = "") -> list[str]:
    """Where the live object differs from every field the program set. Fields the API server
    adds are no difference, nor a zero value it leaves out (0, false, "", an empty map or list:
    Kubernetes' JSON omits empty optional fields)."""
    if isinstance(wanted, dict):
        if not isinstance(live, dict):
            return [f"{path or '.'}: {live!r}, not a map"] if wanted else []
        found: list[str] = []
        for key, value in wanted.items():
            if key not in live:
                if value not in ({}, [], None, 0, False, ""):
                    found.append(f"{path}.{key} is missing")
                continue
            found += _differences(value, live[key], f"{path}.{key}")
        return found
    if isinstance(wanted, list):
        if not isinstance(live, list) or len(live) != len(wanted):
            return [f"{path}: {len(wanted)} items registered, live {live!r}"[:200]]
        return [
            d
            for i, (w, v) in enumerate(zip(wanted, live, strict=True))
            for d in _differences(w, v, f"{path}[{i}]")
        ]
    numbers = (int, float)
    same_number = isinstance(wanted, numbers) and isinstance(live, numbers) and float(wanted) == float(live)
    if wanted != live and not same_number:
        return [f"{path}: registered {wanted!r}, live {live!r}"[:200]]
    return []


def _quantities(workload: Mapping[str, Any]) -> dict[str, Any]:
    """The resource quantities of a Deployment or StatefulSet: its containers' requests and limits
    and its claim templates' storage, by container and claim name."""
    spec = workload.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    found = {
        f"container {c['name']}": c.get("resources") or {}
        for c in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]
    }
    for claim in spec.get("volumeClaimTemplates") or []:
        found[f"claim {claim['metadata']['name']}"] = (claim.get("spec") or {}).get("resources") or {}
    return found


def _env_vars(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec") or {}
    pod = spec.get("template", {}).get("spec") if "template" in spec else spec
    containers = [*(pod or {}).get("containers", []), *(pod or {}).get("initContainers", [])]
    return [env for c in containers for env in c.get("env") or []]
