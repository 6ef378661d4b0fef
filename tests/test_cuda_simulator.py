"""Run the CUDA kernel tests under Numba's CUDA simulator, in child processes.

NUMBA_ENABLE_CUDASIM must be set before Numba is imported, so it cannot be
switched on inside this pytest process. The files of kernel_cases.CUDA_TEST_FILES
(the list conftest.py leaves out of the main run without a GPU) run in a few
groups, one child process each, so that pytest-xdist can run the groups side by
side. Each group's summary is echoed, and its test fails unless the child passed
at least the group's known number of tests and skipped none; a last check makes
sure the groups cover every file.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from kernel_cases import CUDA_TEST_FILES

HERE = Path(__file__).parent

# name -> (file, -k expression or None, at least this many tests pass)
GROUPS = {
    "kernels": ("test_kernels_cuda.py", None, 61),
    "linear": ("test_kernels_linear_cuda.py", None, 36),
    "step-vs-cpu": ("test_step_cuda.py", "test_cuda_step_matches_the_cpu_step", 3),
    "step-other": ("test_step_cuda.py", "not test_cuda_step_matches_the_cpu_step", 2),
}


def test_the_groups_cover_every_cuda_test_file():
    assert sorted({file for file, _, _ in GROUPS.values()}) == sorted(CUDA_TEST_FILES)


@pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", reason="already inside the simulator run")
@pytest.mark.parametrize("group", list(GROUPS))
def test_cuda_kernels_pass_under_the_simulator(group, record_property):
    file, expr, at_least = GROUPS[group]
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    cmd = [sys.executable, "-m", "pytest", str(HERE / file), "-v", "-p", "no:cacheprovider", "-p", "no:xdist"]
    if expr:
        cmd += ["-k", expr]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=HERE.parent)
    out = proc.stdout + proc.stderr
    print(out)  # shown with -s / on failure: which simulator tests ran
    summary = out.strip().splitlines()[-1]
    ran = [line.split(" PASSED")[0] for line in out.splitlines() if " PASSED" in line]
    record_property("cuda_simulator", f"{group}: {summary.strip('= ')}: " + ", ".join(r.split("::")[-1] for r in ran))
    passed = re.search(r"(\d+) passed", summary)
    assert proc.returncode == 0, f"simulator run of {group} failed: {summary}"
    assert passed and int(passed.group(1)) >= at_least, f"too few simulator tests of {group} ran: {summary}"
    assert "skipped" not in summary, f"simulator tests of {group} were skipped: {summary}"
    assert all(r.startswith(f"tests/{file}::") for r in ran) and ran, summary
