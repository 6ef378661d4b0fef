"""Everything to check and measure on a GPU machine, in one command.

    python -m benchmarks.gpu_check --data-dir DIR [--quick] [--bundle FILE.tar.gz]

(DIR: a folder holding mnist/.) Run it from the repository root on a machine
with an NVIDIA GPU; it needs no network and nothing beyond CuPy, Numba,
numba-cuda and pytest (PyTorch, compute-sanitizer and ncu where present: without
them, their rows and steps are skipped, saying why).

``--quick`` runs the same steps, less ``pytest-rest``, with fewer epochs and
batch sizes, inside a budget of 200 s; the full run's budget is 420 s, so
either fits one 10-minute call on a freshly started machine (``--budget``: a
step never gets more than what is left, and one that would start too late is
skipped, saying so; what did not fit is printed last as one command for a
second call). It writes benchmarks/results/gpu-<device>-<date>-<time>/ (or
``--out``), and ``--bundle`` packs that folder into one archive;
``python -m benchmarks.report`` turns it into the GPU tables, the device named.

Steps, each in its own child process with its own time limit (a hang or a
CUDA crash ends that step only: it is recorded as failed or timed out, and
the next step runs). ``--list`` prints them with their limits.

    setup        is fastmlp (with fastmlp.kernels, from kernels/) importable from
                 this checkout? PYTHONPATH=. is not enough. If not, it runs
                 ``pip install --no-deps --no-build-isolation -e .`` (offline), and
                 if pip fails, puts an import hook into site-packages;
                 ``--no-install`` only prints the pip command instead
    environment  nvidia-smi, GPU, driver, CUDA, CuPy, Numba, numba-cuda, PyTorch;
                 the toolchain: the driver's CUDA version, NVVM's (and the PTX ISA
                 it writes), nvJitLink's; whether Numba can compile a CUDA kernel
                 (and, with a GPU, link, load and launch one), and if it can only
                 with a CUDA toolkit folder (those no newer than the driver tried
                 first), that folder as CUDA_HOME for the later steps
    warm         benchmarks.gpu_warm: every kernel specialisation the later steps
                 launch (both dtypes: the training step, every GEMM variant,
                 evaluation), compiled in parallel processes into Numba's on-disk
                 cache before anything is timed
    capture      does a Numba kernel on a capturing CuPy stream replay correctly?
    epoch        benchmarks.epoch: fastmlp cuda (default, eager, graph step/epoch)
                 first, then fastmlp cpu and PyTorch eager, torch.compile(mode=
                 "reduce-overhead") last under its own cap; epoch-gpu.json is
                 rewritten after every system, so a time-out keeps what was measured
    parity       one epoch on the CPU and the GPU in the same batch order, float32
                 and float64: the worst parameter difference
    pytest       the tests that run on the device (GPU_TESTS; a skipped GPU test
                 fails the step), JUnit XML kept
    micro        host cost per call: Numba launches, CuPy RawKernel, cupy.matmul, torch.mm
    gemm         each GEMM of the step timed per split-K factor (CUDA-graph replays,
                 so GPU time only) beside cuBLAS: how to tune choose_split
    memcheck     compute-sanitizer --tool memcheck over the CUDA kernel tests
    racecheck    compute-sanitizer --tool racecheck over the CUDA kernel tests
    scaling      benchmarks.scaling: batch sweep 32 ... 8192 on the GPU
    tta          benchmarks.time_to_accuracy: seconds to 98 % on the GPU
    ncu          ncu over a window of training steps: kernels, their times; launch
                 gaps from a CUPTI timeline (PyTorch's profiler) of the same window
    pytest-rest  full run only: the rest of the suite, with pytest-xdist where
                 installed, less the simulator run (the GPU ran those tests)

The order puts what decides the most first: the kernels compiled (warm), whether
a captured graph replays (capture), what the GPU path is for (epoch), whether it
is right (parity, then the device tests), then the rest. A step the budget
cannot fit is skipped, saying so, and the last lines printed give the command
that runs just those steps, for a second device call.

Without a GPU the GPU steps are recorded as skipped with the reason, and the
rest (setup, environment, the CPU rows of the epoch benchmark) still runs.
Everything lands in ``--out`` (default ``benchmarks/results/gpu-<device>-<date>-<time>/``):
summary.json (rewritten after every step, so a killed run still leaves one),
summary.txt (the table printed last), a log per step and each step's results.
The archive, if asked for, is rewritten after every step too. The exit status
is 1 if a step failed or timed out, else 0 (skipped steps are not failures).

To split the work into two device commands, give each a part with ``--steps``
(``setup`` and ``environment`` are cheap; name them in both); each run writes
its own folder. ``--steps`` keeps the usual order whatever order it is given in.

This module imports only the standard library, so it runs (and says what is
wrong) even where fastmlp itself does not import yet.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
# benchmarks/common.py's RESULTS, without importing fastmlp through it
RESULTS = Path(os.environ.get("FASTMLP_BENCH_RESULTS") or Path(__file__).parent / "results")

OK, FAILED, TIMEOUT, SKIPPED = "ok", "failed", "timeout", "skipped"
LOG_KEEP = (256 << 10, 1 << 20)  # a longer log keeps its first 256 KiB and last 1 MiB
BUDGET = {False: 420, True: 200}  # seconds for the whole run: full, --quick (one cold device call each)
RESERVE_S = 5  # kept back from the budget for the summary and the archive

# The 'pytest' step, early in both modes: every test that runs on the device.
GPU_TESTS = ["tests/test_gpu.py", "tests/test_kernels_cuda.py", "tests/test_kernels_linear_cuda.py",
             "tests/test_step_cuda.py", "tests/test_kernels_ptx.py", "tests/test_backend.py", "tests/test_step.py",
             "tests/test_trainer.py", "tests/test_model.py", "tests/test_optim.py",
             "tests/test_estimator.py::test_cuda_fit_predict_and_pickle"]
# Tests that must run, not skip, on a GPU machine.
GPU_TEST_FILES = ("test_gpu.py", "test_kernels_cuda.py", "test_kernels_linear_cuda.py", "test_step_cuda.py")
# The rest of the suite ('pytest-rest', last, full run only) leaves out the simulator run of the
# CUDA test files: on a GPU machine the 'pytest' step ran those files on the GPU itself.
SIMULATOR_TEST = "tests/test_cuda_simulator.py::test_cuda_kernels_pass_under_the_simulator"
# Real-data tests that need fashion-mnist/, which the recipe does not carry.
FASHION_TESTS = ["tests/test_data.py::test_real_data[fashion-mnist]",
                 "tests/test_data.py::test_real_checksums[fashion-mnist]"]
# fastmlp's own rows first; torch.compile last, under its own cap (its cold build takes a minute or more)
EPOCH_SYSTEMS = ["fastmlp", "fastmlp-eager", "fastmlp-graph", "fastmlp-graph-epoch", "torch", "torch-compile"]
COMPILE_CAP = {False: 90, True: 60}  # seconds for torch.compile's system in the epoch step: full, --quick


@dataclass
class Context:
    out: Path
    data_dir: Path
    quick: bool = False
    install: bool = True
    python: str = sys.executable
    gpu: bool | None = None  # None: not known (the environment step did not say)
    gpu_name: str | None = None
    gpu_reason: str = ""
    deadline: float = float("inf")
    tools: dict = field(default_factory=dict)
    extra_env: dict = field(default_factory=dict)  # what an earlier step found the later ones need

    def env(self):
        return {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg", "FASTMLP_BENCH_RESULTS": str(self.out),
                "FASTMLP_DATA_DIR": str(self.data_dir), **self.extra_env}

    def probe(self, name, *args):
        return [self.python, "-m", "benchmarks.gpu_probes", name, "--out", str(self.out), *map(str, args)]


@dataclass
class Step:
    """One step: a command run in its own process group, killed at ``limit`` seconds.

    command(ctx) gives the argv; finish(ctx, record) reads the step's files into
    the record (note, result, and a status other than the exit code's)."""

    name: str
    title: str
    command: Callable
    limit: tuple  # seconds: (full, --quick)
    gpu: bool = True
    tool: str | None = None
    finish: Callable | None = None
    full_only: bool = False  # --quick leaves it out


def _clip_log(path):
    """Keep a huge log's head and tail (sanitizer reports can run to megabytes)."""
    head, tail = LOG_KEEP
    if path.exists() and path.stat().st_size > head + tail:
        data = path.read_bytes()
        path.write_bytes(data[:head] + f"\n[... {len(data) - head - tail} bytes cut ...]\n".encode() + data[-tail:])


def _last_line(path):
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def _kill_group(proc):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def run_step(step, ctx):
    """Run one step; returns its record. Never raises: every failure is recorded."""
    rec = {"name": step.name, "title": step.title, "status": SKIPPED, "reason": "", "note": "", "seconds": None,
           "limit_s": None, "command": None, "log": None, "result": None}
    limit = step.limit[1] if ctx.quick else step.limit[0]
    left = ctx.deadline - time.monotonic() - RESERVE_S
    if step.gpu and ctx.gpu is False:
        rec["reason"] = f"no CUDA GPU: {ctx.gpu_reason}"
        return rec
    if step.full_only and ctx.quick:
        rec["reason"] = "full run only (--quick leaves it out)"
        return rec
    if step.tool and not ctx.tools.get(step.tool):
        rec["reason"] = f"{step.tool} is not on PATH"
        return rec
    if left < RESERVE_S:
        rec["reason"] = f"out of time: the run's budget (--budget) leaves {max(left, 0):.0f} s"
        return rec
    rec["limit_s"] = int(min(limit, left))
    rec["cut_by_budget"] = rec["limit_s"] < limit  # a timeout then means: did not fit, run it again
    limit = rec["limit_s"]
    log = ctx.out / f"{step.name}.log"
    rec["log"] = log.name
    t0 = time.monotonic()
    try:
        argv = [str(a) for a in step.command(ctx)]
        rec["command"] = " ".join(argv)
        with open(log, "wb") as f:
            f.write(f"$ {rec['command']}\n".encode())
            f.flush()
            proc = subprocess.Popen(argv, cwd=ROOT, env=ctx.env(), stdout=f, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                rc = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                rc = None
            finally:
                if proc.poll() is None:
                    _kill_group(proc)
        rec["returncode"] = rc
        if rc is None:
            rec["status"], rec["reason"] = TIMEOUT, f"killed after its {limit} s limit; last output: {_last_line(log)}"
        elif rc == 0:
            rec["status"] = OK
        else:
            rec["status"], rec["reason"] = FAILED, f"exit status {rc}: {_last_line(log)}"
        _clip_log(log)
        if step.finish is not None:
            step.finish(ctx, rec)
    except Exception as exc:  # a step that cannot even start (or whose results cannot be read) is a failed step
        rec["status"], rec["reason"] = FAILED, f"{type(exc).__name__}: {exc}"
    rec["seconds"] = round(time.monotonic() - t0, 2)
    return rec


def run_steps(steps, ctx, summary, bundle=None, log=print):
    """Run ``steps`` in order; the summary (and archive) are rewritten after each."""
    for i, step in enumerate(steps, 1):
        log(f"[gpu_check {i}/{len(steps)}] {step.name}: {step.title} ...", flush=True)
        rec = run_step(step, ctx)
        summary["steps"].append(rec)
        if ctx.gpu is not None:  # the GPU that CUDA sees, once the environment step has looked
            summary["gpu"] = ctx.gpu_name
        write_summary(ctx.out, summary, bundle)
        said = f" ({rec['seconds']:.1f} s)" if rec["seconds"] is not None else ""
        why = rec["reason"] or rec["note"]
        log(f"[gpu_check {i}/{len(steps)}] {step.name}: {rec['status']}{said}" + (f": {why}" if why else ""), flush=True)
    return summary


def write_summary(out, summary, bundle=None):
    _atomic_text(out / "summary.json", json.dumps(summary, indent=1))
    _atomic_text(out / "summary.txt", table(summary))
    if bundle:
        pack(out, bundle)


def _atomic_text(path, text):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def pack(out, bundle):
    """One .tar.gz holding the folder ``out`` (as its top-level folder): the device tool returns 8 files at most."""
    bundle = Path(bundle)
    bundle.parent.mkdir(parents=True, exist_ok=True)
    tmp = bundle.with_name(bundle.name + ".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(out.rglob("*")):
            if path.is_file() and not path.name.endswith(".tmp") and path.resolve() != bundle.resolve():
                tar.add(path, arcname=f"{out.name}/{path.relative_to(out)}")
    os.replace(tmp, bundle)


def table(summary):
    rows = [("step", "status", "seconds", "note")]
    for r in summary["steps"]:
        seconds = "-" if r["seconds"] is None else f"{r['seconds']:.1f}"
        rows.append((r["name"], r["status"], seconds, (r["reason"] or r["note"])[:110]))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}  {d}" for a, b, c, d in rows]
    gpu = summary.get("gpu") or "no GPU"
    return f"gpu_check on {summary['host']} ({gpu}), {summary['mode']} mode, {summary['out']}\n" + "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# what each step runs and reads back
# --------------------------------------------------------------------------


def _read_json(ctx, name):
    path = ctx.out / name
    return json.loads(path.read_text()) if path.exists() else None


def _probe_result(name):
    """finish(): take <name>.json written by the probe; its 'status'/'reason'/'note' win over the exit code."""

    def finish(ctx, rec):
        result = _read_json(ctx, f"{name}.json")
        if result is None:
            return
        rec["result"] = result
        rec["note"] = result.get("note", "")
        if result.get("status") in (FAILED, SKIPPED) and rec["status"] == OK:
            rec["status"], rec["reason"] = result["status"], result.get("reason", "")

    return finish


def _finish_environment(ctx, rec):
    _probe_result("environment")(ctx, rec)
    env = rec["result"] or {}
    if "gpu" in env:
        ctx.gpu, ctx.gpu_name, ctx.gpu_reason = bool(env["gpu"]), env["gpu"], env.get("gpu_reason", "")
    ctx.tools.update({k: v for k, v in (env.get("tools") or {}).items() if v})
    cuda_home = (env.get("numba_compiler") or {}).get("cuda_home")
    if cuda_home:  # Numba found NVVM only there: every later step runs with it
        ctx.extra_env["CUDA_HOME"] = cuda_home
        rec["env_added"] = {"CUDA_HOME": cuda_home}


def _pytest_argv(ctx, name):
    return [ctx.python, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", f"--junitxml={ctx.out / f'{name}.xml'}"]


def _pytest_command(ctx):
    return _pytest_argv(ctx, "pytest") + GPU_TESTS


def _has_xdist(python):
    """Whether ``python`` has pytest-xdist (the device image does): the rest of the suite then runs in parallel."""
    code = "import importlib.util, sys; sys.exit(importlib.util.find_spec('xdist') is None)"
    try:
        return subprocess.run([python, "-c", code], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _pytest_rest_command(ctx):
    files = {t.split("::")[0] for t in GPU_TESTS if "::" not in t}
    argv = _pytest_argv(ctx, "pytest-rest") + ["tests"] + [f"--ignore={f}" for f in sorted(files)]
    argv += [f"--deselect={t}" for t in GPU_TESTS if "::" in t] + [f"--deselect={SIMULATOR_TEST}"]
    if not (ctx.data_dir / "fashion-mnist").is_dir():
        argv += [f"--deselect={t}" for t in FASHION_TESTS]
    if _has_xdist(ctx.python):
        argv += ["-n", str(min(8, os.cpu_count() or 1))]
    return argv


def junit_counts(path):
    """(counts, GPU tests that were skipped) from a JUnit XML file."""
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    skipped_gpu = []
    for case in root.iter("testcase"):
        skip = case.find("skipped")
        module = (case.get("classname") or "").split(".")[-1] + ".py"
        if skip is not None and module in GPU_TEST_FILES:
            skipped_gpu.append(f"{case.get('classname')}::{case.get('name')}: {skip.get('message', '')}")
    return counts, skipped_gpu


def _finish_pytest(ctx, rec):
    xml = ctx.out / f"{rec.get('name', 'pytest')}.xml"  # pytest.xml or pytest-rest.xml
    if not xml.exists():
        return
    counts, skipped_gpu = junit_counts(xml)
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    rec["result"] = {**counts, "passed": passed, "skipped_gpu_tests": skipped_gpu, "junit": xml.name}
    rec["note"] = (f"{passed} passed, {counts['failures']} failed, {counts['errors']} errors, "
                   f"{counts['skipped']} skipped")
    if skipped_gpu and rec["status"] == OK:
        rec["status"], rec["reason"] = FAILED, f"{len(skipped_gpu)} GPU tests skipped on a GPU machine: {skipped_gpu[0]}"


def _sanitizer(tool):
    def command(ctx):
        tests = ["tests/test_kernels_cuda.py", "tests/test_kernels_linear_cuda.py"]  # the GEMMs' shared tiles too
        if tool == "memcheck":  # plus a short real training run: CuPy, cuBLAS and the kernels together
            tests.append("tests/test_gpu.py::test_same_seed_same_gpu_result")
        return [ctx.tools["compute-sanitizer"], "--tool", tool, "--print-limit", "50", ctx.python, "-m", "pytest",
                "-q", "-p", "no:cacheprovider", *tests]

    def finish(ctx, rec):
        text = (ctx.out / rec["log"]).read_text(errors="replace")
        found = re.findall(r"(ERROR SUMMARY: \d+ errors?|RACECHECK SUMMARY: .*)", text)
        rec["result"] = {"summary": found[-1] if found else None, "tests": _last_line(ctx.out / rec["log"])}
        rec["note"] = f"{found[-1] if found else 'no sanitizer summary line'}; pytest: {rec['result']['tests']}"
        errors = re.search(r"(\d+) (errors?|hazards)", found[-1]) if found else None
        if errors and int(errors.group(1)) and rec["status"] == OK:
            rec["status"], rec["reason"] = FAILED, found[-1]

    return command, finish


def _benchmark(module, name, note):
    """A benchmarks.<module> run writing <name>.json into --out; note(result) says what it found."""

    def finish(ctx, rec):
        result = _read_json(ctx, f"{name}.json")
        if result is not None:
            rec["result"] = {"file": f"{name}.json", "skipped": result.get("skipped", {})}
            rec["note"] = note(result)

    return finish


def _epoch_command(ctx):
    return [ctx.python, "-m", "benchmarks.epoch", "--device", "cuda", "cpu", "--systems", *EPOCH_SYSTEMS,
            "--data-dir", ctx.data_dir, "--epochs", 5 if ctx.quick else 10, "--label", "gpu",
            "--compile-cap", COMPILE_CAP[ctx.quick]]


def _epoch_note(result):
    rows = ", ".join(f"{r['system']} {r['device']} {r['median_epoch_s']:.3g} s" for r in result["results"])
    return f"{rows}; {len(result['skipped'])} system/device pairs skipped (epoch-gpu.json says why)"


def _scaling_command(ctx):
    batches = "32,128,1024,8192" if ctx.quick else "32,64,128,256,512,1024,2048,4096,8192"
    return [ctx.python, "-m", "benchmarks.scaling", "--device", "cuda", "--data-dir", ctx.data_dir,
            "--batch-sizes", batches, "--widths", "128" if ctx.quick else "128,1024,4096", "--label", "gpu"]


def _tta_command(ctx):
    return [ctx.python, "-m", "benchmarks.time_to_accuracy", "--device", "cuda", "--data-dir", ctx.data_dir,
            "--label", "gpu"]


def _tta_note(result):
    return "; ".join(f"{r['device']}: {'reached' if r['reached'] else 'not reached'} after {r['epochs']} epochs, "
                     f"{r['seconds']:.2f} s" for r in result["results"])


memcheck_command, memcheck_finish = _sanitizer("memcheck")
racecheck_command, racecheck_finish = _sanitizer("racecheck")

STEPS = [
    Step("setup", "fastmlp importable from this checkout", lambda c: c.probe("setup", *([] if c.install else ["--no-install"])),
         (120, 120), gpu=False, finish=_probe_result("setup")),
    Step("environment", "nvidia-smi, GPU, driver, CUDA, NVVM, nvJitLink and library versions",
         lambda c: c.probe("environment"), (60, 60), gpu=False, finish=_finish_environment),
    Step("warm", "compile every kernel the later steps launch, in parallel, into Numba's cache",
         lambda c: [c.python, "-m", "benchmarks.gpu_warm", "--out", c.out], (120, 90), finish=_probe_result("warm")),
    Step("capture", "Numba kernel on a capturing CuPy stream, graph replay", lambda c: c.probe("capture"), (45, 30),
         finish=_probe_result("capture")),
    Step("epoch", "epoch time: fastmlp modes, PyTorch eager, fastmlp cpu, torch.compile last (capped)", _epoch_command,
         (200, 120), gpu=False, finish=_benchmark("epoch", "epoch-gpu", _epoch_note)),
    Step("parity", "one epoch CPU vs GPU, same batch order, float32 and float64",
         lambda c: c.probe("parity", "--data-dir", c.data_dir), (90, 60), finish=_probe_result("parity")),
    Step("pytest", "the tests that run on the GPU (GPU_TESTS)", _pytest_command, (180, 120), finish=_finish_pytest),
    Step("micro", "host cost per call of launches and small GEMMs",
         lambda c: c.probe("micro", *(["--quick"] if c.quick else [])), (60, 30), finish=_probe_result("micro")),
    Step("gemm", "GPU time of each GEMM of the step per split-K factor, beside cuBLAS",
         lambda c: c.probe("gemm", *(["--quick"] if c.quick else [])), (75, 40), finish=_probe_result("gemm")),
    Step("memcheck", "compute-sanitizer memcheck over the CUDA kernel tests", memcheck_command, (90, 45),
         tool="compute-sanitizer", finish=memcheck_finish),
    Step("racecheck", "compute-sanitizer racecheck over the CUDA kernel tests", racecheck_command, (90, 45),
         tool="compute-sanitizer", finish=racecheck_finish),
    Step("scaling", "throughput against batch size on the GPU", _scaling_command, (90, 40),
         finish=_benchmark("scaling", "scaling-gpu", lambda r: f"{sum(map(len, r['batch'].values()))} batch sizes")),
    Step("tta", "time to 98 % test accuracy on the GPU", _tta_command, (60, 40),
         finish=_benchmark("time_to_accuracy", "time-to-accuracy-gpu", _tta_note)),
    Step("ncu", "ncu kernel times and a CUPTI timeline of a few training steps",
         lambda c: c.probe("ncu", "--ncu", c.tools["ncu"], "--ncu-timeout", 45 if c.quick else 90), (120, 60), tool="ncu", finish=_probe_result("ncu")),
    Step("pytest-rest", "the rest of the test suite (in parallel with pytest-xdist)", _pytest_rest_command, (240, 0),
         finish=_finish_pytest, full_only=True),
]


def rerun_command(summary, argv):
    """The gpu_check command line that runs only the steps that did not fit this run's
    budget: skipped for lack of time, or killed at a limit the budget had cut short
    (with setup, environment and warm, which the others need), or None."""
    late = [r["name"] for r in summary["steps"]
            if (r["status"] == SKIPPED and r["reason"].startswith("out of time"))
            or (r["status"] == TIMEOUT and r.get("cut_by_budget"))]
    if not late:
        return None
    kept, skip = [], False
    for arg in argv:  # the same options, less --steps/--skip/--out and their values
        if arg in ("--steps", "--skip", "--out"):
            skip = True
        elif skip and not arg.startswith("--"):
            continue
        else:
            skip = False
            kept.append(arg)
    # a second call may get a fresh machine: its kernels compiled again before anything is timed
    steps = [s for s in ("setup", "environment", "warm") if s not in late] + late
    return " ".join(["python3 -m benchmarks.gpu_check", *kept, "--steps", *steps])


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------


def _slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def gpu_name():
    """The first GPU's name from nvidia-smi, or None (no nvidia-smi, no GPU, or it hangs)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        proc = subprocess.run([exe, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                              timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = proc.stdout.strip().splitlines()
    return lines[0].strip() if proc.returncode == 0 and lines else None


def _git_commit():
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return proc.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def main(argv=None):
    names = [s.name for s in STEPS]
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="steps: " + ", ".join(names))
    p.add_argument("--out", type=Path, default=None,
                   help="results folder (default: benchmarks/results/gpu-<device>-<date>-<time>)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder holding mnist/ (default: $FASTMLP_DATA_DIR, else .gpu-data)")
    p.add_argument("--quick", action="store_true", help="fewer epochs and sizes, no pytest-rest: under 4 minutes")
    p.add_argument("--bundle", type=Path, default=None, help="also pack --out into this .tar.gz (after every step)")
    p.add_argument("--steps", nargs="+", choices=names, default=None, help="run only these steps (in the usual order)")
    p.add_argument("--skip", nargs="+", choices=names, default=[], help="leave these steps out")
    p.add_argument("--budget", type=float, default=None,
                   help=f"seconds for the whole run; a step gets at most what is left (default {BUDGET[False]}, "
                        f"--quick {BUDGET[True]})")
    p.add_argument("--no-install", action="store_true",
                   help="if fastmlp is not importable, say how to fix it instead of running pip install -e .")
    p.add_argument("--list", action="store_true", help="list the steps and their time limits, and exit")
    args = p.parse_args(argv)
    if args.list:
        print(f"budget: full run {BUDGET[False]} s, --quick {BUDGET[True]} s; the steps in the order they run:")
        for s in STEPS:
            needs = ", ".join(filter(None, ["GPU" if s.gpu else "", s.tool or ""])) or "-"
            quick = "  -  " if s.full_only else f"{s.limit[1]:>3} s"
            print(f"{s.name:<12} {s.limit[0]:>4} s (quick {quick})  needs {needs:<26} {s.title}")
        return 0

    started = time.monotonic()
    name = gpu_name()
    out = args.out or RESULTS / f"gpu-{_slug(name or 'none')}-{datetime.datetime.now():%Y%m%d-%H%M}"
    out.mkdir(parents=True, exist_ok=True)
    data_dir = args.data_dir or Path(os.environ.get("FASTMLP_DATA_DIR") or ROOT / ".gpu-data")
    budget = args.budget if args.budget is not None else BUDGET[args.quick]
    ctx = Context(out=out.resolve(), data_dir=data_dir.resolve(), quick=args.quick, install=not args.no_install,
                  deadline=started + budget,
                  tools={t: shutil.which(t) for t in ("nvidia-smi", "compute-sanitizer", "ncu")})
    chosen = set(args.steps or names) - set(args.skip)
    steps = [s for s in STEPS if s.name in chosen]
    summary = {"gpu_check": 1, "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "finished": None,
               "host": os.uname().nodename, "gpu": name, "mode": "quick" if args.quick else "full",
               "command": " ".join([Path(sys.executable).name, "-m", "benchmarks.gpu_check", *(argv or sys.argv[1:])]),
               "git_commit": _git_commit(), "out": str(out), "data_dir": str(data_dir), "budget_s": budget,
               "tools": ctx.tools, "steps": []}
    print(f"[gpu_check] {len(steps)} steps, budget {budget:.0f} s, results in {out}", flush=True)
    if not any((ctx.data_dir / d).exists() for d in ("mnist", "train-images-idx3-ubyte.gz", "train.csv")):
        print(f"[gpu_check] no MNIST under {ctx.data_dir}: pass --data-dir, a folder holding mnist/ "
              f"(the data steps will fail)", flush=True)
    run_steps(steps, ctx, summary, args.bundle)
    summary["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    summary["seconds"] = round(time.monotonic() - started, 1)
    write_summary(out, summary, args.bundle)
    print()
    print(table(summary), end="")
    print(f"{summary['seconds']:.0f} s in all; wrote {out / 'summary.json'}" + (f" and {args.bundle}" if args.bundle else ""))
    left = rerun_command(summary, argv if argv is not None else sys.argv[1:])
    if left:
        print(f"Out of time for some steps; to run just those, in a second call: {left}")
    return 1 if any(r["status"] in (FAILED, TIMEOUT) for r in summary["steps"]) else 0


if __name__ == "__main__":
    sys.exit(main())
