"""Single-layer OCI images made from files on the host, as an OCI image-layout tar that
`ctr images import` takes: the node cluster's pause image (the static pause built by
build/node_agent.sh) and the self-test's busybox image. Deterministic: the same files give the same
digest (every entry owned by root, mtime 0)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"


@dataclass
class Rootfs:
    """A root filesystem: folders with their modes, files (a host file or bytes) and symlinks."""

    folders: dict[str, int] = field(default_factory=dict)
    files: dict[str, tuple[Path | bytes, int]] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)

    def layer(self) -> bytes:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path, mode in sorted(self.folders.items()):
                tar.addfile(_entry(path, tarfile.DIRTYPE, mode))
            for path, (source, mode) in sorted(self.files.items()):
                data = source.read_bytes() if isinstance(source, Path) else source
                info = _entry(path, tarfile.REGTYPE, mode)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            for path, target in sorted(self.links.items()):
                info = _entry(path, tarfile.SYMTYPE, 0o777)
                info.linkname = target
                tar.addfile(info)
        return out.getvalue()


def _entry(path: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path.lstrip("/"))
    info.type, info.mode, info.mtime, info.uid, info.gid = kind, mode, 0, 0, 0
    return info


def write_image(archive: Path, reference: str, rootfs: Rootfs, entrypoint: list[str], user: str = "") -> str:
    """Writes the image as an OCI layout tar at `archive`, named `reference` (host/repo:tag) for
    containerd; returns the manifest's digest."""
    layer = rootfs.layer()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "User": user, "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
    }
    config_blob = _json(config)
    manifest_blob = _json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": _descriptor(CONFIG, config_blob),
            "layers": [_descriptor(LAYER, layer)],
        }
    )
    manifest = _descriptor(MANIFEST, manifest_blob)
    manifest["annotations"] = {
        "io.containerd.image.name": reference,
        "org.opencontainers.image.ref.name": reference.rsplit(":", 1)[1],
    }
    index = {"schemaVersion": 2, "manifests": [manifest]}
    with tarfile.open(archive, "w") as tar:
        _add(tar, "oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
        _add(tar, "index.json", _json(index))
        for blob in (layer, config_blob, manifest_blob):
            _add(tar, "blobs/sha256/" + _digest(blob).split(":")[1], blob)
    return str(manifest["digest"])


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _digest(blob: bytes) -> str:
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def _descriptor(media_type: str, blob: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": _digest(blob), "size": len(blob)}


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = _entry(name, tarfile.REGTYPE, 0o644)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
