"""Optimiser updates against hand-written float64 loops, and the schedules."""

import math

import numpy as np
import pytest

from fastmlp import ConfigError, get_backend
from fastmlp.optim import SGD, Adam, make_schedule

CPU = get_backend("cpu")


def _run(opt_cls, steps=5, n_decay=4, **kw):
    rng = np.random.default_rng(0)
    p = rng.standard_normal(6)
    grads = [rng.standard_normal(6) for _ in range(steps)]
    lrs = [0.1 / (1 + i) for i in range(steps)]
    opt = opt_cls(CPU, p, n_decay, **kw)
    start = p.copy()
    for g, lr in zip(grads, lrs):
        opt.step(g.copy(), lr)
    return start, grads, lrs, p


def _decayed(g, p, wd, n_decay):
    g = g.copy()
    g[:n_decay] += wd * p[:n_decay]
    return g


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_plain_sgd(wd):
    p0, grads, lrs, p = _run(SGD, weight_decay=wd)
    q = p0.copy()
    for g, lr in zip(grads, lrs):
        q -= lr * _decayed(g, q, wd, 4)
    np.testing.assert_allclose(p, q, rtol=1e-12)


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_momentum_and_nesterov(nesterov, wd):
    p0, grads, lrs, p = _run(SGD, momentum=0.9, nesterov=nesterov, weight_decay=wd)
    q, v = p0.copy(), np.zeros(6)
    for g, lr in zip(grads, lrs):
        g = _decayed(g, q, wd, 4)
        v = 0.9 * v - lr * g
        q = q + (0.9 * v - lr * g if nesterov else v)
    np.testing.assert_allclose(p, q, rtol=1e-12)


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_adam(wd):
    p0, grads, lrs, p = _run(Adam, beta1=0.8, beta2=0.99, eps=1e-8, weight_decay=wd)
    q, m, v = p0.copy(), np.zeros(6), np.zeros(6)
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        g = _decayed(g, q, wd, 4)
        m = 0.8 * m + 0.2 * g
        v = 0.99 * v + 0.01 * g * g
        q = q - lr * (m / (1 - 0.8**t)) / (np.sqrt(v / (1 - 0.99**t)) + 1e-8)
    np.testing.assert_allclose(p, q, rtol=1e-12)


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_adam_with_sklearns_epsilon(wd):
    p0, grads, lrs, p = _run(Adam, beta1=0.8, beta2=0.99, eps=1e-3, weight_decay=wd, eps_form="sklearn")
    q, m, v = p0.copy(), np.zeros(6), np.zeros(6)
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        g = _decayed(g, q, wd, 4)
        m = 0.8 * m + 0.2 * g
        v = 0.99 * v + 0.01 * g * g
        q = q - lr * np.sqrt(1 - 0.99**t) / (1 - 0.8**t) * m / (np.sqrt(v) + 1e-3)
    np.testing.assert_allclose(p, q, rtol=1e-12)
    torch_form = _run(Adam, beta1=0.8, beta2=0.99, eps=1e-3, weight_decay=wd)[3]
    assert np.abs(torch_form - p).max() > 1e-6  # eps = 1e-3 is big enough to tell the forms apart


def _sklearn_steps(sk_optimizer, p0, grads):
    """scikit-learn's own optimiser (sklearn.neural_network._stochastic_optimizers) on the same steps."""
    params = [p0.copy()]
    opt = sk_optimizer(params)
    for g in grads:
        opt.update_params(params, [g.copy()])
    return params[0]


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_and_adam_are_sklearns_update_rules(nesterov):
    sk = pytest.importorskip("sklearn.neural_network._stochastic_optimizers")
    rng = np.random.default_rng(1)
    p0, grads = rng.standard_normal(6), [rng.standard_normal(6) for _ in range(8)]
    ours = p0.copy()
    sgd = SGD(CPU, ours, 0, momentum=0.8, nesterov=nesterov)
    for g in grads:
        sgd.step(g.copy(), 0.1)
    theirs = _sklearn_steps(lambda ps: sk.SGDOptimizer(ps, 0.1, "constant", 0.8, nesterov), p0, grads)
    np.testing.assert_allclose(ours, theirs, rtol=1e-14)
    ours = p0.copy()
    adam = Adam(CPU, ours, 0, beta1=0.8, beta2=0.99, eps=1e-3, eps_form="sklearn")
    for g in grads:
        adam.step(g.copy(), 0.01)
    theirs = _sklearn_steps(lambda ps: sk.AdamOptimizer(ps, 0.01, 0.8, 0.99, 1e-3), p0, grads)
    np.testing.assert_allclose(ours, theirs, rtol=1e-14)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_is_pytorchs_only_at_a_constant_learning_rate(nesterov):
    # torch.optim.SGD: b <- mu b + g; p <- p - lr b (Nesterov: p <- p - lr (g + mu b))
    rng = np.random.default_rng(3)
    p0, grads = rng.standard_normal(6), [rng.standard_normal(6) for _ in range(6)]
    for lrs, same in (([0.1] * 6, True), ([0.1, 0.1, 0.1, 0.01, 0.01, 0.01], False)):
        ours = p0.copy()
        opt = SGD(CPU, ours, 0, momentum=0.9, nesterov=nesterov)
        torch_form, b = p0.copy(), np.zeros(6)
        for g, lr in zip(grads, lrs):
            opt.step(g.copy(), lr)
            b = 0.9 * b + g
            torch_form -= lr * (g + 0.9 * b if nesterov else b)
        assert np.allclose(ours, torch_form, rtol=1e-12) == same


def test_decay_per_row_divides_by_the_rows_of_each_step():
    rng = np.random.default_rng(2)
    p0, g = rng.standard_normal(6), rng.standard_normal(6)
    for rows in (5, 2):
        per_row, fixed = p0.copy(), p0.copy()
        opt = SGD(CPU, per_row, n_decay=4, weight_decay=123.0)  # ignored while decay_per_row is set
        opt.decay_per_row = 0.3
        opt.step(g.copy(), 0.1, rows=rows)
        SGD(CPU, fixed, n_decay=4, weight_decay=0.3 / rows).step(g.copy(), 0.1)
        np.testing.assert_array_equal(per_row, fixed)
    with pytest.raises(ValueError, match="rows="):
        opt.step(g, 0.1)


def test_weight_decay_leaves_biases_alone():
    p = np.ones(6)
    SGD(CPU, p, n_decay=4, weight_decay=0.5).step(np.zeros(6), lr=1.0)
    np.testing.assert_allclose(p, [0.5, 0.5, 0.5, 0.5, 1, 1])


@pytest.mark.parametrize("opt", [lambda p: SGD(CPU, p, 2, momentum=0.9), lambda p: Adam(CPU, p, 2)])
def test_optimisers_minimise_a_quadratic(opt):
    target = np.array([3.0, -1.0, 0.5, 2.0])
    p = np.zeros(4)
    o = opt(p)
    for _ in range(500):
        o.step(p - target, 0.05)
    np.testing.assert_allclose(p, target, atol=1e-3)


def test_schedules():
    const = make_schedule("constant", 0.1, total_steps=100, steps_per_epoch=10)
    assert const(0) == const(99) == 0.1
    step = make_schedule("step", 0.1, total_steps=90, steps_per_epoch=10, step_epochs=3, gamma=0.5)
    assert [step(s) for s in (0, 29, 30, 59, 60)] == [0.1, 0.1, 0.05, 0.05, 0.025]
    cos = make_schedule("cosine", 0.1, total_steps=100, steps_per_epoch=10)
    assert cos(0) == pytest.approx(0.1) and cos(50) == pytest.approx(0.05) and cos(100) == pytest.approx(0.0, abs=1e-12)
    assert all(cos(s) >= cos(s + 1) for s in range(100))


@pytest.mark.parametrize("name", ["constant", "step", "cosine"])
def test_linear_warm_up_then_the_whole_schedule_over_the_remaining_steps(name):
    warm = make_schedule(name, 0.2, total_steps=100, steps_per_epoch=10, warmup_steps=20)
    plain = make_schedule(name, 0.2, total_steps=80, steps_per_epoch=10)
    assert [warm(s) for s in range(20)] == pytest.approx([0.2 * (s + 1) / 20 for s in range(20)])
    assert [warm(s) for s in range(20, 100)] == [plain(s) for s in range(80)]
    if name == "cosine":
        assert warm(19) == pytest.approx(0.2) and warm(99) < 1e-3  # peak after the warm-up, to zero at the end


def test_one_cycle_rises_to_the_peak_then_anneals():
    sched = make_schedule("onecycle", 0.4, total_steps=100, steps_per_epoch=10)
    lrs = [sched(s) for s in range(100)]
    assert lrs[0] == pytest.approx(0.4 / 25) and max(lrs) == pytest.approx(0.4) and lrs[-1] == pytest.approx(0.4 / 25e4)
    peak = lrs.index(max(lrs))
    assert peak == 29  # 30 % of the run by default
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1 : peak + 1])) and all(a > b for a, b in zip(lrs[peak:-1], lrs[peak + 1 :]))
    short = make_schedule("onecycle", 0.4, total_steps=100, steps_per_epoch=10, warmup_steps=10)
    assert short(9) == pytest.approx(0.4)


@pytest.mark.parametrize("name", ["constant", "step", "cosine", "onecycle"])
def test_a_warm_up_as_long_as_the_run_reaches_the_peak_at_its_last_step(name):
    # a one-epoch run of a preset whose warm-up is one epoch
    lr = make_schedule(name, 0.2, total_steps=10, steps_per_epoch=10, warmup_steps=10)
    lrs = [lr(s) for s in range(10)]
    assert lrs[-1] == pytest.approx(0.2) and all(a < b for a, b in zip(lrs, lrs[1:]))


@pytest.mark.parametrize("total, warmup", [(100, 0), (1876, 234), (10, 3)])
def test_one_cycle_gives_pytorchs_numbers(total, warmup):
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    kw = {"pct_start": warmup / total} if warmup else {}
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.2, total_steps=total, **kw)
    want = []
    for _ in range(total):
        want.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    mine = make_schedule("onecycle", 0.2, total, 10, warmup_steps=warmup)
    assert [mine(s) for s in range(total)] == pytest.approx(want, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(
    "make",
    [
        lambda: make_schedule("linear", 0.1, 10, 1),
        lambda: make_schedule("cosine", 0.1, 10, 1, warmup_steps=11),
        lambda: make_schedule("cosine", 0.1, 10, 1, warmup_steps=-1),
        lambda: make_schedule("constant", -0.1, 10, 1),
        lambda: make_schedule("constant", math.nan, 10, 1),
        lambda: SGD(CPU, np.zeros(2), 1, momentum=1.5),
        lambda: SGD(CPU, np.zeros(2), 1, nesterov=True),
        lambda: SGD(CPU, np.zeros(2), 1, weight_decay=-1),
        lambda: Adam(CPU, np.zeros(2), 1, beta1=1.0),
        lambda: Adam(CPU, np.zeros(2), 1, eps_form="keras"),
    ],
)
def test_bad_settings_are_config_errors(make):
    with pytest.raises(ConfigError):
        make()
