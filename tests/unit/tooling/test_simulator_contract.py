"""The import-linter contract that keeps the Apify simulator out of the product names every
part of the product but the composition roots: a module added later is covered too, or
this fails naming it."""

from __future__ import annotations

import pathlib
import tomllib
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "src" / "kairo_ingest"
COMPOSITION_ROOTS = {"service", "cli"}


def _contract(name_start: str) -> dict[str, Any]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    (found,) = [c for c in contracts if c["name"].startswith(name_start)]
    return dict(found)


def test_every_part_of_the_product_but_the_composition_roots_is_kept_from_the_simulator() -> None:
    contract = _contract("the simulator is tooling")
    assert contract["forbidden_modules"] == ["kairo_apify_sim"]
    parts = {
        p.stem
        for p in PACKAGE.iterdir()
        if (p.is_dir() and (p / "__init__.py").is_file())
        or (p.suffix == ".py" and not p.name.startswith("__"))
    }
    covered = {str(m).removeprefix("kairo_ingest.") for m in contract["source_modules"]}
    assert parts - COMPOSITION_ROOTS - covered == set()
    assert covered & COMPOSITION_ROOTS == set()


def test_the_simulator_imports_nothing_of_the_product() -> None:
    contract = _contract("the simulator imports nothing")
    assert contract["source_modules"] == ["kairo_apify_sim"]
    assert contract["forbidden_modules"] == ["kairo_ingest"]
