"""Run the CUDA kernel tests under Numba's CUDA simulator, in a child process.

NUMBA_ENABLE_CUDASIM must be set before Numba is imported, so it cannot be
switched on inside this pytest process. The child runs every file of
kernel_cases.CUDA_TEST_FILES (the list conftest.py leaves out of the main run
without a GPU); its summary is echoed, and the test fails unless every
simulator test ran and passed (none skipped).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from kernel_cases import CUDA_TEST_FILES

HERE = Path(__file__).parent


@pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", reason="already inside the simulator run")
def test_cuda_kernels_pass_under_the_simulator(record_property):
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    files = [str(HERE / name) for name in CUDA_TEST_FILES]
    cmd = [sys.executable, "-m", "pytest", *files, "-v", "-p", "no:cacheprovider"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=HERE.parent)
    out = proc.stdout + proc.stderr
    print(out)  # shown with -s / on failure: which simulator tests ran
    summary = out.strip().splitlines()[-1]
    ran = [line.split(" PASSED")[0] for line in out.splitlines() if " PASSED" in line]
    record_property("cuda_simulator", f"{summary.strip('= ')}: " + ", ".join(r.split("::")[-1] for r in ran))
    passed = re.search(r"(\d+) passed", summary)
    assert proc.returncode == 0, f"simulator run failed: {summary}"
    assert passed and int(passed.group(1)) >= 90, f"too few simulator tests ran: {summary}"
    assert "skipped" not in summary, f"simulator tests were skipped: {summary}"
    for name in CUDA_TEST_FILES:
        assert any(r.startswith(f"tests/{name}::") for r in ran), f"no simulator test of {name} passed: {summary}"
