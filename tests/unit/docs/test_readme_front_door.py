"""The README is a front door: short, with the two commands, and links into the site."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[3]
README = (ROOT / "README.md").read_text(encoding="utf-8")
MAX_LINES = 200


def test_the_readme_has_at_most_200_lines() -> None:
    assert len(README.splitlines()) <= MAX_LINES


def test_the_readme_gives_the_two_commands_and_ci_runs_the_same_test_command() -> None:
    commands = re.findall(r"^\./scripts/(\w+) ", README, re.M)
    assert commands == ["demo", "test"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert "scripts/test" in ci


def test_the_readme_links_every_page_of_the_site() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8").split("\nnav:", 1)[1]
    pages = re.findall(r"^\s+- [^:]+: (\S+\.md)$", nav, re.M)
    linked = set(re.findall(r"\]\(docs/([\w/-]+\.md)", README))
    assert pages
    assert set(pages) - linked == set()


def test_the_readme_says_a_bad_cap_or_flag_exits_2_naming_the_variable() -> None:
    text = " ".join(README.split())
    assert "`KAIRO_CAP_<PLATFORM>_<CAPABILITY>`" in text
    assert "`KAIRO_FEATURE_<PLATFORM>_<CAPABILITY>`" in text
    assert "exits 2 naming the variable" in text
