"""Pointers to docs/upstream-behaviour.md resolve, and nothing cites the old facts files.

Offline: reads the repository's own files only. Anchors follow GitHub's rule for headings:
lowercase, anything but letters, digits, '_', '-' and spaces dropped, spaces turned into '-'.
"""

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "upstream-behaviour.md"
# Where code, comments and docs may point at the document.
REFERRING = ("components", "policy", "docker", "docs", "tests", "scripts", "README.md")
# Generated, installed or cached: not the project's own text.
SKIPPED_DIRS = {
    ".git",
    ".venv",
    ".venv-checkov",
    "build",
    "node_modules",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    "target",
}
REFERENCE = re.compile(r"upstream-behaviour\.md#([\w-]+)")
LOCAL_LINK = re.compile(r"\]\(#([\w-]+)\)")
OLD_FACTS = re.compile(r"SV2-FACTS|E2E-FACTS")


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading (without the -1, -2 suffixes of repeats)."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(markdown: str) -> list[str]:
    """Heading texts outside fenced code blocks."""
    found, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match and not fenced:
            found.append(match.group(1))
    return found


def text_files(*roots: Path) -> Iterator[Path]:
    """Files under `roots`, without descending into generated or installed folders."""
    for root in roots:
        if root.is_file():
            yield root
            continue
        for folder, subfolders, files in os.walk(root):
            subfolders[:] = sorted(
                d for d in subfolders if d not in SKIPPED_DIRS and not d.endswith(".egg-info")
            )
            for name in sorted(files):
                yield Path(folder) / name


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


def anchors() -> set[str]:
    return {github_anchor(h) for h in headings(DOC.read_text(encoding="utf-8"))}


def test_github_anchor_rule() -> None:
    assert github_anchor("sv2-apps v0.2.0 takes IP literals only") == "sv2-apps-v020-takes-ip-literals-only"
    assert github_anchor("pool_sv2 and translator_sv2 stop only on SIGINT") == (
        "pool_sv2-and-translator_sv2-stop-only-on-sigint"
    )
    assert github_anchor("A container's PID 1 ignores signals") == "a-containers-pid-1-ignores-signals"


def test_headings_are_unique() -> None:
    # A repeated heading gets a numbered anchor on GitHub, which pointers would not expect.
    found = [github_anchor(h) for h in headings(DOC.read_text(encoding="utf-8"))]
    assert sorted({a for a in found if found.count(a) > 1}) == []


def test_every_pointer_to_the_document_resolves() -> None:
    known = anchors()
    missing = []
    for path in text_files(*(REPO / name for name in REFERRING)):
        text = read_text(path)
        if text is None:
            continue
        for anchor in REFERENCE.findall(text):
            if anchor not in known:
                missing.append(f"{path.relative_to(REPO)}: #{anchor}")
    assert missing == []


def test_links_inside_the_document_resolve() -> None:
    known = anchors()
    unknown = sorted(set(LOCAL_LINK.findall(DOC.read_text(encoding="utf-8"))) - known)
    assert unknown == []


@pytest.mark.parametrize("anchor", ["sv2-apps-v020-takes-ip-literals-only"])
def test_the_documented_example_anchor_exists(anchor: str) -> None:
    assert anchor in anchors()


def test_nothing_outside_tests_cites_the_old_facts_files() -> None:
    # The facts live in docs/upstream-behaviour.md now; the shared files are outside the repo.
    citing = []
    for path in text_files(REPO):
        if path.relative_to(REPO).parts[0] == "tests":
            continue
        text = read_text(path)
        if text is not None and OLD_FACTS.search(text):
            citing.append(str(path.relative_to(REPO)))
    assert citing == []
