"""Issue 23, family 1: divergence in the last update of an epoch.

Each loss is measured before its update, so parameters that the last update of an
epoch makes NaN or inf show in no loss. They are checked after every epoch's last
update (one reduction on the device, read back with the epoch's losses), before
any checkpoint or model is written: the CLI fails with one line and writes no
non-finite file, the Trainer raises a DivergenceError, and the estimators raise
scikit-learn's ValueError ("Solver produced non-finite parameter weights.") with
the likely cause. A run that does not diverge is unchanged, bit for bit.
"""

import math
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import make_idx_dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from robust_helpers import assert_one_line_error, run_main

import fastmlp
from fastmlp.checkpoint import NAME, load_checkpoint
from fastmlp.estimators import MLPClassifier, MLPRegressor
from fastmlp.model import MLP
from fastmlp.step import TrainStep

FEW = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SKLEARN_START = "Solver produced non-finite parameter weights."
# learning rates beyond float32's range: the device's rate is inf, so the first update is
# NaN or inf whatever the gradient (inf * 0 is NaN)
HUGE_LR = st.sampled_from([1e39, 1e100, 1e200, 1e300])
TINY_RUN = ["--sizes", "784,8,10", "--no-plots", "--quiet"]  # 240 training rows (conftest's tiny set)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_idx_dataset(tmp_path_factory.mktemp("tiny"))


def _floats(path):
    """Every float member of an .npz (parameters, optimiser state, loss history)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if z[k].dtype.kind == "f"}


def _all_finite(path):
    return all(np.isfinite(a).all() for a in _floats(path).values())


def _assert_nothing_non_finite_written(out):
    """No model (the run failed) and, if a checkpoint is there, a finite one."""
    assert not (out / "model.npz").exists()
    assert not (out / "metrics.json").exists()
    if (out / NAME).exists():
        assert _all_finite(out / NAME)


# ---------------------------------------------------------------- the CLI

def test_the_issue_command_exits_1_and_writes_nothing(tiny, tmp_path, capsys):
    """The issue's example: one full-batch epoch at --lr 1e300 made an all-NaN model,
    "test accuracy 8.40 %" and exit 0."""
    out = tmp_path / "run"
    code, stdout, err = run_main(capsys, "--data-dir", tiny, "--out", out, *TINY_RUN, "--epochs", "1",
                                 "--batch-size", "100000", "--lr", "1e300", "--warmup", "0", "--schedule", "constant")
    assert_one_line_error(code, err, "the parameters became NaN or inf in the last update of epoch 1 (step 1 of 1",
                          "the learning rate (or its schedule) is too large", "lower the learning rate (now 1e+300",
                          "try --lr 0.1")
    assert "inputs" not in err and "test accuracy" not in stdout
    _assert_nothing_non_finite_written(out)


@FEW
@given(lr=HUGE_LR, batch=st.sampled_from([32, 100, 240, 100000]), epochs=st.integers(1, 3),
       optimizer=st.sampled_from(["sgd", "momentum", "adam"]), schedule=st.sampled_from(["constant", "cosine"]),
       warmup=st.sampled_from(["0", "1"]))
def test_a_diverging_cli_run_exits_1_with_one_line_and_no_non_finite_file(tiny, capsys, lr, batch, epochs, optimizer,
                                                                          schedule, warmup):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        code, stdout, err = run_main(capsys, "--data-dir", tiny, "--out", out, *TINY_RUN, "--lr", lr,
                                     "--batch-size", batch, "--epochs", epochs, "--optimizer", optimizer,
                                     "--schedule", schedule, "--warmup", warmup)
        assert_one_line_error(code, err, "epoch 1")  # the first update already overflows
        assert "test accuracy" not in stdout
        if batch >= 240:  # one step per epoch: every update is an epoch's last, which only the new check sees
            assert "the parameters became NaN or inf in the last update of epoch 1" in err
        assert "is intact" not in err  # no epoch finished, so no checkpoint can be claimed
        _assert_nothing_non_finite_written(out)


def _diverge_at_last_step_of(epoch):
    """A TrainStep.start_epoch that gives the last step of ``epoch`` a learning rate of
    1e300 (inf on the device): the last update of that epoch, and only it, diverges."""
    real = TrainStep.start_epoch

    def start_epoch(self, perm, lrs, wds, t, row_scale=None):
        if t // len(lrs) == epoch - 1:  # t: the steps done before this epoch
            lrs = [*lrs[:-1], 1e300]
        return real(self, perm, lrs, wds, t, row_scale)

    return start_epoch


@FEW
@given(bad_epoch=st.integers(2, 3), batch=st.sampled_from([32, 100, 240]),
       optimizer=st.sampled_from(["sgd", "momentum", "adam"]))
def test_divergence_in_a_later_epoch_keeps_the_last_finite_checkpoint_and_says_so_truly(tiny, capsys, bad_epoch, batch,
                                                                                        optimizer):
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        mp.setattr(TrainStep, "start_epoch", _diverge_at_last_step_of(bad_epoch))
        out = Path(tmp) / "run"
        lr = "0.001" if optimizer == "adam" else "0.05"
        code, _, err = run_main(capsys, "--data-dir", tiny, "--out", out, *TINY_RUN, "--epochs", "3",
                                "--batch-size", batch, "--optimizer", optimizer, "--lr", lr)
        steps = -(-240 // batch)
        assert_one_line_error(code, err,
                              f"the parameters became NaN or inf in the last update of epoch {bad_epoch} "
                              f"(step {steps} of {steps}", "the learning rate (or its schedule) is too large",
                              f"the checkpoint of epoch {bad_epoch - 1} in {out} is intact")
        _assert_nothing_non_finite_written(out)
        ck = load_checkpoint(out / NAME)[1]
        assert ck["epochs_done"] == bad_epoch - 1  # the claim is true: that epoch's checkpoint, finite


def test_resuming_the_kept_checkpoint_runs_on(tiny, tmp_path, capsys):
    """The checkpoint said to be intact is usable: --resume finishes the run from it."""
    out = tmp_path / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(TrainStep, "start_epoch", _diverge_at_last_step_of(2))
        code, _, err = run_main(capsys, "--data-dir", tiny, "--out", out, *TINY_RUN, "--epochs", "2",
                                "--batch-size", "100")
    assert code == 1 and "the checkpoint of epoch 1" in err
    code, stdout, err = run_main(capsys, "--resume", out, "--quiet")
    assert code == 0, err
    assert _all_finite(out / "model.npz") and _all_finite(out / NAME)


# ---------------------------------------------------------------- the Trainer

def _blobs(n=120, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    return (rng.standard_normal((k, d))[y] * 2 + rng.standard_normal((n, d))).astype(np.float32), y


@FEW
@given(log_lr=st.floats(-3, 300), batch=st.sampled_from([16, 50, 120]), epochs=st.integers(1, 3),
       optimizer=st.sampled_from(["sgd", "momentum", "nesterov", "adam"]))
def test_the_trainer_never_hands_on_epoch_non_finite_parameters(log_lr, batch, epochs, optimizer):
    x, y = _blobs()
    model = MLP((6, 8, 3), seed=0)
    seen = []
    trainer = fastmlp.Trainer(model, optimizer=optimizer, lr=10.0 ** log_lr, batch_size=batch, schedule="constant",
                              progress=False, log=None)
    on_epoch = lambda tr: seen.append(bool(np.isfinite(tr.model.params).all()))  # noqa: E731
    with np.errstate(all="ignore"):
        try:
            trainer.fit(x, y, epochs, on_epoch=on_epoch)
        except fastmlp.DivergenceError as exc:
            message = str(exc)
            assert trainer.epochs_done == len(seen) < epochs
            if message.startswith("the parameters became NaN or inf"):
                assert f"in the last update of epoch {len(seen) + 1}" in message
                assert "the learning rate (or its schedule) is too large" in message
                assert f"try --lr {min(10.0 ** log_lr / 10, 1e-3 if optimizer == 'adam' else 0.1):g}" in message
            else:
                assert message.startswith("loss became")
        else:
            assert len(seen) == epochs and np.isfinite(model.params).all()
    assert all(seen)


@FEW
@given(optimizer=st.sampled_from(["sgd", "momentum", "adam"]), batch=st.sampled_from([16, 50, 120]),
       epochs=st.integers(1, 3), seed=st.integers(0, 3))
def test_a_normal_run_is_unchanged_and_checks_once_per_epoch(optimizer, batch, epochs, seed):
    """The check only reads: the parameters are bit for bit those of a run without it,
    and it runs once per epoch (never per batch)."""
    x, y = _blobs(seed=seed)
    results = []
    for check in (True, False):
        calls = []
        real = MLP.finite_flag
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(MLP, "finite_flag", lambda self: calls.append(1) or (real(self) if check else True))
            model = MLP((6, 8, 3), seed=seed)
            fastmlp.Trainer(model, optimizer=optimizer, lr=0.01, batch_size=batch, seed=seed, progress=False,
                            log=None).fit(x, y, epochs)
        assert len(calls) == epochs
        results.append(np.array(model.params, copy=True))
    assert results[0].tobytes() == results[1].tobytes()


# ---------------------------------------------------------------- the estimators

def _xy(n=60, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    return X, (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64)


@FEW
@given(lr=HUGE_LR, solver=st.sampled_from(["sgd", "adam"]), max_iter=st.integers(1, 3),
       batch=st.sampled_from([16, 60, "auto"]), how=st.sampled_from(["fit", "partial_fit", "regressor"]),
       schedule=st.sampled_from(["constant", "invscaling", "adaptive"]))
def test_an_estimator_whose_rate_blows_up_raises_sklearns_error_naming_the_rate(lr, solver, max_iter, batch, how,
                                                                                schedule):
    X, y = _xy()
    kw = dict(hidden_layer_sizes=(5,), solver=solver, learning_rate_init=lr, max_iter=max_iter, batch_size=batch,
              learning_rate=schedule, random_state=0)
    with warnings.catch_warnings(), np.errstate(all="ignore"), pytest.raises(ValueError) as excinfo:
        warnings.simplefilter("ignore")
        if how == "regressor":
            MLPRegressor(**kw).fit(X, X[:, 0] - X[:, 1])
        elif how == "fit":
            MLPClassifier(**kw).fit(X, y)
        else:
            MLPClassifier(**kw).partial_fit(X, y, classes=[0, 1])
    message = str(excinfo.value)
    assert message.startswith(SKLEARN_START), message
    assert "The input data may contain large values" not in message  # the loss was sane at the start
    assert f"learning_rate_init={lr:g} is too large for solver={solver!r}" in message
    assert "the weights became NaN or inf in epoch 1" in message and "try learning_rate_init=0.001" in message


@FEW
@given(scale=st.sampled_from([1e25, 1e30, 3e37]), solver=st.sampled_from(["sgd", "adam"]),
       how=st.sampled_from(["fit", "partial_fit"]))
def test_an_estimator_on_huge_inputs_blames_the_inputs(scale, solver, how):
    """Huge features: a loss already huge (or inf) before the first update, so the
    inputs are blamed, in scikit-learn's own words. (Adam's steps do not grow with the
    gradient, so it may end with huge but finite weights, which scikit-learn accepts too.)"""
    X, y = _xy()
    X = X * np.float32(scale)
    est = MLPClassifier((5,), solver=solver, max_iter=2, random_state=0)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            if how == "fit":
                est.fit(X, y)
            for _ in range(2 if how == "partial_fit" else 0):  # one epoch may leave huge but finite weights
                est.partial_fit(X, y, classes=[0, 1])
        except ValueError as exc:
            message = str(exc)
        else:
            assert solver == "adam", "plain SGD's steps grow with the huge gradient and must overflow"
            return
    assert message.startswith("Solver produced non-finite parameter weights. The input data may contain large values "
                              "and need to be preprocessed. The loss before the first update was already"), message
    assert "StandardScaler" in message and "learning_rate_init" not in message


def test_early_stopping_that_kept_non_finite_weights_raises_naming_the_rate():
    X, y = _xy(200)
    est = MLPClassifier((5,), solver="sgd", learning_rate_init=1e300, max_iter=4, early_stopping=True, random_state=0)
    with warnings.catch_warnings(), np.errstate(all="ignore"), pytest.raises(ValueError) as excinfo:
        warnings.simplefilter("ignore")
        est.fit(X, y)
    message = str(excinfo.value)
    assert message.startswith(SKLEARN_START) and "learning_rate_init=1e+300 is too large" in message


@pytest.mark.parametrize("estimator", [MLPClassifier, MLPRegressor])
def test_lbfgs_checks_its_result(monkeypatch, estimator):
    """SciPy's result is checked before the estimator is returned: NaN weights from the
    optimiser are scikit-learn's error (with a sane start, not blamed on the inputs)."""
    import fastmlp.estimators.lbfgs as lbfgs

    real = lbfgs.scipy.optimize.minimize

    def minimize(*args, **kwargs):
        result = real(*args, **kwargs)
        result.x[-1] = np.nan
        return result

    monkeypatch.setattr(lbfgs.scipy.optimize, "minimize", minimize)
    X, y = _xy()
    with warnings.catch_warnings(), pytest.raises(ValueError) as excinfo:
        warnings.simplefilter("ignore")
        estimator(hidden_layer_sizes=(5,), solver="lbfgs", max_iter=3, random_state=0).fit(X, y)
    message = str(excinfo.value)
    assert message.startswith(SKLEARN_START) and "L-BFGS-B's line search reached NaN or inf weights" in message


@FEW
@given(solver=st.sampled_from(["sgd", "adam", "lbfgs"]), max_iter=st.integers(1, 4), seed=st.integers(0, 3),
       batch=st.sampled_from([16, "auto"]))
def test_a_normal_estimator_fit_is_unchanged(solver, max_iter, seed, batch):
    X, y = _xy(seed=seed)
    coefs = []
    for check in (True, False):
        real = MLP.finite_flag
        with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mp.setattr(MLP, "finite_flag", lambda self: real(self) if check else True)
            est = MLPClassifier((5,), solver=solver, max_iter=max_iter, batch_size=batch, random_state=seed).fit(X, y)
        coefs.append(np.concatenate([np.ravel(a) for a in (*est.coefs_, *est.intercepts_)]))
    assert coefs[0].tobytes() == coefs[1].tobytes()
    assert np.isfinite(coefs[0]).all()


# ---------------------------------------------------------------- the messages' causes

@pytest.mark.parametrize("first, cause", [
    (2.3, "the learning rate (or its schedule) is too large"),
    (math.inf, "the inputs are too large"),
    (1e6, "the inputs are too large"),
])
def test_the_parameter_divergence_names_its_cause_from_the_first_loss(first, cause):
    from fastmlp.errors import parameter_divergence_error

    trainer = fastmlp.Trainer(MLP((6, 8, 10), seed=0), optimizer="momentum", lr=0.5, schedule="cosine",
                              progress=False, log=None)
    trainer.history["iter_loss"] = [first, 2.0]
    message = str(parameter_divergence_error(trainer, 3, np.array([2.0, 1.5]), 0.25))
    assert message.startswith("the parameters became NaN or inf in the last update of epoch 3 (step 2 of 2")
    assert cause in message
    if "learning rate" in cause:
        assert re.search(r"lower the learning rate \(now 0\.25 at this step, peak 0\.5; try --lr 0\.05\)", message)
