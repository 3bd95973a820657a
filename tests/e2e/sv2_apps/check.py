"""Config acceptance of the real pool_sv2 and translator_sv2, per stack, on loopback.

    .venv/bin/python -m tests.e2e.sv2_apps.check signet testnet4 mainnet

For each stack: render pool.toml and translator.toml under the mock engine, check every key
against the binaries' config structs (their crate sources), remap only cluster addresses and
0.0.0.0 binds to 127.0.0.1, then run the binaries (built from crates.io by
`tests/e2e/tools.sh sv2`) against a template provider (template_providers.py: the real sv2-tp
for signet, the fake-tp/ stand-in elsewhere) and read back, from logs, sockets and the
monitoring API, that each value took effect; then the failure paths that the probes, restarts
and alerts rely on, and the /metrics names that the alert rules and the dashboard query. Prints
one line per check; raises (exit 1) on the first failure.

The binaries are sv2-apps v0.3.0 code (crates pool_sv2/translator_sv2 0.2.0, commit 36562ad),
not the v0.2.0 images the stacks deploy: see README.md here.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from typing import Any

from tests.e2e.processes import LOOPBACK, E2EError, Process, free_port, listening, wait
from tests.e2e.sv2_apps import metrics
from tests.e2e.sv2_apps.apps import Apps, Sv1Miner, held, http, http_json, seconds_between
from tests.e2e.sv2_apps.config import (
    Local,
    Rendered,
    Sources,
    check_keys,
    localise,
    payout_script,
    render,
    with_changes,
)
from tests.e2e.sv2_apps.template_providers import FakeTp, RealTp
from tests.e2e.toolchain import binary
from tests.support.constants import STACKS

TemplateProvider = FakeTp | RealTp

STARTUP = 15.0  # seconds for a binary to bind what it binds
# Where the upstream behaviour each failure-path check expects is written down.
_FACTS = "docs/upstream-behaviour.md#"
POOL_GIVES_UP = _FACTS + "the-pool-gives-up-on-its-template-provider-after-three-tries-and-exits-0"
TRANSLATOR_NEEDS_UPSTREAM = _FACTS + "the-translator-listens-only-after-an-upstream-accepted-it"


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise E2EError(what)


def start_pool(apps: Apps, pool: dict[str, Any]) -> Process:
    return apps.start("pool", [binary("pool_sv2"), "-c", apps.config("pool.toml", pool)])


def start_translator(apps: Apps, translator: dict[str, Any]) -> Process:
    return apps.start(
        "translator", [binary("translator_sv2"), "-c", apps.config("translator.toml", translator)]
    )


def pool_without_tp(apps: Apps, local: Local) -> str:
    """TP address on a closed port: the pool must serve /health meanwhile, then give up and exit."""
    closed = free_port()
    pool = start_pool(
        apps,
        with_changes(local.pool, {("template_provider_type", "Sv2Tp", "address"): f"{LOOPBACK}:{closed}"}),
    )
    health = wait(
        lambda: http(local.pool_monitoring, "/api/v1/health"), STARTUP, "pool /api/v1/health", [pool]
    )
    code = pool.wait_exit(30)
    attempts = pool.grep(r"Connecting to template provider attempt=")
    gaps = seconds_between(attempts)
    _expect(len(attempts) == 3, f"pool tried its TP {len(attempts)} times, expected 3 ({POOL_GIVES_UP})")
    _expect(code == 0, f"pool exited {code} without a TP, expected 0 ({POOL_GIVES_UP})")
    _expect(not pool.grep("Starting downstream server"), "pool opened its SV2 port without a TP")
    last = pool.grep(r"Pool Error'ed out|Exhausted all connection attempts")
    return (
        f"TP {LOOPBACK}:{closed} closed: /api/v1/health {health.strip()[:40]!r} while retrying; "
        f"{len(attempts)} attempts {', '.join(f'{g:.1f}' for g in gaps)} s apart; exit {code}; "
        f"SV2 port never opened; last: {last[-1].split(' ', 2)[-1] if last else pool.tail(1)}"
    )


def pool_wrong_tp_key(apps: Apps, tp: TemplateProvider, local: Local) -> str:
    """A TP holding another valid authority key: the pool must refuse it (it checks `public_key`)."""
    serving = tp.serve(right_key=False)
    pool = start_pool(apps, local.pool)
    code = pool.wait_exit(40)
    failed = pool.grep(r"Noise handshake failed")
    _expect(not pool.grep("Starting downstream server"), "pool took a TP with another authority key")
    _expect(bool(failed), f"pool logged no failed Noise handshake: {pool.tail()}")
    _expect("InvalidCertificate" in failed[0], f"pool refused the TP for another reason: {failed[0]}")
    attempts = len(pool.grep("Connecting to template provider attempt="))
    return (
        f"{serving} (another valid authority key): {len(failed)} of {attempts} Noise handshakes "
        f"failed with InvalidCertificate, exit {code}, SV2 port never opened"
    )


def pool_up(apps: Apps, tp: TemplateProvider, rendered: Rendered, local: Local) -> tuple[Process, str]:
    serving = tp.serve(right_key=True)
    pool = start_pool(apps, local.pool)
    listen = pool.wait_for(r"Starting downstream server at", STARTUP)
    wait(lambda: listening(local.pool_port) or None, STARTUP, f"pool on {LOOPBACK}:{local.pool_port}", [pool])
    setup = pool.wait_for(r"Building SetupConnection message to the Template Provider", STARTUP)
    _expect(f"socket={LOOPBACK}:{local.tp_port}" in setup, f"pool set up its TP at another address: {setup}")
    seen = tp.saw_pool()
    health = http(local.pool_monitoring, "/api/v1/health") or ""
    _expect('"ok"' in health, f"pool /api/v1/health answered {health!r}")
    glob = http_json(local.pool_monitoring, "/api/v1/global")
    _expect(glob.get("sv2_clients") is not None, f"pool /api/v1/global has no sv2_clients: {glob}")
    tp_address = local.pool["template_provider_type"]["Sv2Tp"]["address"]
    detail = (
        f"{serving}; {listen.split('INFO ', 1)[-1].strip()}; TP link at {tp_address} authenticated with "
        f"public_key {rendered.tp_public_key[:10]}…, template + prevhash received ({seen}); "
        f"monitoring {local.pool_monitoring} /api/v1/health ok, "
        f"/api/v1/global sv2_clients={glob['sv2_clients']}"
    )
    return pool, detail


def translator_without_pool(apps: Apps, local: Local) -> str:
    closed = free_port()
    translator = start_translator(apps, with_changes(local.translator, {("upstreams", 0, "port"): closed}))
    code = translator.wait_exit(30)
    attempts = translator.grep(r"Connection attempt \d/\d")
    _expect(len(attempts) == 3, f"translator tried its pool {len(attempts)} times, expected 3")
    _expect(code == 0, f"translator exited {code} without a pool, expected 0 ({TRANSLATOR_NEEDS_UPSTREAM})")
    _expect(
        not translator.grep("listening on|Initializing monitoring server"), "translator served without a pool"
    )
    return (
        f"pool {LOOPBACK}:{closed} closed: {len(attempts)} attempts "
        f"{', '.join(f'{g:.1f}' for g in seconds_between(attempts))} s apart, exit {code}, "
        f"neither SV1 nor monitoring port opened"
    )


def translator_wrong_key(apps: Apps, rendered: Rendered, local: Local) -> str:
    """The right pool but another valid authority key (the TP's): the handshake must fail."""
    wrong = with_changes(local.translator, {("upstreams", 0, "authority_pubkey"): rendered.tp_public_key})
    translator = start_translator(apps, wrong)
    code = translator.wait_exit(40)
    _expect(not translator.grep("SetupConnectionSuccess"), "translator took a pool with another key")
    failed = translator.grep(r"Failed Noise handshake with .*Invalid Certificate")
    _expect(len(failed) == 3, f"expected 3 handshakes refused with Invalid Certificate: {translator.tail()}")
    # The refused certificate still shows the pool's validity window: cert_validity_sec at work.
    window = re.search(r"valid_from: (\d+), not_valid_after: (\d+)", failed[0])
    _expect(window is not None, f"no certificate window in {failed[0][:200]}")
    assert window is not None
    validity = int(window.group(2)) - int(window.group(1))
    _expect(validity == rendered.pool["cert_validity_sec"], f"pool certificate valid {validity} s")
    return (
        f"authority_pubkey {rendered.tp_public_key[:10]}… (the TP's): {len(failed)} handshakes refused "
        f"(Invalid Certificate), exit {code}, SV1 port never opened; the pool's certificate spans "
        f"{validity} s = cert_validity_sec"
    )


def translator_up(apps: Apps, rendered: Rendered, local: Local) -> tuple[Process, str]:
    translator = start_translator(apps, local.translator)
    ready = translator.wait_for(r"Translator Proxy: listening on", STARTUP)
    _expect(f"{LOOPBACK}:{local.sv1_port}" in ready, f"SV1 port elsewhere: {ready}")
    tried = translator.grep(r"Trying upstream 1 of \d")[0]
    _expect(f"{LOOPBACK}:{local.pool_port}" in tried, f"translator tried another upstream: {tried}")
    translator.wait_for("SetupConnectionSuccess", STARTUP)
    wait(
        lambda: http(local.translator_monitoring, "/api/v1/health"),
        STARTUP,
        "translator /api/v1/health",
        [translator],
    )
    keepalive = translator.grep("job keepalive loop with interval of")
    vardiff = translator.grep("Variable difficulty adjustment enabled")
    difficulty = local.translator["downstream_difficulty_config"]
    _expect(
        bool(keepalive) and f"of {difficulty['job_keepalive_interval_secs']} seconds" in keepalive[0],
        f"job_keepalive_interval_secs not in effect: {keepalive}",
    )
    _expect(
        bool(vardiff) == difficulty["enable_vardiff"],
        f"enable_vardiff={difficulty['enable_vardiff']} not in effect",
    )
    return translator, (
        f"{tried.split('INFO ', 1)[-1].split(': ', 1)[-1]} with authority_pubkey "
        f"{rendered.pool_public_key[:10]}…: Noise + SetupConnectionSuccess; "
        f"SV1 on {LOOPBACK}:{local.sv1_port}; "
        f"monitoring {local.translator_monitoring}; its log shows job keepalive "
        f"{difficulty['job_keepalive_interval_secs']} s and vardiff={difficulty['enable_vardiff']}"
    )


def sv1_stage(rendered: Rendered, local: Local) -> str:
    try:
        from sv1_probe.probe import probe
    except ImportError as error:
        return f"skipped: sv1_probe/probe.py has no probe() ({error})"
    result = probe(f"stratum+tcp://{LOOPBACK}:{local.sv1_port}", mine=False, timeout=15.0)
    pool, translator = rendered.pool, rendered.translator
    difficulty = translator["downstream_difficulty_config"]
    expected = difficulty["min_individual_miner_hashrate"] * 60 / difficulty["shares_per_minute"] / 2**32
    server_id = f"{pool['server_id']:04x}"
    job = result.job
    _expect(job.extranonce2_size == translator["downstream_extranonce2_size"], "extranonce2_size differs")
    _expect(abs(result.difficulty / expected - 1) < 0.01, f"difficulty {result.difficulty} vs {expected:g}")
    _expect(
        job.extranonce1.startswith(server_id), f"extranonce1 {job.extranonce1} lacks server_id {server_id}"
    )
    _expect(pool["pool_signature"].encode().hex() in job.coinb1, "pool_signature not in the coinbase")
    script = payout_script(rendered)
    _expect(script in job.coinb2, f"coinbase pays elsewhere than {script}")
    return (
        f"mining.notify job {job.job_id} at difficulty {result.difficulty:.6g} "
        f"(= min_individual_miner_hashrate × 60 / shares_per_minute / 2^32); "
        f"extranonce2_size {job.extranonce2_size}; extranonce1 "
        f"{job.extranonce1[:8]}… carries server_id {pool['server_id']}; coinbase tag has pool_signature "
        f"{pool['pool_signature']!r} and pays {script} ({pool['coinbase_reward_script']})"
    )


def channel_values(rendered: Rendered, local: Local) -> str:
    """With two SV1 miners held: channel state the pool and translator report on their APIs."""
    pool, translator = rendered.pool, rendered.translator
    server = http_json(local.translator_monitoring, "/api/v1/server/channels")
    channels = server["extended_channels"] + server["standard_channels"]
    wanted = 1 if translator["aggregate_channels"] else 2
    _expect(
        len(channels) == wanted,
        f"{len(channels)} upstream channels for 2 miners, aggregate_channels={wanted == 1}",
    )
    _expect(
        channels[0]["user_identity"].startswith(f"{translator['user_identity']}."),
        f"user_identity {channels}",
    )
    clients = http_json(local.pool_monitoring, "/api/v1/clients")["items"]
    (client,) = clients
    pool_channels = http_json(local.pool_monitoring, f"/api/v1/clients/{client['client_id']}/channels")
    (channel,) = pool_channels["extended_channels"][:1]
    _expect(channel["share_batch_size"] == pool["share_batch_size"], f"share_batch_size {channel}")
    _expect(
        channel["expected_shares_per_minute"] == pool["shares_per_minute"], f"shares_per_minute {channel}"
    )
    return (
        f"translator: {len(channels)} upstream channel(s) for 2 miners (aggregate_channels="
        f"{translator['aggregate_channels']}), user_identity {channels[0]['user_identity']!r}; pool channel: "
        f"share_batch_size {channel['share_batch_size']}, "
        f"shares_per_minute {channel['expected_shares_per_minute']}"
    )


def link_loss(tp: TemplateProvider, pool: Process, translator: Process) -> str:
    """The TP goes away: the pool must exit (Kubernetes restarts it), then the translator."""
    start = time.monotonic()
    killed = tp.kill()
    pool_code = pool.wait_exit(30)
    pool_after = time.monotonic() - start
    translator_code = translator.wait_exit(30)
    translator_after = time.monotonic() - start
    _expect(
        pool_code == 0 and translator_code == 0, f"exit codes pool {pool_code}, translator {translator_code}"
    )
    why = [line.split(": ", 1)[-1] for line in translator.grep("Couldn't perform fallback")]
    return (
        f"{killed}: pool exited {pool_code} after {pool_after:.1f} s; the translator, its only "
        f"upstream gone, exited {translator_code} after {translator_after:.1f} s ({''.join(why)[:60]})"
    )


def check(stack: str, report: Callable[[str], None] = lambda _: None) -> list[str]:
    """Runs every check for one stack; returns one line per check, raises E2EError on a failure."""
    lines: list[str] = []

    def step(name: str, detail: str) -> None:
        lines.append(f"e2e {stack} {name}: ok ({detail})")
        report(lines[-1])

    sources = Sources.load()
    rendered = render(stack)
    step(
        "pool-config keys",
        check_keys("pool.toml", rendered.pool, sources.pool_fields, sources.v020_pool_keys),
    )
    step(
        "translator-config keys",
        check_keys(
            "translator.toml", rendered.translator, sources.translator_fields, sources.v020_translator_keys
        ),
    )
    local = localise(rendered)
    real = stack == "signet" and RealTp.available()
    with Apps() as apps, RealTp(rendered, local) if real else FakeTp(apps, rendered, local) as tp:
        why = (
            ""
            if real
            else (
                ": the chain binaries are not built (make e2e-tools)"
                if stack == "signet"
                else f": a {stack} sv2-tp serves nothing before its node has synced the network"
            )
        )
        changes = local.changes + (tp.chain.changes if isinstance(tp, RealTp) else [])
        step("remap", "; ".join(str(change) for change in changes))
        step(
            "template provider",
            f"{tp.name}{why}" + (f"; {'; '.join(tp.started)}" if isinstance(tp, RealTp) else ""),
        )
        step("pool without TP", pool_without_tp(apps, local))
        step("pool with a wrong TP key", pool_wrong_tp_key(apps, tp, local))
        pool, detail = pool_up(apps, tp, rendered, local)
        step("pool-config", detail)
        step("translator without pool", translator_without_pool(apps, local))
        step("translator with a wrong pool key", translator_wrong_key(apps, rendered, local))
        translator, detail = translator_up(apps, rendered, local)
        step("translator-config", detail)
        step("sv1", sv1_stage(rendered, local))
        idle = metrics.scrape(local)
        miners = [Sv1Miner(local.sv1_port, f"e2e-{n}") for n in (1, 2)]
        with held(miners):
            busy = metrics.wait_for_channels(local, pool, translator)
            step("channels", channel_values(rendered, local))
        step("metrics", metrics.compare(rendered, idle, busy))
        step("TP link lost", link_loss(tp, pool, translator))
    return lines


def main(argv: list[str]) -> int:
    stacks = argv or list(STACKS)
    for stack in stacks:
        try:
            check(stack, report=lambda line: print(line, flush=True))
        except E2EError as error:
            print(f"e2e {stack}: FAILED: {error}", file=sys.stderr)
            return 1
    print(f"e2e sv2-apps: {len(stacks)} stack(s) ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
