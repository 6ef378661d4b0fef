"""The MLP's hand-written backward against central differences, and its parameters."""

import numpy as np
import pytest

from fastmlp import MLP, Backend, ConfigError, gradcheck
from fastmlp.gradcheck import numerical_gradient, relative_error


def _model(sizes, activation, seed=3):
    model = MLP(sizes, activation=activation, dtype="float64", seed=seed)
    # non-zero biases, so the bias gradients are not trivially checked at 0
    model.params[model.n_weights :] = np.random.default_rng(seed).standard_normal(model.n_params - model.n_weights) * 0.1
    return model


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "identity"])
@pytest.mark.parametrize("sizes", [(12, 5), (12, 9, 5), (12, 9, 7, 5)])
def test_backward_matches_central_differences(activation, sizes):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, sizes[0]))
    y = rng.integers(0, sizes[-1], 7)
    result = gradcheck(_model(sizes, activation), x, y)
    assert result["max"] < 1e-6, result


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_logistic_output_backward_matches_central_differences(activation):
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((9, 8)), rng.integers(0, 2, 9)
    model = MLP((8, 6, 1), activation=activation, dtype="float64", seed=3, loss="logistic")
    model.params[model.n_weights :] = rng.standard_normal(7) * 0.1
    assert model.loss_op == "logistic_xent" and model.loss_kernel is model.backend.kernels.logistic_xent
    assert gradcheck(model, x, y)["max"] < 1e-6


def test_logistic_output_predicts_like_a_two_class_softmax_over_0_and_z():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((30, 8))
    logistic = MLP((8, 6, 1), dtype="float64", seed=1, loss="logistic")
    twin = MLP((8, 6, 2), dtype="float64", seed=1)  # second column z, first column 0: the same classifier
    for (W, b), layer in zip(logistic.layers, twin.layers):
        layer.W[...] = np.hstack([np.zeros_like(W), W]) if W.shape[1] == 1 else W
        layer.b[...] = np.concatenate([np.zeros_like(b), b]) if b.size == 1 else b
    assert logistic.n_classes == twin.n_classes == 2
    np.testing.assert_allclose(logistic.predict_proba(x), twin.predict_proba(x), rtol=1e-13)
    np.testing.assert_array_equal(logistic.predict(x), twin.predict(x))
    assert 0 < logistic.predict(x).mean() < 1
    assert "loss='logistic'" in repr(logistic) and logistic.to("cpu").loss == "logistic"


@pytest.mark.parametrize("sizes, loss", [((8, 6, 3), "softmax"), ((8, 6, 1), "logistic")])
def test_row_scale_weights_rows_like_repeating_them(sizes, loss):
    # integer weights w: the weighted mean over the rows is the plain mean over the rows
    # repeated w times, and row_scale = w k / sum(w) turns the kernel's mean into it
    rng = np.random.default_rng(6)
    x, y, w = rng.standard_normal((7, 8)), rng.integers(0, 2, 7), np.array([1, 2, 0, 3, 1, 1, 2])
    model = MLP(sizes, dtype="float64", seed=2, loss=loss)
    grads, want = np.zeros_like(model.params), np.zeros_like(model.params)
    row_loss = model.loss_and_grad(x, y, model.workspace(7), model.views(grads), row_scale=w * 7 / w.sum())
    rep = np.repeat(np.arange(7), w)
    want_loss = model.loss_and_grad(x[rep], y[rep], model.workspace(len(rep)), model.views(want))
    np.testing.assert_allclose(grads, want, rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(row_loss.sum() / 7, want_loss.mean(), rtol=1e-12)


def test_gradcheck_catches_a_wrong_backward():
    # The check must be able to fail: drop the ReLU derivative from the backward
    # kernel (keep only delta @ W.T) and it must notice.
    model = _model((12, 9, 5), "relu")
    k = model.backend.kernels
    wrong = k._replace(backward_input=lambda delta, W, out_prev, d_prev, code: np.matmul(delta, W.T, out=d_prev))
    model.backend = Backend("cpu", np, wrong)
    rng = np.random.default_rng(1)
    result = gradcheck(model, rng.standard_normal((7, 12)), rng.integers(0, 5, 7))
    assert result["max"] > 1e-2


def test_gradcheck_samples_large_layers_and_needs_float64():
    rng = np.random.default_rng(2)
    model = _model((784, 32, 10), "relu")
    x, y = rng.random((4, 784)), rng.integers(0, 10, 4)
    assert gradcheck(model, x, y, max_per_layer=40)["max"] < 1e-6
    with pytest.raises(ConfigError, match="float64"):
        gradcheck(MLP((4, 3)), x[:, :4], y % 3)


def test_numerical_gradient_of_a_known_function():
    x = np.array([1.0, -2.0, 3.0])
    g = numerical_gradient(lambda: float((x**3).sum()), x)
    assert relative_error(g, 3 * x**2) < 1e-8
    assert np.array_equal(x, [1.0, -2.0, 3.0])  # restored


def test_layers_are_views_of_the_flat_parameters():
    model = MLP((6, 4, 3), seed=0)
    assert model.params.size == 6 * 4 + 4 * 3 + 4 + 3
    model.layers[1].W[0, 0] = 123.0
    model.layers[0].b[2] = -7.0
    assert 123.0 in model.params and -7.0 in model.params
    # weights first, then biases: weight decay can act on params[:n_weights]
    assert np.shares_memory(model.layers[1].b, model.params[model.n_weights :])


def test_get_layers_returns_copies():
    model = MLP((6, 4, 3), seed=0)
    before = model.params.copy()
    for W, b in model.get_layers():
        assert not np.shares_memory(W, model.params) and not np.shares_memory(b, model.params)
        W[...], b[...] = 1.0, 1.0
    np.testing.assert_array_equal(model.params, before)


def test_init_schemes_have_the_documented_scale():
    he = MLP((1000, 500), init="he", seed=0).layers[0].W
    assert abs(he.std() - np.sqrt(2 / 1000)) < 0.002
    xav = MLP((1000, 500), init="xavier", seed=0).layers[0].W
    limit = np.sqrt(6 / 1500)
    assert xav.max() <= limit and xav.min() >= -limit and xav.max() > 0.95 * limit
    normal = MLP((1000, 500), init="normal", init_std=0.01, seed=0).layers[0].W
    assert abs(normal.std() - 0.01) < 0.0005
    assert MLP((1000, 500), activation="sigmoid").init == "xavier"
    assert np.all(MLP((10, 5)).layers[0].b == 0)


def test_same_seed_same_parameters_different_seed_different():
    a, b, c = MLP((20, 8, 3), seed=5), MLP((20, 8, 3), seed=5), MLP((20, 8, 3), seed=6)
    assert np.array_equal(a.params, b.params) and not np.array_equal(a.params, c.params)


def test_dtypes_and_predictions():
    rng = np.random.default_rng(0)
    x = rng.random((11, 6)).astype(np.float32)
    m32, m64 = MLP((6, 5, 4)), MLP((6, 5, 4), dtype="float64")
    assert m32.params.dtype == np.float32 and m64.params.dtype == np.float64
    p = m32.predict_proba(x)
    assert p.shape == (11, 4) and np.allclose(p.sum(axis=1), 1, atol=1e-6)
    assert np.array_equal(m32.predict(x), p.argmax(axis=1))
    # chunked evaluation gives the same logits as one pass
    assert np.allclose(m32.logits(x, batch_size=3), m32.logits(x), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(sizes=(784,)), "at least two"),
        (dict(sizes=(784, 0, 10)), "positive"),
        (dict(sizes=("a", 10)), "integers"),
        (dict(sizes=(4, 3), activation="swish"), "unknown activation"),
        (dict(sizes=(4, 3), init="zeros"), "unknown init"),
        (dict(sizes=(4, 3), dtype="float16"), "float32 or float64"),
        (dict(sizes=(4, 3), loss="hinge"), "unknown loss"),
        (dict(sizes=(4, 2), loss="logistic"), "make the last size 1"),
        (dict(sizes=(4, 3), seed=-1), "seed must be an integer >= 0, got -1"),
        (dict(sizes=(4, 3), seed=0.5), "seed must be an integer"),
        (dict(sizes=(4, 3), init="normal", init_std=float("inf")), "init_std must be a positive finite number"),
        (dict(sizes=(4, 3), init="normal", init_std=0.0), "init_std must be a positive finite number"),
    ],
)
def test_bad_model_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        MLP(**kwargs)


def test_bad_input_at_predict_is_a_clear_error():
    with pytest.raises(ConfigError, match="expects"):
        MLP((6, 3)).predict(np.zeros((2, 5), dtype=np.float32))
    with pytest.raises(ConfigError, match="expects"):
        MLP((6, 3)).predict(np.zeros(6, dtype=np.float32))
    x = np.zeros((2, 6), dtype=np.float32)
    x[1, 2] = np.inf
    with pytest.raises(ConfigError, match="NaN or inf"):
        MLP((6, 3)).predict(x)
