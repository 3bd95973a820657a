"""The chain stage's step "independent miner" (check.py): an SV1 CPU miner nobody here wrote,
`para miner` from the Parasite pool's toolkit (crates.io, built by `make e2e-tools`), mines on
the translator until it finds a block, and the node takes that block as its tip.

With `--mode block-found` para stops after its first share that meets the block's own target
and prints its shares as JSON; on this private signet every share is a block (check.py,
CHAIN_SETTINGS). The tip is tied to para by what only its share has: the header's nonce and time,
and its extranonce1 + extranonce2 inside the coinbase. para's last log lines ("submitted
successfully") can be lost when it exits, so the step reads its JSON and the node, not its log.
docs/testing.md#an-independent-sv1-miner
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from tests.e2e.chain.node import Chain, accepted_block
from tests.e2e.processes import LOOPBACK, E2EError, Process, output_of
from tests.e2e.toolchain import bin_dir

MINE_TIMEOUT = 120.0  # a block is ~4.8 M hashes on average; para did ~2 MH/s on one core here
WORKER = "e2e-para"  # para's username is <address>.<worker>: the address must parse
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT")  # tracing's lines start with a timestamp


def para() -> Path:
    return bin_dir() / "para"


def shares(miner: Process) -> list[dict[str, Any]]:
    """The JSON array para prints on stdout when it stops; its log lines (stderr, the same log
    here, written by another thread) are left out wherever they fall."""
    lines = [line for line in miner.lines() if not LOG_LINE.match(line)]
    start = max((i for i, line in enumerate(lines) if line in ("[", "[]")), default=None)
    if start is None:
        raise E2EError(f"para printed no shares: {miner.tail(6)}")
    found: list[dict[str, Any]] = json.JSONDecoder().raw_decode("\n".join(lines[start:]))[0]
    return found


def mine(chain: Chain, payout: str, signature: str) -> list[str]:
    binary, local, pool = para(), chain.local, chain.pool
    assert local is not None and pool is not None
    if not os.access(binary, os.X_OK):
        raise E2EError(
            f"para not built ({binary}): run make e2e-tools, or skip the stage (SV2_E2E_SKIP=chain)"
        )
    version = output_of([binary, "--version"]).strip()
    tip, height = chain.cli("getbestblockhash"), int(chain.cli("getblockcount"))
    seen = len(pool.lines())
    username = f"{payout}.{WORKER}"
    argv: list[str | Path] = [binary, "miner", f"{LOOPBACK}:{local.sv1_port}", "--username", username]
    argv += ["--password", "x", "--mode", "block-found", "--cpu-cores", "1"]
    # RUST_LOG: its log lines instead of a terminal throbber.
    miner = chain.group.start("para-miner", argv, {**chain.env, "RUST_LOG": "info", "NO_COLOR": "1"})
    started = time.monotonic()
    try:
        code = miner.wait_exit(MINE_TIMEOUT)
    finally:
        miner.stop()
    seconds = time.monotonic() - started
    if code != 0:
        raise E2EError(f"para exited {code}: {miner.tail(6)}")
    found_shares = shares(miner)
    if not found_shares:
        raise E2EError(f"para exited 0 with no share: {miner.tail(6)}")
    share = found_shares[-1]
    logged = [re.findall(r"[0-9a-f]{64}", line) for line in pool.lines()[seen:] if "Block Found" in line]
    announced = list(dict.fromkeys(h for hashes in logged for h in hashes))
    if len(announced) != 1:
        raise E2EError(
            f"the pool logged {len(announced)} blocks found while para mined, expected 1: {announced}"
        )
    (found,) = announced
    block, accepted = accepted_block(chain, found, "para's", payout, signature)
    scriptsig = block["tx"][0]["vin"][0]["coinbase"]
    extranonce = share["enonce1"] + share["enonce2"]
    rolled = int(share.get("version_bits") or "0", 16)  # the bits para set under the rolling mask
    ties = {
        "previous block is the tip para started on": block.get("previousblockhash") == tip,
        "header nonce = share nonce": block["nonce"] == int(share["nonce"], 16),
        "header time = share ntime": block["time"] == int(share["ntime"], 16),
        "header version has the share's version bits": block["version"] & rolled == rolled,
        "coinbase carries extranonce1+2": extranonce in scriptsig,
    }
    if not all(ties.values()):
        broken = [name for name, ok in ties.items() if not ok]
        raise E2EError(f"block {found} is not para's share ({', '.join(broken)}): {share}, {block['hash']}")
    return [
        version,
        f"para miner on {LOOPBACK}:{local.sv1_port} as {username}, 1 core, --mode block-found",
        f"{len(found_shares)} share(s) in {seconds:.1f} s, the last: job {share['job_id']}, "
        f"nonce {share['nonce']}, ntime {share['ntime']}, extranonce2 {share['enonce2']}"
        + (f", version bits {rolled:08x}" if rolled else ", no version rolling"),
        *accepted,
        f"height {height} → {block['height']}; {', '.join(ties)}: yes",
        f"header version 0x{block['version'] & 0xFFFFFFFF:08x}",
    ]
