"""The docs cannot drift: the generated pages match the code, every config field is documented, the README
stays short, every relative link (and anchor) resolves, and no page explains a failure by its history."""

import dataclasses
import importlib.util
import re
import typing
from pathlib import Path

import pytest

from molting.config import RunConfig

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)\)")  # [text](target), text may hold [brackets]


def _generator():
    spec = importlib.util.spec_from_file_location("docs_generate", REPO / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _prose(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file."""
    anchors, seen = set(), {}
    for line in _prose(path.read_text(encoding="utf-8")):
        heading = re.match(r"#{1,6} (.+)", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def test_generated_docs_are_current():
    stale = _generator().stale_files()
    assert not stale, f"out of date: {[str(p.relative_to(REPO)) for p in stale]}; run `make docs`"


def test_every_config_field_has_help():
    missing = []

    def walk(cls, prefix):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if not str(f.metadata.get("help", "")).strip():
                missing.append(prefix + f.name)
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], f"{prefix}{f.name}.")

    walk(RunConfig, "")
    assert not missing, f"config fields without metadata['help'] in src/molting/config.py: {missing}"


def test_readme_is_short():
    lines = len((REPO / "README.md").read_text(encoding="utf-8").splitlines())
    assert lines <= 220, f"README.md has {lines} lines; move reference material into docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    broken = []
    for line in _prose(page.read_text(encoding="utf-8")):
        for target in LINK.findall(line):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            linked = (page.parent / file_part).resolve() if file_part else page
            if not linked.exists():
                broken.append(f"{target}: no such file")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                broken.append(f"{target}: no heading with anchor #{anchor} in {linked.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}: broken links: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_docs_state_reasons_not_history(page):
    """A failure is explained by itself ("a 339-token prompt with max_length 512 leaves 143 tokens"), not by
    where it was first seen."""
    history = re.compile(r"\bphases? \d|\bthe (lab )?logs\b|\blogs' |\bissue #?\d+", re.IGNORECASE)
    found = [line.strip() for line in page.read_text(encoding="utf-8").splitlines() if history.search(line)]
    assert not found, f"{page.relative_to(REPO)}: {found}"
