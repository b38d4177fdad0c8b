"""Put each footgun's old behaviour back, one at a time, and check its tests catch it.

Each file in ``mutants/`` (any name ending in ``.patch``) is a ``git diff`` with a header
before the first ``diff --git`` line::

    Footgun: The run record was created after the start
    Tests: tests/integration/pipeline/test_pipeline_footguns.py::test_x
    Tests: tests/unit/apify/test_y.py::test_z

``git apply`` ignores the header. Every ``Tests:`` entry names one test (``path::name``, a
parametrized test standing for all its cases), never a whole file.

A run has two steps, and a mutant counts as killed only when both hold:

1. **Baseline.** Every named test runs on a scratch copy of the clean tree first and must
   pass there (not fail, not skip, not be missing). Otherwise the run fails naming the
   test and its mutants: a test that does not exist or already fails proves nothing.
2. **Mutant.** The patch is applied to a fresh scratch copy and the named tests run with
   that copy first on ``PYTHONPATH``, under ``--timeout`` seconds (a hung mutant is
   reported as ``hung``, naming the test that was running, and its processes killed).
   Each named test must fail *on an assertion* in its test body: an ``AssertionError``
   (plain or pytest-rewritten ``assert``, ``pytest.raises(match=...)``), or pytest's
   ``DID NOT RAISE``/``DID NOT WARN`` from ``pytest.raises``/``pytest.warns``, or an
   exception group made only of those (scripts/mutant_verdicts.py decides it). An error
   in a fixture, an exception from the code (``ImportError``, ``TypeError``...), a skip,
   a collection error or a timeout is not a kill; a named test that passes means the
   mutant survived (or the ``Tests:`` line is wrong).

Per mutant it prints the verdict, then one line per named test: the test, and the
assertion that failed (or what happened instead). The run fails unless every mutant is
killed.

Usage: scripts/mutants [--list] [--jobs N] [--timeout S] [NAME ...]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence

HERE = pathlib.Path(__file__).resolve().parent
PLUGIN = "mutant_verdicts"
VERDICTS_VARIABLE = "KAIRO_MUTANT_VERDICTS"
KILL_GRACE_SECONDS = 10.0
BASELINE_CHUNK = 8  # named tests per pytest process on the clean tree
# The packages a mutant may change, each imported from the scratch tree's copy: the product,
# and the Apify simulator (a package of its own under simulator/).
SOURCE_ROOTS = ("src", "simulator/src")
PACKAGES = ("kairo_ingest", "kairo_apify_sim")
_SUMMARY = re.compile(r"\b\d+ (passed|failed|errors?|skipped|deselected)\b")


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    path: pathlib.Path
    footgun: str
    tests: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class TestResult:
    """How one named test ended: ``status`` is assertion | passed | error | missing."""

    test: str
    status: str
    detail: str


@dataclasses.dataclass(frozen=True)
class Result:
    mutant: Mutant
    verdict: str  # killed | survived | not-killed | hung | broken
    seconds: float
    detail: str
    tests: tuple[TestResult, ...] = ()


@dataclasses.dataclass(frozen=True)
class PytestRun:
    records: list[dict[str, object]]
    timed_out: bool
    returncode: int | None
    output_tail: str


class HeaderError(Exception):
    pass


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
        raise HeaderError(f"{path.name}: needs a 'Footgun:' line and at least one 'Tests:' line")
    whole_files = [t for t in tests if "::" not in t]
    if whole_files:
        raise HeaderError(
            f"{path.name}: 'Tests:' must name individual tests (path::name), "
            f"not whole files: {', '.join(whole_files)}"
        )
    return Mutant(path.name.removesuffix(".patch"), path, footgun, tuple(dict.fromkeys(tests)))


def tracked_copy(root: pathlib.Path, dest: pathlib.Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in files:
        if not raw:
            continue
        rel = pathlib.Path(os.fsdecode(raw))
        if rel.parts[0] == "mutants" or not (root / rel).is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)


def tree_env(tree: pathlib.Path, verdicts: pathlib.Path) -> dict[str, str]:
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([*(str(tree / src) for src in SOURCE_ROOTS), str(HERE)]),
        PYTHONDONTWRITEBYTECODE="1",
        **{VERDICTS_VARIABLE: str(verdicts)},
    )


def imports_from(tree: pathlib.Path, python: str) -> str | None:
    """None when every package of ``PACKAGES`` is imported from ``tree``; else where one
    comes from."""
    for package in PACKAGES:
        where = subprocess.run(
            [python, "-c", f"import {package}; print({package}.__file__)"],
            cwd=tree,
            env=tree_env(tree, tree / ".unused"),
            capture_output=True,
            text=True,
        )
        found = where.stdout.strip()
        if not found.startswith(str(tree)):
            return found or where.stderr.strip()[-200:]
    return None


def run_pytest(tree: pathlib.Path, python: str, tests: Sequence[str], timeout: float) -> PytestRun:
    """Run ``tests`` in ``tree`` with the verdict plugin; kill the whole group on timeout."""
    with (
        tempfile.TemporaryDirectory(prefix="kairo-mutant-verdicts-") as scratch,
        tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as output,
    ):
        verdicts = pathlib.Path(scratch) / "verdicts.jsonl"
        proc = subprocess.Popen(
            [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", PLUGIN, *tests],
            cwd=tree,
            env=tree_env(tree, verdicts),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
        output.seek(0)
        lines = [ln.strip() for ln in output.read().splitlines() if ln.strip()]
        records: list[dict[str, object]] = []
        if verdicts.exists():
            for line in verdicts.read_text(encoding="utf-8").splitlines():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill
    # Never echo pytest's own summary line: CI reads the suite's closing "N passed,
    # N failed" line, and a mutant's is not the suite's.
    useful = [ln for ln in lines if not ln.startswith("=") and not _SUMMARY.search(ln)]
    tail = useful[-1][-200:] if useful else ""
    return PytestRun(records, timed_out, None if timed_out else proc.returncode, tail)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _matches(test: str, nodeid: str) -> bool:
    """A named test stands for itself and, when parametrized, for each of its cases."""
    return nodeid == test or (nodeid.startswith(test) and nodeid[len(test)] == "[")


def judge(test: str, run: PytestRun) -> TestResult:
    """How ``test`` (every node it stands for) ended in ``run``."""
    reports = [
        r for r in run.records if r.get("event") == "report" and _matches(test, str(r["nodeid"]))
    ]
    if not reports:
        errors = [r for r in run.records if r.get("event") == "collect-error"]
        if errors:
            return TestResult(test, "missing", f"collection error: {errors[0]['message']}")
        said = f" (pytest: {run.output_tail})" if run.output_tail else ""
        return TestResult(test, "missing", f"no such test, or not collected{said}")
    for r in reports:
        if r["when"] == "call" and r["outcome"] == "failed" and r["assertion"]:
            where = f"  ({r['where']})" if r.get("where") else ""
            return TestResult(test, "assertion", f"{r['message']}{where}")
    for r in reports:
        if r["outcome"] == "failed":
            phase = "in the test" if r["when"] == "call" else f"in {r['when']} (a fixture)"
            return TestResult(test, "error", f"not an assertion, {phase}: {r['message']}")
        if r["outcome"] == "skipped":
            return TestResult(test, "error", f"skipped ({r['when']})")
    return TestResult(test, "passed", "it passed")


def baseline(
    root: pathlib.Path,
    mutants: Sequence[Mutant],
    python: str,
    timeout: float,
    jobs: int,
) -> list[str]:
    """Run every named test on a clean copy; return one line per test that did not pass."""
    tests = list(dict.fromkeys(t for m in mutants for t in m.tests))
    chunks = [tests[i : i + BASELINE_CHUNK] for i in range(0, len(tests), BASELINE_CHUNK)]
    runs: dict[str, PytestRun] = {}
    with tempfile.TemporaryDirectory(prefix="kairo-mutant-baseline-") as scratch:
        tree = pathlib.Path(scratch)
        tracked_copy(root, tree)
        elsewhere = imports_from(tree, python)
        if elsewhere is not None:
            return [f"the clean tree imports a package from elsewhere: {elsewhere}"]

        def run_chunk(chunk: list[str]) -> None:
            run = run_pytest(tree, python, chunk, timeout)
            if run.returncode == 4 and len(chunk) > 1:
                # pytest refuses a whole command line naming a test it cannot find (exit 4):
                # run the chunk's tests one by one, so that the missing one is named alone.
                for test in chunk:
                    run_chunk([test])
                return
            runs.update(dict.fromkeys(chunk, run))

        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(run_chunk, chunks))
    problems: list[str] = []
    for test in tests:
        run = runs[test]
        result = judge(test, run)
        if result.status == "passed":
            continue
        if run.timed_out and result.status == "missing":
            detail = f"did not finish within {timeout:.0f} s"
        elif result.status == "assertion":
            detail = f"fails: {result.detail}"
        else:
            detail = result.detail
        named_by = ", ".join(m.name for m in mutants if test in m.tests)
        problems.append(f"{test} (named by {named_by}): {detail}")
    return problems


def run_one(root: pathlib.Path, mutant: Mutant, python: str, timeout: float) -> Result:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"kairo-mutant-{mutant.name}-") as scratch:
        tree = pathlib.Path(scratch)
        tracked_copy(root, tree)
        applied = subprocess.run(
            ["git", "apply", "--unidiff-zero", str(mutant.path)],
            cwd=tree,
            capture_output=True,
            text=True,
        )
        if applied.returncode != 0:
            return Result(mutant, "broken", 0.0, f"patch does not apply: {applied.stderr.strip()}")
        elsewhere = imports_from(tree, python)
        if elsewhere is not None:
            return Result(mutant, "broken", 0.0, f"imports the real tree: {elsewhere}")
        run = run_pytest(tree, python, mutant.tests, timeout)
    seconds = time.monotonic() - started
    results = tuple(judge(test, run) for test in mutant.tests)
    if run.timed_out:
        running = _still_running(run.records)
        where = f" in {running}" if running else ""
        detail = f"still running after {timeout:.0f} s{where}"
        return Result(mutant, "hung", seconds, detail, results)
    if all(r.status == "assertion" for r in results):
        return Result(mutant, "killed", seconds, "every named test failed on an assertion", results)
    survived = [r.test for r in results if r.status == "passed"]
    if survived:
        return Result(mutant, "survived", seconds, f"passed: {', '.join(survived)}", results)
    return Result(
        mutant, "not-killed", seconds, "a named test did not fail on an assertion", results
    )


def _still_running(records: Iterable[dict[str, object]]) -> str | None:
    started = [str(r["nodeid"]) for r in records if r.get("event") == "start"]
    finished = {
        str(r["nodeid"]) for r in records if r.get("event") == "report" and r["when"] == "teardown"
    }
    running = [n for n in started if n not in finished]
    return running[-1] if running else None


_MARKS = {
    "assertion": "caught by",
    "passed": "not caught by",
    "error": "wrong reason in",
    "missing": "not run:",
}


def print_result(r: Result) -> None:
    print(f"{r.verdict:10} {r.seconds:6.1f}s  {r.mutant.name}: {r.detail}", flush=True)
    for t in r.tests:
        print(f"{'':20}{_MARKS[t.status]} {t.test}: {t.detail}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="run only these mutants (file names, no .patch)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once (default 2)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds one mutant's tests may take before it counts as hung (default 300)",
    )
    parser.add_argument(
        "--root", type=pathlib.Path, default=HERE.parent, help=argparse.SUPPRESS
    )  # the tree to mutate: this repository, or a small fake one in the runner's own tests
    args = parser.parse_args(argv)
    root = args.root.resolve()
    jobs = max(1, args.jobs)

    paths = sorted((root / "mutants").glob("*.patch"))
    mutants, bad_headers = [], []
    for path in paths:
        try:
            mutants.append(load(path))
        except HeaderError as exc:
            bad_headers.append(str(exc))
    if args.names:
        known = {m.name for m in mutants} | {p.name.removesuffix(".patch") for p in paths}
        unknown = set(args.names) - known
        if unknown:
            parser.error(f"unknown mutants: {', '.join(sorted(unknown))}")
        mutants = [m for m in mutants if m.name in args.names]
        bad_headers = [e for e in bad_headers if e.split(".patch:")[0] in args.names]
    if bad_headers:
        for line in bad_headers:
            print(f"bad header: {line}", file=sys.stderr)
        return 1
    if args.list:
        for m in mutants:
            print(f"{m.name:45} {m.footgun}")
        return 0
    if not mutants:
        print("no mutants found in mutants/", file=sys.stderr)
        return 1

    started = time.monotonic()
    python = sys.executable
    problems = baseline(root, mutants, python, args.timeout, jobs)
    if problems:
        print("baseline: these named tests do not pass on the clean tree:", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    named = len({t for m in mutants for t in m.tests})
    print(f"baseline: the {named} named tests pass on the clean tree", flush=True)

    results: list[Result] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_one, root, m, python, args.timeout) for m in mutants]
        for future in concurrent.futures.as_completed(futures):
            r = future.result()
            results.append(r)
            print_result(r)
    bad = [r for r in results if r.verdict != "killed"]
    total = time.monotonic() - started
    print(f"mutants: {len(results) - len(bad)} killed, {len(bad)} not killed, in {total:.0f} s")
    for r in sorted(bad, key=lambda r: r.mutant.name):
        print(f"  not killed: {r.mutant.name} ({r.verdict})", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
