"""The training step as a list of kernel calls (fastmlp/step.py), on the CPU."""

import numpy as np
import pytest

from fastmlp import MLP, ConfigError, Trainer, kernels
from fastmlp.gradcheck import numerical_gradient, relative_error
from fastmlp.model import Dropout, backward_pass, forward_pass
from fastmlp.step import TrainStep


def _step(optimizer="momentum", n=10, batch=4, sizes=(6, 5, 4, 3)):
    rng = np.random.default_rng(0)
    model = MLP(sizes, seed=0)
    trainer = Trainer(model, optimizer=optimizer, batch_size=batch, progress=False, log=None)
    X, y = trainer.prepare(rng.standard_normal((n, sizes[0])), rng.integers(0, sizes[-1], n))
    return model, trainer, X, y


def test_the_step_is_one_fixed_list_of_kernel_calls_in_order():
    model, trainer, X, y = _step()
    step = TrainStep(model, trainer.optimizer, X, y, 4)
    assert step.steps == 3 and step.rows.tolist() == [4, 4, 2]
    assert sorted(step.calls) == [2, 4]  # the full batch and the short last one
    names = [fn.__name__ for fn, _ in step.calls[4]]
    assert names == [
        "gather_batch_cpu",
        "linear_forward_cpu", "linear_forward_cpu", "linear_forward_cpu",
        "softmax_xent_cpu", "sum_into_cpu",
        "linear_backward_cpu", "backward_input_cpu",
        "linear_backward_cpu", "backward_input_cpu",
        "linear_backward_cpu",
        "sgd_update_cpu", "advance_cpu",
    ]
    # the short step works on 2-row views of the same buffers
    gather_args = step.calls[2][0][1]
    assert gather_args[-3].shape == (2, 6) and np.shares_memory(gather_args[-3], step.ws.x)


def test_dropout_and_label_smoothing_are_kernels_of_the_same_list():
    model, trainer, X, y = _step()
    step = TrainStep(model, trainer.optimizer, X, y, 4, dropout=0.5, label_smoothing=0.1, seed=3)
    calls = step.calls[4]
    names = [fn.__name__ for fn, _ in calls]
    assert names == [
        "gather_batch_cpu",
        "linear_forward_cpu", "dropout_cpu", "linear_forward_cpu", "dropout_cpu", "linear_forward_cpu",
        "softmax_xent_cpu", "sum_into_cpu",
        "linear_backward_cpu", "backward_input_cpu", "dropout_cpu",
        "linear_backward_cpu", "backward_input_cpu", "dropout_cpu",
        "linear_backward_cpu",
        "sgd_update_cpu", "advance_cpu",
    ]
    drops = [args for fn, args in calls if fn.__name__ == "dropout_cpu"]
    assert [a[3:] for a in drops] == [(3, 1, 0.5), (3, 2, 0.5), (3, 2, 0.5), (3, 1, 0.5)]  # seed, layer, p
    assert all(a[2] is step.state for a in drops), "the masks follow the device step counter"
    assert calls[names.index("softmax_xent_cpu")][1][-1] == 0.1


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_dropout_and_label_smoothing_gradient_matches_central_differences(activation):
    # the backward pass through the dropout masks and the smoothed loss, in float64,
    # against the numerical gradient of the same masked, smoothed loss
    rng = np.random.default_rng(4)
    sizes, n, p, eps = (9, 8, 7, 4), 6, 0.4, 0.2
    model = MLP(sizes, activation=activation, dtype="float64", seed=2)
    model.params[model.n_weights :] = rng.standard_normal(model.n_params - model.n_weights) * 0.1
    x, y = rng.standard_normal((n, sizes[0])), rng.integers(0, sizes[-1], n)
    k, ws = kernels.CPU_KERNELS, model.workspace(n)
    drop = Dropout(p, 5, np.array([0, 17]), [None] + [np.zeros((n, d)) for d in sizes[1:-1]])

    def loss():
        logits = forward_pass(k, model.layers, model.codes, x, ws.acts, drop)
        return float(kernels.softmax_xent_reference(logits, y, eps)[0].mean())

    grads = np.zeros_like(model.params)
    gl = model.views(grads)
    logits = forward_pass(k, model.layers, model.codes, x, ws.acts, drop)
    k.softmax_xent(logits, y, ws.row_loss[:n], eps)
    backward_pass(k, model.layers, model.codes, x, ws.acts, ws.dacts, gl, drop)
    numeric = numerical_gradient(loss, model.params)
    mask = kernels.dropout_mask_reference((n, sizes[1]), 5, 17, 1, p)
    assert 0 < mask.mean() < 1, "some units must be dropped, some kept, for this to test anything"
    assert relative_error(grads, numeric) < 1e-6


def test_a_logistic_output_records_its_own_loss_kernel():
    rng = np.random.default_rng(0)
    model = MLP((6, 5, 1), seed=0, loss="logistic")
    trainer = Trainer(model, optimizer="sgd", batch_size=4, progress=False, log=None)
    X, y = trainer.prepare(rng.standard_normal((10, 6)), rng.integers(0, 2, 10))
    names = [fn.__name__ for fn, _ in TrainStep(model, trainer.optimizer, X, y, 4).calls[4]]
    assert names[3:5] == ["logistic_xent_cpu", "sum_into_cpu"] and "softmax_xent_cpu" not in names


def test_weighted_rows_add_one_scale_kernel_after_the_loss_and_rebuild_the_step():
    model, trainer, X, y = _step("sgd")
    step = TrainStep(model, trainer.optimizer, X, y, 4, scale_rows=True)
    names = [fn.__name__ for fn, _ in step.calls[4]]
    assert names[4:7] == ["softmax_xent_cpu", "scale_rows_cpu", "sum_into_cpu"]
    assert step.row_scale.shape == (10,) and step.row_scale.dtype == model.dtype
    plain = trainer.prepare_step(X, y)
    assert plain.row_scale is None and "scale_rows_cpu" not in [fn.__name__ for fn, _ in plain.calls[4]]
    trainer.train_epoch(X, y, 0.1, row_scale=np.arange(10.0))
    weighted = trainer._step
    assert weighted is not plain and np.array_equal(weighted.row_scale, np.arange(10.0))
    assert trainer.prepare_step(X, y, scale_rows=True) is weighted  # new weights are data: the same step
    assert trainer.prepare_step(X, y) is not weighted


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_warm_up_changes_neither_the_model_nor_the_optimiser(optimizer):
    model, trainer, X, y = _step(optimizer)
    trainer.optimizer.step(np.ones_like(model.params), 0.1)  # non-zero optimiser state
    before = [model.params.copy()] + [b.copy() for b in trainer.optimizer.buffers()]
    step = TrainStep(model, trainer.optimizer, X, y, 4)
    step.warm_up()
    after = [model.params] + trainer.optimizer.buffers()
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_each_step_reads_its_own_learning_rate_from_the_device_buffer():
    model, trainer, X, y = _step("sgd", n=8, batch=4)
    p0 = model.params.copy()
    trainer.train_epoch(X, y, lambda step: [0.0, 0.5][step])  # nothing, then a real step
    assert trainer.step_count == 2 and trainer.optimizer.t == 2
    model2, trainer2, X2, y2 = _step("sgd", n=8, batch=4)
    perm = np.random.default_rng(0).permutation(8)
    trainer2.train_epoch(X2, y2, lambda step: 0.0, permutation=perm)
    assert np.array_equal(model2.params, p0), "lr 0 must leave the parameters alone"
    assert not np.array_equal(model.params, p0)


def test_weight_decay_is_data_but_momentum_rebuilds_the_step():
    model, trainer, X, y = _step()
    first = trainer.prepare_step(X, y)
    assert trainer.prepare_step(X, y) is first
    trainer.optimizer.weight_decay = 0.5  # read from the device rates every step: the same step (and graph)
    assert trainer.prepare_step(X, y) is first
    trainer.train_epoch(X, y, 0.1)
    assert np.allclose(first.rates.T, [[0.1] * 3, [0.5] * 3])
    trainer.optimizer.momentum = 0.5  # baked into the launches: a new step
    assert trainer.prepare_step(X, y) is not first


def test_graph_options():
    model = MLP((4, 3), seed=0)
    with pytest.raises(ConfigError, match="cuda_graph"):
        Trainer(model, cuda_graph="sometimes")
    with pytest.raises(ConfigError, match="graph_scope"):
        Trainer(model, graph_scope="batch")
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        Trainer(model, cuda_graph="on")
    trainer = Trainer(model, progress=False, log=None)
    trainer.fit(np.eye(4), np.arange(4) % 3, 1)
    assert trainer.graph_info["mode"] == "eager" and "GPU" in trainer.graph_info["reason"]
