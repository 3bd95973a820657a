"""sv2-probe (sv1_probe/probe.py) against a small SV1 server on 127.0.0.1; header math on real blocks."""

import contextlib
import hashlib
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sv1_probe import probe as sv1_probe
from sv1_probe.probe import Job, ProbeError, block_header, difficulty_target, dsha256, merkle_root, probe

DIFF1 = 0xFFFF << 208  # the difficulty-1 target, 0x00000000FFFF0000…0000
# At difficulty 2**-20 the target is DIFF1 << 20, about 2**244: one hash in ~4,096 meets it, a few ms of
# Python hashing. A probe that assembled the header wrongly would still pass 1 time in 4,096, so the
# tests also compare the hash the probe reports with the one the server computes.
EASY = 2.0**-20
IMPOSSIBLE = 1e12


def sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def share_hash(job: dict[str, Any], extranonce1: str, extranonce2: str, ntime: str, nonce: str) -> bytes:
    """The share's block hash, from the SV1 definitions (written apart from the probe's code)."""
    coinbase = bytes.fromhex(job["coinb1"] + extranonce1 + extranonce2 + job["coinb2"])
    root = sha256d(coinbase)
    for step in job["branch"]:
        root = sha256d(root + bytes.fromhex(step))
    # prevhash comes as 8 big-endian words of the header bytes; packed little-endian they are those bytes.
    previous = struct.pack("<8I", *struct.unpack(">8I", bytes.fromhex(job["prevhash"])))
    fields = (int(job["version"], 16), previous, root, int(ntime, 16), int(job["nbits"], 16), int(nonce, 16))
    return sha256d(struct.pack("<I32s32sIII", *fields))


class Sv1Server:
    """Speaks enough SV1 for one miner; each keyword changes one behaviour."""

    def __init__(
        self,
        *,
        difficulty: float = EASY,  # of the first job
        retarget: float | None = None,  # a new difficulty, sent right after the first job
        switch_after: float | None = None,  # seconds until a new block (see _switch)
        authorize_reply: dict[str, Any] | None = None,
        submit_reply: dict[str, Any] | None = None,  # sent for shares that pass the check
        garbage: bytes | None = None,  # sent instead of the reply to mining.subscribe, then closing
        silent: bool = False,  # reads, never answers
        send_work: bool = True,
    ) -> None:
        self.difficulty, self.retarget, self.switch_after = difficulty, retarget, switch_after
        self.authorize_reply, self.submit_reply = authorize_reply, submit_reply
        self.garbage, self.silent, self.send_work = garbage, silent, send_work
        self.extranonce1, self.extranonce2_size = os.urandom(4).hex(), 4
        self.jobs: dict[str, dict[str, Any]] = {}
        self.authorized: list[Any] = []
        self.accepted: list[str] = []  # hashes (display order) of the shares the server verified
        self.invalid: list[str] = []  # why it turned shares down
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"stratum+tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        self.conn: socket.socket | None = None
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self) -> None:
        self.listener.close()
        if self.conn is not None:
            self.conn.close()

    def send(self, *messages: dict[str, Any]) -> None:
        assert self.conn is not None
        with self.lock, contextlib.suppress(OSError):  # the probe may have gone already
            self.conn.sendall(b"".join(json.dumps(m).encode() + b"\n" for m in messages))

    def new_job(self, job_id: str, clean: bool) -> dict[str, Any]:
        job = {
            "prevhash": os.urandom(32).hex(),
            "coinb1": "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20",
            "coinb2": os.urandom(24).hex() + "ffffffff0100f2052a010000000000000000",
            "branch": [os.urandom(32).hex() for _ in range(3)],
            "version": "20000000",
            "nbits": "1d00ffff",
            "ntime": f"{int(time.time()):08x}",
            "difficulty": self.difficulty,
            "extranonce1": self.extranonce1,
            "extranonce2_size": self.extranonce2_size,
        }
        self.jobs[job_id] = job
        fields = ("prevhash", "coinb1", "coinb2", "branch", "version", "nbits", "ntime")
        return {"id": None, "method": "mining.notify", "params": [job_id, *(job[f] for f in fields), clean]}

    def _serve(self) -> None:
        try:
            self.conn, _ = self.listener.accept()
        except OSError:
            return  # closed before anyone connected
        buffer = b""
        while True:
            try:
                data = self.conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not self.silent:
                    self._answer(json.loads(line))

    def _answer(self, request: dict[str, Any]) -> None:
        method, params, reply = request["method"], request["params"], {"id": request["id"], "error": None}
        if method == "mining.subscribe":
            if self.garbage is not None:
                assert self.conn is not None
                self.conn.sendall(self.garbage)
                self.conn.close()
                return
            subscriptions = [["mining.set_difficulty", "1"], ["mining.notify", "1"]]
            self.send(reply | {"result": [subscriptions, self.extranonce1, self.extranonce2_size]})
        elif method == "mining.authorize":
            self.authorized = params
            self.send(reply | (self.authorize_reply or {"result": True}))
            if self.send_work:
                messages = [self.set_difficulty(self.difficulty), self.new_job("1", clean=True)]
                if self.retarget is not None:  # vardiff, the job unchanged
                    self.difficulty = self.retarget
                    messages.append(self.set_difficulty(self.retarget))
                self.send(*messages)
            if self.switch_after is not None:
                timer = threading.Timer(self.switch_after, self._switch)
                timer.daemon = True
                timer.start()
        elif method == "mining.submit":
            self.send(self._check(params, reply))

    @staticmethod
    def set_difficulty(difficulty: float) -> dict[str, Any]:
        return {"id": None, "method": "mining.set_difficulty", "params": [difficulty]}

    def _switch(self) -> None:
        """A new block: new extranonce (from the next job on), an easy difficulty, a clean job."""
        self.extranonce1, self.extranonce2_size, self.difficulty = os.urandom(3).hex(), 2, EASY
        extranonce = {"id": None, "method": "mining.set_extranonce", "params": [self.extranonce1, 2]}
        self.send(extranonce, self.set_difficulty(EASY), self.new_job("2", clean=True))

    def _check(self, params: list[Any], reply: dict[str, Any]) -> dict[str, Any]:
        worker, job_id, extranonce2, ntime, nonce = params
        job = self.jobs.get(job_id, {})
        hashed = share_hash(job, job["extranonce1"], extranonce2, ntime, nonce) if job else bytes(32)
        target = DIFF1 / max(job.get("difficulty", 0), self.difficulty)  # the stricter of job's and now
        problems = {
            "unknown worker": worker != self.authorized[0],
            "stale or unknown job": job_id != max(self.jobs),
            "changed ntime": ntime != job.get("ntime"),
            "wrong extranonce2 size": len(bytes.fromhex(extranonce2)) != job.get("extranonce2_size"),
            "bad nonce": len(nonce) != 8,
            "low difficulty": int.from_bytes(hashed, "little") >= target,
        }
        if reasons := [problem for problem, found in problems.items() if found]:
            self.invalid += reasons
            return reply | {"result": False, "error": [23, "test server: " + ", ".join(reasons), None]}
        self.accepted.append(hashed[::-1].hex())
        return reply | (self.submit_reply or {"result": True})


@pytest.fixture
def server() -> Iterator[Callable[..., Sv1Server]]:
    started: list[Sv1Server] = []

    def start(**behaviour: Any) -> Sv1Server:
        started.append(Sv1Server(**behaviour))
        return started[-1]

    yield start
    for each in started:
        each.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = sv1_probe.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# Header math on real blocks.

GENESIS_COINBASE = (
    "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff4d04ffff001d0104"
    "455468652054696d65732030332f4a616e2f32303039204368616e63656c6c6f72206f6e206272696e6b206f662073"
    "65636f6e64206261696c6f757420666f722062616e6b73ffffffff0100f2052a01000000434104678afdb0fe554827"
    "1967f1a67130b7105cd6a828e03909a67962e0ea1f61deb649f6bc3f4cef38c4f35504e51ec112de5c384df7ba0b8d"
    "578a4c702b6bf11d5fac00000000"
)


def make_job(**fields: Any) -> Job:
    defaults: dict[str, Any] = {"job_id": "1", "coinb1": "", "coinb2": "", "branch": (), "clean": True}
    return Job(**{"extranonce1": "", "extranonce2_size": 0, "difficulty": 1.0, **defaults, **fields})


def shown(prevhash: str) -> str:
    """mining.notify's prevhash as bitcoin-cli shows the block hash."""
    return struct.pack("<8I", *struct.unpack(">8I", bytes.fromhex(prevhash)))[::-1].hex()


def sv1_prevhash(block_hash: str) -> str:
    """A block hash as bitcoin-cli shows it, in mining.notify's form (the inverse of shown)."""
    return struct.pack(">8I", *struct.unpack("<8I", bytes.fromhex(block_hash)[::-1])).hex()


def test_genesis_block_from_a_split_coinbase() -> None:
    # The coinbase split the way a pool would: coinb1 | extranonce1 | extranonce2 | coinb2.
    coinbase = GENESIS_COINBASE
    genesis = make_job(
        prevhash="00" * 32,
        coinb1=coinbase[:84],
        extranonce1=coinbase[84:92],
        extranonce2_size=4,
        coinb2=coinbase[100:],
        version="00000001",
        nbits="1d00ffff",
        ntime=f"{1231006505:08x}",
    )
    header = block_header(genesis, bytes.fromhex(coinbase[92:100]), 2083236893)
    assert len(header) == 80
    assert dsha256(header)[::-1].hex() == "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
    assert int.from_bytes(dsha256(header), "little") < difficulty_target(1)


BLOCK_170_COINBASE = (
    "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff0704ffff001d0102"
    "ffffffff0100f2052a01000000434104d46c4968bde02899d2aa0963367c7a6ce34eec332b32e42e5f3407e052d64ac625da"
    "6f0718e7b302140434bd725706957c092db53805b821a85b23a7ac61725bac00000000"
)


def test_block_170_with_a_merkle_branch() -> None:
    # Block 170: the first bitcoin transaction next to its coinbase, a merkle branch of one.
    spend_txid = "f4184fc596403b9d638783cf57adfe4c75c605f6356fbc91338530e9831e9e16"  # as shown
    coinbase_txid = dsha256(bytes.fromhex(BLOCK_170_COINBASE))
    assert coinbase_txid[::-1].hex() == "b1fea52486ce0c62bb442b530a3f0132b826c74e473d1f2c220bfa78111c5082"
    root = merkle_root(coinbase_txid, [bytes.fromhex(spend_txid)[::-1].hex()])
    assert root[::-1].hex() == "7dac2c5666815c17a3b36427de37bb9d2e2c5ccec3f8633eb91a4205cb4c10ff"
    previous = "000000002a22cfee1f2c846adbd12b3e183d4f97683f85dad08a79780a84bd55"
    block = make_job(
        prevhash=sv1_prevhash(previous),
        coinb1=BLOCK_170_COINBASE[:86],
        extranonce1=BLOCK_170_COINBASE[86:90],
        extranonce2_size=2,
        coinb2=BLOCK_170_COINBASE[94:],
        branch=(bytes.fromhex(spend_txid)[::-1].hex(),),
        version="00000001",
        nbits="1d00ffff",
        ntime=f"{1231731025:08x}",
    )
    header = block_header(block, bytes.fromhex(BLOCK_170_COINBASE[90:94]), 1889418792)
    assert dsha256(header)[::-1].hex() == "00000000d1145790a8694403d4063f323d499e655c83426834d4ce2f8dd4a2ee"
    assert sv1_probe.describe(block).splitlines()[1].split()[-1] == previous


def test_difficulty_targets() -> None:
    assert difficulty_target(1) == 0x00000000FFFF0000000000000000000000000000000000000000000000000000
    assert difficulty_target(2) == DIFF1 // 2
    assert difficulty_target(EASY) == DIFF1 << 20
    assert difficulty_target(2**-40) == 2**256 - 1  # easier than any hash: capped


# Against the test server.


def test_prints_the_difficulty_and_the_first_job(
    server: Callable[..., Sv1Server], capsys: pytest.CaptureFixture[str]
) -> None:
    pool = server(difficulty=512)
    code, out, err = run(capsys, pool.url, "--worker", "rig1.probe", "--password", "secret")
    assert (code, err) == (0, "")
    first = pool.jobs["1"]
    assert f"extranonce1 {pool.extranonce1}, extranonce2_size 4" in out
    assert "difficulty 512:" in out
    assert "job 1\n" in out
    assert f"previous block  {shown(first['prevhash'])}\n" in out
    assert f"ntime           0x{first['ntime']}" in out and "version         0x20000000" in out
    assert "clean           yes" in out
    assert pool.authorized == ["rig1.probe", "secret"]


def test_probe_returns_what_it_saw(server: Callable[..., Sv1Server]) -> None:
    pool = server()
    result = probe(pool.url, timeout=5)
    assert (result.job.extranonce1, result.job.extranonce2_size) == (pool.extranonce1, 4)
    assert result.difficulty == EASY
    assert result.job.job_id == "1" and result.job.nbits == "1d00ffff" and result.job.clean
    assert result.subscriptions[1][0] == "mining.notify"
    assert result.share is None and pool.authorized == ["sv2-k8s-probe", "x"] and pool.accepted == []


def test_mines_a_share_the_server_verifies(
    server: Callable[..., Sv1Server], capsys: pytest.CaptureFixture[str]
) -> None:
    pool = server()
    code, out, err = run(capsys, pool.url, "--mine", "--mine-timeout", "5")
    assert (code, err) == (0, ""), err
    assert pool.invalid == [] and len(pool.accepted) == 1 and f"hash {pool.accepted[0]}" in out
    assert "share accepted:" in out and "hashes in" in out and "kH/s" in out


def test_restarts_on_a_clean_job_with_a_new_extranonce(server: Callable[..., Sv1Server]) -> None:
    pool = server(difficulty=IMPOSSIBLE, switch_after=0.2)
    result = probe(pool.url, mine=True, timeout=5, mine_timeout=5)
    assert result.share is not None and result.share["job_id"] == "2"
    assert len(result.share["extranonce2"]) == 4  # the new extranonce2_size, 2 bytes
    assert pool.accepted == [result.share["hash"]]
    assert result.job.job_id == "1" and result.difficulty == IMPOSSIBLE  # the first job, as reported


@pytest.mark.parametrize(("first", "then"), [(2.0**-24, 2.0**-16), (2.0**-16, 2.0**-24)])
def test_a_new_difficulty_without_a_new_job(
    server: Callable[..., Sv1Server], first: float, then: float
) -> None:
    # A share in ~256 hashes at 2**-24, ~65,000 at 2**-16. Servers check shares against the job's difficulty
    # or the current one: only a share meeting the stricter of the two passes either way (and this server
    # wants both), whether the difficulty rose or fell.
    pool = server(difficulty=first, retarget=then)
    result = probe(pool.url, mine=True, timeout=5, mine_timeout=5)
    assert result.share is not None and pool.invalid == [] and pool.accepted == [result.share["hash"]]
    assert int(result.share["hash"], 16) < DIFF1 << 16


def test_connection_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))  # bound, not listening: connecting is refused
        code, _, err = run(capsys, f"stratum+tcp://127.0.0.1:{unused.getsockname()[1]}")
    assert code == sv1_probe.EXIT_CONNECT and "connection refused" in err


def test_dns_failure(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def no_such_host(*_: Any, **__: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    code, _, err = run(capsys, "stratum+tcp://translator.invalid:34255")
    assert code == sv1_probe.EXIT_DNS
    assert err == "sv2-probe: error: cannot resolve translator.invalid: Name or service not known\n"


@pytest.mark.parametrize(
    ("behaviour", "waiting_for"),
    [
        ({"silent": True}, "waiting for the reply to mining.subscribe"),
        ({"send_work": False}, "waiting for mining.set_difficulty"),
    ],
)
def test_times_out(
    server: Callable[..., Sv1Server],
    capsys: pytest.CaptureFixture[str],
    behaviour: dict[str, Any],
    waiting_for: str,
) -> None:
    pool = server(**behaviour)
    started = time.monotonic()
    code, _, err = run(capsys, pool.url, "--timeout", "0.4")
    assert time.monotonic() - started < 2
    assert code == sv1_probe.EXIT_TIMEOUT and f"timed out after 0.4 s {waiting_for}" in err


def test_mining_times_out(server: Callable[..., Sv1Server]) -> None:
    pool = server(difficulty=IMPOSSIBLE)
    with pytest.raises(ProbeError, match=r"no share within 0.3 s: [\d,]+ hashes") as raised:
        probe(pool.url, mine=True, timeout=5, mine_timeout=0.3)
    assert raised.value.exit_code == sv1_probe.EXIT_TIMEOUT and pool.accepted == []


@pytest.mark.parametrize(
    ("garbage", "message"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "malformed message (not JSON): HTTP/1.1 400 Bad Request"),
        (b"[1, 2, 3]\n", "malformed message (not a JSON object): [1, 2, 3]"),
        (b'{"id": 1, "result": [[], "zz", 4], "error": null}\n', "mining.subscribe: expected [subscriptions"),
        (b'{"id": 1, "result": [[], "00"], "error": null}\n', "mining.subscribe: expected [subscriptions"),
        (b'{"id": 1}\n', "neither a reply nor a notification"),
        (b'{"id": null, "method": "mining.notify", "params": ["1", "00"]}\n', "malformed message"),
        (b'{"id": null, "method": "mining.set_difficulty", "params": [0]}\n', "a difficulty above 0"),
        (b"\x00" * (sv1_probe.MAX_LINE + 1), "no end of line"),
    ],
)
def test_malformed_replies(
    server: Callable[..., Sv1Server], capsys: pytest.CaptureFixture[str], garbage: bytes, message: str
) -> None:
    code, _, err = run(capsys, server(garbage=garbage).url, "--timeout", "5")
    assert code == sv1_probe.EXIT_PROTOCOL and message in err and err.count("\n") == 1


def test_connection_closed(server: Callable[..., Sv1Server], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, server(garbage=b"").url, "--timeout", "5")
    assert code == sv1_probe.EXIT_CONNECT
    assert err.endswith(": the server closed the connection waiting for the reply to mining.subscribe\n")


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ({"result": None, "error": [24, "Unauthorized worker", None]}, "Unauthorized worker (code 24)"),
        ({"result": False, "error": None}, "result false"),
    ],
)
def test_authorize_refused(
    server: Callable[..., Sv1Server], capsys: pytest.CaptureFixture[str], reply: dict[str, Any], reason: str
) -> None:
    code, _, err = run(capsys, server(authorize_reply=reply).url)
    assert code == sv1_probe.EXIT_REFUSED
    assert err == f"sv2-probe: error: mining.authorize refused for 'sv2-k8s-probe': {reason}\n"


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ({"result": None, "error": {"code": 21, "message": "Job not found"}}, "Job not found (code 21)"),
        ({"result": False, "error": None}, "result false"),
    ],
)
def test_submit_rejected(
    server: Callable[..., Sv1Server], capsys: pytest.CaptureFixture[str], reply: dict[str, Any], reason: str
) -> None:
    pool = server(submit_reply=reply)
    code, out, err = run(capsys, pool.url, "--mine", "--mine-timeout", "5")
    assert code == sv1_probe.EXIT_REJECTED and f"mining.submit rejected: {reason}" in err
    assert len(pool.accepted) == 1 and "share found after" in out  # a valid share, refused all the same


BAD_URLS = "127.0.0.1:34255 http://h:34255 stratum+tcp://h stratum+tcp://h:99999 stratum+tcp://:34255"


@pytest.mark.parametrize("url", [*BAD_URLS.split(), "stratum+tcp://h:34255/x", "stratum+tcp://u:p@h:34255"])
def test_bad_urls(capsys: pytest.CaptureFixture[str], url: str) -> None:
    code, _, err = run(capsys, url)
    assert code == sv1_probe.EXIT_URL and err.startswith(f"sv2-probe: error: bad URL {url!r}")


def test_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        sv1_probe.main(["--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    for code, meaning in sv1_probe.EXIT_CODES.items():
        assert f"  {code}  {meaning}" in out
    with pytest.raises(SystemExit) as exited:
        sv1_probe.main(["stratum+tcp://h:1", "--timeout", "0"])
    assert exited.value.code == sv1_probe.EXIT_URL
