"""`pulumi up` builds docker/bitcoin-node with the build arguments `nodeBuild` names (air-gapped
builds: a base image of the operator's, and release tarballs from releases/), and with none of
them by default, so that stacks without the setting keep the image inputs they had."""

import json
import re

import pytest

from components import bitcoin_node
from components.stack_config import SettingsError
from tests.support.constants import ROOT
from tests.support.harness import run_stack

DOCKERFILE = ROOT / "docker" / "bitcoin-node" / "Dockerfile"
IMAGE = "docker:index/image:Image"
AIR_GAPPED = {
    "baseImage": "10.88.0.1:5000/sv2-e2e/debian-bookworm-standin:d00a463857a1",
    "releases": "directory",
    "bitcoinVersion": "30.99.0-g9f744fffc39d93c9966dec1d61f113a7521983ad",
    "sv2TpVersion": "1.0.5",
}


def _arg(name: str) -> str:
    (value,) = re.findall(rf"^ARG {name}=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    return value


def test_the_default_tag_names_the_versions_the_dockerfile_downloads() -> None:
    assert _arg("BITCOIN_VERSION") == bitcoin_node.BITCOIN_VERSION
    assert _arg("SV2_TP_VERSION") == bitcoin_node.SV2_TP_VERSION


def test_without_node_build_only_the_platform_is_passed() -> None:
    run = run_stack("signet")
    assert run.error is None, run.error
    build = run.one(IMAGE, "bitcoin-signet-image").plain_inputs
    assert build["build"]["args"] == {"TARGETARCH": "amd64"}
    assert "network" not in build["build"]  # downloads need one
    assert build["imageName"] == "localhost:5000/sv2-bitcoin-node:30.2-sv2tp1.0.5-amd64"


def test_an_air_gapped_build_passes_every_argument() -> None:
    run = run_stack("signet", {"nodeBuild": json.dumps(AIR_GAPPED), "nodePlatform": "arm64"})
    assert run.error is None, run.error
    inputs = run.one(IMAGE, "bitcoin-signet-image").plain_inputs
    assert inputs["build"]["args"] == {
        "TARGETARCH": "arm64",
        "BASE_IMAGE": AIR_GAPPED["baseImage"],
        "RELEASES": "directory",
        "BITCOIN_VERSION": AIR_GAPPED["bitcoinVersion"],
        "SV2_TP_VERSION": "1.0.5",
    }
    assert inputs["build"]["context"] == "docker/bitcoin-node"
    assert inputs["build"]["network"] == "none"
    tag = inputs["imageName"].rsplit(":", 1)[1]
    assert tag == f"{AIR_GAPPED['bitcoinVersion']}-sv2tp1.0.5-arm64"
    assert len(tag) <= 128


def test_a_base_image_alone_keeps_the_download() -> None:
    run = run_stack(
        "signet", {"nodeBuild": json.dumps({"baseImage": "debian:bookworm-slim@sha256:" + "a" * 64})}
    )
    assert run.error is None, run.error
    args = run.one(IMAGE, "bitcoin-signet-image").plain_inputs["build"]["args"]
    assert args == {"TARGETARCH": "amd64", "BASE_IMAGE": "debian:bookworm-slim@sha256:" + "a" * 64}


def test_a_prebuilt_image_builds_nothing_whatever_node_build_says() -> None:
    run = run_stack("signet", {"nodeBuild": json.dumps(AIR_GAPPED), "nodeImage": "registry.example.com/n:1"})
    assert run.error is None, run.error
    assert run.of_type(IMAGE) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"releases": "mirror"}, "releases: Input should be 'download' or 'directory'"),
        ({"bitcoinVersion": "31.0"}, "bitcoinVersion and sv2TpVersion need releases: directory"),
        ({"releases": "directory", "sv2TpVersion": "../1.0.5"}, "sv2TpVersion: is not a version"),
        ({"releases": "directory", "bitcoinVersion": "30." + "9" * 60}, "bitcoinVersion: is not a version"),
        ({"baseImage": "debian:latest"}, "baseImage: 'latest' is not a reproducible tag"),
        ({"base": "debian:bookworm"}, "base: Extra inputs are not permitted"),
        ("directory", "is not a list or map"),
    ],
    ids=[
        "mode",
        "version-with-download",
        "version-path",
        "version-length",
        "latest",
        "unknown-field",
        "scalar",
    ],
)
def test_a_bad_node_build_is_refused_before_anything_is_created(value: object, message: str) -> None:
    run = run_stack("signet", {"nodeBuild": value if isinstance(value, str) else json.dumps(value)})
    assert isinstance(run.error, SettingsError), run.error
    assert f"sv2-k8s:nodeBuild {message}" in str(run.error)
    assert "Accepted: {baseImage: an image reference, releases: download or directory" in str(run.error)
    assert run.resources == []
