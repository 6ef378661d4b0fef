"""Ctrl-C, SIGTERM and SIGHUP: the report names exactly the checkpoint on disk, the
resume command is printed only when one exists and works as printed."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import make_idx_dataset
from robust_helpers import TINY, interrupted_run

from fastmlp import interrupts, runfolder
from fastmlp.checkpoint import NAME, load_checkpoint

EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


def _on_disk(out):
    return load_checkpoint(out / NAME)[1]["epochs_done"]


@pytest.mark.parametrize("signum", list(EXIT), ids=lambda s: signal.Signals(s).name)
def test_the_report_names_the_checkpoint_on_disk_and_its_command_works(tiny_dir, tmp_path, signum, capsys):
    out = tmp_path / "run"
    # the line of epoch 2 comes after the epoch counter moved to 2 and before checkpoint 2 is written
    code, _ = interrupted_run("--data-dir", tiny_dir, "--out", out, *TINY, at="epoch   2", signum=signum)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT[signum] and _on_disk(out) == 1
    assert len(err) == 1 and err[0].startswith(f"fastmlp: stopped by {signal.Signals(signum).name}; "
                                               f"the checkpoint of epoch 1 is in {out}; continue with: ")
    assert sorted(os.listdir(out)) == [NAME]  # no temp file

    # the command as printed, from another folder, with FASTMLP_DATA_DIR pointing at other data
    command = shlex.split(err[0].split("continue with: ")[1])
    other = make_idx_dataset(tmp_path / "other", seed=5)
    proc = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path / "other", timeout=300,
                          env={**os.environ, "FASTMLP_DATA_DIR": str(other)})
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 2 and metrics["data"]["location"] == str(tiny_dir.resolve())


@pytest.mark.parametrize("every, at", [("0", "epoch   2"), ("2", "epoch   1")])
def test_without_a_checkpoint_no_resume_command_and_no_folder(tiny_dir, tmp_path, every, at, capsys):
    out = tmp_path / "run"
    code, _ = interrupted_run("--data-dir", tiny_dir, "--out", out, *TINY, "--checkpoint-every", every, at=at)
    err = capsys.readouterr().err
    assert code == 130
    assert "no checkpoint was written, so there is nothing to resume" in err and "--resume" not in err
    assert not out.exists()


def test_a_signal_during_the_checkpoint_write_waits_for_it(tiny_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real_savez = np.savez

    def savez_then_ctrl_c(f, **arrays):
        if "history.iter_loss" in arrays and len(arrays["history.iter_loss"]) > 10:  # the checkpoint of epoch 2
            os.kill(os.getpid(), signal.SIGINT)
        real_savez(f, **arrays)

    monkeypatch.setattr(np, "savez", savez_then_ctrl_c)
    code, _ = interrupted_run("--data-dir", tiny_dir, "--out", out, *TINY, "--epochs", "3", at="never printed")
    err = capsys.readouterr().err
    assert code == 130 and _on_disk(out) == 2
    assert f"the checkpoint of epoch 2 is in {out}" in err
    assert sorted(os.listdir(out)) == [NAME]


def test_a_second_ctrl_c_during_the_clean_up_is_ignored(tiny_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    close = runfolder.RunFolder.close

    def ctrl_c_again(self):
        os.kill(os.getpid(), signal.SIGINT)
        close(self)

    monkeypatch.setattr(runfolder.RunFolder, "close", ctrl_c_again)
    code, _ = interrupted_run("--data-dir", tiny_dir, "--out", out, *TINY)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130 and len(err) == 1 and "the checkpoint of epoch 1" in err[0]


def test_deferred_holds_a_signal_until_the_block_ends():
    reached = []
    handlers = {s: signal.getsignal(s) for s in interrupts.SIGNALS}
    try:
        with pytest.raises(interrupts.Interrupted) as excinfo, interrupts.signals_raise():
            with interrupts.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                os.kill(os.getpid(), signal.SIGINT)  # a second one changes nothing
                reached.append("end of block")
            reached.append("after the block")
        assert all(signal.getsignal(s) == signal.SIG_IGN for s in interrupts.SIGNALS)  # the process is on its way out
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    assert reached == ["end of block"] and excinfo.value.exit_code == 143


@pytest.fixture(scope="module")
def slow_data(tmp_path_factory):
    # 20000 rows in batches of 2: about a second an epoch, so signals land mid-epoch
    return make_idx_dataset(tmp_path_factory.mktemp("slow") / "d", n_train=20000, n_test=200)


@pytest.mark.parametrize("signals", [[signal.SIGTERM], [signal.SIGHUP], [signal.SIGINT, signal.SIGINT, signal.SIGINT]],
                         ids=["SIGTERM", "SIGHUP", "three-ctrl-c"])
def test_signals_to_a_real_process(slow_data, tmp_path, signals):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fastmlp.train", "--data-dir", str(slow_data), "--out", str(out), "--batch-size", "2",
           "--sizes", "784,32,10", "--epochs", "3", "--no-plots", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / NAME).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    for signum in signals:
        proc.send_signal(signum)
        time.sleep(0.02)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == EXIT[signals[0]], err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"the checkpoint of epoch {_on_disk(out)} is in {out}" in lines[0], err
    assert sorted(os.listdir(out)) == [NAME]
