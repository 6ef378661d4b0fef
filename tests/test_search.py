"""fastmlp.search: Optuna's samplers and pruners behind the sweep, with toy objectives (no training).

A toy trial's validation accuracy after epoch e is ``quality * (1 - 0.5**e)``:
a trial of low quality is behind the others from the first epoch on.
"""

import json
import math
import multiprocessing
import pickle
import warnings
from concurrent.futures import Future, ProcessPoolExecutor
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

optuna = pytest.importorskip("optuna", reason='needs Optuna: pip install "fastmlp[sweep]"')

from optuna.distributions import json_to_distribution  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from fastmlp import search as S  # noqa: E402
from fastmlp.search_report import best_so_far, trial_rows, write_plots  # noqa: E402

EPOCHS = 5


def toy_trial(params, reporter, epochs=EPOCHS):
    """A 'training' that reports after each epoch and stops when the reporter says so (quality 0 fails)."""
    quality = params["quality"]
    if quality == 0.0:
        raise RuntimeError("diverged")
    acc = 0.0
    for epoch in range(1, epochs + 1):
        acc = quality * (1 - 0.5**epoch)
        if reporter(epoch, acc):
            break
    return {"status": "ok", "val_acc": acc}


def inline(trial=toy_trial, calls=None):
    """submit() running the trial here and now, returning a finished concurrent Future."""

    def submit(number, params, reporter):
        if calls is not None:
            calls.append((number, params))
        future = Future()
        try:
            future.set_result(trial(params, reporter))
        except Exception as exc:
            future.set_exception(exc)
        return future

    return submit


QUALITY = [S.ParamSpec("quality", "float", low=0.0, high=1.0)]


def _by_number(search):
    return {t.number: t for t in search.trials()}


# ---------------------------------------------------------------- pruning


def test_tpe_with_median_pruner_prunes_the_losing_trial(tmp_path):
    search = S.open_search(tmp_path, QUALITY, search="tpe", pruner="median", epochs=EPOCHS, seed=1)
    for quality in (0.9, 0.92, 0.94, 0.96, 0.98, 0.05, 0.99):  # 5 startup trials, a loser, a winner
        search.study.enqueue_trial({"quality": quality})
    told = S.run_search(search, inline(), n_trials=7)
    assert [t.number for t in told] == list(range(7))
    trials = _by_number(search)
    assert [trials[i].state for i in range(5)] == [TrialState.COMPLETE] * 5
    loser, winner = trials[5], trials[6]
    assert loser.state == TrialState.PRUNED
    assert loser.user_attrs[S.PRUNED_EPOCH] == 1 == max(loser.intermediate_values)  # stopped after epoch 1
    assert "median" in loser.user_attrs[S.PRUNED_REASON] and "of 5 completed trials" in loser.user_attrs[S.PRUNED_REASON]
    assert winner.state == TrialState.COMPLETE and winner.value == pytest.approx(0.99 * (1 - 0.5**EPOCHS))
    rows = {r["trial"]: r for r in trial_rows(search)}
    assert (rows[5]["state"], rows[5]["epoch"]) == ("pruned", 1) and rows[5]["pruned_reason"]
    assert (rows[6]["state"], rows[6]["epoch"], rows[6]["pruned_reason"]) == ("complete", EPOCHS, "")


def test_no_pruner_never_prunes_and_last_epoch_is_never_pruned(tmp_path):
    search = S.open_search(tmp_path / "none", QUALITY, search="random", pruner="none", epochs=EPOCHS)
    for quality in (0.9, 0.91, 0.92, 0.93, 0.94, 0.01):
        search.study.enqueue_trial({"quality": quality})
    S.run_search(search, inline(), n_trials=6)
    assert {t.state for t in search.trials()} == {TrialState.COMPLETE}
    # median pruning, but the loser only reports its last epoch: it completes
    search = S.open_search(tmp_path / "median", QUALITY, search="random", pruner="median", epochs=EPOCHS)
    for quality in (0.9, 0.91, 0.92, 0.93, 0.94, 0.01):
        search.study.enqueue_trial({"quality": quality})

    def loser_reports_last_epoch_only(params, reporter):
        if params["quality"] > 0.5:
            return toy_trial(params, reporter)
        assert reporter(EPOCHS, 0.01) is False
        return {"status": "ok", "val_acc": 0.01}

    S.run_search(search, inline(loser_reports_last_epoch_only), n_trials=6)
    assert [t.state for t in search.trials()] == [TrialState.COMPLETE] * 6


def test_successive_halving_prunes_the_worse_of_two_with_a_reason(tmp_path):
    search = S.open_search(tmp_path, QUALITY, search="random", pruner="halving", epochs=9)
    assert S.pruner_defaults("halving", 9) == {"min_resource": 1, "reduction_factor": 3}
    for quality in (0.9, 0.3):
        search.study.enqueue_trial({"quality": quality})
    S.run_search(search, inline(lambda p, r: toy_trial(p, r, epochs=9)), n_trials=2)
    good, bad = _by_number(search)[0], _by_number(search)[1]
    assert good.state == TrialState.COMPLETE and bad.state == TrialState.PRUNED
    assert bad.user_attrs[S.PRUNED_EPOCH] == 1
    assert bad.user_attrs[S.PRUNED_REASON].startswith("halving:") and "ranked 2 of 2" in bad.user_attrs[S.PRUNED_REASON]


@pytest.mark.parametrize("name, cls", [("none", "NopPruner"), ("median", "MedianPruner"),
                                       ("halving", "SuccessiveHalvingPruner"), ("hyperband", "HyperbandPruner")])
def test_pruner_names_and_a_hyperband_run(tmp_path, name, cls):
    assert type(S.make_pruner(name, 10)).__name__ == cls
    search = S.open_search(tmp_path, QUALITY, search="tpe", pruner=name, epochs=EPOCHS, seed=0)
    told = S.run_search(search, inline(), n_trials=8)
    assert len(told) == 8 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in told)
    if name == "none":
        assert all(t.state == TrialState.COMPLETE for t in told)


def test_bad_names():
    with pytest.raises(ValueError, match="search must be one of grid, random, tpe"):
        S.make_sampler("bayes", QUALITY)
    with pytest.raises(ValueError, match="pruning must be one of none, median, halving, hyperband"):
        S.make_pruner("asha", 5)
    with pytest.raises(ValueError, match="grid search needs a list of values"):
        S.make_sampler("grid", QUALITY)


# ---------------------------------------------------------------- resuming


def test_a_rerun_continues_the_study_from_its_journal(tmp_path):
    search = S.open_search(tmp_path, QUALITY, search="tpe", pruner="median", epochs=EPOCHS, seed=0)
    S.run_search(search, inline(), n_trials=3)
    left_running = search.ask()  # the lead dies after asking: the trial stays RUNNING
    assert left_running[0] == 3
    assert (tmp_path / S.JOURNAL).is_file()

    again = S.open_search(tmp_path, QUALITY, search="tpe", pruner="median", epochs=EPOCHS, seed=0)
    assert again.storage is not search.storage and len(again.trials()) == 4
    assert again.unfinished() == [left_running]
    calls = []
    told = S.run_search(again, inline(calls=calls), n_trials=6)
    assert calls[0] == left_running  # resumed first, same number and settings
    assert [t.number for t in told] == [3, 4, 5]
    assert len(again.trials()) == 6 and again.unfinished() == []
    assert S.run_search(S.open_search(tmp_path, QUALITY, search="tpe", epochs=EPOCHS), inline(), n_trials=6) == []

    other = [S.ParamSpec("lr", "float", low=1e-3, high=1.0, log=True)]
    with pytest.raises(S.SpaceMismatch, match="other settings"):
        S.open_search(tmp_path, other, search="tpe", epochs=EPOCHS)


def test_a_resumed_trial_reports_again_harmlessly_and_stays_pruned(tmp_path):
    search = S.open_search(tmp_path, QUALITY, search="random", pruner="median", epochs=EPOCHS)
    for quality in (0.9,) * 5:
        search.study.enqueue_trial({"quality": quality})
    S.run_search(search, inline(), n_trials=5)
    number, _ = search.ask()
    first = search.reporter(number)
    assert first(1, 0.5) is False  # 0.45 is the median at epoch 1: not below it
    again = pickle.loads(pickle.dumps(first))  # its worker was killed; a new attempt replays epoch 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even Optuna's "step already reported" warning
        assert again(1, 0.0) is False
    frozen = search.storage.get_trial(search._trial_id(number))
    assert frozen.intermediate_values == {1: 0.5}  # the first report stands
    assert again(2, 0.1) is True  # behind the others now
    assert again(3, 0.99) is True  # pruned trials stay pruned, whatever they report
    assert search.tell(number, {"status": "ok", "val_acc": 0.99}).state == TrialState.PRUNED


# ---------------------------------------------------------------- grid, duplicates, failures


def test_grid_over_2x2_visits_every_point_once(tmp_path):
    specs = [S.ParamSpec("sizes", "choice", ((784, 64, 10), (784, 128, 10))), S.ParamSpec("lr", "choice", (0.05, 0.1))]
    search = S.open_search(tmp_path, specs, search="grid", pruner="none", epochs=EPOCHS, seed=3)
    calls = []
    trial = lambda p, r: {"status": "ok", "val_acc": p["lr"] + p["sizes"][1] / 1000}  # noqa: E731
    told = S.run_search(search, inline(trial, calls), max_in_flight=2)
    visited = sorted((p["sizes"], p["lr"]) for _, p in calls)
    assert visited == [((784, 64, 10), 0.05), ((784, 64, 10), 0.1), ((784, 128, 10), 0.05), ((784, 128, 10), 0.1)]
    assert len(told) == 4 and len(search.trials()) == 4
    assert search.study.best_trial.params == {"sizes": "784,128,10", "lr": 0.1}
    assert search.params(search.study.best_trial) == {"sizes": (784, 128, 10), "lr": 0.1}
    rerun = S.open_search(tmp_path, specs, search="grid", pruner="none", epochs=EPOCHS, seed=3)
    assert S.run_search(rerun, inline(trial, calls), max_in_flight=2) == [] and len(calls) == 4


def test_grid_points_running_side_by_side_are_all_different(tmp_path):
    specs = [S.ParamSpec("a", "choice", (1, 2)), S.ParamSpec("b", "choice", ("x", "y"))]
    search = S.open_search(tmp_path, specs, search="grid", pruner="none", epochs=EPOCHS, seed=0)
    asked = [search.ask() for _ in range(4)]  # none told yet: four workers busy
    assert sorted((p["a"], p["b"]) for _, p in asked) == [(1, "x"), (1, "y"), (2, "x"), (2, "y")]
    assert search.ask() is None and search.grid_left() == 0
    assert [n for n, _ in search.unfinished()] == [0, 1, 2, 3]


def test_same_settings_are_trained_once_and_failures_are_recorded(tmp_path):
    specs = [S.ParamSpec("quality", "choice", (0.8, 0.0, 0.5))]
    search = S.open_search(tmp_path, specs, search="random", pruner="none", epochs=EPOCHS, seed=0)
    calls = []
    told = S.run_search(search, inline(calls=calls), n_trials=8)  # at most the space's 3 points
    assert sorted(p["quality"] for _, p in calls) == [0.0, 0.5, 0.8] and search.trained() == 3
    rows = trial_rows(search)
    repeats = [r for r in rows if r["duplicate_of"] is not None]
    assert len(told) == len(rows) == 3 + len(repeats) and repeats, "seed 0 draws a point twice"
    for r in rows:
        if r["quality"] == 0.0:
            assert r["state"] == "failed" and r["error"] == "RuntimeError: diverged" and r["val_acc"] is None
        else:
            assert r["state"] == "complete" and r["val_acc"] == pytest.approx(r["quality"] * (1 - 0.5**EPOCHS))


def _always(search, value):
    """Make the study's sampler suggest ``value`` for every trial (as TPE does once it has settled)."""
    with warnings.catch_warnings():  # PartialFixedSampler is "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        search.study.sampler = optuna.samplers.PartialFixedSampler({"quality": value}, optuna.samplers.RandomSampler(0))


def test_repeats_do_not_count_and_a_sampler_that_only_repeats_gets_untried_points(tmp_path):
    specs = [S.ParamSpec("quality", "choice", (0.8, 0.0, 0.5))]
    search = S.open_search(tmp_path, specs, search="tpe", pruner="none", epochs=EPOCHS, seed=1)
    _always(search, 0.8)
    calls = []
    told = S.run_search(search, inline(calls=calls), n_trials=10)
    # 0.8, a repeat, an untried point, a repeat, the last point: the space is used up
    assert S.REPEATS_IN_A_ROW == 1
    assert [p["quality"] for _, p in calls][0] == 0.8 and sorted(p["quality"] for _, p in calls) == [0.0, 0.5, 0.8]
    assert [n for n, _ in calls] == [0, 2, 4] and len(told) == 5
    assert [t.user_attrs.get(S.DUPLICATE_OF) for t in told] == [None, 0, None, 0, None]
    assert search.trained() == 3 and S.run_search(search, inline(calls=calls), n_trials=10) == []


def test_an_endless_space_that_only_repeats_stops_asking(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "ENDLESS_REPEATS", 4)
    search = S.open_search(tmp_path, QUALITY, search="tpe", pruner="none", epochs=EPOCHS, seed=0)
    _always(search, 0.7)
    calls = []
    told = S.run_search(search, inline(calls=calls), n_trials=5)
    assert len(calls) == 1 and len(told) == 5 and search.trained() == 1


def test_the_trial_budget_is_at_most_the_size_of_a_finite_space(tmp_path):
    specs = [S.ParamSpec("a", "choice", (1, 2, 3)), S.ParamSpec("n", "int", low=2, high=5)]
    search = S.open_search(tmp_path / "finite", specs, search="tpe", pruner="none", epochs=EPOCHS)
    assert search.space_size() == 12 and S.trial_budget(search, 40) == 12 and S.trial_budget(search, 5) == 5
    with pytest.raises(ValueError, match="needs a number of trials"):
        S.trial_budget(search, None)
    endless = S.open_search(tmp_path / "endless", [*specs, *QUALITY], search="random", pruner="none", epochs=EPOCHS)
    assert endless.space_size() is None and S.trial_budget(endless, 40) == 40
    rng = __import__("random").Random(0)
    assert endless.untried(rng) is None
    points = set()
    for _ in range(12):  # every point of the finite space, then none
        point = search.untried(rng)
        points.add((point["a"], point["n"]))
        search.study.enqueue_trial(point)
        search.ask()
    assert len(points) == 12 and search.untried(rng) is None


# ---------------------------------------------------------------- across processes


def _remote_trial(number, params, reporter):
    return toy_trial(params, reporter)


def test_the_reporter_prunes_from_another_process(tmp_path):
    search = S.open_search(tmp_path, QUALITY, search="tpe", pruner="median", epochs=EPOCHS, seed=0)
    for quality in (0.9, 0.92, 0.94, 0.96, 0.98, 0.05):
        search.study.enqueue_trial({"quality": quality})
    reporter = search.reporter(0)
    assert pickle.loads(pickle.dumps(reporter)).__dict__ == reporter.__dict__
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        submit = lambda number, params, reporter: pool.submit(_remote_trial, number, params, reporter)  # noqa: E731
        told = S.run_search(search, submit, n_trials=6, max_in_flight=1)
    assert [t.state for t in told] == [TrialState.COMPLETE] * 5 + [TrialState.PRUNED]
    assert told[5].user_attrs[S.PRUNED_EPOCH] == 1 and told[5].intermediate_values == {1: 0.025}


# ---------------------------------------------------------------- the space


class _Axis(SimpleNamespace):
    """Duck-typed fastmlp.sweep.Axis."""


def test_from_axis():
    assert S.ParamSpec.from_axis(_Axis(dest="sizes", values=[(784, 64, 10), (784, 32, 10)], low=None, high=None,
                                       log=False)) == S.ParamSpec("sizes", "choice", ((784, 64, 10), (784, 32, 10)))
    lr = S.ParamSpec.from_axis(_Axis(dest="lr", values=[], low=1e-4, high=1e-1, log=True), float)
    assert (lr.kind, lr.low, lr.high, lr.log) == ("float", 1e-4, 1e-1, True)
    batch = S.ParamSpec.from_axis(_Axis(dest="batch_size", values=[], low=32.0, high=512.0, log=True), int)
    assert batch.distribution() == optuna.distributions.IntDistribution(32, 512, log=True)


def test_bad_specs():
    with pytest.raises(ValueError, match="log range needs low > 0"):
        S.ParamSpec("lr", "float", low=0.0, high=1.0, log=True)
    with pytest.raises(ValueError, match="no integer between"):
        S.ParamSpec("n", "int", low=1.2, high=1.8)
    with pytest.raises(ValueError, match="same label"):
        S.ParamSpec("x", "choice", ((1, 2), "1,2"))
    with pytest.raises(ValueError, match="kind must be"):
        S.ParamSpec("x", "bool", (True,))


_choice = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
                    st.tuples(st.integers(1, 4096), st.integers(1, 4096), st.integers(1, 100)), st.booleans())


def _unique_choices(values):
    out = {}
    for v in values:  # 1 == 1.0 == True: one of them
        out.setdefault((type(v) is tuple, v), v)
    return list(out.values())


_ranges = st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6), st.booleans()).map(
    lambda t: (abs(t[0]) + 1e-6, abs(t[1]) + 1e-6, True) if t[2] else t)


@st.composite
def specs(draw):
    kind = draw(st.sampled_from(S.KINDS))
    if kind == "choice":
        choices = _unique_choices(draw(st.lists(_choice, min_size=1, max_size=6)))
        labels = [S._label(c) for c in choices]
        if len(set(map(repr, labels))) != len(labels):  # e.g. "1,2,3" and (1, 2, 3)
            with pytest.raises(ValueError, match="same label"):
                S.ParamSpec("p", "choice", tuple(choices))
            choices = [c for c in choices if not isinstance(c, str)]
            choices = choices or [0]
        return S.ParamSpec("p", "choice", tuple(choices))
    low, high, log = draw(_ranges)
    if kind == "int":
        low, high = math.floor(min(low, high)), math.floor(min(low, high)) + draw(st.integers(0, 10**6))
        low, high = (max(low, 1), max(high, 1)) if log else (low, high)
    return S.ParamSpec("p", kind, low=low, high=high, log=log)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(), seed=st.integers(0, 2**16))
def test_every_kind_maps_to_a_distribution_optuna_samples_within(spec, seed):
    dist = spec.distribution()
    assert json_to_distribution(json.dumps(spec.describe()["distribution"])) == dist  # as the journal stores it
    if spec.kind == "choice":
        for choice in spec.choices:
            stored = spec.encode(choice)
            assert stored in dist.choices and spec.decode(stored) == choice
            assert type(spec.decode(stored)) is type(choice)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed), direction="maximize")
    for _ in range(3):
        trial = study.ask({"p": dist})
        value = spec.decode(trial.params["p"])
        if spec.kind == "choice":
            assert value in spec.choices
        else:
            assert spec.low <= value <= spec.high
            assert type(value) is (int if spec.kind == "int" else float)
        study.tell(trial, 0.5)


# ---------------------------------------------------------------- results


def test_rows_best_so_far_and_plots(tmp_path):
    specs = [S.ParamSpec("quality", "float", low=0.0, high=1.0), S.ParamSpec("sizes", "choice", ((784, 10), (784, 32, 10)))]
    search = S.open_search(tmp_path, specs, search="tpe", pruner="median", epochs=EPOCHS, seed=0)
    for quality in (0.5, 0.9, 0.7, 0.8, 0.6, 0.01, 0.0):
        search.study.enqueue_trial({"quality": quality, "sizes": "784,10"})
    S.run_search(search, inline(), n_trials=9)
    states = [r["state"] for r in trial_rows(search)]
    assert states[:7] == ["complete"] * 5 + ["pruned", "failed"]
    points = best_so_far(search.trials())
    assert [p[1] for p in points] == sorted(p[1] for p in points)  # never goes down
    assert all(b[0] >= a[0] for a, b in zip(points, points[1:]))
    best = search.study.best_trial
    assert points[-1][1:] == (best.value, best.number)
    paths = write_plots(search, tmp_path)
    for path in paths.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_search_on_a_dask_cluster(tmp_path, dask_cluster):
    """The real path: Dask futures, the reporter pickled to a worker process."""
    from distributed import Client

    search = S.open_search(tmp_path, QUALITY, search="tpe", pruner="median", epochs=EPOCHS, seed=0)
    for quality in (0.9, 0.92, 0.94, 0.96, 0.98, 0.05):
        search.study.enqueue_trial({"quality": quality})
    with Client(dask_cluster) as client:
        submit = lambda number, params, reporter: client.submit(_remote_trial, number, params, reporter,  # noqa: E731
                                                                 pure=False)
        told = S.run_search(search, submit, n_trials=6, max_in_flight=1)
    assert [t.state for t in told] == [TrialState.COMPLETE] * 5 + [TrialState.PRUNED]
    assert told[5].user_attrs[S.PRUNED_EPOCH] == 1
