"""README and docs/ stay a front door a newcomer can read: README short, both 119 columns wide, every relative link
(and its #anchor) leading to a file that exists, every script they name present, every results table indexed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "results" / "README.md"]
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
REFERENCE = re.compile(r"^\[[^\]]+\]:\s*(\S+)", re.MULTILINE)


def prose(path: Path) -> str:
    """The page without its code (fenced blocks and inline spans), where a bracket is not a link."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", path.read_text(encoding="utf-8")))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+\s+(.*)$", FENCE.sub("", path.read_text(encoding="utf-8")), re.MULTILINE)}


def relative_links(path: Path) -> list[str]:
    text = prose(path)
    targets = INLINE_LINK.findall(text) + REFERENCE.findall(text)
    return [t for t in targets if not re.match(r"[a-z]+:", t)]  # http:, https:, mailto:


LINKS = [(page, target) for page in PAGES for target in relative_links(page)]


def test_the_pages_link_to_each_other():
    assert len(LINKS) >= 40
    assert {page.name for page, _ in LINKS} >= {"README.md", "studio.md", "method.md", "labels.md"}


@pytest.mark.parametrize("page, target", LINKS, ids=[f"{p.relative_to(ROOT)}->{t}" for p, t in LINKS])
def test_every_relative_link_resolves_to_a_file(page, target):
    file, _, anchor = target.partition("#")
    resolved = (page.parent / file).resolve() if file else page
    assert resolved.is_file(), f"{page.relative_to(ROOT)}: {target} leads to no file"
    if anchor and resolved.suffix == ".md":
        assert anchor in anchors(resolved), f"{page.relative_to(ROOT)}: no heading #{anchor} in {file or page.name}"


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200


@pytest.mark.parametrize("page", PAGES[:-1], ids=lambda p: str(p.relative_to(ROOT)))
def test_readme_and_docs_are_119_columns_wide(page):
    lines = page.read_text(encoding="utf-8").splitlines()
    assert [(n, len(line)) for n, line in enumerate(lines, 1) if len(line) > 119] == []


def test_every_benchmark_script_the_pages_name_exists():
    named = {m for page in PAGES for m in re.findall(r"python (benchmarks/[a-z_]+\.py)", page.read_text("utf-8"))}
    assert named and [n for n in sorted(named) if not (ROOT / n).is_file()] == []


def test_every_results_table_is_indexed_in_the_results_readme():
    results = ROOT / "benchmarks" / "results"
    indexed = set(relative_links(results / "README.md"))
    tables = sorted(p.name for p in results.glob("*.md") if p.name not in ("README.md", "LOG.md"))
    assert [t for t in tables if t not in indexed] == []
