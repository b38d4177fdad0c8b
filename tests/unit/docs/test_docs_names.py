"""Every module, file, test, command and setting the docs name exists.

It reads whatever pages exist (``docs/**/*.md``, and the README), so a page added later is
checked too. In inline code and code blocks it looks for:

* paths (``src/kairo_ingest/db/costs.py``, ``tests/support/ci.py``, ``.ci/run``) and
  module paths inside the package (``pipeline/tx.py``): they must exist; a ``*`` is a glob
  that must match;
* a file's basename alone (``test_queue_reaper.py``): some file of the repository has it;
* ``path::test_name``: the file defines that test;
* dotted modules (``kairo_ingest.config``, ``kairo_apify_sim.state``): importable;
* ``kairo-ingest ...`` commands: each subcommand exists and each ``--option`` is one of its
  options; ``python bench/x.py --option`` and ``scripts/x``: the script exists and takes
  that option;
* ``KAIRO_*`` variables: a setting, or read by the code, the scripts or the tests;
* links to files, from the README (``docs/console/overview-light.png``) and from every
  page (``console/overview-light.png``, relative to the page), must reach a file.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import re
import shlex

import pytest

from kairo_ingest import config
from kairo_ingest.cli import main as cli_main

ROOT = pathlib.Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "src" / "kairo_ingest"
PAGES = sorted([*(ROOT / "docs").rglob("*.md"), ROOT / "README.md"])
SEARCHED = ("src", "simulator", "tests", "scripts", "bench", ".ci", "migrations", "Dockerfile")

INLINE = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)\s]*)?\)")  # the file, without its anchor
PATH = re.compile(r"^\.?[\w.-]+(?:/[\w.*-]+)+/?$")
BASENAME = re.compile(r"^[\w*-]+\.(?:py|patch|toml|yml|ini)$")
MODULE = re.compile(r"^kairo_(?:ingest|apify_sim)(?:\.\w+)+$")
VARIABLE = re.compile(r"\bKAIRO_[A-Z0-9_]+\b")
ROOTS = (
    "src/",
    "simulator/",
    "tests/",
    "scripts/",
    "bench/",
    "docs/",
    "mutants/",
    "migrations/",
    ".ci/",
)


def _code(text: str) -> list[str]:
    """The inline code spans and code block lines of a page."""
    spans = INLINE.findall(FENCE.sub("", text))
    for block in FENCE.findall(text):
        spans += [line.split("#")[0].strip() for line in block.splitlines()]
    return [s.strip() for s in spans if s.strip()]


def _tokens(page: pathlib.Path) -> list[str]:
    return _code(page.read_text(encoding="utf-8"))


def _all_files() -> list[pathlib.Path]:
    found: list[pathlib.Path] = []
    for top in SEARCHED:
        path = ROOT / top
        found += [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return [p for p in found if "__pycache__" not in p.parts]


FILES = _all_files() + [p for p in ROOT.iterdir() if p.is_file()]
BASENAMES = {p.name for p in FILES} | {p.name for p in (ROOT / "mutants").glob("*")}


def _exists(rel: str) -> bool:
    rel = rel.rstrip("/")
    for base in (ROOT, PACKAGE):
        if "*" in rel:
            if list(base.glob(rel)):
                return True
        elif (base / rel).exists():
            return True
    return False


def _file_problem(token: str) -> str | None:
    path, _, test = token.partition("::")
    if "/" in path:
        if not PATH.match(path):
            return None
        if not _exists(path):
            return f"no such file or folder: {path}"
        target = ROOT / path if (ROOT / path).exists() else PACKAGE / path
    elif BASENAME.match(path):
        matches = [p for p in FILES if p.match(path)] or list((ROOT / "mutants").glob(path))
        if not matches:
            return f"no file is named {path}"
        target = matches[0]
    else:
        return None
    if test and f"def {test.split('[')[0].split('::')[-1]}(" not in target.read_text():
        return f"{path} defines no {test}"
    return None


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def _command_problem(words: list[str]) -> str | None:
    """``kairo-ingest A B --x``: A and B are subcommands, --x an option of B."""
    parser = cli_main.build_parser()
    for word in words[1:]:
        if word.startswith("--"):
            flag = word.split("=")[0]
            if flag not in _options(parser):
                return f"kairo-ingest {' '.join(words[1:])}: no option {flag}"
            continue
        subs = _subcommands(parser)
        if word in subs:
            parser = subs[word]
        elif subs and re.fullmatch(r"[a-z][a-z-]*", word):  # not a metavar (ID, N, ...)
            return f"no kairo-ingest command {word}"
    return None


def _script_problem(words: list[str]) -> str | None:
    """``python bench/x.py --y`` or ``scripts/x --y``: the script exists and takes --y."""
    script = _script(words)
    if script is None:
        return None
    path = ROOT / script
    if not path.is_file():
        return f"no such script: {script}"
    source = path.read_text()
    for named in re.findall(r"scripts/\w+\.py", source):  # a wrapper's real script
        source += (ROOT / named).read_text() if (ROOT / named).is_file() else ""
    for word in words:
        flag = word.split("=")[0]
        if re.fullmatch(r"--[a-z][a-z0-9-]*", flag) and f'"{flag}"' not in source:
            return f"{script} takes no option {flag}"
    return None


def _script(words: list[str]) -> str | None:
    return next(
        (w for w in words if w.startswith(("bench/", "scripts/")) and not w.endswith("/")), None
    )


def _words(token: str) -> list[str]:
    token = token.removeprefix("$ ").replace("./scripts/", "scripts/")
    try:
        words = shlex.split(token)
    except ValueError:
        words = token.split()
    return [w.strip("[]|") for w in words if w.strip("[]|")]


def _problems(page: pathlib.Path) -> list[str]:
    problems: list[str] = []
    for token in _tokens(page):
        words = _words(token)
        if not words:
            continue
        script = None
        if words[0] == "kairo-ingest":
            problems.append(_command_problem(words) or "")
        elif words[0] == "python" or words[0].startswith(("bench/", "scripts/")):
            script = _script(words)
            problems.append(_script_problem(words) or "")
        for word in words if len(words) > 1 else [token]:
            if word == script:
                continue
            word = word.strip("(),;:'\"").removesuffix(".")
            if MODULE.match(word):
                if importlib.util.find_spec(word) is None:
                    problems.append(f"no module {word}")
            elif word.startswith(ROOTS) or word.endswith(".py") or BASENAME.match(word):
                problems.append(_file_problem(word) or "")
    text = page.read_text(encoding="utf-8")
    for link in LINK.findall(text):
        if not link.startswith(("http://", "https://")) and not (page.parent / link).exists():
            problems.append(f"a link to a missing file: {link}")
    name = page.relative_to(ROOT) if page.is_relative_to(ROOT) else page.name
    return [f"{name}: {p}" for p in problems if p]


def _variables() -> set[str]:
    names = {f"{config.ENV_PREFIX}{name.upper()}" for name in config.Settings.model_fields}
    for group, model in (("CAP", config.Caps), ("FEATURE", config.Features)):
        names |= {f"{config.ENV_PREFIX}{group}_{name.upper()}" for name in model.model_fields}
    return names


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_file_module_test_and_command_a_page_names_exists(page: pathlib.Path) -> None:
    assert _problems(page) == []


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_variable_a_page_names_is_a_setting_or_read_somewhere(page: pathlib.Path) -> None:
    settings = _variables()
    text = page.read_text(encoding="utf-8")
    read = "\n".join(p.read_text(errors="replace") for p in FILES if p.suffix != ".png")
    unknown = sorted(
        name
        for name in set(VARIABLE.findall(text))
        if name not in settings
        and not name.endswith("_")  # a prefix, as in KAIRO_CAP_<PLATFORM>_<CAPABILITY>
        and name not in read
    )
    assert unknown == []


def test_the_pages_are_the_readme_and_every_page_of_the_site() -> None:
    names = {str(page.relative_to(ROOT)) for page in PAGES}
    assert "README.md" in names
    assert {f"docs/{page}" for page in _site_pages()} <= names
    assert len(names) > 10


def _site_pages() -> list[str]:
    """The pages the site's nav lists (mkdocs.yml)."""
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    return re.findall(r"^\s+- [^:]+: (\S+\.md)$", text.split("\nnav:", 1)[1], re.M)


def test_every_page_of_docs_is_in_the_site_nav() -> None:
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    nav = _site_pages()
    assert sorted(nav) == sorted(set(nav))
    assert set(nav) == pages


def test_the_checks_catch_what_does_not_exist(tmp_path: pathlib.Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "`src/kairo_ingest/nothing.py`, `db/nowhere.py`, `test_no_such_file.py`, "
        "`tests/unit/docs/test_docs_names.py::test_nope`, `kairo_ingest.nothing`, "
        "`kairo-ingest jobs frobnicate`, `kairo-ingest jobs list --frob`, "
        "`python bench/queue_sweep.py --frob`, `scripts/nothing`, "
        "[a page](nowhere.md#there), [a site](https://example.com/x)\n"
    )
    problems = [p.split(": ", 1)[1] for p in _problems(page)]
    assert problems == [
        "no such file or folder: src/kairo_ingest/nothing.py",
        "no such file or folder: db/nowhere.py",
        "no file is named test_no_such_file.py",
        "tests/unit/docs/test_docs_names.py defines no test_nope",
        "no module kairo_ingest.nothing",
        "no kairo-ingest command frobnicate",
        "kairo-ingest jobs list --frob: no option --frob",
        "bench/queue_sweep.py takes no option --frob",
        "no such script: scripts/nothing",
        "a link to a missing file: nowhere.md",
    ]
