"""One line, never a traceback: bad flags, impossible sizes, a closed or full stdout,
a full disk while writing the plots, and bugs."""

import errno
import os
import subprocess
import sys

import pytest
from robust_helpers import TINY, assert_one_line_error, run_main

import fastmlp.plots


@pytest.mark.parametrize("args, message", [
    (["--seed", "-1"], "--seed: must be >= 0"),
    (["--weight-decay", "inf"], "--weight-decay: must be a finite number >= 0"),
    (["--weight-decay", "nan"], "--weight-decay: must be a finite number >= 0"),
    (["--momentum", "nan"], "--momentum: must be a finite number >= 0"),
])
def test_more_usage_errors_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as excinfo:
        run_main(capsys, *args)
    assert excinfo.value.code == 2 and message in capsys.readouterr().err


def test_sizes_that_cannot_fit_in_memory(tiny_dir, tmp_path, capsys):
    code, stdout, err = run_main(capsys, "--data-dir", tiny_dir, "--out", tmp_path / "run", "--sizes", "784,100000000000,10")
    assert_one_line_error(code, err, "784-100000000000-10 model has 79,500,000,000,010 parameters", "GiB of memory; choose smaller --sizes")
    assert not (tmp_path / "run").exists()


def test_stdout_closed_by_head(tiny_dir, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "fastmlp.train", "--data-dir", str(tiny_dir), "--out", str(out), *TINY],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.readline()  # what `| head -1` does: read one line, then close the pipe
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(300) == 0, err
    assert "Traceback" not in err and "cannot write to stdout" in err
    assert (out / "model.npz").is_file()


def test_stdout_on_dev_full(tiny_dir, tmp_path):
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "fastmlp.train", "--data-dir", str(tiny_dir), "--out",
                               str(tmp_path / "run"), *TINY], stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    code, err = proc.returncode, proc.stderr
    assert code == 0, err
    assert err.strip().splitlines() == ["fastmlp: cannot write to stdout (No space left on device); "
                                        "the run goes on without its progress lines"]
    assert (tmp_path / "run" / "model.npz").is_file()


def test_a_full_disk_while_writing_the_plots(tiny_dir, tmp_path, monkeypatch, capsys):
    from matplotlib.figure import Figure

    def disk_full(self, f, **kwargs):
        f.write(b"\x89PNG half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Figure, "savefig", disk_full)
    out = tmp_path / "run"
    code, _, err = run_main(capsys, "--data-dir", tiny_dir, "--out", out, *[a for a in TINY if a != "--no-plots"])
    assert_one_line_error(code, err, f"cannot write {out / 'history.png'}: No space left on device")
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "metrics.json", "model.npz"]  # what was written is kept, no temp file


def test_a_bug_is_one_line_without_debug_and_a_traceback_with_it(tiny_dir, tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise TypeError("a bug")

    monkeypatch.setattr(fastmlp.plots, "plot_history", broken)
    args = ["--data-dir", tiny_dir, *[a for a in TINY if a != "--no-plots"]]
    code, _, err = run_main(capsys, *args, "--out", tmp_path / "a")
    assert_one_line_error(code, err, "unexpected TypeError (a bug); this is a bug in fastmlp", "--debug")
    with pytest.raises(TypeError):
        run_main(capsys, *args, "--out", tmp_path / "b", "--debug")


def test_out_of_memory_is_one_line(tiny_dir, tmp_path, monkeypatch, capsys):
    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 3.00 GiB")

    monkeypatch.setattr("fastmlp.data.load_dataset", no_memory)
    code, _, err = run_main(capsys, "--data-dir", tiny_dir, "--out", tmp_path / "run")
    assert_one_line_error(code, err, "ran out of memory (Unable to allocate 3.00 GiB)")
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not os.environ.get("FASTMLP_DATA_DIR"), reason="FASTMLP_DATA_DIR is not set (real MNIST needed)")
def test_fashion_mnist_asked_for_on_an_mnist_folder(tmp_path, capsys):
    mnist = os.path.join(os.environ["FASTMLP_DATA_DIR"], "mnist")
    code, _, err = run_main(capsys, "--dataset", "fashion-mnist", "--data-dir", mnist, "--out", tmp_path / "run")
    assert_one_line_error(code, err, "is mnist's train-images-idx3-ubyte", "but fashion-mnist was asked for",
                          "--dataset mnist")
    assert not (tmp_path / "run").exists()
