"""The floor of make bench-chain: the least an SV1 server can do for the same simulated miners on
this machine — answer mining.subscribe and mining.authorize, send a difficulty and a job, and
send every miner a clean job when told of a new block. No upstream, no channel, no state beyond
the open connections. The translator's figures are read against this server's, measured in the
same run with the same client.

    python -m tests.e2e.chain_bench.floor PORT

A connection that sends {"method": "bench.new_block", "params": [<block hash, RPC order>]}
makes it send mining.notify(clean_jobs=true) on that block to every other connection.
"""

from __future__ import annotations

import asyncio
import json
import sys

from tests.e2e.chain_bench.swarm import raise_file_limit
from tests.e2e.processes import LOOPBACK

# Sizes of a job the translator sends on the private signet (coinbase halves, no branch).
COINB1 = "02000000010000000000000000000000000000000000000000000000000000000000000000ffffffff" + "00" * 20
COINB2 = "ffffffff02" + "00" * 70 + "00000000"


def sv1_prevhash(block_hash: str) -> str:
    """SV1's previous-block field: the header's bytes as 8 words, each byte-swapped."""
    header_bytes = bytes.fromhex(block_hash)[::-1]
    return b"".join(header_bytes[i : i + 4][::-1] for i in range(0, 32, 4)).hex()


def notify(job: int, block_hash: str, clean: bool) -> bytes:
    params = [
        f"{job:x}",
        sv1_prevhash(block_hash),
        COINB1,
        COINB2,
        [],
        "20000000",
        "1e0377ae",
        "674c2e51",
        clean,
    ]
    return (json.dumps({"id": None, "method": "mining.notify", "params": params}) + "\n").encode()


class Floor:
    def __init__(self) -> None:
        self.miners: set[asyncio.Transport] = set()
        self.job, self.tip = 1, "00" * 32


class _Connection(asyncio.Protocol):
    def __init__(self, floor: Floor) -> None:
        self.floor, self.buffer = floor, b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        for line in filter(None, (raw.strip() for raw in lines)):
            message = json.loads(line)
            method = message.get("method")
            reply: object = None
            if method == "mining.subscribe":
                reply = [[["mining.notify", "1"]], f"{id(self) & 0xFFFFFFFF:08x}", 4]
            elif method == "mining.authorize":
                reply = True
            elif method == "bench.new_block":
                self.floor.job += 1
                self.floor.tip = message["params"][0]
                job = notify(self.floor.job, self.floor.tip, True)
                for miner in self.floor.miners:
                    miner.write(job)
                continue
            answer = {"id": message.get("id"), "result": reply, "error": None}
            self.transport.write((json.dumps(answer) + "\n").encode())
            if method == "mining.authorize":
                difficulty = {"id": None, "method": "mining.set_difficulty", "params": [23282.7]}
                self.transport.write((json.dumps(difficulty) + "\n").encode())
                self.transport.write(notify(self.floor.job, self.floor.tip, True))
                self.floor.miners.add(self.transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self.transport:
            self.floor.miners.discard(self.transport)


async def serve(port: int) -> None:
    floor = Floor()
    server = await asyncio.get_running_loop().create_server(
        lambda: _Connection(floor), LOOPBACK, port, backlog=1024
    )
    print(f"floor listening on {LOOPBACK}:{port}", flush=True)
    await server.serve_forever()


def main() -> None:
    raise_file_limit()
    asyncio.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
