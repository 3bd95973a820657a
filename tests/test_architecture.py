"""The house rules a reader relies on: components are peers that share only helper modules, and
nothing outside tests/ imports a test module."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPONENTS = ROOT / "components"


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules |= {f"{node.module}.{alias.name}" for alias in node.names}
    return modules


def component_modules() -> set[str]:
    """Modules that define a Pulumi component (a ComponentResource subclass)."""
    found = set()
    for path in COMPONENTS.glob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(base, ast.Attribute) and base.attr == "ComponentResource" for base in node.bases
            ):
                found.add(f"components.{path.stem}")
    return found


def test_no_component_imports_a_peer_component() -> None:
    components = component_modules()
    assert {"components.bitcoin_node", "components.pool", "components.monitoring"} <= components
    for module in sorted(components):
        path = COMPONENTS / f"{module.split('.')[-1]}.py"
        peers = imported_modules(path) & (components - {module})
        assert not peers, f"{module} imports the peer component(s) {sorted(peers)}: share a helper module"


def test_nothing_outside_tests_imports_a_test_module() -> None:
    sources = [
        p
        for p in ROOT.rglob("*.py")
        if not {".venv", ".venv-checkov", "tests", "build"} & set(p.relative_to(ROOT).parts)
    ]
    assert sources
    for path in sources:
        tests = sorted(m for m in imported_modules(path) if m == "tests" or m.startswith("tests."))
        assert not tests, f"{path.relative_to(ROOT)} imports {tests}"
