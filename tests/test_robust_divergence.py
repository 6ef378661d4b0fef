"""Divergence: one line without NumPy's warnings before it, and advice that names the likely cause."""

import warnings

import numpy as np
import pytest
from robust_helpers import TINY, assert_one_line_error, run_main

import fastmlp


@pytest.mark.parametrize("flags, cause", [
    (["--lr", "1e6"], "lower the learning rate (now"),
    (["--weight-decay", "1e4", "--preset", "classic"], "the weight decay is too strong: with learning rate 0.05 a decay of 10000"),
    (["--init", "normal", "--init-std", "1e30"], "the initial weights (init normal, std 1e+30) or the inputs are too large"),
], ids=["lr", "weight-decay", "init-std"])
def test_divergence_is_one_line_that_names_the_cause(tiny_dir, tmp_path, flags, cause, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = run_main(capsys, "--data-dir", tiny_dir, "--out", tmp_path / "run", *TINY, "--quiet", *flags)
    assert_one_line_error(code, err, "loss became nan", cause)
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []


def test_extreme_inputs_are_blamed_when_the_first_loss_is_already_wrong():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 8)).astype(np.float32)
    x[:32] *= 1e30  # the whole first batch
    trainer = fastmlp.Trainer(fastmlp.MLP((8, 4, 2), seed=0), batch_size=32, schedule="constant", progress=False, log=None)
    with np.errstate(all="ignore"), pytest.raises(fastmlp.DivergenceError) as excinfo:
        trainer.fit(x, (x[:, 0] > 0).astype(np.int64), 1, permutations=[np.arange(64)])
    message = str(excinfo.value)
    assert "the loss before the first update was already" in message and "the inputs are too large" in message
    assert "init-std" not in message  # he init: the weights' scale is not the user's choice
