"""scripts/run_mutants.py against a tiny fake tree: a kill counts only for the right reason.

Each test builds a small git repository (a ``kairo_ingest`` package of one module, a few
tests, and mutants made with ``git diff``) and runs the real runner on it as a
subprocess. A named test must pass on the clean tree and then fail on an assertion;
anything else (a missing or already failing test, a fixture error, an exception from the
code, an import error, a hang, a test that does not fail) must fail the run.
"""

from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # each run starts a few interpreters

RUNNER = pathlib.Path(__file__).resolve().parents[3] / "scripts" / "run_mutants.py"

CALC = """\
def add(a, b):
    return a + b


def check(n):
    if n < 0:
        raise ValueError("negative")
    return n


def ready():
    return True
"""

CONFTEST = """\
import pytest

from kairo_ingest import calc


@pytest.fixture
def prepared():
    if not calc.ready():
        raise RuntimeError("not ready")
    return True
"""

TESTS = """\
import pytest

from kairo_ingest import calc


def test_add():
    assert calc.add(2, 2) == 4


def test_check_refuses_negatives():
    with pytest.raises(ValueError):
        calc.check(-1)


def test_with_a_fixture(prepared):
    assert calc.add(1, 1) == 2


def test_unrelated():
    assert calc.check(1) == 1


@pytest.mark.parametrize("a", [1, 2])
def test_add_zero(a):
    assert calc.add(a, 0) == a


def test_already_failing():
    assert calc.add(1, 1) == 3


@pytest.mark.skip(reason="never runs")
def test_skipped():
    assert calc.add(1, 1) == 2
"""

SIM_TESTS = """\
from kairo_apify_sim import fake


def test_fake_status():
    assert fake.status() == "SUCCEEDED"
"""

PYPROJECT = """\
[tool.pytest.ini_options]
asyncio_default_fixture_loop_scope = "function"
"""


class FakeTree:
    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        files = {
            "pyproject.toml": PYPROJECT,
            "src/kairo_ingest/__init__.py": "",
            "src/kairo_ingest/calc.py": CALC,
            "simulator/src/kairo_apify_sim/__init__.py": "",
            "simulator/src/kairo_apify_sim/fake.py": 'def status():\n    return "SUCCEEDED"\n',
            "tests/conftest.py": CONFTEST,
            "tests/test_calc.py": TESTS,
            "tests/test_sim.py": SIM_TESTS,
        }
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        (root / "mutants").mkdir()
        self.git("init", "-q")
        self.git("add", "-A")
        self.git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tree")

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.root, check=True, capture_output=True, text=True
        ).stdout

    def mutant(
        self, name: str, old: str, new: str, *tests: str, rel: str = "src/kairo_ingest/calc.py"
    ) -> None:
        """A mutant replacing ``old`` by ``new`` in ``rel`` (calc.py), naming ``tests``."""
        module = self.root / rel
        text = module.read_text()
        assert old in text
        module.write_text(text.replace(old, new))
        diff = self.git("diff")
        self.git("checkout", "--", ".")
        header = "Footgun: a fake footgun\n" + "".join(f"Tests: {t}\n" for t in tests)
        (self.root / "mutants" / f"{name}.patch").write_text(header + "\n" + diff)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(RUNNER), "--root", str(self.root), "--jobs", "2", *args],
            capture_output=True,
            text=True,
            timeout=300,
        )


T = "tests/test_calc.py::"


@pytest.fixture
def tree(tmp_path: pathlib.Path) -> FakeTree:
    return FakeTree(tmp_path)


def block(output: str, name: str) -> str:
    """The verdict line of mutant ``name`` and the test lines under it."""
    lines = output.splitlines()
    start = next(i for i, ln in enumerate(lines) if f"s  {name}: " in ln)
    end = next(
        (i for i in range(start + 1, len(lines)) if not lines[i].startswith(" " * 20)), len(lines)
    )
    return "\n".join(lines[start:end])


def test_assertions_and_did_not_raise_kill_and_each_is_printed(tree: FakeTree) -> None:
    tree.mutant("off-by-one", "a + b", "a + b - 1", T + "test_add", T + "test_add_zero")
    tree.mutant("lets-negatives-in", "if n < 0:", "if n < -10:", T + "test_check_refuses_negatives")
    done = tree.run()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the 3 named tests pass on the clean tree" in done.stdout
    off_by_one = block(done.stdout, "off-by-one")
    assert off_by_one.startswith("killed")
    assert f"caught by {T}test_add: AssertionError: assert 3 == 4  (tests/test_calc.py:7)" in (
        off_by_one
    )
    assert f"caught by {T}test_add_zero: AssertionError: assert " in off_by_one
    negatives = block(done.stdout, "lets-negatives-in")
    assert negatives.startswith("killed")
    assert "DID NOT RAISE" in negatives
    assert "mutants: 2 killed, 0 not killed" in done.stdout


def test_a_mutant_of_the_simulator_package_runs_from_the_scratch_copy(tree: FakeTree) -> None:
    """The simulator (simulator/src, a package of its own) is imported from the mutated
    copy too, not from wherever it is installed: otherwise its mutants would all survive."""
    tree.mutant(
        "sim-fails-runs",
        '"SUCCEEDED"',
        '"FAILED"',
        "tests/test_sim.py::test_fake_status",
        rel="simulator/src/kairo_apify_sim/fake.py",
    )
    done = tree.run()
    assert done.returncode == 0, done.stdout + done.stderr
    assert block(done.stdout, "sim-fails-runs").startswith("killed")


def test_a_kill_for_the_wrong_reason_or_no_kill_fails_the_run(tree: FakeTree) -> None:
    tree.mutant("type-error", "return a + b", "return a + str(b)", T + "test_add")
    tree.mutant("fixture-error", "    return True", "    return False", T + "test_with_a_fixture")
    tree.mutant("import-error", "def add(a, b):", "import no_such_module\ndef add(a, b):",
                T + "test_add")  # fmt: skip
    tree.mutant("not-caught", "a + b", "a - b", T + "test_unrelated")
    tree.mutant("one-line-wrong", "a + b", "a - b", T + "test_add", T + "test_unrelated")
    done = tree.run()
    assert done.returncode == 1
    out = done.stdout
    type_error = block(out, "type-error")
    assert type_error.startswith("not-killed")
    assert "not an assertion, in the test: TypeError" in type_error
    fixture_error = block(out, "fixture-error")
    assert fixture_error.startswith("not-killed")
    assert "in setup (a fixture): RuntimeError: not ready" in fixture_error
    import_error = block(out, "import-error")
    assert import_error.startswith("not-killed")
    assert f"not run: {T}test_add: " in import_error
    assert "ModuleNotFoundError: No module named 'no_such_module'" in import_error
    assert block(out, "not-caught").startswith("survived")
    wrong_line = block(out, "one-line-wrong")
    assert wrong_line.startswith("survived")
    assert f"not caught by {T}test_unrelated: it passed" in wrong_line
    assert f"caught by {T}test_add:" in wrong_line
    assert "mutants: 0 killed, 5 not killed" in out


def test_a_hung_mutant_is_stopped_and_named(tree: FakeTree) -> None:
    tree.mutant("hangs", "    return a + b", "    while True:\n        pass", T + "test_add")
    done = tree.run("--timeout", "5")
    assert done.returncode == 1
    hung = block(done.stdout, "hangs")
    assert hung.startswith("hung")
    assert f"still running after 5 s in {T}test_add" in hung


def test_a_named_test_must_exist_pass_and_not_skip_on_the_clean_tree(tree: FakeTree) -> None:
    tree.mutant("names-a-missing-test", "a + b", "a - b", T + "test_nope", T + "test_add")
    tree.mutant("names-a-failing-test", "a + b", "a - b", T + "test_already_failing")
    tree.mutant("names-a-skipped-test", "a + b", "a - b", T + "test_skipped")
    done = tree.run()
    assert done.returncode == 1
    assert "killed" not in done.stdout  # no mutant runs after a failed baseline
    problems = [ln.strip() for ln in done.stderr.splitlines() if ln.startswith("  ")]
    assert len(problems) == 3, done.stderr
    by_test = {ln.split(" (named by")[0]: ln for ln in problems}
    assert "no such test" in by_test[T + "test_nope"]
    assert "(named by names-a-missing-test)" in by_test[T + "test_nope"]
    assert "fails: AssertionError: assert 2 == 3" in by_test[T + "test_already_failing"]
    assert "skipped" in by_test[T + "test_skipped"]


def test_a_whole_file_in_a_tests_line_is_refused(tree: FakeTree) -> None:
    tree.mutant("names-a-file", "a + b", "a - b", "tests/test_calc.py")
    done = tree.run()
    assert done.returncode == 1
    assert "must name individual tests" in done.stderr
    assert "tests/test_calc.py" in done.stderr


@pytest.mark.parametrize(
    ("exception", "counts"),
    [
        (AssertionError("assert 1 == 2"), True),
        (pytest.fail.Exception("DID NOT RAISE <class 'ValueError'>"), True),
        (pytest.fail.Exception("an explicit pytest.fail()"), False),
        (ExceptionGroup("tasks", [AssertionError("x"), AssertionError("y")]), True),
        (ExceptionGroup("tasks", [AssertionError("x"), TypeError("y")]), False),
        (TypeError("unsupported operand"), False),
        (ImportError("no module"), False),
        (TimeoutError(), False),
    ],
)
def test_what_counts_as_an_assertion(exception: BaseException, counts: bool) -> None:
    # Loaded from this tree's file under another name: under the mutant runner the module
    # "mutant_verdicts" already imported is the runner's own (it judges, so a mutant of
    # it cannot fake its own kill).
    spec = importlib.util.spec_from_file_location(
        "mutant_verdicts_under_test", RUNNER.parent / "mutant_verdicts.py"
    )
    assert spec is not None
    assert spec.loader is not None
    verdicts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(verdicts)
    assert verdicts.is_assertion(exception) is counts
