"""Behaviour of the node image's run-time scripts, without Docker.

The project's own entrypoint.sh and supervisord.conf run as the current user, with a temp
dir standing in for /data, /etc/... and /run/secrets (through the environment overrides
of image-contract.sh) and with the stand-in `bitcoin` and `sv2-tp` of
tests/fixtures/image first on PATH. The stand-ins append timestamped events to a file.
"""

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.constants import ROOT

IMAGE_DIR = ROOT / "docker" / "bitcoin-node"
FIXTURES = ROOT / "tests" / "fixtures" / "image"
KEY = b"\x01" + bytes(range(1, 33))
# Variables the scripts read; none may leak in from the environment running the tests.
IMAGE_VARIABLES = (
    "NODE_DATA_DIR",
    "BITCOIN_CONF",
    "SV2_TP_CONF",
    "SV2_TP_KEY_SOURCE",
    "BITCOIN_CHAIN",
    "SUPERVISOR_RUN_DIR",
    "NODE_STARTSECS",
    "STARTRETRIES",
    "SUPERVISORD_CONF",
    "SV2_TP_SOCKET_WAIT",
    "SV2_TP_SOCKET_POLL",
    "BITCOIN_CLI",
)


@dataclass
class Sandbox:
    root: Path
    env: dict[str, str]

    @property
    def data(self) -> Path:
        return self.root / "data"

    def events(self, name: str | None = None) -> list[list[str]]:
        """Stand-in events as [time, name, pid=..., details...], oldest first."""
        path = self.root / "events.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [line.split() for line in lines if name is None or line.split()[1] == name]

    def index(self, name: str, nth: int = 0) -> int:
        """Position in the event log of the nth event called name."""
        positions = [i for i, event in enumerate(self.events()) if event[1] == name]
        return positions[nth]


@pytest.fixture
def make_sandbox() -> Iterator[Callable[[str], Sandbox]]:
    # A short path: node.sock must fit in a unix socket address (108 bytes).
    root = Path(tempfile.mkdtemp(prefix="sv2img-"))

    def make(chain: str) -> Sandbox:
        for sub in ("data", "etc", "secrets", "run"):
            (root / sub).mkdir(exist_ok=True)
        # Both programs take the chain from their conf file, as the real ones do.
        for conf in ("bitcoin.conf", "sv2-tp.conf"):
            (root / "etc" / conf).write_text(f"chain={chain}\n")
        (root / "secrets" / "sv2_authority_key").write_bytes(KEY)
        env = {key: value for key, value in os.environ.items() if key not in IMAGE_VARIABLES}
        env |= {
            "PATH": os.pathsep.join(
                [str(FIXTURES), str(IMAGE_DIR), str(Path(sys.executable).parent), env["PATH"]]
            ),
            "BITCOIN_CHAIN": chain,
            "NODE_DATA_DIR": str(root / "data"),
            "BITCOIN_CONF": str(root / "etc" / "bitcoin.conf"),
            "SV2_TP_CONF": str(root / "etc" / "sv2-tp.conf"),
            "SV2_TP_KEY_SOURCE": str(root / "secrets" / "sv2_authority_key"),
            "SUPERVISOR_RUN_DIR": str(root / "run"),
            "SUPERVISORD_CONF": str(IMAGE_DIR / "supervisord.conf"),
            "NODE_STARTSECS": "1",
            "STARTRETRIES": "1",
            "SV2_TP_SOCKET_WAIT": "5",
            "SV2_TP_SOCKET_POLL": "0.05",
            "STANDIN_EVENTS": str(root / "events.log"),
            "STANDIN_SOCKET_DELAY": "0.5",
        }
        return Sandbox(root, env)

    yield make
    shutil.rmtree(root, ignore_errors=True)


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def pid_of(event: list[str]) -> int:
    return int(event[2].removeprefix("pid="))


def details(event: list[str]) -> dict[str, str]:
    return dict(field.split("=", 1) for field in event[3:] if "=" in field)


def assert_key_installed(path: Path, seen_by_tp: dict[str, str], key: bytes = KEY) -> None:
    assert seen_by_tp["key"] == str(path)
    assert seen_by_tp["bytes"] == key.hex()
    assert seen_by_tp["mode"] == "0600"
    assert path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _start_entrypoint(box: Sandbox) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """entrypoint.sh in a session of its own, its output appended to two files (append mode:
    supervisord opens /dev/stdout again, and the two must not overwrite each other)."""
    out, err = box.root / "stdout", box.root / "stderr"
    with out.open("ab") as out_file, err.open("ab") as err_file:
        process = subprocess.Popen(
            [str(IMAGE_DIR / "entrypoint.sh")],
            env=box.env,
            stdout=out_file,
            stderr=err_file,
            start_new_session=True,
        )
    return process, out, err


def test_supervised_node_and_sv2_tp(make_sandbox) -> None:
    """Start order, key install, log routing, restart with the node, stop order on TERM."""
    box = make_sandbox("signet")
    # Left in the run dir (an emptyDir) by an earlier container that stopped on a FATAL
    # program: it must not turn this container's clean stop into an error.
    (box.root / "run" / "fatal-program").write_text("bitcoin-node\n")
    supervisord, out, err = _start_entrypoint(box)
    try:
        wait_for(lambda: box.events("tp-start"), 10, "sv2-tp's first start")
        # sv2-tp started after the node made its socket, and saw the key in the net datadir.
        assert box.index("node-start") < box.index("node-socket") < box.index("tp-start")
        first_tp = box.events("tp-start")[0]
        assert details(first_tp)["socket"] == "True"
        assert_key_installed(box.data / "signet" / "sv2_authority_key", details(first_tp))

        # The Secret changes, then the node dies: the node is restarted, and sv2-tp with it,
        # after the node's new socket exists, with the new key.
        new_key = b"\x01" + bytes(range(101, 133))
        (box.root / "secrets" / "sv2_authority_key").write_bytes(new_key)
        os.kill(pid_of(box.events("node-start")[0]), signal.SIGKILL)
        wait_for(lambda: len(box.events("tp-start")) == 2, 10, "sv2-tp's second start")
        assert [pid_of(e) for e in box.events("tp-stop")] == [pid_of(first_tp)]
        assert box.index("node-start", 1) < box.index("node-socket", 1) < box.index("tp-start", 1)
        assert len(box.events("node-start")) == 2
        second_tp = box.events("tp-start")[1]
        assert_key_installed(box.data / "signet" / "sv2_authority_key", details(second_tp), new_key)

        # TERM to PID 1: sv2-tp stops before the node, and supervisord exits cleanly.
        supervisord.send_signal(signal.SIGTERM)
        assert supervisord.wait(timeout=10) == 0
        assert box.index("tp-stop", 1) < box.index("node-stop")
    finally:
        if supervisord.poll() is None:
            os.killpg(supervisord.pid, signal.SIGKILL)
            supervisord.wait()

    # Everything reaches the container's stdout/stderr: supervisord's own log, both
    # programs' output, the scripts' messages.
    stdout, stderr = out.read_text(), err.read_text()
    assert "supervisord started with pid" in stdout
    assert stdout.count("stand-in bitcoin-node: starting on signet") == 2
    assert stdout.count("stand-in sv2-tp: serving templates on signet") == 2
    assert "stand-in bitcoin-node: this line goes to stderr" in stderr
    assert "start-sv2-tp: installed the authority key" in stderr
    assert "follow-node: bitcoin-node is EXITED: stop sv2-tp" in stderr
    assert not list((box.root / "run").glob("*.log")), "supervisord wrote a log file"


def _run_until_it_exits(box: Sandbox, timeout: float) -> tuple[int, str, str]:
    """Runs entrypoint.sh, which must exit by itself within timeout seconds; returns its
    exit status, stdout and stderr."""
    supervisord, out, err = _start_entrypoint(box)
    try:
        status = supervisord.wait(timeout=timeout)
    finally:
        if supervisord.poll() is None:
            os.killpg(supervisord.pid, signal.SIGKILL)
            supervisord.wait()
    return status, out.read_text(), err.read_text()


def test_node_that_never_starts_stops_the_container(make_sandbox) -> None:
    """A node that fails every start ends in FATAL: the container exits 1 at once, rather
    than run on with a dead node until the startup probe gives up."""
    box = make_sandbox("signet")
    box.env["STANDIN_NODE_EXIT"] = "1"
    status, stdout, stderr = _run_until_it_exits(box, timeout=20)
    assert status == 1, stdout + stderr
    # A first start and STARTRETRIES (1) more, or a few more: on a busy machine supervisord
    # can look at a failed start only after startsecs, and then counts it as good.
    assert len(box.events("node-start")) >= 2
    assert not box.events("tp-start")
    assert "bitcoin-node entered FATAL state" in stdout
    assert "follow-node: bitcoin-node is FATAL: stopping supervisord" in stderr
    assert "run-supervisord: exiting 1 because bitcoin-node reached FATAL" in stderr


def test_sv2_tp_that_never_starts_stops_the_container(make_sandbox) -> None:
    """A Template Provider that cannot start leaves a node that looks healthy but serves no
    templates: it stops the container too, after a clean stop of the node."""
    box = make_sandbox("signet")
    (box.root / "secrets" / "sv2_authority_key").write_bytes(KEY[:32])
    status, stdout, stderr = _run_until_it_exits(box, timeout=20)
    assert status == 1, stdout + stderr
    assert stderr.count("start-sv2-tp: refusing to start") >= 2
    assert not box.events("tp-start")
    # The node was running, and supervisord stopped it with TERM before exiting.
    assert len(box.events("node-start")) == 1
    assert len(box.events("node-stop")) == 1
    assert "sv2-tp entered FATAL state" in stdout
    assert "follow-node: sv2-tp is FATAL: stopping supervisord" in stderr
    assert "run-supervisord: exiting 1 because sv2-tp reached FATAL" in stderr


def _spawn_start_tp(box: Sandbox) -> subprocess.Popen:
    """start-sv2-tp.sh alone, as supervisord would run it; its stderr kept for assertions."""
    return subprocess.Popen(
        [str(IMAGE_DIR / "start-sv2-tp.sh")],
        env=box.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(process: subprocess.Popen) -> str:
    """Terminates start-sv2-tp.sh and returns its stderr (closing the pipe)."""
    process.terminate()
    return str(process.communicate(timeout=10)[1])


def _start_tp(box: Sandbox, net_dir: Path) -> str:
    """Runs start-sv2-tp.sh alone against a socket bound by the test, until sv2-tp started;
    returns its stderr."""
    net_dir.mkdir(parents=True, exist_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(net_dir / "node.sock"))
    process = _spawn_start_tp(box)
    try:
        wait_for(lambda: box.events("tp-start") or process.poll() is not None, 10, "sv2-tp")
    finally:
        stderr = _stop(process)
        server.close()
    return stderr


def test_node_command_and_stale_socket(make_sandbox) -> None:
    """start-node.sh removes the socket of a killed node, then runs the multiprocess node."""
    box = make_sandbox("testnet4")
    box.env["STANDIN_SOCKET_DELAY"] = "30"
    net_dir = box.data / "testnet4"
    net_dir.mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(net_dir / "node.sock"))
    stale.close()
    node = subprocess.Popen([str(IMAGE_DIR / "start-node.sh")], env=box.env, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: box.events("node-start"), 5, "the node's start")
        assert not (net_dir / "node.sock").exists()
    finally:
        node.terminate()
        node.wait(timeout=10)
    (start,) = box.events("node-start")
    assert " ".join(start[3:]) == (
        f"args=-m node -ipcbind=unix -datadir={box.data} -conf={box.root / 'etc' / 'bitcoin.conf'}"
        " -printtoconsole -nodebuglogfile"
    )


def test_mainnet_key_goes_in_the_datadir_itself(make_sandbox) -> None:
    box = make_sandbox("main")
    # A key left from an earlier start, readable by others: replaced, and made private.
    stale = box.data / "sv2_authority_key"
    stale.write_bytes(b"\x01" + bytes(32))
    stale.chmod(0o644)
    stderr = _start_tp(box, box.data)
    assert box.events("tp-start"), stderr
    assert_key_installed(box.data / "sv2_authority_key", details(box.events("tp-start")[0]))
    assert not (box.data / "main").exists()


def test_sv2_tp_waits_for_the_socket(make_sandbox) -> None:
    box = make_sandbox("regtest")
    net_dir = box.data / "regtest"
    net_dir.mkdir()
    process = _spawn_start_tp(box)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        time.sleep(0.5)
        assert process.poll() is None
        assert not box.events("tp-start")
        socket_made = time.time()
        server.bind(str(net_dir / "node.sock"))
        wait_for(lambda: box.events("tp-start"), 5, "sv2-tp's start")
    finally:
        stderr = _stop(process)
        server.close()
    assert float(box.events("tp-start")[0][0]) >= socket_made
    assert f"waiting up to 5s for the node's IPC socket {net_dir / 'node.sock'}" in stderr


def test_socket_wait_is_bounded(make_sandbox) -> None:
    box = make_sandbox("signet")
    box.env["SV2_TP_SOCKET_WAIT"] = "1"
    started = time.monotonic()
    result = subprocess.run(
        [str(IMAGE_DIR / "start-sv2-tp.sh")], env=box.env, capture_output=True, text=True, timeout=10
    )
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert 1 <= elapsed < 3
    socket_path = box.data / "signet" / "node.sock"
    assert f"waiting up to 1s for the node's IPC socket {socket_path}" in result.stderr
    assert f"giving up: {socket_path} did not appear within 1s" in result.stderr
    assert not box.events("tp-start")
    assert not (box.data / "signet" / "sv2_authority_key").exists()


@pytest.mark.parametrize(
    "key",
    [None, KEY[:32], KEY + b"\x00", b"\x00" + KEY[1:], b""],
    ids=["missing", "32-bytes", "34-bytes", "wrong-version", "empty"],
)
def test_malformed_key_is_refused(make_sandbox, key: bytes | None) -> None:
    box = make_sandbox("signet")
    source = box.root / "secrets" / "sv2_authority_key"
    if key is None:
        source.unlink()
    else:
        source.write_bytes(key)
    # The socket exists: only the key can stop sv2-tp from starting.
    (box.data / "signet").mkdir()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(box.data / "signet" / "node.sock"))
    try:
        result = subprocess.run(
            [str(IMAGE_DIR / "start-sv2-tp.sh")],
            env=box.env,
            capture_output=True,
            text=True,
            timeout=10,
        )
    finally:
        server.close()
    assert result.returncode != 0
    assert f"refusing to start: authority key {source}" in result.stderr
    assert not box.events("tp-start")
    assert not (box.data / "signet" / "sv2_authority_key").exists()


@pytest.mark.parametrize("chain", [None, "", "mainnet", "testnet", "test"])
def test_entrypoint_rejects_unknown_chain(make_sandbox, chain: str | None) -> None:
    box = make_sandbox("signet")
    if chain is None:
        del box.env["BITCOIN_CHAIN"]
    else:
        box.env["BITCOIN_CHAIN"] = chain
    result = subprocess.run(
        [str(IMAGE_DIR / "entrypoint.sh")], env=box.env, capture_output=True, text=True, timeout=10
    )
    assert result.returncode != 0
    assert "BITCOIN_CHAIN must be one of main, testnet4, signet, regtest" in result.stderr
    assert not (box.root / "run" / "supervisord.pid").exists()
