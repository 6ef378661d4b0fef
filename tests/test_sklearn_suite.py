"""scikit-learn's own MLP test file, run against fastmlp's estimators.

The installed scikit-learn's ``sklearn/neural_network/tests/test_mlp.py`` is
copied into a temporary folder with exactly one line changed, its import of
``MLPClassifier, MLPRegressor``, which then comes from fastmlp. It runs in a
child pytest (next to a small conftest.py that provides scikit-learn's
``global_random_seed`` fixture, as scikit-learn's own conftest does), and every
test it collects must pass: no failures, no errors, no skips.

Against scikit-learn's own estimators (``run_suite(path, SKLEARN_IMPORT)``) the
file gives 59 passed with scikit-learn 1.9.1, in 6 s on 2 idle cores (14-18 s under load).
"""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed: pip install -e '.[dev]'")

SKLEARN_IMPORT = "from sklearn.neural_network import MLPClassifier, MLPRegressor"
FASTMLP_IMPORT = "from fastmlp import MLPClassifier, MLPRegressor"
TIMEOUT_S = 1800  # scikit-learn against itself takes 6-18 s on 2 cores

# scikit-learn's conftest.py parametrises global_random_seed in pytest_generate_tests:
# the single seed 42 unless SKLEARN_TESTS_GLOBAL_RANDOM_SEED says otherwise
# ("all", "a-b" or one number, each in [0, 99]). The same here, for the copy.
CONFTEST = textwrap.dedent('''\
    """Written by fastmlp's tests/test_sklearn_suite.py: scikit-learn's global_random_seed."""
    from os import environ


    def pytest_generate_tests(metafunc):
        random_seed_var = environ.get("SKLEARN_TESTS_GLOBAL_RANDOM_SEED")
        if random_seed_var is None:
            random_seeds = [42]
        elif random_seed_var == "all":
            random_seeds = list(range(100))
        else:
            if "-" in random_seed_var:
                start, stop = random_seed_var.split("-")
                random_seeds = list(range(int(start), int(stop) + 1))
            else:
                random_seeds = [int(random_seed_var)]
            if min(random_seeds) < 0 or max(random_seeds) > 99:
                raise ValueError(
                    "The value(s) of the environment variable SKLEARN_TESTS_GLOBAL_RANDOM_SEED "
                    f"must be in the range [0, 99] (or 'all'), got: {random_seed_var}"
                )
        if "global_random_seed" in metafunc.fixturenames:
            metafunc.parametrize("global_random_seed", random_seeds)
''')


def sklearn_test_file():
    """The installed scikit-learn's test_mlp.py, or a skip saying why there is none."""
    path = Path(sklearn.__file__).parent / "neural_network" / "tests" / "test_mlp.py"
    if not path.is_file():
        pytest.skip(f"the installed scikit-learn {sklearn.__version__} ({Path(sklearn.__file__).parent}) "
                    f"does not ship {path.relative_to(Path(sklearn.__file__).parents[1])}: "
                    "its test files were left out of this install")
    return path


def _copy_with_import(directory, import_line):
    lines = sklearn_test_file().read_text(encoding="utf-8").splitlines(keepends=True)
    found = [i for i, line in enumerate(lines) if line.rstrip("\r\n") == SKLEARN_IMPORT]
    assert len(found) == 1, (f"expected the line {SKLEARN_IMPORT!r} exactly once in scikit-learn "
                             f"{sklearn.__version__}'s test_mlp.py, found it {len(found)} times")
    lines[found[0]] = import_line + "\n"
    target = Path(directory) / "test_mlp.py"
    target.write_text("".join(lines), encoding="utf-8")
    (Path(directory) / "conftest.py").write_text(CONFTEST, encoding="utf-8")
    return target


def _summary(output):
    """{'passed': 59, 'failed': 1, ...} from pytest's final 'N passed, M failed in 5.2s' line."""
    for line in reversed(output.strip().splitlines()):
        line = line.strip().strip("=").strip()
        if re.search(r"\bin [\d.]+s\b", line) and re.match(r"(\d+ \w+|no tests ran)", line):
            counts = {}
            for number, word in re.findall(r"(\d+) (\w+)", line):
                word = {"error": "errors", "warning": "warnings"}.get(word, word)
                counts[word] = counts.get(word, 0) + int(number)
            return line, counts
    return None, {}


def run_suite(directory, import_line=FASTMLP_IMPORT, timeout=TIMEOUT_S):
    """Run the copy in a child pytest; fail, naming the tests, unless every one passed.

    Returns the counts of the final summary line (``{'passed': 59, 'warnings': ...}``).
    """
    test_file = _copy_with_import(directory, import_line)
    env = dict(os.environ)  # the child imports the fastmlp this interpreter has installed
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEsxX", str(test_file)]
    try:
        proc = subprocess.run(cmd, cwd=directory, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or b""
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        pytest.fail(f"scikit-learn's test_mlp.py ({import_line!r}) did not finish in {timeout} s; "
                    f"output so far ends:\n{out[-6000:]}")
    output = proc.stdout + proc.stderr
    line, counts = _summary(proc.stdout)
    bad = {k: v for k, v in counts.items() if k in ("failed", "errors", "skipped", "xfailed", "xpassed")}
    names = [ln for ln in output.splitlines() if re.match(r"(FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b", ln)]
    problem = (line is None or bad or not counts.get("passed") or proc.returncode != 0)
    assert not problem, (
        f"scikit-learn {sklearn.__version__}'s test_mlp.py with {import_line!r}: "
        f"{line or 'no summary line'} (exit status {proc.returncode})\n"
        + "\n".join(names[:100])
        + f"\n--- output ends ---\n{output[-6000:]}"
    )
    return counts


def test_sklearns_mlp_tests_pass_with_fastmlps_estimators(tmp_path):
    run_suite(tmp_path, FASTMLP_IMPORT)
