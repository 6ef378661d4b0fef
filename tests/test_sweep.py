"""``fastmlp sweep``: spec parsing, and sweeps on a real Dask cluster with tiny data.

The cluster is conftest's ``dask_cluster`` (2 worker processes, 1 BLAS thread each),
reached with ``--scheduler``; one test starts the embedded default instead.
"""

import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_idx_dataset
from test_command import assert_every_default_once

import fastmlp
from fastmlp import cli, sweep

pytest.importorskip("distributed", reason='fastmlp sweep needs Dask: pip install "fastmlp[sweep]"')
from threadpoolctl import threadpool_limits  # noqa: E402 (scikit-learn's dependency, in [dev])

TINY = ["--epochs", "2", "--batch-size", "32", "--val-split", "0.2"]


def _sweep(*args, capsys=None):
    """Run ``fastmlp sweep ARGS`` in this process: (exit status, stdout)."""
    code = cli.main(["sweep", *map(str, args)])
    return code, capsys.readouterr().out if capsys else ""


def _rows(out):
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def _params(path):
    return fastmlp.load(path).params


def _train_like_the_trial(trial_dir, out):
    """The trial's own ``fastmlp train`` command (trial.json), run here with the
    workers' one BLAS thread: OpenBLAS rounds differently with other thread counts."""
    command = json.loads((trial_dir / "trial.json").read_text())["train_command"]
    with threadpool_limits(1):
        assert cli.main([*shlex.split(command)[1:], "--out", str(out), "--quiet", "--no-plots"]) == 0
    return out


# ---------------------------------------------------------------- the spec


def _axis(flag, *tokens, sampling=False):
    action = sweep._train_actions()[flag]
    return sweep.parse_axis(action, list(tokens), sampling)


def test_lists_and_ranges():
    assert _axis("lr", "0.01,0.05", "0.1").values == [0.01, 0.05, 0.1]
    assert _axis("lr", "1e-3:1e-1:log3").values == [0.001, 0.01, 0.1]
    assert _axis("momentum", "0.5:0.9:5").values == [0.5, 0.6, 0.7, 0.8, 0.9]
    assert _axis("batch_size", "32:512:log5").values == [32, 64, 128, 256, 512]
    assert _axis("seed", "0:2:3,2").values == [0, 1, 2]  # once each
    assert _axis("sizes", "784,128,10", "784,256,64,10").values == [(784, 128, 10), (784, 256, 64, 10)]
    assert _axis("optimizer", "momentum,adam").values == ["momentum", "adam"]
    continuous = _axis("lr", "1e-4:1e-1:log", sampling=True)
    assert (continuous.low, continuous.high, continuous.log) == (1e-4, 1e-1, True)


def test_grid_and_random_samples():
    axes = [_axis("lr", "0.01,0.1"), _axis("optimizer", "sgd,momentum,adam"), _axis("seed", "0,1")]
    grid = sweep.configurations(axes)
    assert len(grid) == 12 and len({json.dumps(c, sort_keys=True) for c in grid}) == 12
    sample = sweep.configurations(axes, n_random=5, seed=7)
    assert len(sample) == 5 and all(c in grid for c in sample)
    assert len({json.dumps(c, sort_keys=True) for c in sample}) == 5  # no repeats
    assert sample == sweep.configurations(axes, n_random=5, seed=7) != sweep.configurations(axes, n_random=5, seed=8)
    assert sweep.configurations(axes, n_random=50) == grid  # more than the grid: the grid
    lr = _axis("lr", "1e-4:1e-1:log", sampling=True)
    drawn = [c["lr"] for c in sweep.configurations([lr, _axis("seed", "0,1")], n_random=40)]
    assert len(set(drawn)) == 40 and 1e-4 <= min(drawn) and max(drawn) <= 1e-1
    assert min(drawn) < 1e-3 and max(drawn) > 1e-2  # log-uniform: spread over the decades


@pytest.mark.parametrize("args, needle", [
    (["--lr", ""], "--lr: empty list"),
    (["--optimizer", ","], "--optimizer: empty list"),
    (["--lr"], "expected at least one argument"),
    (["--learning-rate", "0.1"], "unrecognized arguments: --learning-rate"),
    (["--resume", "runs/x"], "unrecognized arguments: --resume"),
    (["--lr", "1e-3:abc:5"], "--lr: cannot read the range '1e-3:abc:5'"),
    (["--lr", "1e-3:1e-1:lg5"], "--lr: cannot read the range"),
    (["--lr", "1e-3:1e-1:5:6"], "--lr: cannot read the range"),
    (["--lr", "0.01:0.1"], "--lr: the range '0.01:0.1' has no count"),
    (["--lr", "0:0.1:log3"], "needs ends > 0"),
    (["--lr", "0.1,-1"], "--lr: must be > 0, got -1"),
    (["--batch-size", "32:64:0"], "asks for 0 values"),
    (["--seed", "1.5"], "--seed: expected an integer >= 0, got '1.5'"),
    (["--optimizer", "adamw"], "--optimizer: 'adamw' is not one of sgd, momentum, nesterov, adam"),
    (["--sizes", "784"], "--sizes: need at least two positive sizes"),
    (["--val-split", "0"], "--val-split must be > 0"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"], "--workers sizes the embedded cluster"),
])
def test_bad_specs_are_one_line_errors_with_exit_2(args, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["sweep", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2
    assert len(err) == 1 and err[0].startswith("fastmlp sweep: error:") and needle in err[0], err


def test_sweep_help_shows_every_default_once():
    assert_every_default_once(sweep.build_parser())


def test_without_dask_it_says_what_to_install(tiny_dir):
    code = ("import sys; sys.modules['distributed'] = sys.modules['dask'] = None; from fastmlp.cli import main; "
            f"sys.exit(main(['sweep', '--data-dir', {str(tiny_dir)!r}, '--lr', '0.1,0.2']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(err) == 1, proc.stderr
    assert err[0].startswith("fastmlp: error:") and 'pip install "fastmlp[sweep]"' in err[0]


def test_cuda_without_a_gpu_is_a_one_line_error(tiny_dir, tmp_path, capsys):
    try:
        fastmlp.get_backend("cuda")
    except fastmlp.DeviceError:
        pass
    else:
        pytest.skip("this machine has a usable GPU")
    assert cli.main(["sweep", "--data-dir", str(tiny_dir), *TINY, "--device", "cuda", "--out", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cuda" in err[0] and "pip install" in err[0]


def _worker_state():
    from threadpoolctl import threadpool_info

    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"], signal.getsignal(signal.SIGINT)


def test_the_embedded_cluster_shares_out_the_cores():
    from fastmlp.cluster import cores, open_client

    with open_client(workers=1) as (client, where, _):
        (blas, sigint), = client.run(_worker_state).values()
    assert blas == [cores()] and f"{cores()} BLAS thread" in where  # the one worker gets every core
    assert sigint == signal.SIG_IGN  # Ctrl-C is the sweep's to handle
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ---------------------------------------------------------------- sweeps on a cluster


def test_four_trials_equal_four_train_runs_one_after_another(dask_cluster, tiny_dir, tmp_path, capsys):
    out = tmp_path / "sweep"
    code, text = _sweep("--data-dir", tiny_dir, *TINY, "--sizes", "784,16,10", "784,24,10", "--lr", "0.05,0.1",
                        "--seed", 3, "--scheduler", dask_cluster.scheduler_address, "--out", out, capsys=capsys)
    assert code == 0, text
    rows = _rows(out)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    for row in rows:
        trial = out / "trials" / row["trial"]
        assert {"checkpoint.npz", "model.npz", "metrics.json", "trial.json", "train.log"} <= set(os.listdir(trial))
        reference = _train_like_the_trial(trial, tmp_path / f"train-{row['trial']}")
        assert np.array_equal(_params(trial / "model.npz"), _params(reference / "model.npz"))  # bit-identical
        metrics = json.loads((reference / "metrics.json").read_text())
        assert float(row["val_acc"]) == metrics["epochs"][-1]["val_acc"]
    # the end: a sorted table, the plot, the best model, the test accuracy of the best only
    best = json.loads((out / "best.json").read_text())
    assert best["val_acc"] == max(float(r["val_acc"]) for r in rows)
    assert np.array_equal(_params(out / "best-model.npz"), _params(out / "trials" / best["trial"] / "model.npz"))
    assert f"test accuracy {100 * best['test_acc']:.2f}% (the test set was evaluated for this trial only)" in text
    table = [line.split() for line in text[text.index("rank  val acc"):].splitlines()[1:5]]
    assert {line[-1] for line in table} == {r["trial"] for r in rows}
    shown = [float(line[1].rstrip("%")) for line in table]
    assert shown == sorted(shown, reverse=True) and table[0][-1] == best["trial"]
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    splits = list((out / "data").rglob("*-ubyte"))
    assert len(splits) == 4 and all(f.stat().st_mode & 0o444 == 0o444 for f in splits)  # readable by any worker


def test_a_sweep_over_hidden_and_preset_runs_each_trial_as_its_train_command(dask_cluster, tiny_dir, tmp_path,
                                                                             capsys):
    out = tmp_path / "sweep"
    code, text = _sweep("--data-dir", tiny_dir, "--epochs", 1, "--batch-size", 32, "--val-split", "0.2",
                        "--hidden", "16", "8,8", "--preset", "default,fast", "--scheduler", dask_cluster.scheduler_address,
                        "--out", out, capsys=capsys)
    assert code == 0, text
    rows = _rows(out)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    assert {(r["preset"], r["sizes"]) for r in rows} == {(p, s) for p in ("default", "fast")
                                                        for s in ("784,16,10", "784,8,8,10")}
    fast = fastmlp.presets.PRESETS["fast"]
    for row in rows:  # what a trial was not given comes from its preset
        assert float(row["lr"]) == fastmlp.presets.PRESETS[row["preset"]]["lr"]
        assert row["epochs"] == "1" and row["batch_size"] == "32"
    trial = next(r for r in rows if r["preset"] == "fast")["trial"]
    assert float(next(r for r in rows if r["trial"] == trial)["warmup"]) == fast["warmup"]
    reference = _train_like_the_trial(out / "trials" / trial, tmp_path / "again")
    assert np.array_equal(_params(out / "trials" / trial / "model.npz"), _params(reference / "model.npz"))


@pytest.fixture(scope="module")
def slow_data(tmp_path_factory):
    # 10000 rows, 80 % of them in batches of 2: 4000 steps, about a second an epoch in a
    # worker here, so a kill right after the first checkpoint lands well inside epoch 2
    return make_idx_dataset(tmp_path_factory.mktemp("slow") / "d", n_train=10000, n_test=50)


def _kill_a_worker_mid_trial(client, out, marker):
    """On every worker of ``client``'s cluster, a thread that watches the trial the worker
    runs; the first to see that trial's first checkpoint in ``out`` claims ``marker``
    (writing the trial's id into it) and SIGKILLs its own worker process. Returns the
    file that stops the threads (they also stop once the marker is claimed)."""
    stop = marker.with_name(marker.name + ".stop")

    def arm(dask_worker):
        import os
        import signal
        import threading
        from pathlib import Path

        def watch():
            while not (os.path.exists(marker) or os.path.exists(stop)):
                for ts in list(dask_worker.state.executing):
                    key = str(ts.key)
                    if not key.startswith("fastmlp-trial-"):
                        continue
                    trial = key.split("-")[2]
                    if (Path(out) / "trials" / trial / "checkpoint.npz").exists():
                        try:
                            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
                        except FileExistsError:
                            return
                        os.write(fd, trial.encode())
                        os.close(fd)
                        os.kill(os.getpid(), signal.SIGKILL)
                threading.Event().wait(0.001)

        threading.Thread(target=watch, daemon=True).start()

    client.run(arm)
    return stop


def test_a_killed_worker_does_not_lose_the_sweep(dask_cluster, slow_data, tmp_path, capsys):
    from distributed import Client

    marker = tmp_path / "killed"
    out = tmp_path / "sweep"
    with Client(dask_cluster) as client:
        stop = _kill_a_worker_mid_trial(client, out, marker)
    try:
        code, text = _sweep("--data-dir", slow_data, "--sizes", "784,16,10", "--epochs", 2, "--batch-size", 2,
                            "--val-split", "0.2", "--lr", "0.01,0.02,0.03",
                            "--scheduler", dask_cluster.scheduler_address, "--out", out, capsys=capsys)
    finally:
        stop.touch()
    assert code == 0, text
    rows = _rows(out)
    assert len(rows) == 3 and {r["status"] for r in rows} == {"ok"}, rows
    killed = out / "trials" / marker.read_text()
    log = (killed / "train.log").read_text()
    assert log.count("== ") == 2 and f"--resume {killed}" in log and "resuming" in log, log
    reference = _train_like_the_trial(killed, tmp_path / "uninterrupted")
    assert np.array_equal(_params(killed / "model.npz"), _params(reference / "model.npz"))


def test_a_rerun_skips_finished_trials(dask_cluster, tiny_dir, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["--data-dir", tiny_dir, *TINY, "--sizes", "784,16,10", "--out", out, "--scheduler", dask_cluster.scheduler_address]
    code, text = _sweep(*args, "--lr", "0.05,1e9", capsys=capsys)  # lr 1e9 diverges: a failed trial
    assert code == 0 and "0 finished before, 2 to run" in text
    rows = {r["lr"]: r for r in _rows(out)}
    assert rows["0.05"]["status"] == "ok" and rows["1000000000.0"]["status"] == "failed"
    assert "loss became nan" in rows["1000000000.0"]["error"] and "FAILED" in text
    done = out / "trials" / rows["0.05"]["trial"] / "model.npz"
    stamp = done.stat().st_mtime_ns

    scheduler_file = tmp_path / "scheduler.json"  # what 'dask scheduler --scheduler-file' writes, in brief
    scheduler_file.write_text(json.dumps({"address": dask_cluster.scheduler_address}))
    code, text = _sweep(*args[:-2], "--scheduler-file", scheduler_file, "--lr", "0.05,1e9,0.1", capsys=capsys)
    assert code == 0 and "1 finished before, 2 to run" in text  # the failed trial runs again
    assert done.stat().st_mtime_ns == stamp
    assert len(_rows(out)) == 4 and sum(r["status"] == "ok" for r in _rows(out)) == 2

    # all finished: no cluster is needed (this address has none)
    code, text = _sweep(*args[:-2], "--scheduler", "tcp://127.0.0.1:9", "--lr", "0.05,0.1", capsys=capsys)
    assert code == 0 and "2 finished before, 0 to run" in text and "best: trial" in text


def test_ctrl_c_stops_cleanly_and_the_printed_command_continues(slow_data, tmp_path, capsys):
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "fastmlp", "sweep", "--data-dir", str(slow_data), "--sizes", "784,16,10",
           "--epochs", "1", "--batch-size", "2", "--val-split", "0.2", "--lr", "0.01:0.06:6", "--workers", "2",
           "--out", str(out)]
    # a session of its own, signalled as a whole: what Ctrl-C in a terminal does
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "MPLBACKEND": "Agg"})
    deadline = time.monotonic() + 120
    while not (out / "results.csv").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr
    line = next(line for line in stdout.splitlines() if line.startswith("interrupted:"))
    again = line.split("continue with: ", 1)[1]
    assert again == shlex.join(["fastmlp", "sweep", *cmd[4:]])
    done = int(line.split()[1])  # "interrupted: N of 6 trials finished": with a row, or finishing as it stopped
    assert 1 <= len(_rows(out)) <= done < 6, line
    assert done == sum((out / "trials" / t / "metrics.json").exists() for t in os.listdir(out / "trials"))

    code, text = _sweep(*shlex.split(again)[2:], capsys=capsys)  # the printed command, as it is
    assert code == 0 and f"{done} finished before, {6 - done} to run" in text
    assert len(_rows(out)) == 6 and {r["status"] for r in _rows(out)} == {"ok"}


# ---------------------------------------------------------------- Optuna: search, pruning, reruns, the lock

SEARCH = ["--sizes", "784,8,10", "--epochs", 3, "--batch-size", 32, "--val-split", "0.2", "--warmup", 0,
          "--schedule", "constant", "--lr", "1e-5:1:log", "--search", "tpe", "--prune", "median", "--random-seed", 1]


def _no_cluster_and_no_data(monkeypatch):
    """Make starting a cluster or loading the data set fail: a re-run with nothing to do needs neither."""
    import fastmlp.cluster
    import fastmlp.data

    def refuse(*args, **kwargs):
        raise AssertionError("a re-run with nothing left to train started a cluster or loaded the data")

    monkeypatch.setattr(fastmlp.cluster, "open_client", refuse)
    monkeypatch.setattr(fastmlp.data, "load_dataset", refuse)


def test_tpe_with_median_pruning_end_to_end_on_the_embedded_cluster(tiny_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "sweep"
    # one worker: the trials run one after another, so TPE's suggestions (seeded) are the same every time
    code, text = _sweep("--data-dir", tiny_dir, *SEARCH, "--trials", 10, "--workers", 1, "--out", out, capsys=capsys)
    assert code == 0, text
    rows = _rows(out)
    assert {r["status"] for r in rows} <= {"ok", "pruned"} and len(rows) == 10  # 10 settings (a range: no repeats)
    pruned = [r for r in rows if r["status"] == "pruned"]
    assert pruned, text  # lr down to 1e-5 falls far behind within an epoch or two
    for r in pruned:
        assert int(r["epochs_done"]) < 3 and r["pruned_reason"].startswith("median:")
        metrics = json.loads((out / "trials" / r["trial"] / "metrics.json").read_text())
        assert metrics["stopped_early"] == {"epoch": int(r["epochs_done"]), "by": "on_epoch"}
        assert len(metrics["epochs"]) == int(r["epochs_done"])
        assert f"{r['trial']}: pruned: median:" in text
    for r in rows:  # start-up (loading, compiling) is kept apart from the training time
        assert float(r["train_seconds"]) >= 0 and float(r["startup_seconds"]) > 0 and r["compile_seconds"] != ""
    ok = [r for r in rows if r["status"] == "ok"]
    assert all(r["epochs_done"] == "3" for r in ok)
    best = json.loads((out / "best.json").read_text())
    assert best["val_acc"] == max(float(r["val_acc"]) for r in ok)
    for name in ("sweep.png", "best-so-far.png", "params.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = json.loads((out / "sweep.json").read_text())
    assert (info["search"], info["prune"], info["trials_asked"]) == ("tpe", "median", 10)
    assert info["space"][0]["name"] == "lr" and set(info["trials"]) == {r["trial"] for r in rows}

    # the same command again: nothing left, so no cluster and no data
    _no_cluster_and_no_data(monkeypatch)
    code, again = _sweep("--data-dir", tiny_dir, *SEARCH, "--trials", 10, "--workers", 1, "--out", out, capsys=capsys)
    assert code == 0, again
    assert "10 finished before, 0 to continue, 0 to start" in again and len(_rows(out)) == len(rows)
    assert json.loads((out / "best.json").read_text())["test_acc"] == best["test_acc"]


def test_a_rerun_continues_the_study(dask_cluster, tiny_dir, tmp_path, capsys):
    out = tmp_path / "sweep"
    common = ["--data-dir", tiny_dir, *SEARCH, "--scheduler", dask_cluster.scheduler_address, "--out", out]
    code, text = _sweep(*common, "--trials", 3, capsys=capsys)
    assert code == 0 and "0 finished before, 0 to continue, 3 to start" in text, text
    first = {r["study_trial"] for r in _rows(out)}
    code, text = _sweep(*common, "--trials", 5, capsys=capsys)
    assert code == 0 and "3 finished before, 0 to continue, 2 to start" in text, text
    import optuna

    from fastmlp.search import STUDY_NAME, open_storage

    study = optuna.load_study(study_name=STUDY_NAME, storage=open_storage(out / "study.journal"))
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4] and all(t.state.is_finished() for t in study.trials)
    numbers = {r["study_trial"] for r in _rows(out)}
    assert first < numbers and numbers <= {"0", "1", "2", "3", "4"}

    # another space, other shared settings, or another --search in the same folder: one line each
    for change, needle in ((["--momentum", "0.5,0.9"], "holds a study of other settings"),
                           (["--epochs", 2], "share other settings (epochs"),):
        args = [a for a in common]
        i = args.index("--epochs") if change[0] == "--epochs" else None
        if i is not None:
            args[i + 1] = change[1]
            change = []
        code, _ = _sweep(*args, *change, "--trials", 5, capsys=None)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1 and needle in err[0], err
    code, _ = _sweep("--data-dir", tiny_dir, "--sizes", "784,8,10", "--epochs", 3, "--lr", "0.1,0.2", "--out", out)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "--search tpe --prune median" in err[0], err


def test_a_grid_rerun_with_nothing_pending_starts_no_cluster_and_loads_no_data(dask_cluster, tiny_dir, tmp_path,
                                                                              capsys, monkeypatch):
    out = tmp_path / "sweep"
    args = ["--data-dir", tiny_dir, *TINY, "--sizes", "784,16,10", "--lr", "0.05,0.1", "--out", out]
    code, text = _sweep(*args, "--scheduler", dask_cluster.scheduler_address, capsys=capsys)
    assert code == 0, text
    splits = {p: p.stat().st_mtime_ns for p in (out / "data").rglob("*-ubyte")}
    _no_cluster_and_no_data(monkeypatch)
    code, text = _sweep(*args, capsys=capsys)
    assert code == 0 and "2 finished before, 0 to run" in text and "best: trial" in text, text
    assert {p: p.stat().st_mtime_ns for p in (out / "data").rglob("*-ubyte")} == splits  # written once


def test_two_sweeps_into_one_folder_the_second_stops_with_one_line(tiny_dir, tmp_path, capsys):
    from fastmlp.files import lock_folder

    out = tmp_path / "sweep"
    out.mkdir()
    # another sweep holds the folder: what lock_sweep takes, held here by another process
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from fastmlp.sweep import lock_sweep; "
                               "from pathlib import Path; fd = lock_sweep(Path(sys.argv[1])); print('locked', "
                               "flush=True); time.sleep(60)", str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _ = _sweep("--data-dir", tiny_dir, *TINY, "--lr", "0.05,0.1", "--out", out)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1, err
        assert "is in use by another fastmlp sweep" in err[0] and f"pid {holder.pid}" in err[0], err
        assert not (out / "results.csv").exists() and not (out / "trials").exists()  # it touched nothing
    finally:
        holder.kill()
        holder.wait()
    fd = lock_folder(out)  # given back when its process ended
    os.close(fd)


def test_a_trial_still_running_is_waited_for_and_adopted_not_failed(tiny_dir, tmp_path):
    """What a re-run after Ctrl-C meets on an existing cluster: the trial's earlier attempt is still
    training (it holds the trial's folder). The new attempt waits for it and takes its result."""
    from fastmlp.files import lock_folder
    from fastmlp.trial import run_trial, trial_config, write_split

    ds = fastmlp.load_dataset("mnist", data_dir=tiny_dir, normalize=False, flatten=False)
    split = write_split(tmp_path / "split", ds.x_train, ds.y_train, 0.2, 0)
    settings = sweep.trial_settings({"sizes": (784, 8, 10), "epochs": 2, "batch_size": 32}, {"val_split": 0.2},
                                    784, 10)
    folder = tmp_path / "trial"
    folder.mkdir()
    held = lock_folder(folder)  # the earlier attempt, training
    try:
        import threading

        result = {}
        waiter = threading.Thread(target=lambda: result.update(run_trial(folder, settings, split)))
        waiter.start()
        time.sleep(1.0)
        assert waiter.is_alive() and not (folder / "metrics.json").exists()  # waiting, not failed
        # the earlier attempt finishes its run (here: the same training, written by this process)
        config = trial_config(settings, tmp_path / "elsewhere", split)
        fastmlp.run(config, log=lambda _: None)
        for name in ("checkpoint.npz", "model.npz", "metrics.json"):
            os.replace(tmp_path / "elsewhere" / name, folder / name)
    finally:
        os.close(held)
    waiter.join(60)
    assert result["status"] == "ok" and result["epochs_done"] == 2, result
    log = (folder / "train.log").read_text()
    assert "waiting for it to finish" in log and "adopted" in log and "fastmlp.run(" not in log, log
    assert result["val_acc"] == json.loads((folder / "metrics.json").read_text())["test_accuracy"]
