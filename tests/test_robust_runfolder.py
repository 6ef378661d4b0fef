"""Run folders under races and failures (issue 23, families 2 and 3).

* Two runs can never share one folder, and a run never removes a folder that
  another run holds: whatever the order and timing in which N runs (new ones
  and ``--resume``) race for one ``--out``, at most one holds it at a time, the
  holder's folder is the one at the path for as long as it holds it, and the
  losers get one line saying the folder is in use.
* ``--overwrite`` keeps the earlier run until the new one has written its first
  checkpoint: a failure, an interrupt or a crash at any step before that leaves
  the earlier run byte-identical; a crash after it leaves the new run's
  checkpoint; never a mix, never neither.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest
from conftest import make_idx_dataset
from hypothesis import HealthCheck, given, settings, strategies as st
from robust_helpers import TINY, assert_one_line_error, interrupted_run, run_main

from fastmlp import files, runfolder
from fastmlp.errors import ConfigError, FastMLPError
from fastmlp.runfolder import ASIDE, OUTPUTS, RUN_FILES, RunFolder

FIXTURES = [HealthCheck.function_scoped_fixture]
BUSY = "is in use by another fastmlp run"


def _same_folder(run, path):
    """Whether the folder ``run`` holds the lock of is the one at ``path``."""
    held = os.fstat(run._lock)
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    return (held.st_dev, held.st_ino) == (here.st_dev, here.st_ino)


# --- family 2: one run per folder, and no run removes another's ---------------------------------------------


def test_the_run_that_loses_the_lock_leaves_the_winners_folder(tmp_path, monkeypatch):
    """The issue's case: two runs make the same new folder at the same moment; the
    second takes the lock between the first one's mkdir and its lock. The first
    must not remove the folder the winner holds, and a third run is refused."""
    out = tmp_path / "a" / "run"
    real = runfolder.lock_folder
    winner = []

    def the_other_run_locks_first(path, wait=False):
        if not winner:
            winner.append(None)
            winner[0] = RunFolder.new(out, "mnist")  # finds the folder made, takes its lock
        return real(path, wait)

    monkeypatch.setattr(runfolder, "lock_folder", the_other_run_locks_first)
    with pytest.raises(ConfigError, match=BUSY):
        RunFolder.new(out, "mnist")
    monkeypatch.setattr(runfolder, "lock_folder", real)
    try:
        assert _same_folder(winner[0], out), "the loser removed the folder the winner holds"
        with pytest.raises(ConfigError, match=BUSY):  # a third run does not start in it
            RunFolder.new(out, "mnist")
        with pytest.raises(ConfigError, match=BUSY):  # nor a resume
            RunFolder.resume(out)
        (out / "model.npz").write_bytes(b"the winner's")
    finally:
        winner[0].close()
    assert (out / "model.npz").read_bytes() == b"the winner's"


def test_a_folder_removed_between_open_and_lock_is_made_again(tmp_path, monkeypatch):
    """A run opens the folder another run made; that run fails and removes it (it
    made it, holds it, and wrote nothing); only then does the flock succeed - on a
    folder that is gone. The run must notice, make the folder again and hold that."""
    out = tmp_path / "run"
    first = RunFolder.new(out, "mnist")
    real_flock = files.fcntl.flock
    fired = []

    def flock_after_the_first_run_gave_up(fd, how):
        if not fired:
            fired.append(True)
            first.close()  # removes the empty folder it made
        return real_flock(fd, how)

    monkeypatch.setattr(files, "fcntl", SimpleNamespace(flock=flock_after_the_first_run_gave_up,
                                                         LOCK_EX=files.fcntl.LOCK_EX, LOCK_NB=files.fcntl.LOCK_NB))
    second = RunFolder.new(out, "mnist")
    try:
        assert fired and _same_folder(second, out), "the run holds a lock on a folder that was removed"
        assert second.created == [out]  # it made it again, so a failure removes it
    finally:
        second.close()
    assert not out.exists()


def test_a_parent_made_by_a_failed_run_is_not_removed_while_another_run_holds_it(tmp_path):
    a = RunFolder.new(tmp_path / "p" / "run", "mnist")  # makes p/ and p/run
    b = RunFolder.new(tmp_path / "p", "mnist")  # --out is the parent a made
    try:
        a.close()  # a wrote nothing: removes p/run, and p/ stays (b holds it)
        assert not (tmp_path / "p" / "run").exists() and _same_folder(b, tmp_path / "p")
    finally:
        b.close()


RACER = st.fixed_dictionaries({
    "kind": st.sampled_from(["new", "new", "resume"]),
    "before_lock": st.sampled_from([0, 0.0005, 0.002, 0.006]),  # between its mkdir and its flock
    "hold": st.sampled_from([0, 0.001, 0.005]),
    "writes": st.booleans(),  # or fails without writing anything (then it removes what it made)
})


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURES)
@given(racers=st.lists(RACER, min_size=2, max_size=4), depth=st.integers(0, 2))
def test_runs_racing_for_one_folder_never_share_or_remove_it(tmp_path_factory, monkeypatch, racers, depth):
    base = tmp_path_factory.mktemp("race")
    out = base.joinpath(*[f"p{i}" for i in range(depth)], "run")
    real = runfolder.lock_folder
    delay = {}

    def slow_lock(path, wait=False):
        time.sleep(delay.get(threading.current_thread().name, 0))
        return real(path, wait)

    monkeypatch.setattr(runfolder, "lock_folder", slow_lock)
    barrier = threading.Barrier(len(racers))
    guard = threading.Lock()
    seen = SimpleNamespace(holders=0, most=0, problems=[], wrote=[])

    def race(i, kind, before_lock, hold, writes):
        delay[threading.current_thread().name] = before_lock
        barrier.wait()
        try:
            run = RunFolder.new(out, "mnist") if kind == "new" else RunFolder.resume(out)
        except ConfigError as exc:
            if BUSY in str(exc) or (kind == "resume" and "no such folder" in str(exc)):
                return
            seen.problems.append(f"run {i}: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - any other failure is what this test looks for
            seen.problems.append(f"run {i}: {type(exc).__name__}: {exc}")
            return
        with guard:
            seen.holders += 1
            seen.most = max(seen.most, seen.holders)
        try:
            for _ in range(2):
                if not _same_folder(run, out):
                    seen.problems.append(f"run {i} holds a folder that is no longer at {out}")
                time.sleep(hold)
            if writes:
                (out / f"marker-{i}").write_text(str(i))
                seen.wrote.append(i)
        finally:
            with guard:
                seen.holders -= 1  # before the lock goes
            run.close()

    threads = [threading.Thread(target=race, args=(i,), kwargs=r, name=f"racer-{i}") for i, r in enumerate(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert seen.problems == [] and seen.most <= 1
    for i in seen.wrote:  # nothing a run wrote was removed by another
        assert (out / f"marker-{i}").read_text() == str(i)
    if not seen.wrote and out.exists():
        assert os.listdir(out) == []


def test_runs_started_together_into_one_out(tiny_dir, tmp_path):
    """Three real processes, started at once, into one new --out: exactly one trains;
    the others say in one line that the folder is in use (or, if they start after it
    finished, that it holds another run)."""
    out = tmp_path / "a" / "run"
    cmd = [sys.executable, "-m", "fastmlp.train", "--data-dir", str(tiny_dir), "--out", str(out), *TINY, "--quiet"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(p.wait(300), p.stdout.read(), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert sorted(code for code, _, _ in results) == [0, 1, 1], results
    for code, _, err in results:
        if code:
            assert_one_line_error(code, err)
            assert BUSY in err or "holds another run" in err, err
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "metrics.json", "model.npz"]


def test_resume_takes_the_same_lock(tiny_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_main(capsys, "--data-dir", tiny_dir, "--out", out, *TINY, "--quiet", "--epochs", "1")[0] == 0
    held = RunFolder.new(out, "mnist", overwrite=True)  # a live run in the folder (its old run set aside)
    try:
        code, _, err = run_main(capsys, "--resume", out, "--epochs", "1")
        assert_one_line_error(code, err, f"{out} {BUSY}")
    finally:
        held.close()
    resumed = RunFolder.resume(out)
    try:
        code, _, err = run_main(capsys, "--data-dir", tiny_dir, "--out", out, *TINY, "--overwrite")
        assert_one_line_error(code, err, f"{out} {BUSY}")
    finally:
        resumed.close()
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "metrics.json", "model.npz"]


# --- family 3: --overwrite keeps the earlier run until the new one has its first checkpoint ----------------


@pytest.fixture
def old_run(tiny_dir, tmp_path, capsys):
    """A finished run, with a plot of its own and a file of the user's; (folder, its bytes)."""
    out = tmp_path / "run"
    assert run_main(capsys, "--data-dir", tiny_dir, "--out", out, *TINY, "--quiet", "--epochs", "1")[0] == 0
    (out / "history.png").write_bytes(b"the old run's plot")
    (out / "notes.txt").write_bytes(b"the user's")
    return out, _contents(out)


def _contents(out):
    return {name: (out / name).read_bytes() for name in os.listdir(out)}


def _fail_first_checkpoint(monkeypatch):
    from fastmlp import checkpoint

    def full_disk(path, *args, **kwargs):
        raise FastMLPError(f"cannot write {path}: No space left on device; check free space and permissions")

    monkeypatch.setattr(checkpoint, "save_checkpoint", full_disk)


@pytest.mark.parametrize("failure", ["mistyped-data-dir", "sizes", "ctrl-c-in-epoch-1", "ctrl-c-no-checkpoints",
                                     "first-checkpoint-fails"])
def test_a_failed_overwrite_leaves_the_old_run_as_it_was(old_run, tiny_dir, tmp_path, monkeypatch, failure, capsys):
    out, before = old_run
    args = ["--data-dir", tiny_dir, "--out", out, *TINY, "--overwrite", "--lr", "0.2"]
    if failure == "mistyped-data-dir":
        args[1] = tmp_path / "tinyy"
    elif failure == "sizes":
        args += ["--sizes", "100,10"]
    elif failure == "first-checkpoint-fails":
        _fail_first_checkpoint(monkeypatch)
    if failure.startswith("ctrl-c"):
        every = ["--checkpoint-every", "0"] if failure == "ctrl-c-no-checkpoints" else []
        code, _ = interrupted_run(*args, *every, at="epoch   2" if every else "epoch   1")
        err = capsys.readouterr().err
        assert code == 130 and "no checkpoint was written" in err
        assert f"the earlier run --overwrite set aside goes back into {out}" in err
    else:
        code, _, err = run_main(capsys, *args)
        assert_one_line_error(code, err)
    assert _contents(out) == before  # no hidden folder left either


def test_a_successful_overwrite_replaces_the_old_run_and_keeps_nothing_aside(old_run, tiny_dir, capsys):
    out, before = old_run
    assert run_main(capsys, "--data-dir", tiny_dir, "--out", out, *TINY, "--quiet", "--overwrite", "--lr", "0.2")[0] == 0
    after = _contents(out)
    assert sorted(after) == ["checkpoint.npz", "metrics.json", "model.npz", "notes.txt"]
    assert after["notes.txt"] == before["notes.txt"] and after["model.npz"] != before["model.npz"]


def test_a_killed_overwrite_is_put_back_by_the_next_start(old_run, tmp_path, capsys):
    out, before = old_run
    slow = make_idx_dataset(tmp_path / "slow", n_train=20000, n_test=100)
    cmd = [sys.executable, "-m", "fastmlp.train", "--data-dir", str(slow), "--out", str(out), "--overwrite",
           "--batch-size", "2", "--sizes", "784,8,10", "--epochs", "5", "--no-plots"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().startswith("preset "), "the overwriting run did not start"
        os.kill(proc.pid, signal.SIGKILL)  # in its first epoch: no checkpoint of its own yet
    finally:
        proc.kill()
        proc.wait(30)
        proc.stdout.close()
    assert (out / ASIDE).is_dir() and not (out / "model.npz").exists()  # the state a crash leaves
    code, stdout, err = run_main(capsys, "--resume", out)  # the next start puts it back: a finished run
    assert code == 0 and "nothing to do" in stdout, err
    assert _contents(out) == before


class Crash(BaseException):
    """The process dies here: this file-system step and every later one never happen."""


class Steps:
    """Counts the file-system steps of an overwrite and crashes at step ``crash_at``."""

    def __init__(self):
        self.n, self.crash_at = 0, None

    def __call__(self, fn):
        def step(*args, **kwargs):
            if self.crash_at is not None and self.n >= self.crash_at:
                raise Crash
            self.n += 1
            return fn(*args, **kwargs)

        return step

    def crash(self, at):
        self.n, self.crash_at = 0, at


OLD = st.sets(st.sampled_from(OUTPUTS), min_size=1).filter(lambda names: any(n in RUN_FILES for n in names))
# The new run: fails before writing anything; or writes its first checkpoint, then its model and
# metrics (commit after the checkpoint); or, with --checkpoint-every 0, its model first.
FLOWS = {
    "fails": [],
    "checkpoints": ["checkpoint.npz", "commit", "model.npz", "commit", "metrics.json", "history.png"],
    "no-checkpoints": ["model.npz", "commit", "metrics.json", "history.png"],
}


@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURES)
@given(old=OLD, flow=st.sampled_from(sorted(FLOWS)), crash_at=st.none() | st.integers(0, 24),
       crash_again_at=st.none() | st.integers(0, 10))
def test_a_crash_at_any_step_of_an_overwrite_loses_nothing(tmp_path_factory, monkeypatch, old, flow, crash_at,
                                                            crash_again_at):
    """Crash (the process dies: no clean-up runs) at any step of setting the old run
    aside, of the new run's first writes and commit, or of putting the old run back;
    then crash again, perhaps, in the next start's recovery; then start once more.
    The folder then holds exactly the old run (if the new one had written nothing)
    or exactly what the new run wrote - never a mix, never neither, nothing aside."""
    out = tmp_path_factory.mktemp("overwrite") / "run"
    out.mkdir()
    before = {name: f"old {name}".encode() for name in old}
    for name, data in {**before, "notes.txt": b"the user's"}.items():
        (out / name).write_bytes(data)
    steps = Steps()
    for name in ("_mkdir", "_rename", "_unlink", "_rmdir"):
        monkeypatch.setattr(runfolder, name, steps(getattr(os, name.lstrip("_"))))
    warned = []
    written = {}

    def write(name):
        data = f"new {name}".encode()
        (out / name).write_bytes(data)
        written[name] = data

    write_step = steps(write)

    steps.crash(crash_at)
    try:
        run = RunFolder.new(out, "mnist", overwrite=True, warn=warned.append)
        try:
            if flow == "fails":
                raise FastMLPError("no such data")
            for what in FLOWS[flow]:
                run.commit() if what == "commit" else write_step(what)
        finally:
            run.close()
    except (Crash, FastMLPError):
        pass

    steps.crash(crash_again_at)
    for _ in range(2):  # the next start, perhaps crashing; then one more
        try:
            RunFolder.resume(out, warn=warned.append).close()
        except Crash:
            pass
        steps.crash(None)

    after = _contents(out)
    assert after.pop("notes.txt") == b"the user's"
    assert after == (written or before)
    assert warned == []


def test_an_old_run_set_aside_is_never_deleted_before_the_new_runs_first_checkpoint(old_run, tiny_dir, monkeypatch,
                                                                                   capsys):
    """Looked at from inside the first checkpoint write: the old run is still on disk."""
    out, before = old_run
    from fastmlp import checkpoint

    real = checkpoint.save_checkpoint
    seen = []

    def look_first(path, *args, **kwargs):
        if not seen:
            aside = out / ASIDE
            seen.append({name: (aside / name).read_bytes() for name in os.listdir(aside)})
        return real(path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_checkpoint", look_first)
    assert run_main(capsys, "--data-dir", tiny_dir, "--out", out, *TINY, "--quiet", "--overwrite")[0] == 0
    assert seen[0] == {name: data for name, data in before.items() if name != "notes.txt"}
    assert not (out / ASIDE).exists()
