"""docker/bitcoin-node/supervisord.conf as supervisor's own parser reads it."""

import signal
from pathlib import Path

import pytest
from supervisor.datatypes import RestartUnconditionally
from supervisor.events import EventTypes
from supervisor.options import ClientOptions, ServerOptions

CONF = Path(__file__).resolve().parents[1] / "docker" / "bitcoin-node" / "supervisord.conf"
GRACE_PERIOD = 600  # the pod's terminationGracePeriodSeconds


@pytest.fixture
def options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ServerOptions:
    # The values entrypoint.sh exports.
    monkeypatch.setenv("SUPERVISOR_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("NODE_STARTSECS", "5")
    monkeypatch.setenv("STARTRETRIES", "3")
    parsed = ServerOptions()
    parsed.realize(["-c", str(CONF)])
    return parsed


@pytest.fixture
def groups(options: ServerOptions) -> dict:
    return {group.name: group for group in options.process_group_configs}


def program(groups: dict, name: str):
    (config,) = groups[name].process_configs
    return config


def test_programs(groups: dict) -> None:
    assert set(groups) == {"bitcoin-node", "sv2-tp", "follow-node"}
    assert program(groups, "bitcoin-node").command == "start-node.sh"
    assert program(groups, "sv2-tp").command == "start-sv2-tp.sh"
    assert program(groups, "follow-node").command == "follow-node.sh"


def test_stop_order_and_timeouts(groups: dict) -> None:
    node, tp = program(groups, "bitcoin-node"), program(groups, "sv2-tp")
    listener = program(groups, "follow-node")
    # supervisord stops groups from the highest priority number down, one after the other.
    assert groups["bitcoin-node"].priority < groups["sv2-tp"].priority < groups["follow-node"].priority
    assert node.stopsignal == tp.stopsignal == signal.SIGTERM
    assert 540 <= node.stopwaitsecs <= 580
    # sv2-tp's TERM may wait out its 30 s template interval once a pool has connected.
    assert 30 < tp.stopwaitsecs <= 40
    # Even if every program used its whole stop timeout, the node is stopped cleanly
    # before Kubernetes kills the container.
    assert listener.stopwaitsecs + tp.stopwaitsecs + node.stopwaitsecs < GRACE_PERIOD
    # The TERM reaches start-sv2-tp.sh's sleep too, while it waits for the socket.
    assert tp.stopasgroup and tp.killasgroup


def test_restarts(groups: dict) -> None:
    node, tp = program(groups, "bitcoin-node"), program(groups, "sv2-tp")
    assert node.autorestart is RestartUnconditionally
    assert tp.autorestart is RestartUnconditionally
    assert node.autostart and not tp.autostart  # follow-node starts sv2-tp
    assert node.startsecs == 5  # NODE_STARTSECS
    assert node.startretries == tp.startretries == 3  # STARTRETRIES
    listener = groups["follow-node"]
    assert program(groups, "follow-node").autorestart is RestartUnconditionally
    assert set(listener.pool_events) == {
        EventTypes.PROCESS_STATE_RUNNING,
        EventTypes.PROCESS_STATE_EXITED,
        EventTypes.PROCESS_STATE_STOPPING,
        # a program that gave up stops the container
        EventTypes.PROCESS_STATE_FATAL,
    }


def test_no_user_switch(options: ServerOptions, groups: dict) -> None:
    assert options.uid is None
    for group in groups.values():
        for config in group.process_configs:
            assert config.uid is None, config.name


def test_logs_go_to_the_container_output(options: ServerOptions, groups: dict) -> None:
    assert options.nodaemon
    assert (options.logfile, options.logfile_maxbytes) == ("/dev/stdout", 0)
    assert options.silent  # else nodaemon prints the same log to stdout a second time
    for name in ("bitcoin-node", "sv2-tp"):
        config = program(groups, name)
        assert (config.stdout_logfile, config.stdout_logfile_maxbytes) == ("/dev/stdout", 0)
        assert (config.stderr_logfile, config.stderr_logfile_maxbytes) == ("/dev/stderr", 0)
    listener = program(groups, "follow-node")
    assert listener.stdout_logfile is None  # the event protocol, not a log
    assert (listener.stderr_logfile, listener.stderr_logfile_maxbytes) == ("/dev/stderr", 0)


def test_runtime_files_in_the_run_dir(options: ServerOptions, tmp_path: Path) -> None:
    assert options.pidfile == str(tmp_path / "supervisord.pid")
    (server,) = options.server_configs
    assert server["file"] == str(tmp_path / "supervisord.sock")
    assert server["chmod"] == 0o700
    assert options.childlogdir == str(tmp_path)


def test_supervisorctl_reaches_supervisord(options: ServerOptions, tmp_path: Path) -> None:
    """supervisorctl (follow-node, kubectl exec) finds the control socket in the same file."""
    client = ClientOptions()
    client.realize(["-c", str(CONF)])
    assert client.serverurl == f"unix://{tmp_path}/supervisord.sock"
