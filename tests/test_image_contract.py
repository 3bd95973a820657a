"""The node image (docker/bitcoin-node) keeps to components/image_contract.py, and pins the
releases recorded in the shared reference facts."""

import importlib.util
import os
import re
import subprocess

import pytest

from tests.support.constants import ROOT, SHARED_REFERENCE

IMAGE_DIR = ROOT / "docker" / "bitcoin-node"
DOCKERFILE = IMAGE_DIR / "Dockerfile"
FACTS = SHARED_REFERENCE / "SV2-FACTS.md"

try:
    from components import image_contract as contract
except ImportError:  # components/ is not a package (yet), or the root is not on sys.path
    _spec = importlib.util.spec_from_file_location(
        "image_contract", ROOT / "components" / "image_contract.py"
    )
    assert _spec and _spec.loader
    contract = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(contract)


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, arguments = line.strip().partition(" ")
            result.append((keyword.upper(), " ".join(arguments.split())))
    return result


def copied_files() -> dict[str, str]:
    """Build-context files copied into the image: name -> destination."""
    copies = {}
    for keyword, arguments in instructions():
        if keyword == "COPY" and not arguments.startswith("--from"):
            *sources, destination = arguments.split()
            copies |= {source: destination for source in sources}
    return copies


def image_shell(script: str, **env: str) -> str:
    """Output of a shell snippet run after sourcing image-contract.sh, overrides cleared."""
    cleared = {"NODE_DATA_DIR", "BITCOIN_CONF", "SV2_TP_CONF", "SV2_TP_KEY_SOURCE", contract.CHAIN_ENV}
    environment = {k: v for k, v in os.environ.items() if k not in cleared} | env
    return subprocess.run(
        ["sh", "-c", f'. "{IMAGE_DIR}/image-contract.sh" && {script}'],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout.strip()


def test_build_context() -> None:
    assert (ROOT / contract.BUILD_CONTEXT).resolve() == IMAGE_DIR
    assert DOCKERFILE.is_file()


def test_script_defaults_are_the_contract_paths() -> None:
    values = image_shell(
        'printf "%s\\n" "$NODE_DATA_DIR" "$BITCOIN_CONF" "$SV2_TP_CONF" "$SV2_TP_KEY_SOURCE"'
    )
    assert values.splitlines() == [
        contract.DATA_DIR,
        contract.BITCOIN_CONF_PATH,
        contract.SV2_TP_CONF_PATH,
        contract.TP_KEY_PATH,
    ]


@pytest.mark.parametrize(
    ("chain", "net_dir"),
    [("main", ""), ("testnet4", "/testnet4"), ("signet", "/signet"), ("regtest", "/regtest")],
)
def test_chain_variable_selects_the_net_datadir(chain: str, net_dir: str) -> None:
    assert image_shell("net_datadir", **{contract.CHAIN_ENV: chain}) == contract.DATA_DIR + net_dir


def test_no_other_contract_like_paths() -> None:
    """Nothing in the image hard-codes a data, config or secret path of its own."""
    allowed = {contract.DATA_DIR, contract.BITCOIN_CONF_PATH, contract.SV2_TP_CONF_PATH, contract.TP_KEY_PATH}
    pattern = re.compile(r"(?<![\w.$}-])(/data|/etc/bitcoin|/etc/sv2-tp|/run/secrets)(/[\w./-]*)?")
    for path in IMAGE_DIR.iterdir():
        if path.name == "README.md" or not path.is_file():
            continue
        for match in pattern.finditer(path.read_text()):
            assert match.group(0).rstrip(".") in allowed, f"{path.name}: {match.group(0)}"


def test_user_and_data_dir() -> None:
    uid, gid = contract.UID, contract.GID
    steps = instructions()
    assert ("USER", f"{uid}:{gid}") in steps
    # supervisord's pidfile and socket go to /tmp, writable under a read-only root filesystem.
    assert ("ENV", "SUPERVISOR_RUN_DIR=/tmp") in steps
    (setup,) = [arguments for keyword, arguments in steps if keyword == "RUN" and "useradd" in arguments]
    assert f"groupadd --gid {gid} " in setup
    assert f"--uid {uid} --gid {gid} " in setup
    assert f"install -d -o {uid} -g {gid} -m 0750 {contract.DATA_DIR}" in setup
    # Nothing in the image's run-time configuration switches to another user.
    assert not re.search(r"^\s*user\s*=", (IMAGE_DIR / "supervisord.conf").read_text(), re.MULTILINE)


def test_probe_commands_are_on_path_and_answer() -> None:
    (liveness_name, *_), (readiness_name, *_) = contract.LIVENESS_COMMAND, contract.READINESS_COMMAND
    assert liveness_name == readiness_name
    assert copied_files()[liveness_name] == "/usr/local/bin/"
    probe = IMAGE_DIR / liveness_name
    environment = dict(os.environ) | {
        "BITCOIN_CLI": str(ROOT / "tests" / "fixtures" / "image" / "bitcoin-cli"),
        "STANDIN_CLI_STATE": "synced",
        "STANDIN_CLI_ARGS": os.devnull,
    }
    for command in (contract.LIVENESS_COMMAND, contract.READINESS_COMMAND):
        result = subprocess.run([str(probe), *command[1:]], env=environment, capture_output=True, timeout=10)
        assert result.returncode == 0, command


def test_copied_scripts_exist_and_run() -> None:
    copies = copied_files()
    # The operator's folder of release tarballs (air-gapped builds), read by the releases stage.
    assert copies.pop("releases/") == "/releases/"
    # Every file of the build context ends up in the image, but the build's own.
    assert set(copies) == {p.name for p in IMAGE_DIR.iterdir() if p.is_file()} - {"Dockerfile", "README.md"}
    assert copies["supervisord.conf"] == "/etc/supervisor/supervisord.conf"
    assert ("ENTRYPOINT", '["/usr/local/bin/entrypoint.sh"]') in instructions()
    for name, destination in copies.items():
        assert (IMAGE_DIR / name).is_file(), name
        if destination == "/usr/local/bin/" and name != "image-contract.sh":
            assert os.access(IMAGE_DIR / name, os.X_OK), f"{name} must be executable (git keeps the mode)"
    # image-contract.sh is sourced from the scripts' own directory.
    assert copies["image-contract.sh"] == "/usr/local/bin/"


def test_readme_documents_the_contract() -> None:
    readme = (IMAGE_DIR / "README.md").read_text()
    for value in (
        contract.DATA_DIR,
        contract.BITCOIN_CONF_PATH,
        contract.SV2_TP_CONF_PATH,
        contract.TP_KEY_PATH,
        contract.CHAIN_ENV,
        f"{contract.UID}:{contract.GID}",
        " ".join(contract.LIVENESS_COMMAND),
        " ".join(contract.READINESS_COMMAND),
    ):
        assert f"`{value}`" in readme, value


def _arg(name: str) -> str:
    (value,) = re.findall(rf"^ARG {name}=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    return value


def test_pinned_releases_match_the_reference_facts() -> None:
    if not FACTS.parent.is_dir():
        pytest.skip(f"{FACTS.parent} is absent: nothing to compare the pinned hashes with")
    facts = FACTS.read_text()
    sections = dict(re.findall(r"^## (\d+)\. (.*?)(?=^## |\Z)", facts, re.MULTILINE | re.DOTALL))

    def hashes(section: str) -> dict[str, str]:
        return dict(re.findall(r"(x86_64|aarch64) `([0-9a-f]{64})`", section))

    sv2_tp, bitcoin = hashes(sections["7"]), hashes(sections["8"])
    assert sv2_tp.keys() == bitcoin.keys() == {"x86_64", "aarch64"}
    for host, digest in bitcoin.items():
        assert _arg(f"BITCOIN_SHA256_{host.upper()}") == digest
    for host, digest in sv2_tp.items():
        assert _arg(f"SV2_TP_SHA256_{host.upper()}") == digest
    assert f"releases/download/v{_arg('SV2_TP_VERSION')}/" in sections["7"]
    assert f"bitcoin-core-{_arg('BITCOIN_VERSION')}/" in sections["8"]
