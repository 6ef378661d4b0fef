"""benchmarks.gpu_check without a GPU: it runs, skips every GPU step with the reason,
still writes its summary and archive; its step runner survives hangs and crashes.

The child run hides any GPU (CUDA_VISIBLE_DEVICES=""), so this checks the
no-GPU path on every machine and, on a GPU machine, never starts gpu_check's
own pytest step from inside pytest. No timing is asserted anywhere.
"""

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import make_idx_dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks/ is not installed: it is imported from the checkout, as python -m does
from benchmarks import gpu_check, gpu_probes, peers  # noqa: E402
GPU_STEPS = [s.name for s in gpu_check.STEPS if s.gpu]


def python(*args, results, timeout=300):
    env = {**os.environ, "FASTMLP_BENCH_RESULTS": str(results), "MPLBACKEND": "Agg", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-m", *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One `gpu_check --quick` on a tiny MNIST look-alike: (stdout, out folder, archive)."""
    tmp = tmp_path_factory.mktemp("gpu_check")
    make_idx_dataset(tmp / "data" / "mnist", n_train=300, n_test=100)
    results = tmp / "results"
    out, bundle = results / "gpu-synthetic-test", tmp / "bundle" / "gpu-check.tar.gz"
    stdout = python("benchmarks.gpu_check", "--quick", "--data-dir", tmp / "data", "--out", out, "--bundle", bundle,
                    results=results)
    return stdout, out, bundle


def test_quick_run_without_a_gpu_skips_gpu_steps_with_reasons(quick_run):
    stdout, out, _ = quick_run
    summary = json.loads((out / "summary.json").read_text())
    steps = {s["name"]: s for s in summary["steps"]}
    assert list(steps) == [s.name for s in gpu_check.STEPS] and summary["finished"]
    for name in GPU_STEPS:
        assert steps[name]["status"] == "skipped", steps[name]
        assert steps[name]["reason"].startswith("no CUDA GPU: "), steps[name]
    # the CPU-capable steps ran
    assert steps["setup"]["status"] == steps["environment"]["status"] == steps["epoch"]["status"] == "ok"
    env = json.loads((out / "environment.json").read_text())
    assert env["gpu"] is None and env["gpu_reason"] and env["versions"]["numba"]
    assert env["numba_compiler"]["as_is"]["problem"] is None  # the dev extra's NVVM, found as it is
    epoch = json.loads((out / "epoch-gpu.json").read_text())
    assert {(r["key"], r["device"]) for r in epoch["results"]} >= {("fastmlp", "cpu")}
    for system in gpu_check.EPOCH_SYSTEMS:  # each GPU system is a skipped row with its reason
        assert epoch["skipped"][f"{system} (cuda)"]
    # the table comes last
    assert stdout.rstrip().splitlines()[-1].startswith(f"{summary['seconds']:.0f} s in all")
    assert "step" in stdout and all(name in stdout for name in GPU_STEPS)


def test_full_run_without_a_gpu_skips_gpu_steps_and_writes_its_summary(tmp_path):
    make_idx_dataset(tmp_path / "data" / "mnist", n_train=300, n_test=100)
    out = tmp_path / "results" / "gpu-full"
    stdout = python("benchmarks.gpu_check", "--data-dir", tmp_path / "data", "--out", out, results=tmp_path / "results")
    summary = json.loads((out / "summary.json").read_text())
    steps = {s["name"]: s for s in summary["steps"]}
    assert summary["mode"] == "full" and summary["budget_s"] == 420 and list(steps) == [s.name for s in gpu_check.STEPS]
    for name in GPU_STEPS:  # pytest-rest included: it is not left out of a full run, only skipped without a GPU
        assert steps[name]["status"] == "skipped" and steps[name]["reason"].startswith("no CUDA GPU: "), steps[name]
    assert steps["epoch"]["status"] == "ok" and (out / "summary.txt").exists()
    assert "Out of time" not in stdout


def test_bundle_holds_the_results_folder(quick_run):
    _, out, bundle = quick_run
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
        packed = json.loads(tar.extractfile(f"{out.name}/summary.json").read())
    assert f"{out.name}/epoch-gpu.json" in names and f"{out.name}/environment.log" in names
    assert [s["name"] for s in packed["steps"]] == [s.name for s in gpu_check.STEPS]


def _steps(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    hang = ("import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
            f"open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(120)")

    def finish(ctx, rec):
        rec["note"] = (ctx.out / rec["log"]).read_text().splitlines()[-1]

    def broken(ctx):
        raise KeyError("ncu")

    return pidfile, [
        gpu_check.Step("hang", "sleeps past its limit", lambda c: [sys.executable, "-c", hang], (2, 2), gpu=False),
        gpu_check.Step("crash", "raises", lambda c: [sys.executable, "-c", "raise RuntimeError('boom')"], (30, 30),
                       gpu=False),
        gpu_check.Step("unbuildable", "its command cannot be built", broken, (30, 30), gpu=False),
        gpu_check.Step("needs-gpu", "GPU only", lambda c: [sys.executable, "-c", "pass"], (30, 30)),
        gpu_check.Step("fine", "works", lambda c: [sys.executable, "-c", "print('all good')"], (30, 30), gpu=False,
                       finish=finish),
    ]


def _alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_step_runner_records_hangs_and_crashes_and_runs_the_next_step(tmp_path):
    pidfile, steps = _steps(tmp_path)
    ctx = gpu_check.Context(out=tmp_path, data_dir=tmp_path, gpu=False, gpu_reason="none here")
    summary = {"host": "test", "gpu": None, "mode": "quick", "out": str(tmp_path), "steps": []}
    said = []
    gpu_check.run_steps(steps, ctx, summary, bundle=tmp_path / "b.tar.gz", log=lambda *a, **k: said.append(a[0]))
    rec = {s["name"]: s for s in json.loads((tmp_path / "summary.json").read_text())["steps"]}
    assert rec["hang"]["status"] == "timeout" and "2 s limit" in rec["hang"]["reason"]
    assert rec["crash"]["status"] == "failed" and "RuntimeError: boom" in rec["crash"]["reason"]
    assert rec["unbuildable"]["status"] == "failed" and "KeyError" in rec["unbuildable"]["reason"]
    assert rec["needs-gpu"]["status"] == "skipped" and rec["needs-gpu"]["reason"] == "no CUDA GPU: none here"
    assert rec["fine"]["status"] == "ok" and rec["fine"]["note"] == "all good"
    assert len(said) == 2 * len(steps)  # a line before and after every step
    if Path("/proc").is_dir():  # the whole process group went, the hung step's own child too
        pid = int(pidfile.read_text())
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid)
    with tarfile.open(tmp_path / "b.tar.gz") as tar:
        assert f"{tmp_path.name}/summary.json" in tar.getnames()


def test_a_step_past_the_budget_is_skipped_saying_so(tmp_path):
    ctx = gpu_check.Context(out=tmp_path, data_dir=tmp_path, gpu=True, deadline=time.monotonic() + 3)
    step = gpu_check.Step("late", "too late", lambda c: [sys.executable, "-c", "pass"], (30, 30))
    rec = gpu_check.run_step(step, ctx)
    assert rec["status"] == "skipped" and "budget" in rec["reason"]


def _toolkit(root):
    (root / "nvvm" / "lib64").mkdir(parents=True)
    (root / "nvvm" / "lib64" / "libnvvm.so.4").write_bytes(b"")
    return str(root)


def test_toolkit_roots_are_the_folders_that_hold_nvvm(tmp_path):
    with_nvvm, bare = _toolkit(tmp_path / "cuda-13.0"), tmp_path / "cuda-12.0"
    bare.mkdir()
    assert gpu_probes.toolkit_roots([None, str(bare), with_nvvm, with_nvvm, str(tmp_path / "none")]) == [with_nvvm]


def test_toolkits_no_newer_than_the_driver_are_tried_first(tmp_path):
    folders = [str(tmp_path / f"cuda-{v}") for v in ("13.0", "12.2", "12.6", "12.4", "12.10")] + [str(tmp_path / "cuda-x")]
    names = [Path(f).name for f in gpu_probes.order_toolkits(folders, (12, 4))]
    assert names == ["cuda-12.4", "cuda-12.2", "cuda-12.6", "cuda-12.10", "cuda-13.0", "cuda-x"]
    assert [Path(f).name for f in gpu_probes.order_toolkits(folders, None)][:2] == ["cuda-13.0", "cuda-12.10"]


def test_the_environment_step_records_the_toolchain_versions():
    found = gpu_probes._compile_check(dict(os.environ))
    assert found["problem"] is None and "launch" not in found  # no GPU here: compiled, not launched
    assert set(found["versions"]) == {"driver_cuda", "nvvm", "nvvm_ptx_isa", "nvjitlink"} and found["versions"]["nvvm"]


def test_a_toolkit_that_makes_numba_compile_goes_to_the_later_steps(monkeypatch, tmp_path):
    # Numba finds no NVVM as the machine is set up, but does with CUDA_HOME at the second toolkit
    broken, good = _toolkit(tmp_path / "a"), _toolkit(tmp_path / "b")
    asked = []

    def check(env):
        asked.append(env.get("CUDA_HOME"))
        return {"problem": None if env.get("CUDA_HOME") == good else "NvvmSupportError: libNVVM cannot be found"}

    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.setattr(gpu_probes, "_compile_check", check)
    info = gpu_probes.numba_compiler([broken, good, "/never/tried"])
    assert asked == [None, broken, good] and info["cuda_home"] == good
    assert info["tried"][broken]["problem"] and info["as_is"]["problem"].startswith("NvvmSupportError")

    (tmp_path / "environment.json").write_text(json.dumps({"status": "ok", "gpu": "H100", "numba_compiler": info}))
    ctx = gpu_check.Context(out=tmp_path, data_dir=tmp_path)
    rec = {"status": "ok", "result": None}
    gpu_check._finish_environment(ctx, rec)
    assert ctx.env()["CUDA_HOME"] == good and rec["env_added"] == {"CUDA_HOME": good}


def test_no_toolkit_fix_leaves_the_environment_alone(monkeypatch, tmp_path):
    monkeypatch.setattr(gpu_probes, "_compile_check", lambda env: {"problem": "NvvmSupportError: not found"})
    info = gpu_probes.numba_compiler([])
    assert "cuda_home" not in info and info["tried"] == {}
    (tmp_path / "environment.json").write_text(json.dumps({"status": "ok", "gpu": None, "numba_compiler": info}))
    ctx = gpu_check.Context(out=tmp_path, data_dir=tmp_path)
    gpu_check._finish_environment(ctx, {"status": "ok", "result": None})
    assert ctx.extra_env == {} and ctx.env().get("CUDA_HOME") == os.environ.get("CUDA_HOME")


def test_setup_names_the_fix_when_fastmlp_does_not_import():
    # without site-packages (-S) fastmlp's dependencies cannot import
    result = gpu_probes.setup(install=False, python=(sys.executable, "-S"))
    assert result["status"] == "failed" and gpu_probes.FIX in result["reason"]
    assert gpu_probes.setup(install=False)["status"] == "ok"


def test_import_hook_makes_the_checkout_importable_without_pip(tmp_path):
    """setup's fallback when pip install -e fails: with site-packages on the path but
    no .pth processed (-S), fastmlp.kernels imports only through the hook."""
    import sysconfig

    gpu_probes.write_import_hook(tmp_path)
    path = f"import sys; sys.path.append({sysconfig.get_paths()['purelib']!r}); sys.path.insert(0, {str(tmp_path)!r}); "
    check = "import fastmlp.kernels; print(fastmlp.kernels.__file__)"
    run = [sys.executable, "-S", "-c"]
    without = subprocess.run([*run, path + check], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert without.returncode != 0 and "No module named 'fastmlp'" in without.stderr
    hooked = subprocess.run([*run, path + f"import {gpu_probes.HOOK_MODULE}; " + check], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert hooked.returncode == 0, hooked.stderr
    assert Path(hooked.stdout.strip()) == ROOT / "kernels" / "__init__.py"
    assert (tmp_path / f"{gpu_probes.HOOK_MODULE}.pth").read_text() == f"import {gpu_probes.HOOK_MODULE}\n"


def test_junit_counts_flag_skipped_gpu_tests(tmp_path):
    xml = tmp_path / "pytest.xml"
    xml.write_text(
        '<testsuites><testsuite tests="3" failures="0" errors="0" skipped="1">'
        '<testcase classname="tests.test_model" name="test_a"/>'
        '<testcase classname="tests.test_gpu" name="test_one_epoch_matches_the_cpu">'
        '<skipped message="no usable CUDA GPU"/></testcase>'
        '<testcase classname="tests.test_gpu_check" name="test_c"><skipped message="not a GPU test"/></testcase>'
        '<testcase classname="tests.test_backend" name="test_b"/></testsuite></testsuites>')
    counts, skipped = gpu_check.junit_counts(xml)
    assert counts == {"tests": 3, "failures": 0, "errors": 0, "skipped": 1}  # the suite's own totals
    assert skipped == ["tests.test_gpu::test_one_epoch_matches_the_cpu: no usable CUDA GPU"]
    rec = {"status": "ok", "reason": "", "note": ""}
    gpu_check._finish_pytest(gpu_check.Context(out=tmp_path, data_dir=tmp_path), rec)
    assert rec["status"] == "failed" and "1 GPU tests skipped" in rec["reason"]


def test_the_rest_of_the_suite_leaves_out_what_the_gpu_step_ran(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "_has_xdist", lambda python: True)
    ctx = gpu_check.Context(out=tmp_path, data_dir=tmp_path)
    first, rest = gpu_check._pytest_command(ctx), gpu_check._pytest_rest_command(ctx)
    assert "tests/test_kernels_linear_cuda.py" in first and "tests/test_step_cuda.py" in first
    assert "--ignore=tests/test_kernels_linear_cuda.py" in rest and "--ignore=tests/test_gpu.py" in rest
    assert "--deselect=tests/test_estimator.py::test_cuda_fit_predict_and_pickle" in rest
    assert f"--deselect={gpu_check.SIMULATOR_TEST}" in rest and "-n" in rest
    assert f"--junitxml={tmp_path / 'pytest-rest.xml'}" in rest
    for test in gpu_check.GPU_TESTS + [gpu_check.SIMULATOR_TEST]:  # no stale names
        assert (ROOT / test.split("::")[0]).is_file(), test
        if "::" in test:
            assert f"def {test.split('::')[1]}(" in (ROOT / test.split("::")[0]).read_text(), test


def test_full_only_steps_are_left_out_of_a_quick_run(tmp_path):
    ctx = gpu_check.Context(out=tmp_path, data_dir=tmp_path, quick=True, gpu=True)
    step = gpu_check.Step("long", "long", lambda c: [sys.executable, "-c", "pass"], (30, 0), full_only=True)
    rec = gpu_check.run_step(step, ctx)
    assert rec["status"] == "skipped" and "full run only" in rec["reason"]


def test_the_steps_left_for_lack_of_time_get_their_own_command():
    summary = {"steps": [{"name": "setup", "status": "ok", "reason": ""},
                         {"name": "epoch", "status": "timeout", "reason": "killed after its 180 s limit"},
                         {"name": "scaling", "status": "skipped", "reason": "out of time: the run's budget leaves 3 s"},
                         {"name": "ncu", "status": "skipped", "reason": "ncu is not on PATH"},
                         {"name": "pytest-rest", "status": "skipped", "reason": "out of time: the run's budget leaves 0 s"}]}
    argv = ["--data-dir", ".gpu-data", "--out", "here", "--steps", "setup", "epoch", "scaling", "--bundle", "b.tar.gz"]
    assert gpu_check.rerun_command(summary, argv) == ("python3 -m benchmarks.gpu_check --data-dir .gpu-data --bundle "
                                                      "b.tar.gz --steps setup environment warm scaling pytest-rest")
    assert gpu_check.rerun_command({"steps": summary["steps"][:2]}, argv) is None
    # a step killed at a limit the budget had cut short did not fit either; one killed at its own limit did
    summary["steps"][1]["cut_by_budget"] = True
    assert "--steps setup environment warm epoch scaling pytest-rest" in gpu_check.rerun_command(summary, argv)


def test_a_step_whose_limit_the_budget_cuts_is_marked(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "RESERVE_S", 1)  # the step gets the 2 s that are left, not 5 s
    ctx = gpu_check.Context(out=tmp_path, data_dir=tmp_path, gpu=True, deadline=time.monotonic() + 4)
    step = gpu_check.Step("long", "long", lambda c: [sys.executable, "-c", "import time; time.sleep(60)"], (30, 30))
    rec = gpu_check.run_step(step, ctx)
    assert rec["status"] == "timeout" and rec["cut_by_budget"] and rec["limit_s"] < 30
    assert "--steps setup environment warm long" in gpu_check.rerun_command({"steps": [rec]}, [])


NCU_CSV = '''==PROF== Connected to process 123
"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"
"0","123","python3","127.0.0.1","bias_act_forward","1","7","(128, 1, 1)","(128, 1, 1)","0","9.0","Command line profiler metrics","gpu__time_duration.sum","nsecond","2,112"
"0","123","python3","127.0.0.1","bias_act_forward","1","7","(128, 1, 1)","(128, 1, 1)","0","9.0","Command line profiler metrics","launch__registers_per_thread","register/thread","16"
"1","123","python3","127.0.0.1","sm90_xmma_gemm","1","7","(256, 1, 1)","(4, 2, 1)","0","9.0","Command line profiler metrics","gpu__time_duration.sum","usecond","3.5"
"2","123","python3","127.0.0.1","bias_act_forward","1","7","(128, 1, 1)","(64, 1, 1)","0","9.0","Command line profiler metrics","gpu__time_duration.sum","nsecond","1888"
'''


def test_ncu_csv_parse_and_summary():
    launches = gpu_probes.parse_ncu_csv(NCU_CSV)
    assert [(k["id"], k["name"]) for k in launches] == [(0, "bias_act_forward"), (1, "sm90_xmma_gemm"),
                                                        (2, "bias_act_forward")]
    assert launches[0]["time_us"] == pytest.approx(2.112) and launches[0]["registers"] == 16
    assert launches[1]["time_us"] == pytest.approx(3.5)
    text = gpu_probes.ncu_summary(launches, {"error": "no torch"}, "ncu ...", 1)
    assert "3 kernel launches" in text and "sum of kernel times: 7.50 us" in text and "not available: no torch" in text
    assert gpu_probes.parse_ncu_csv("==ERROR== no kernels were profiled") == []


def test_gaps_between_gpu_events_from_a_trace():
    events = [{"ph": "X", "cat": "kernel", "name": "gemm", "ts": 100.0, "dur": 5.0},
              {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 90.0, "dur": 30.0},
              {"ph": "X", "cat": "gpu_memcpy", "name": "Memcpy DtoH", "ts": 120.0, "dur": 2.0},
              {"ph": "X", "cat": "kernel", "name": "relu", "ts": 107.0, "dur": 3.0}]
    t = gpu_probes.gpu_gaps(events)
    assert [e["name"] for e in t["events"]] == ["gemm", "relu", "Memcpy DtoH"]
    assert [e["gap_before_us"] for e in t["events"]] == [0.0, 2.0, 10.0]
    assert (t["span_us"], t["busy_us"], t["gap_sum_us"], t["gap_max_us"]) == (22.0, 10.0, 12.0, 10.0)
    text = gpu_probes.ncu_summary([], {**t, "epoch_window_us": 30.0}, "ncu ...", 1)
    assert "busy 10.0 us (45%)" in text and "gaps: median 6.00 us" in text
    assert gpu_probes.gpu_gaps([]) == {"events": []}


def test_parity_tolerances():
    rng = np.random.default_rng(0)
    cpu = rng.standard_normal(1000)
    near = cpu * (1 + 1e-13)
    assert gpu_probes.compare_params(cpu, near, "float64")["ok"]
    off = cpu.copy()
    off[3] += 1e-6
    r = gpu_probes.compare_params(cpu, off, "float64")
    assert not r["ok"] and r["outside_tolerance"] == 1 and r["worst_index"] == 3
    assert gpu_probes.compare_params(cpu.astype(np.float32), off.astype(np.float32), "float32")["ok"]


def test_graph_modes_are_unavailable_where_they_cannot_run(monkeypatch, tiny_dir):
    import fastmlp

    ds = fastmlp.load_mnist(data_dir=tiny_dir)
    with pytest.raises(peers.Unavailable, match="for a GPU"):
        peers.make("fastmlp-graph", "cpu", ds, (784, 8, 10), 32, 0.05, 0.9, 0)
    with pytest.raises(peers.Unavailable, match="CUDA only"):
        peers.make("torch-compile", "cpu", ds, (784, 8, 10), 32, 0.05, 0.9, 0)

    def old_trainer(model, **kwargs):  # a Trainer from before the graph modes
        raise TypeError("Trainer.__init__() got an unexpected keyword argument 'cuda_graph'")

    monkeypatch.setattr(fastmlp, "Trainer", old_trainer)
    with pytest.raises(peers.Unavailable, match="does not take"):
        peers.make_trainer(None, "graph")
    with pytest.raises(TypeError):  # any other TypeError is a bug, not a missing mode
        peers.make_trainer(None, None)


def test_report_renders_gpu_results_naming_the_device(quick_run, tmp_path):
    """A clearly synthetic GPU run: the real no-GPU output plus hand-made micro,
    capture and parity files, in a temporary folder (never benchmarks/results)."""
    out = shutil.copytree(quick_run[1], tmp_path / "results" / quick_run[1].name)
    summary = json.loads((out / "summary.json").read_text())
    summary["gpu"] = "Synthetic GPU (test data)"
    (out / "summary.json").write_text(json.dumps(summary))
    timing = gpu_probes.per_call_us(lambda: None, lambda: None, calls=10, repeats=3)
    (out / "micro.json").write_text(json.dumps({"status": "ok", "results": {"fake launch": timing,
                                                                            "torch.mm": {"error": "no torch"}}}))
    (out / "capture.json").write_text(json.dumps({"replays": 50, "results": {"pre-wrapped": {"ok": True, "detail": "x"}}}))
    cpu = np.linspace(-1, 1, 50)
    row = {"status": "ok", "params": gpu_probes.compare_params(cpu, cpu, "float64"), "max_rel_step_loss": 0.0,
           "graph_info": {"mode": "graph", "scope": "step", "reason": "captured"}}
    (out / "parity.json").write_text(json.dumps({"rows": 300, "rel_floor": 1e-6, "results": {
        "float64": {"default": row, "graph-epoch": {"status": "unsupported", "reason": "no such option yet"}}}}))
    from benchmarks import gpu_gemm

    cases = gpu_gemm.gemm_cases((784, 128, 64, 10), 128)[:2]
    rows = gpu_gemm.gemm_table(cases, lambda case, split: 10.0 + split, lambda case: 4.0)
    rows[1]["errors"]["cublas"] = "no torch"
    del rows[1]["cublas_us"], rows[1]["best_over_cublas"]
    (out / "gemm.json").write_text(json.dumps({"sizes": [784, 128, 64, 10], "batch": 128, "dtype": "float32",
                                               "rows": rows, **gpu_gemm.summarize(rows)}))
    text = python("benchmarks.report", "--label", "none", results=out.parent)
    assert "| linear_forward 1 | 128 × 128, 784 | 1: 11.0, 2: 12.0, 4: 14.0, 7: 17.0, 13: 23.0 | 1 (11.0) | " \
           "7 (1.55× best) | 4.0 | 2.75 |" in text
    assert "| linear_backward 1 | 785 × 128, 128 |" in text and "| failed | - |" in text
    assert "GPU check on **Synthetic GPU (test data)**" in text and f"benchmarks/results/{out.name}/" in text
    assert "| pytest | skipped |" in text and "| fake launch |" in text and "| torch.mm | failed: no torch |" in text
    assert "| float64 | default |" in text and "graph step" in text and "unsupported: no such option yet" in text
    assert "| fastmlp | cpu |" in text  # the epoch table of the same folder
    assert "GPU check" not in python("benchmarks.report", "--label", "none", results=out.parent / "empty")
