"""Connect like an SV1 miner, print the difficulty and first job; with --mine, get one share accepted.

    sv2-probe stratum+tcp://HOST:PORT [--mine] [--worker W] [--password P]

The e2e suite calls probe(); the command line is a thin wrapper around it (exit codes: see --help).
"""

import argparse
import contextlib
import functools
import hashlib
import json
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any
from urllib.parse import urlsplit

DIFF1_TARGET = 0x00000000FFFF0000000000000000000000000000000000000000000000000000
MAX_LINE = 1 << 20  # a notify with a long merkle branch is a few kB; a megabyte is not SV1
BATCH = 4096  # nonces between looks at the socket: a few ms, so a new job is picked up at once
EXIT_URL, EXIT_DNS, EXIT_CONNECT, EXIT_TIMEOUT, EXIT_PROTOCOL, EXIT_REFUSED, EXIT_REJECTED = range(2, 9)
EXIT_CODES = {
    EXIT_URL: "bad URL or options",
    EXIT_DNS: "DNS failure: the host name does not resolve",
    EXIT_CONNECT: "connection refused, reset or closed by the server",
    EXIT_TIMEOUT: "timeout (--timeout; --mine-timeout while mining)",
    EXIT_PROTOCOL: "malformed reply: not JSON, missing or invalid fields",
    EXIT_REFUSED: "the server refused mining.subscribe or mining.authorize",
    EXIT_REJECTED: "the server rejected the share (mining.submit)",
}


class ProbeError(Exception):
    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Job:  # a mining.notify, with the extranonce and the difficulty in force when it arrived
    job_id: str
    prevhash: str  # as SV1 sends it: the header's 32 bytes as 8 words, each byte-swapped
    coinb1: str
    coinb2: str
    branch: tuple[str, ...]
    version: str
    nbits: str
    ntime: str
    clean: bool
    extranonce1: str
    extranonce2_size: int
    difficulty: float | None  # None: no mining.set_difficulty yet


@dataclass
class ProbeResult:
    subscriptions: Any  # as mining.subscribe returned them; extranonce1 and its size are in job
    difficulty: float
    job: Job  # the first one
    share: dict[str, str] | None = None  # the accepted share's submit fields and hash (--mine)
    hashes: int = 0
    seconds: float = 0.0


# Header math: pure functions, tested on real blocks.
def dsha256(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def difficulty_target(difficulty: float) -> int:
    """Hashes, read as little-endian integers, below this meet DIFFICULTY."""
    return min(int(Fraction(DIFF1_TARGET) / Fraction(difficulty)), 2**256 - 1)


def prevhash_bytes(sv1_prevhash: str) -> bytes:
    raw = bytes.fromhex(sv1_prevhash)
    return b"".join(raw[i : i + 4][::-1] for i in range(0, 32, 4))


def merkle_root(coinbase_hash: bytes, branch: Sequence[str]) -> bytes:
    for sibling in branch:  # the coinbase is the leftmost leaf, so it is always on the left
        coinbase_hash = dsha256(coinbase_hash + bytes.fromhex(sibling))
    return coinbase_hash


def block_header(job: Job, extranonce2: bytes, nonce: int) -> bytes:
    coinbase = bytes.fromhex(job.coinb1 + job.extranonce1) + extranonce2 + bytes.fromhex(job.coinb2)
    root = merkle_root(dsha256(coinbase), job.branch)
    # version, nbits and ntime come as big-endian hex; the header holds them little-endian.
    version, nbits, ntime = (bytes.fromhex(value)[::-1] for value in (job.version, job.nbits, job.ntime))
    return version + prevhash_bytes(job.prevhash) + root + ntime + nbits + struct.pack("<I", nonce)


def _scan(header: bytes, start: int, count: int, target: int) -> tuple[int, bytes] | None:
    """Tries nonces from START; the header's first 64 bytes are hashed once (the midstate)."""
    midstate, tail = hashlib.sha256(header[:64]), header[64:76]
    for nonce in range(start, min(start + count, 2**32)):
        inner = midstate.copy()
        inner.update(tail + nonce.to_bytes(4, "little"))
        digest = hashlib.sha256(inner.digest()).digest()
        if int.from_bytes(digest, "little") < target:
            return nonce, digest
    return None


def parse_url(url: str) -> tuple[str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise ProbeError(EXIT_URL, f"bad URL {url!r}: {error}") from None
    extra = parts.username or parts.path.strip("/") or parts.query or parts.fragment
    if parts.scheme != "stratum+tcp" or not parts.hostname or port is None or extra:
        raise ProbeError(EXIT_URL, f"bad URL {url!r}: expected stratum+tcp://HOST:PORT")
    return parts.hostname, port


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 100 else text[:100] + "…"


def _hex(value: Any, what: str, size: int | None = None) -> str:
    with contextlib.suppress(ValueError):
        if isinstance(value, str) and size in (None, len(bytes.fromhex(value))):
            return value
    raise ValueError(f"{what}: expected {size or 'some'} bytes of hex")


def _count(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{what}: expected a whole number")
    return value


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    outcome: list[socket.socket | OSError] = []

    def connect() -> None:  # in a daemon thread, as getaddrinfo has no timeout of its own
        try:
            outcome.append(socket.create_connection((host, port), timeout))
        except OSError as error:
            outcome.append(error)

    (worker := threading.Thread(target=connect, daemon=True)).start()
    worker.join(timeout)
    if not outcome or isinstance(outcome[0], TimeoutError):
        hint = " (a firewall? lbSourceRanges?)" if outcome else ""
        raise ProbeError(EXIT_TIMEOUT, f"timed out after {timeout:g} s connecting to {host}:{port}{hint}")
    if isinstance(outcome[0], socket.gaierror):
        raise ProbeError(EXIT_DNS, f"cannot resolve {host}: {outcome[0].strerror}")
    if isinstance(outcome[0], OSError):
        reason = "connection refused" if isinstance(outcome[0], ConnectionRefusedError) else outcome[0]
        raise ProbeError(EXIT_CONNECT, f"cannot connect to {host}:{port}: {reason}")
    return outcome[0]


class Session:  # one SV1 connection: every wait ends at the deadline; messages update the state
    def __init__(self, host: str, port: int, budget: float, log: Callable[[str], None]) -> None:
        self.log, self.buffer, self.next_id = log, b"", 1
        self.replies: dict[int, dict[str, Any]] = {}
        self.extranonce1, self.extranonce2_size = "", 0
        self.difficulty: float | None = None
        self.jobs: list[Job] = []
        self.budget, self.deadline = budget, time.monotonic() + budget
        self.sock = _connect(host, port, budget)

    def remaining(self, what: str) -> float:
        if (left := self.deadline - time.monotonic()) <= 0:
            raise ProbeError(EXIT_TIMEOUT, f"timed out after {self.budget:g} s {what}")
        return left

    def call(self, method: str, params: list[Any]) -> dict[str, Any]:
        request_id, self.next_id = self.next_id, self.next_id + 1
        line = json.dumps({"id": request_id, "method": method, "params": params}) + "\n"
        self.sock.settimeout(self.remaining(f"sending {method}"))
        try:
            self.sock.sendall(line.encode())
        except OSError as error:  # a timeout too: a server that reads nothing will not answer either
            raise ProbeError(EXIT_CONNECT, f"connection lost sending {method}: {error}") from None
        while request_id not in self.replies:
            self.pump(f"waiting for the reply to {method}")
        return self.replies.pop(request_id)

    def pump(self, what: str, *, block: bool = True) -> None:
        """Handles the messages that have arrived; if there are none and BLOCK, waits for some."""
        while b"\n" not in self.buffer:
            if not select.select([self.sock], [], [], self.remaining(what) if block else 0)[0]:
                if block:
                    continue  # remaining() raises once the deadline has passed
                return
            try:
                data = self.sock.recv(65536)
            except OSError as error:
                raise ProbeError(EXIT_CONNECT, f"connection lost {what}: {error}") from None
            if not data:
                raise ProbeError(EXIT_CONNECT, f"the server closed the connection {what}")
            self.buffer += data
            if len(self.buffer) > MAX_LINE and b"\n" not in self.buffer:
                raise ProbeError(EXIT_PROTOCOL, f"no end of line in the first {MAX_LINE} bytes of a reply")
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in filter(None, (raw.strip() for raw in lines)):
            try:
                if not isinstance(message := json.loads(line), dict):
                    raise TypeError("not a JSON object")
                self._handle(message)
            except (ValueError, TypeError, IndexError, KeyError) as error:  # JSON errors are ValueErrors
                reason = "not JSON" if isinstance(error, json.JSONDecodeError) else error
                text = _short(line.decode(errors="replace"))
                raise ProbeError(EXIT_PROTOCOL, f"malformed message ({reason}): {text}") from None

    def _handle(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params")
        if method is None:  # a reply
            if not isinstance(message.get("id"), int) or not {"result", "error"} & message.keys():
                raise ValueError("neither a reply nor a notification")
            self.replies[message["id"]] = message
        elif not isinstance(params, list):
            raise TypeError("params is not a list")
        elif method == "mining.set_difficulty":
            if isinstance(params[0], bool) or not isinstance(params[0], int | float) or params[0] <= 0:
                raise ValueError("expected a difficulty above 0")
            self.difficulty = float(params[0])
        elif method == "mining.notify":
            self.jobs.append(self._job(params))
        elif method == "mining.set_extranonce":  # applies from the next job on
            self.extranonce1 = _hex(params[0], "extranonce1")
            self.extranonce2_size = _count(params[1], "extranonce2_size")
            self.log(f"new extranonce1 {self.extranonce1}, extranonce2_size {self.extranonce2_size}")
        else:  # e.g. mining.set_version_mask: the probe rolls no version bits, so any mask is kept
            self.log(f"server sent {method} {_short(params)}")

    def _job(self, params: list[Any]) -> Job:
        if not (isinstance(params[0], str) and isinstance(params[4], list) and isinstance(params[8], bool)):
            raise TypeError("expected job_id, prevhash, coinb1, coinb2, branch, version, nbits, ntime, clean")
        return Job(
            job_id=params[0],
            prevhash=_hex(params[1], "prevhash", 32),
            coinb1=_hex(params[2], "coinb1"),
            coinb2=_hex(params[3], "coinb2"),
            branch=tuple(_hex(h, "merkle branch", 32) for h in params[4]),
            version=_hex(params[5], "version", 4),
            nbits=_hex(params[6], "nbits", 4),
            ntime=_hex(params[7], "ntime", 4),
            clean=params[8],
            extranonce1=self.extranonce1,
            extranonce2_size=self.extranonce2_size,
            difficulty=self.difficulty,
        )


def _refusal(reply: dict[str, Any]) -> str | None:
    """The server's reason when REPLY is not a success (SV1 errors look like [code, message, data])."""
    error, result = reply.get("error"), reply.get("result")
    if error is None:
        return None if result not in (False, None) else f"result {json.dumps(result)}"
    if isinstance(error, list) and len(error) >= 2:
        return f"{error[1]} (code {error[0]})"
    return f"{error['message']} (code {error.get('code')})" if isinstance(error, dict) else _short(error)


def _mine(session: Session, worker: str, result: ProbeResult) -> dict[str, str]:
    started = reported = time.monotonic()
    job, extranonce2, nonce, header = session.jobs[-1], 0, 0, b""
    while True:
        session.pump("mining", block=False)
        time.sleep(0)  # yields the GIL: an embedding program's threads (a test server) keep running
        latest = session.jobs[-1]
        if latest is not job and (latest.clean or latest.extranonce1 != job.extranonce1):
            job, extranonce2, nonce, header = latest, 0, 0, b""
            session.log(f"new job {job.job_id} (clean): restarting on it")
        # A new difficulty applies to later jobs; meeting the stricter of the two is accepted either way.
        target = difficulty_target(max(d for d in (job.difficulty, session.difficulty) if d is not None))
        result.seconds = time.monotonic() - started
        rate = result.hashes / max(result.seconds, 1e-9)
        progress = f"{result.hashes:,} hashes, {rate / 1e3:,.1f} kH/s"
        progress += f" (a share every ~{2**256 / target / max(rate, 1):,.0f} s at this rate)"
        if result.seconds >= session.budget:
            raise ProbeError(EXIT_TIMEOUT, f"no share within {session.budget:g} s: {progress}")
        if time.monotonic() >= reported + 5:
            session.log(f"… {progress}")
            reported = time.monotonic()
        en2 = extranonce2.to_bytes(job.extranonce2_size, "big")
        header = header or block_header(job, en2, 0)
        found = _scan(header, nonce, BATCH, target)
        result.hashes += (found[0] + 1 - nonce) if found else min(BATCH, 2**32 - nonce)
        nonce = found[0] + 1 if found else nonce + BATCH
        if nonce >= 2**32:  # over an hour of Python hashing; the mine timeout ends the search long before
            extranonce2, nonce, header = (extranonce2 + 1) % 256**job.extranonce2_size, 0, b""
        if not found:
            continue
        share = dict(job_id=job.job_id, extranonce2=en2.hex(), ntime=job.ntime, nonce=f"{found[0]:08x}")
        hashed = found[1][::-1].hex()
        session.log(f"share found after {result.hashes:,} hashes: nonce {share['nonce']}, hash {hashed}")
        if (reason := _refusal(session.call("mining.submit", [worker, *share.values()]))) is None:
            result.seconds = time.monotonic() - started
            return share | {"hash": hashed}
        raise ProbeError(EXIT_REJECTED, f"mining.submit rejected: {reason}")


def probe(
    url: str,
    *,
    mine: bool = False,
    timeout: float = 30.0,
    mine_timeout: float = 300.0,
    worker: str = "sv2-k8s-probe",
    password: str = "x",
    log: Callable[[str], None] = lambda _: None,
) -> ProbeResult:
    """Connects to URL as an SV1 miner and returns what it saw; raises ProbeError (with an exit code)."""
    host, port = parse_url(url)
    session = Session(host, port, timeout, log)
    try:
        log(f"connected to {host}:{port}")
        reply = session.call("mining.subscribe", ["sv2-k8s-probe/1"])
        if (reason := _refusal(reply)) is not None:
            raise ProbeError(EXIT_REFUSED, f"mining.subscribe refused: {reason}")
        try:
            subscriptions, extranonce1, size = reply["result"][:3]
            session.extranonce1 = _hex(extranonce1, "extranonce1")
            session.extranonce2_size = _count(size, "extranonce2_size")
        except (ValueError, TypeError, KeyError) as error:
            expected = f"expected [subscriptions, extranonce1, extranonce2_size] ({error})"
            raise ProbeError(EXIT_PROTOCOL, f"mining.subscribe: {expected}, got {_short(reply)}") from None
        log(f"subscribed: extranonce1 {extranonce1 or '(empty)'}, extranonce2_size {size}")
        log(f"  subscriptions {_short(subscriptions)}")
        if (reason := _refusal(session.call("mining.authorize", [worker, password]))) is not None:
            raise ProbeError(EXIT_REFUSED, f"mining.authorize refused for {worker!r}: {reason}")
        log(f"authorized as {worker}")
        while session.difficulty is None:
            session.pump("waiting for mining.set_difficulty")
        while not session.jobs:
            session.pump("waiting for mining.notify (has the pool work yet? is the node still syncing?)")
        result = ProbeResult(subscriptions, session.difficulty, session.jobs[0])
        per_share = 2**256 / difficulty_target(result.difficulty)
        log(f"difficulty {result.difficulty:g}: a share takes ~{per_share:,.0f} hashes")
        log(describe(result.job))
        if mine:
            session.budget, session.deadline = mine_timeout, time.monotonic() + mine_timeout
            result.share = _mine(session, worker, result)
            rate = result.hashes / max(result.seconds, 1e-9) / 1e3
            log(f"share accepted: {result.hashes:,} hashes in {result.seconds:.1f} s, {rate:,.1f} kH/s")
        return result
    finally:
        session.sock.close()


def describe(job: Job) -> str:
    ntime = datetime.fromtimestamp(int(job.ntime, 16), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    previous, clean = prevhash_bytes(job.prevhash)[::-1].hex(), "yes" if job.clean else "no"
    return (
        f"job {job.job_id}\n  previous block  {previous}\n  version         0x{job.version}\n"
        f"  nbits           0x{job.nbits}\n  ntime           0x{job.ntime} ({ntime})\n"
        f"  clean           {clean}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    codes = "".join(f"\n  {code}  {meaning}" for code, meaning in EXIT_CODES.items())
    parser = argparse.ArgumentParser(
        prog="sv2-probe",
        description="Connect to an SV1 endpoint (the translator) like a miner and show the work it sends.",
        epilog=f"exit codes:\n  0  a job came (with --mine: a share was accepted){codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", help="stratum+tcp://HOST:PORT, e.g. the stack output minersUrl")
    parser.add_argument("--worker", default="sv2-k8s-probe", help="worker name (default: %(default)s)")
    parser.add_argument("--password", default="x", help="worker password (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to get a job (default: 30)")
    parser.add_argument("--mine", action="store_true", help="hash in software until one share is accepted")
    parser.add_argument("--mine-timeout", type=float, default=300.0, help="seconds to mine (default: 300)")
    options = vars(parser.parse_args(argv))
    if not 0 < min(options["timeout"], options["mine_timeout"]) < float("inf"):
        parser.error("timeouts are seconds above 0")
    try:
        probe(options.pop("url"), **options, log=functools.partial(print, flush=True))
    except ProbeError as error:
        print(f"sv2-probe: error: {error}", file=sys.stderr)
        return error.exit_code
    return 0
