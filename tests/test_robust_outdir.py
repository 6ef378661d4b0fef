"""Output folders: unique default names, one live run per folder, no mixing with an
older run, writability checked before training, nothing left by a failed start."""

import datetime
import os
import subprocess
import sys

import pytest
from conftest import make_idx_dataset
from robust_helpers import TINY, assert_one_line_error, run_main

from fastmlp import runfolder
from fastmlp.files import lock_folder


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run with tmp_path as the working folder, where runs/ would appear."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FASTMLP_DATA_DIR", raising=False)
    monkeypatch.setenv("FASTMLP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_runs_started_in_the_same_second_get_their_own_folders(tiny_dir, in_tmp, monkeypatch, capsys):
    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2030, 1, 2, 3, 4, 5)

    monkeypatch.setattr(runfolder._dt, "datetime", Frozen)
    for _ in range(2):
        assert run_main(capsys, "--data-dir", tiny_dir, *TINY, "--quiet")[0] == 0
    assert sorted(os.listdir(in_tmp / "runs")) == ["mnist-20300102-030405", "mnist-20300102-030405-2"]
    for name in os.listdir(in_tmp / "runs"):
        assert (in_tmp / "runs" / name / "model.npz").is_file()


def test_a_folder_locked_by_another_run_is_refused(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    held = lock_folder(out)  # what a live run holds
    try:
        code, stdout, err = run_main(capsys, "--data-dir", tiny_dir, "--out", out, *TINY)
    finally:
        os.close(held)
    assert_one_line_error(code, err, f"{out} is in use by another fastmlp run")
    assert os.listdir(out) == [] and "epoch" not in stdout


def test_a_live_run_holds_its_folder(tmp_path, capsys):
    data = make_idx_dataset(tmp_path / "slow", n_train=20000, n_test=100)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fastmlp.train", "--data-dir", str(data), "--out", str(out), "--batch-size", "2",
           "--sizes", "784,8,10", "--epochs", "5", "--no-plots"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().startswith("preset "), "the first run did not start"  # its first line
        code, _, err = run_main(capsys, "--data-dir", data, "--out", out, "--epochs", "1")
        assert_one_line_error(code, err, "is in use by another fastmlp run")
    finally:
        proc.kill()
        proc.wait(30)
        proc.stdout.close()


def test_a_folder_holding_another_run_is_refused_unless_overwrite(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_main(capsys, "--data-dir", tiny_dir, "--out", out, *TINY, "--quiet", "--epochs", "1")[0] == 0
    (out / "history.png").write_bytes(b"an older run's plot")
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}

    code, _, err = run_main(capsys, "--data-dir", tiny_dir, "--out", out, *TINY, "--quiet", "--lr", "0.1")
    assert_one_line_error(code, err, "holds another run (checkpoint.npz, model.npz, metrics.json)",
                          f"--resume {out}", "--overwrite")
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before

    assert run_main(capsys, "--data-dir", tiny_dir, "--out", out, *TINY, "--quiet", "--overwrite")[0] == 0
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "metrics.json", "model.npz"]  # no old plot mixed in


@pytest.mark.parametrize("failure", ["no-data", "sizes", "no-network", "device"])
def test_a_run_that_fails_before_training_leaves_no_folder(tiny_dir, in_tmp, failure, capsys):
    args = {
        "no-data": ["--data-dir", in_tmp / "nowhere"],
        "sizes": ["--data-dir", tiny_dir, "--sizes", "100,10"],
        "no-network": ["--no-download"],
        "device": ["--data-dir", tiny_dir, "--device", "tpu"],
    }[failure]
    for out in ([], ["--out", in_tmp / "a" / "b" / "run"]):
        code, _, err = run_main(capsys, *args, *out)
        assert_one_line_error(code, err)
    assert os.listdir(in_tmp) == ["tiny"]  # no runs/, no a/b/run


@pytest.fixture
def read_only(tmp_path):
    """An existing folder no one may write into, even root (chattr +i)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root without chattr +i: no folder is read-only to this process")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_a_read_only_out_is_found_before_training(tiny_dir, read_only, capsys):
    code, stdout, err = run_main(capsys, "--data-dir", tiny_dir, "--out", read_only, "--checkpoint-every", "0", *TINY)
    assert_one_line_error(code, err, f"cannot write into output folder {read_only}")
    assert stdout == ""  # not even the data was loaded


def test_stale_temp_files_in_the_folder_are_removed(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    stale = [".checkpoint.npz.k3j_x9a1.tmp", ".metrics.json.0123456789abcdef.tmp", ".samples.png.deadbeef.tmp.png"]
    for name in stale + ["notes.txt"]:
        (out / name).write_bytes(b"left by a killed write")
    assert run_main(capsys, "--data-dir", tiny_dir, "--out", out, *TINY, "--quiet")[0] == 0
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "metrics.json", "model.npz", "notes.txt"]
