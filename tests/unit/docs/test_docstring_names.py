"""Module docstrings name modules, functions and docs pages that exist.

A layer's package docstring lists its modules (``:mod:`~kairo_ingest.queue.jobs```, or
``:mod:`.runner``` relative to the package) and the names they hold (double-backticked),
and modules link their docs page (``docs/queue.md``): a module renamed, a function gone or
a page moved must not leave a docstring pointing at nothing.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "src" / "kairo_ingest"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
MOD = re.compile(r":mod:`~?([\w.]+)`")
PAGE = re.compile(r"\bdocs/[\w/-]+\.md\b")
BARE = re.compile(r"(?<![:`])``([a-z_][a-z0-9_]*)``")  # ``jobs``, ``beat``; not ``run --drain``


def _name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT / "src").with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _docstring(path: pathlib.Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""


def _known(package: str, word: str) -> bool:
    """A module of the package or of kairo_ingest, or a name defined in one of the package's
    modules."""
    if any(importlib.util.find_spec(f"{base}.{word}") for base in (package, "kairo_ingest")):
        return True
    folder = ROOT / "src" / pathlib.Path(*package.split("."))
    defined = re.compile(rf"^(?:async def|def|class) {word}\b|^{word}\b[^=\n]*=", re.M)
    return any(defined.search(p.read_text(encoding="utf-8")) for p in folder.glob("*.py"))


def _problems(path: pathlib.Path, docstring: str) -> list[str]:
    name = _name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    problems = []
    for module in MOD.findall(docstring):
        full = package + module if module.startswith(".") else module
        if importlib.util.find_spec(full) is None:
            problems.append(f"no module {full}")
    for page in PAGE.findall(docstring):
        if not (ROOT / page).is_file():
            problems.append(f"no page {page}")
    if path.name == "__init__.py" and path.parent.parent == PACKAGE:  # a layer's module map
        for word in BARE.findall(docstring):
            if not _known(package, word):
                problems.append(f"no module or name {word}")
    return problems


@pytest.mark.parametrize("path", MODULES, ids=[_name(p) for p in MODULES])
def test_a_module_docstring_names_modules_and_pages_that_exist(path: pathlib.Path) -> None:
    assert _problems(path, _docstring(path)) == []


def test_every_file_the_code_names_in_its_docstrings_and_comments_exists() -> None:
    """``worker/lease_keeper.py``, ``bench/loop_lag.py``: relative to the package or the root."""
    named = {
        (path.relative_to(ROOT), rel)
        for path in MODULES
        for rel in re.findall(r"``([\w.-]+(?:/[\w.-]+)+\.py)``", path.read_text(encoding="utf-8"))
    }
    missing = [
        f"{where}: {rel}"
        for where, rel in sorted(named)
        if not (PACKAGE / rel).is_file() and not (ROOT / rel).is_file()
    ]
    assert missing == []


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


def test_every_full_cross_reference_in_the_code_resolves() -> None:
    """``:func:`kairo_ingest.db.costs.breakdowns```: the module and the name exist."""
    role = re.compile(r":(?:func|class|data|meth|attr|exc|obj):`~?(kairo_ingest\.[\w.]+)`")
    refs = {
        (path.relative_to(ROOT), ref)
        for path in MODULES
        for ref in role.findall(path.read_text(encoding="utf-8"))
    }
    assert refs
    assert [f"{where}: {ref}" for where, ref in sorted(refs) if not _resolves(ref)] == []


def test_every_package_docstring_links_its_docs_page() -> None:
    packages = [p for p in MODULES if p.name == "__init__.py" and p.parent != PACKAGE]
    unlinked = [
        _name(p)
        for p in packages
        if p.parent.name != "normalize" and not PAGE.search(_docstring(p))
    ]
    assert unlinked == []


def test_the_check_catches_a_missing_module_name_and_page() -> None:
    docstring = (
        ":mod:`~kairo_ingest.queue.dberrors`, :mod:`.runner`, docs/nowhere.md, "
        "``runner``, ``finisher``, ``Worker``, ``tasks``"
    )
    assert _problems(PACKAGE / "worker" / "__init__.py", docstring) == [
        "no module kairo_ingest.queue.dberrors",
        "no module kairo_ingest.worker.runner",
        "no page docs/nowhere.md",
        "no module or name runner",
    ]
