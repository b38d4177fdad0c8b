"""Put each footgun's old behaviour back, one at a time, and check its tests catch it.

Each file in ``mutants/`` is a patch (``git diff`` format) with a header before the
first ``diff --git`` line::

    Footgun: A2 run record created after the start
    Tests: tests/integration/pipeline/test_pipeline_footguns.py::test_x
    Tests: tests/unit/apify/test_y.py

``git apply`` ignores the header. For every mutant this script copies the tracked tree
into a scratch directory, applies the patch there, and runs pytest on the named tests
with that copy first on ``PYTHONPATH``. The mutant is *killed* when pytest reports a
failing test (exit 1). It *survives* when the tests pass, and it is *broken* when the
patch does not apply or pytest cannot collect the tests: both fail the run, so a mutant
can neither rot silently nor be dodged by a renamed test.

Usage: scripts/mutants [--list] [--jobs N] [NAME ...]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants"


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    path: pathlib.Path
    footgun: str
    tests: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Result:
    mutant: Mutant
    verdict: str  # killed | survived | broken
    seconds: float
    detail: str


def load(path: pathlib.Path) -> Mutant:
    footgun, tests = "", []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("diff --git"):
            break
        key, _, value = line.partition(":")
        if key.strip() == "Footgun":
            footgun = value.strip()
        elif key.strip() == "Tests":
            tests.extend(value.split())
    if not footgun or not tests:
        raise SystemExit(f"{path.name}: needs a 'Footgun:' line and at least one 'Tests:' line")
    return Mutant(path.stem, path, footgun, tuple(tests))


def tracked_copy(dest: pathlib.Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in files:
        if not raw:
            continue
        rel = pathlib.Path(os.fsdecode(raw))
        if rel.parts[0] == "mutants" or not (ROOT / rel).is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)


def run_one(mutant: Mutant, python: str) -> Result:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"kairo-mutant-{mutant.name}-") as scratch:
        tree = pathlib.Path(scratch)
        tracked_copy(tree)
        applied = subprocess.run(
            ["git", "apply", "--unidiff-zero", str(mutant.path)],
            cwd=tree,
            capture_output=True,
            text=True,
        )
        if applied.returncode != 0:
            return Result(mutant, "broken", 0.0, f"patch does not apply: {applied.stderr.strip()}")
        env = dict(os.environ, PYTHONPATH=str(tree / "src"), PYTHONDONTWRITEBYTECODE="1")
        where = subprocess.run(
            [python, "-c", "import kairo_ingest; print(kairo_ingest.__file__)"],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
        )
        if not where.stdout.strip().startswith(str(tree)):
            return Result(mutant, "broken", 0.0, f"imports the real tree: {where.stdout.strip()}")
        tests = subprocess.run(
            [python, "-m", "pytest", "-q", "-x", "-rf", "-p", "no:cacheprovider", *mutant.tests],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
        )
    seconds = time.monotonic() - started
    # Name the test that caught it, never echo pytest's own summary line: CI reads the
    # suite's closing "N passed, N failed" line, and a mutant's is not the suite's.
    failed = [ln[len("FAILED ") :] for ln in tests.stdout.splitlines() if ln.startswith("FAILED ")]
    if tests.returncode == 1 and failed:
        return Result(mutant, "killed", seconds, f"caught by {failed[0].split(' - ')[0]}")
    if tests.returncode == 0:
        return Result(mutant, "survived", seconds, "every named test passed")
    tail = (tests.stdout.strip().splitlines() or ["(no output)"])[-1]
    return Result(mutant, "broken", seconds, f"pytest exit {tests.returncode}: {tail!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="run only these mutants (file stems)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once (default 2)")
    args = parser.parse_args()

    mutants = [load(p) for p in sorted(MUTANTS.glob("*.patch"))]
    if args.names:
        unknown = set(args.names) - {m.name for m in mutants}
        if unknown:
            parser.error(f"unknown mutants: {', '.join(sorted(unknown))}")
        mutants = [m for m in mutants if m.name in args.names]
    if args.list:
        for m in mutants:
            print(f"{m.name:45} {m.footgun}")
        return 0
    if not mutants:
        print("no mutants found in mutants/", file=sys.stderr)
        return 1

    started = time.monotonic()
    results: list[Result] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_one, m, sys.executable) for m in mutants]
        for future in concurrent.futures.as_completed(futures):
            r = future.result()
            results.append(r)
            print(f"{r.verdict:8} {r.seconds:6.1f}s  {r.mutant.name}: {r.detail}", flush=True)
    bad = [r for r in results if r.verdict != "killed"]
    total = time.monotonic() - started
    print(f"mutants: {len(results) - len(bad)} killed, {len(bad)} not killed, in {total:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
