"""node-probe (the container's liveness and readiness command) against a stand-in bitcoin-cli."""

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.constants import ROOT

PROBE = ROOT / "docker" / "bitcoin-node" / "node-probe"
STANDIN_CLI = ROOT / "tests" / "fixtures" / "image" / "bitcoin-cli"
OVERRIDES = ("NODE_DATA_DIR", "BITCOIN_CONF", "BITCOIN_CLI")


def probe(tmp_path: Path, command: str, state: str, **env: str) -> tuple[subprocess.CompletedProcess, str]:
    """Runs node-probe COMMAND against a node in STATE; returns the result and the cli's arguments."""
    args_file = tmp_path / "cli-args"
    args_file.unlink(missing_ok=True)
    environment = {key: value for key, value in os.environ.items() if key not in OVERRIDES}
    environment |= {
        "BITCOIN_CLI": str(STANDIN_CLI),
        "STANDIN_CLI_STATE": state,
        "STANDIN_CLI_ARGS": str(args_file),
        **env,
    }
    result = subprocess.run(
        [str(PROBE), command], env=environment, capture_output=True, text=True, timeout=10
    )
    return result, args_file.read_text() if args_file.exists() else ""


@pytest.mark.parametrize(
    ("state", "alive", "ready"),
    [
        ("synced", True, True),
        ("syncing", True, False),
        ("warmup", True, False),
        ("down", False, False),
    ],
)
def test_probes(tmp_path: Path, state: str, alive: bool, ready: bool) -> None:
    alive_result, _ = probe(tmp_path, "alive", state)
    ready_result, _ = probe(tmp_path, "ready", state)
    assert (alive_result.returncode == 0) is alive, alive_result.stdout
    assert (ready_result.returncode == 0) is ready, ready_result.stdout


def test_messages_say_why(tmp_path: Path) -> None:
    assert "warming up" in probe(tmp_path, "alive", "warmup")[0].stdout
    assert "Could not connect" in probe(tmp_path, "alive", "down")[0].stdout
    assert "initial block download" in probe(tmp_path, "ready", "syncing")[0].stdout
    assert "error code: -28" in probe(tmp_path, "ready", "warmup")[0].stdout


def test_cli_uses_the_contract_paths_and_the_cookie(tmp_path: Path) -> None:
    _, args = probe(tmp_path, "ready", "synced")
    assert args.split() == ["-datadir=/data", "-conf=/etc/bitcoin/bitcoin.conf", "getblockchaininfo"]
    _, args = probe(tmp_path, "alive", "synced", NODE_DATA_DIR="/tmp/d", BITCOIN_CONF="/tmp/b.conf")
    # No -rpcuser/-rpcpassword: bitcoin-cli falls back to the node's cookie file.
    assert args.split() == ["-datadir=/tmp/d", "-conf=/tmp/b.conf", "uptime"]


@pytest.mark.parametrize("command", ["", "live", "alive ready"])
def test_unknown_command(tmp_path: Path, command: str) -> None:
    result, args = probe(tmp_path, command, "synced")
    assert result.returncode == 2
    assert args == ""
