"""make e2e: the real Pulumi CLI and providers against a real kube-apiserver, for every stack.

For each committed stack, and one with every setting changed (stacks/Pulumi.all-settings.yaml):
preview, up, the objects as rendered, pods admitted by Pod Security, no secret outside Secrets,
a second up that changes nothing, an unrelated update in place, key rotations in place, destroy.
Before them: the plugins are the pinned ones, and a fresh clone comes up with `pulumi up` alone.
Then each mutant (a first-contact fix broken on purpose) must fail its step, the real pool and
translator run the rendered configs against fake-tp (sv2_apps/check.py), and a private-signet
stack's stored configs run the real chain and mine a block through the SV1 probe (chain/check.py).
Last, the same stack's pods really run on a node agent, and mine through the load balancer's
address (pods/check.py).

Environment: SV2_E2E_CACHE (tools, default ~/.cache/sv2-k8s-e2e); SV2_E2E_KUBECONFIG (use this
cluster instead of a private loopback one); SV2_E2E_BUILD_IMAGE=1 with
SV2_E2E_NODE_IMAGE_REPOSITORY (let pulumi-docker build and push the node image); SV2_E2E_CRDS
(Prometheus Operator CRDs: a folder, or a URL applied with kubectl); SV2_E2E_STACKS (a subset);
SV2_E2E_RANDOM (how many stacks of randomly drawn valid settings, default 4), drawn from
SV2_E2E_SEED (any text; CI passes the commit) or SV2_E2E_RANDOM_SEEDS (draw seeds, to replay or
hunt; draws.py); SV2_E2E_SKIP (stages skipped by name, comma-separated: stacks,
regressions, random, mutants, sv2-apps, chain, pods; printed in the summary).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.e2e.cluster.connect import Kube, start_cluster
from tests.e2e.draws import Draw, draw, draw_seeds, regressions, run_seed
from tests.e2e.mutants import MUTANTS
from tests.e2e.processes import output_of
from tests.e2e.project import Project, leftover_processes, operations, urn_name
from tests.e2e.stack_assertions import StackAssertions
from tests.e2e.toolchain import PLUGIN_PINS, missing, pinned, required_version
from tests.support.constants import MAINNET_TEST_ADDRESS, PROJECT, ROOT, STACKS

ALL_SETTINGS = "all-settings"
# No kubelet runs here, so no image is ever pulled: a fixed reference stands in for the build.
PRESET_NODE_IMAGE = "registry.example.com/sv2/bitcoin-node:30.2-sv2tp1.0.5"
REGISTRY_PASSWORD = "e2e-registry-token"


class StepFailedError(AssertionError):
    """args: which step ("<stack> <step>"), and why."""


def stack_file(stack: str) -> Path:
    if stack == ALL_SETTINGS:
        return Path(__file__).with_name("stacks") / f"Pulumi.{stack}.yaml"
    return ROOT / f"Pulumi.{stack}.yaml"


def e2e_settings(stack: str) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if os.environ.get("SV2_E2E_BUILD_IMAGE") == "1":
        repository = os.environ["SV2_E2E_NODE_IMAGE_REPOSITORY"]
        settings["nodeImageRepository"] = repository
        # Built here, so for this machine's architecture (no emulation), and pushed to the local
        # registry whatever registry a stack file names (all-settings names one that is not there).
        settings["nodePlatform"] = {"x86_64": "amd64", "aarch64": "arm64"}[platform.machine()]
        if stack == ALL_SETTINGS:
            settings["registryServer"] = repository.split("/", 1)[0]
    else:
        settings["nodeImage"] = PRESET_NODE_IMAGE
    if stack == "mainnet":
        settings["payoutAddress"] = MAINNET_TEST_ADDRESS
    return settings


class Runner:
    def __init__(self, project: Project, kube: Kube, report: Callable[[str], None] | None = None) -> None:
        self.project = project
        self.assertions = StackAssertions(kube)
        self.report = report or functools.partial(print, flush=True)
        self.passed = 0
        self.failed = 0

    @contextlib.contextmanager
    def step(self, stack: str, name: str) -> Iterator[list[str]]:
        """One readable line per stack and step; details appended by the step."""
        details: list[str] = []
        started = time.monotonic()
        try:
            yield details
        except Exception as error:
            self.failed += 1
            self.report(f"e2e {stack} {name}: FAILED ({time.monotonic() - started:.1f} s)\n  {error}")
            raise StepFailedError(f"{stack} {name}", str(error)) from error
        self.passed += 1
        suffix = ", ".join([f"{time.monotonic() - started:.1f} s", *details])
        self.report(f"e2e {stack} {name}: ok ({suffix})")

    def stack(self, stack: str) -> None:
        project = self.project
        project.init_stack(stack, stack_file(stack), e2e_settings(stack))
        if stack == ALL_SETTINGS:
            project.set_config(stack, "registryPassword", REGISTRY_PASSWORD, secret=True)
        namespace = str(project.run("config", "get", "sv2-k8s:namespace", stack=stack).stdout.strip() or "")
        namespace = namespace or "sv2-mining"

        with self.step(stack, "preview") as details:
            planned = operations(project.preview(stack).json())
            creates = len(planned.pop("create", []))
            if planned:
                raise AssertionError(f"a first preview should only create, also plans {sorted(planned)}")
            if creates < 20:
                raise AssertionError(f"only {creates} creates planned")
            details.append(f"{creates} to create")
            project.guarded_preview(stack)
            details.append("policy pack passed")

        with self.step(stack, "up") as details:
            registered = project.up_registering(stack)
            state = project.state(stack)
            details.append(f"{len(state)} resources")
            details += self.assertions.as_rendered(state, registered)
            details += self.assertions.pods_admitted(namespace, self._pod_count(stack))
            extra = {REGISTRY_PASSWORD} if stack == ALL_SETTINGS else set()
            details += self.assertions.no_secret_outside_secrets(namespace, state, extra)

        with self.step(stack, "no-op up") as details:
            project.preview(stack, "--expect-no-changes")
            project.up(stack, "--expect-no-changes")
            # Against the live objects too: a value the API server rewrites (a quantity "0.75"
            # stored as 750m) shows only when Pulumi compares with what the cluster holds.
            project.preview(stack, "--refresh", "--expect-no-changes")
            details.append("preview, up and a refreshed preview change nothing")

        with self.step(stack, "update") as details:
            before = project.state(stack)
            project.set_config(stack, "translatorMinReplicas", "4")
            project.set_config(stack, "translatorResources.limits.memory", "384Mi", path=True)
            project.set_config(stack, "poolSharesPerMinute", "9.5")
            details += self._in_place(
                stack, before, must_update={"Deployment::translator", "Secret::pool-config"}
            )

        for rotation, seed, rolls, stays in (
            (
                "tpKeyRotation",
                "RandomPassword::credentials-tp-authority",
                {"StatefulSet", "Deployment::pool"},
                {"Deployment::translator"},
            ),
            (
                "poolKeyRotation",
                "RandomPassword::credentials-pool-authority",
                {"Deployment::pool", "Deployment::translator"},
                {"StatefulSet"},
            ),
        ):
            with self.step(stack, f"rotate {rotation}") as details:
                before_templates = self.assertions.pod_templates(namespace)
                before = project.state(stack)
                project.set_config(stack, rotation, f"e2e-{time.time_ns()}")
                details += self._in_place(stack, before, must_update=set(), replaces={seed})
                details += self.assertions.rolled(namespace, before_templates, rolls=rolls, stays=stays)

        with self.step(stack, "destroy") as details:
            project.destroy(stack)
            details += self.assertions.after_destroy(namespace, retained=stack != ALL_SETTINGS)

        if stack != ALL_SETTINGS:
            with self.step(stack, "up after destroy") as details:
                # The way back after a destroy: the kept Namespace is adopted, and the new
                # StatefulSet re-attaches the kept chain-data claim (same uid: same data).
                claims = self.assertions.claim_uids(namespace)
                project.up(stack)
                if self.assertions.claim_uids(namespace) != claims:
                    raise AssertionError(
                        f"chain-data claims changed: {claims} → {self.assertions.claim_uids(namespace)}"
                    )
                project.destroy(stack)
                details.append(f"re-attached {', '.join(sorted(claims))}")

    def plugins(self) -> None:
        """The plugins the engine runs are exactly what users install: `pulumi about` names the
        versions requirements.txt pins, the only installed versions are those, and each binary
        reports its own version (GetPluginInfo / -version, by build/plugins.sh --check)."""
        with self.step("toolchain", "plugins") as details:
            stack = "plugins"
            self.project.init_stack(stack, stack_file("signet"), e2e_settings("signet"))
            about = self.project.run("about", "--json", stack=stack).json()
            installed = self.project.run("plugin", "ls", "--json").json()
            self.project.remove_stack(stack)
            named = {(p["kind"], p["name"]): p["version"] for p in about["plugins"]}
            expected = {
                ("language", "python"): pinned("PLUGIN_PYTHON_VERSION", PLUGIN_PINS).lstrip("v"),
                ("resource", "kubernetes"): required_version("pulumi-kubernetes"),
                ("resource", "random"): required_version("pulumi-random"),
                ("resource", "docker"): required_version("pulumi-docker"),
            }
            wrong = {key: named.get(key) for key, version in expected.items() if named.get(key) != version}
            if wrong:
                raise AssertionError(
                    f"pulumi about names {wrong}, requirements.txt and plugins.env pin {expected}"
                )
            providers = sorted(name for kind, name in expected if kind == "resource")
            versions = sorted((p["name"], p["version"]) for p in installed if p["name"] in providers)
            pins = sorted((name, version) for (_, name), version in expected.items() if name != "python")
            if versions != pins:
                raise AssertionError(f"installed plugins {versions}, pinned {pins}")
            details.append(", ".join(f"{name} {version}" for (_, name), version in expected.items()))
            plugins = [f"pulumi-resource-{name}" for name in providers]
            if missing(*plugins, "pulumi-language-python"):
                # No upstream sources (GitHub): the released plugins the workflow installed.
                details.append("released plugins, as pulumi about names them and requirements.txt pins them")
            else:
                reports = output_of(["bash", PLUGIN_PINS.with_name("plugins.sh"), "--check"])
                if reports.count("reports") != len(plugins) + 1:
                    raise AssertionError(f"build/plugins.sh --check: {reports}")
                details.append(
                    "built from source, as pulumi about names them, requirements.txt pins, binaries report"
                )

    def fresh_clone(self) -> None:
        """What a new user does: a clone, the Pulumi CLI, `pulumi up`. No `make setup`: the
        language host creates .venv from requirements.txt, as Pulumi.yaml says."""
        stack = "signet"
        with self.step(stack, "fresh clone up") as details:
            clone = Project(self.project.kube_env, self.project.cli, fresh=True)
            try:
                clone.init_stack(stack, stack_file(stack), e2e_settings(stack))
                clone.up(stack)
                created = len(clone.state(stack))
                installed = output_of([clone.dir / ".venv" / "bin" / "pip", "freeze"]).splitlines()
                pins = {
                    f"pulumi-kubernetes=={required_version('pulumi-kubernetes')}",
                    f"pulumi-random=={required_version('pulumi-random')}",
                }
                if not pins <= {line.lower().replace("_", "-") for line in installed}:
                    raise AssertionError(f"the host's .venv holds {installed}, not {sorted(pins)}")
                clone.destroy(stack)
            finally:
                clone.close()
            details.append(f"{created} resources; the host created .venv with {', '.join(sorted(pins))}")

    def image_inputs(self) -> None:
        """The node image's build inputs do not depend on where the checkout lives (a laptop and
        CI must not rebuild and restart the node): two copies of the project at different paths
        register the same docker Image inputs through the real CLI, with a relative build context.
        Only the registration is read: without the docker plugin (here) the preview then fails."""
        stack = "image-inputs"
        settings = {k: v for k, v in e2e_settings("signet").items() if k != "nodeImage"}
        with self.step("signet", "image build inputs") as details:
            copies = [self.project, Project(self.project.kube_env, self.project.cli)]
            inputs = []
            try:
                for copy in copies:
                    copy.init_stack(stack, stack_file("signet"), settings)
                    _, registered = copy.preview_registering(stack)
                    images = {n: obj for (kind, n), obj in registered.items() if kind.startswith("docker:")}
                    if not images:
                        raise AssertionError(f"no docker Image registered: {sorted(registered)}")
                    inputs.append(images)
                    copy.remove_stack(stack)
            finally:
                copies[1].close()
            if inputs[0] != inputs[1]:
                raise AssertionError(f"image inputs differ by checkout path: {inputs[0]} vs {inputs[1]}")
            contexts = sorted({str(obj["build"]["context"]) for obj in inputs[0].values()})
            if any(Path(context).is_absolute() for context in contexts):
                raise AssertionError(f"absolute build context {contexts}")
            details.append(f"same inputs from {len(copies)} checkout paths, context {', '.join(contexts)}")

    def drawn(self, case: Draw) -> None:
        """Valid settings nobody listed, drawn by the property tests' own strategy, through the real
        CLI and API server: everything accepted, a second up empty, even against the live objects.
        A regression case the program must refuse: refused naming its key, before any resource."""
        self.project.init_stack(
            case.name, stack_file(case.stack), {**case.settings, **e2e_settings(case.stack)}
        )
        step = "refused" if case.refused_key else "up, no-op up"
        with self.step(case.name, step) as details:
            try:
                if case.refused_key:
                    details += self._refused(case.name, case.refused_key)
                else:
                    registered = self.project.up_registering(case.name)
                    details += self.assertions.as_rendered(self.project.state(case.name), registered)
                    self.project.up(case.name, "--expect-no-changes")
                    self.project.preview(case.name, "--refresh", "--expect-no-changes")
                    details.append(f"{len(case.settings)} settings drawn")
            except Exception as error:
                raise AssertionError(
                    f"{error}\n  settings: {json.dumps(case.settings)}\n  replay: {case.replay}"
                ) from error

    def _refused(self, stack: str, key: str) -> list[str]:
        outcome = self.project.run("up", "--yes", "--skip-plugin-pre-install", stack=stack, check=False)
        output = outcome.stdout + outcome.stderr
        named = f"{PROJECT}:{key} "
        if named not in output:
            raise AssertionError(f"`up` did not refuse naming {key}:\n{output[-1500:]}")
        created = [r["type"] for r in self.project.state(stack) if r["type"] != "pulumi:pulumi:Stack"]
        if created:
            raise AssertionError(f"refused, but {len(created)} resources exist: {sorted(set(created))}")
        line = next(li.strip() for li in output.splitlines() if named in li)
        return [f"no resource created; {line[:140]}"]

    def _pod_count(self, stack: str) -> int:
        replicas = 3 if stack == ALL_SETTINGS else 2  # translatorMinReplicas
        return 1 + 1 + replicas  # node, pool, translators

    def _in_place(
        self,
        stack: str,
        before: list[dict[str, Any]],
        *,
        must_update: set[str],
        replaces: frozenset[str] | set[str] = frozenset(),
    ) -> list[str]:
        """Preview then up: nothing replaced but the named random seeds (a rotation's), whose
        values then differ; every other random value and everything else untouched unless it has
        to change."""
        planned = operations(self.project.preview(stack).json())
        replaced = {
            urn_name(u)
            for op in ("replace", "create-replacement", "delete-replaced")
            for u in planned.get(op, [])
        }
        if replaced != set(replaces):
            raise AssertionError(f"would replace {sorted(replaced)}, expected {sorted(replaces)}")
        if planned.get("create") or planned.get("delete"):
            raise AssertionError(f"would create {planned.get('create')} / delete {planned.get('delete')}")
        updated = {urn_name(u) for u in planned.get("update", [])}
        missing = {
            w
            for w in must_update
            if not any(
                u.startswith(w.split("::")[0] + "::") and u.endswith(w.split("::")[-1]) for u in updated
            )
        }
        if missing:
            raise AssertionError(f"expected updates of {sorted(missing)}, planned {sorted(updated)}")
        touched = sorted(u for u in updated if u.startswith("RandomPassword::"))
        if touched:
            raise AssertionError(f"random resources updated in place: {touched}")
        self.project.up(stack)
        changed = _changed_random_values(before, self.project.state(stack))
        if changed != sorted(replaces):
            raise AssertionError(f"random values changed: {changed}, expected {sorted(replaces)}")
        return [f"{len(updated)} updated in place", f"replaced {', '.join(changed) or 'no random value'}"]


def _changed_random_values(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[str]:
    """The random resources whose value (`result`, from the decrypted state) differs. Their ids
    cannot tell: a RandomPassword's id is always "none"."""

    def results(state: list[dict[str, Any]]) -> dict[str, Any]:
        found = {
            r["urn"]: (r.get("outputs") or {}).get("result")
            for r in state
            if str(r.get("type", "")).startswith("random:")
        }
        if not found or None in found.values():
            raise AssertionError(f"no random values in the state: {found}")
        return found

    old, new = results(before), results(after)
    return sorted(urn_name(u) for u in old if new.get(u) != old[u])


STAGES = ("stacks", "regressions", "random", "mutants", "sv2-apps", "chain", "pods")


def skipped_stages() -> list[str]:
    """The stages the caller named in SV2_E2E_SKIP (comma-separated): only those are skipped."""
    named = [name.strip() for name in os.environ.get("SV2_E2E_SKIP", "").split(",") if name.strip()]
    unknown = sorted(set(named) - set(STAGES))
    if unknown:
        raise SystemExit(f"SV2_E2E_SKIP names unknown stages {unknown}; stages: {', '.join(STAGES)}")
    return named


def random_cases() -> tuple[list[Draw], str]:
    """The random stage's draws: SV2_E2E_RANDOM_SEEDS (replay or hunt), else SV2_E2E_RANDOM
    (default 4) seeds derived from the run seed; and a line that says where they came from."""
    listed = os.environ.get("SV2_E2E_RANDOM_SEEDS", "").split()
    if listed:
        return [draw(int(seed)) for seed in listed], f"seeds {' '.join(listed)} (SV2_E2E_RANDOM_SEEDS)"
    seed, origin = run_seed()
    count = int(os.environ.get("SV2_E2E_RANDOM", "4"))
    return [draw(s) for s in draw_seeds(seed, count)], f"{count} draws from run seed {seed} ({origin})"


def main(argv: list[str] | None = None) -> int:
    skip = skipped_stages()
    stacks = (
        []
        if "stacks" in skip
        else (os.environ.get("SV2_E2E_STACKS") or " ".join([*STACKS, ALL_SETTINGS])).split()
    )
    cases = [] if "regressions" in skip else regressions()
    if "random" not in skip:
        drawn, origin = random_cases()
        print(f"e2e random settings: {origin}", flush=True)
        cases += drawn
    from tests.e2e.sv2_apps.check import check as check_apps

    mutants_ok = mutants_failed = 0
    with start_cluster() as kube:
        print(f"e2e cluster: ok ({kube.describe()})", flush=True)
        project = Project(kube.env)
        runner = Runner(project, kube)
        try:
            with contextlib.suppress(StepFailedError):
                runner.plugins()
            if stacks:
                with contextlib.suppress(StepFailedError):
                    runner.fresh_clone()
            if stacks:
                with contextlib.suppress(StepFailedError):
                    runner.image_inputs()
            for stack in stacks:
                try:
                    runner.stack(stack)
                except StepFailedError:
                    continue
                finally:
                    _quiet(functools.partial(project.destroy, stack))
            for case in cases:
                try:
                    runner.drawn(case)
                except StepFailedError:
                    continue
                finally:
                    _quiet(functools.partial(project.destroy, case.name))
            if "chain" not in skip:
                from tests.e2e.chain.check import check as check_chain

                with contextlib.suppress(StepFailedError):
                    check_chain(runner, e2e_settings("signet"))
        finally:
            project.close()
        if "mutants" not in skip:
            for ok, line in check_mutants(kube):
                print(line, flush=True)
                mutants_ok, mutants_failed = mutants_ok + ok, mutants_failed + (not ok)
    apps_ok = apps_failed = 0
    if "sv2-apps" not in skip:
        absent = missing("pool_sv2", "translator_sv2", "fake-tp")
        if absent:
            apps_failed += 1
            print(
                f"e2e sv2-apps: FAILED — {', '.join(absent)} not built: run make e2e-tools, "
                "or skip the stage by name (SV2_E2E_SKIP=sv2-apps)",
                flush=True,
            )
        for stack in [] if absent else [s for s in stacks if s in STACKS]:
            try:
                for line in check_apps(stack):
                    print(line, flush=True)
                apps_ok += 1
            except Exception as error:
                apps_failed += 1
                print(f"e2e {stack} sv2-apps: FAILED\n  {error}", flush=True)
    pods_ok = pods_failed = 0
    if "pods" not in skip:
        from tests.e2e.pods.check import check as check_pods

        pods_ok, pods_failed = check_pods(Runner, functools.partial(print, flush=True))
    leftovers = leftover_processes()
    if leftovers:
        print("e2e leftover processes: FAILED\n  " + "\n  ".join(leftovers), flush=True)
    if skip:
        print(f"e2e skipped by request (SV2_E2E_SKIP): {', '.join(skip)}", flush=True)
    passed = runner.passed + apps_ok + mutants_ok + pods_ok
    failed = runner.failed + apps_failed + mutants_failed + pods_failed + bool(leftovers)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def check_mutants(kube: Kube) -> Iterator[tuple[bool, str]]:
    """Each mutant (mutants.py) in a fresh copy of the project: the step guarding the
    fix it breaks must fail, for the reason it breaks, and no step before it."""
    for mutant in MUTANTS:
        project = Project(kube.env)
        runner = Runner(project, kube, report=lambda line: None)
        label = f"e2e mutant {mutant.name}"
        try:
            mutant.apply(project.dir)
            if mutant.caught_by == "image build inputs":
                runner.image_inputs()
            else:
                runner.stack(mutant.stack)
            yield False, f"{label}: FAILED (survived every step of {mutant.stack})"
        except StepFailedError as error:
            step, why = error.args
            lines = why.strip().splitlines()
            # A CLI failure's first line only names the command: show its error line.
            first = next((li for li in lines[1:] if "error" in li.lower()), lines[0]).strip()[:160]
            if step not in {f"{mutant.stack} {name}" for name in mutant.caught_by.split(" or ")}:
                yield False, f"{label}: FAILED ({step} failed, not {mutant.caught_by}: {first})"
            elif mutant.evidence not in why:
                yield False, f"{label}: FAILED ({step} failed for another reason: {first})"
            else:
                evidence = next(li for li in lines if mutant.evidence in li).strip()[:160]
                yield True, f"{label}: ok (caught by {step}: {evidence})"
        finally:
            _quiet(functools.partial(project.destroy, mutant.stack))
            project.close()


def _quiet(action: Callable[[], object]) -> None:
    with contextlib.suppress(Exception):
        action()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
