"""The training loop: reproducibility, partial batches, errors, and real MNIST."""

import numpy as np
import pytest

from fastmlp import MLP, ConfigError, DivergenceError, Trainer


def _blobs(n=300, d=20, k=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 3
    y = rng.integers(0, k, n)
    return (centers[y] + rng.standard_normal((n, d))).astype(np.float32), y


def _train(seed=0, epochs=1, **kw):
    x, y = _blobs()
    model = MLP((20, 16, 4), seed=seed)
    Trainer(model, batch_size=32, seed=seed, progress=False, log=None, **kw).fit(x, y, epochs)
    return model


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
def test_same_seed_gives_bit_identical_parameters(optimizer):
    a = _train(seed=1, optimizer=optimizer)
    b = _train(seed=1, optimizer=optimizer)
    c = _train(seed=2, optimizer=optimizer)
    assert np.array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)


def test_learns_a_separable_problem_and_records_history():
    x, y = _blobs()
    model = MLP((20, 16, 4), seed=0)
    h = Trainer(model, batch_size=32, lr=0.05, progress=False, log=None).fit(x, y, 5, X_test=x, y_test=y)
    assert h["train_loss"][-1] < h["train_loss"][0]
    assert h["test_acc"][-1] > 0.95
    # 300 rows in batches of 32: 9 full + 1 partial step per epoch
    assert h["steps_per_epoch"] == 10 and len(h["iter_loss"]) == 50
    assert h["epoch"] == [1, 2, 3, 4, 5] and len(h["samples_per_s"]) == 5


def test_fixed_batch_order_matches_a_hand_written_epoch():
    # Trainer with given permutations == the same steps written out by hand (plain SGD).
    x, y = _blobs(n=70)
    perm = np.random.default_rng(3).permutation(70)
    model = MLP((20, 8, 4), seed=0, dtype="float64")
    Trainer(model, optimizer="sgd", lr=0.1, batch_size=32, schedule="constant", progress=False, log=None).fit(
        x, y, 1, permutations=[perm]
    )
    ref = MLP((20, 8, 4), seed=0, dtype="float64")
    grads = np.zeros_like(ref.params)
    gl = ref.views(grads)
    for s in range(0, 70, 32):
        idx = perm[s : s + 32]
        xb = x[idx].astype(np.float64)
        ref.loss_and_grad(xb, y[idx], ref.workspace(len(idx)), gl)
        ref.params -= 0.1 * grads
    np.testing.assert_allclose(model.params, ref.params, rtol=1e-12, atol=1e-14)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_divergence_names_epoch_and_step():
    x, y = _blobs()
    x[5] = 1e30  # overflows float32 logits to inf in the first epoch
    model = MLP((20, 16, 4), seed=0)
    with pytest.raises(DivergenceError, match=r"epoch 1, step \d+ of 10.*lower the learning rate"):
        Trainer(model, batch_size=32, progress=False, log=None).fit(x, y, 1)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda x, y: (x[:, :5], y), "features but sizes start with 20"),
        (lambda x, y: (x, y + 10), "labels span"),
        (lambda x, y: (x, y[:-1]), "labels of shape"),
        (lambda x, y: (np.where(x > 2, np.nan, x), y), "NaN or inf"),
        (lambda x, y: (x[0], y), "2-D array"),
        (lambda x, y: (x[:0], y[:0]), "empty"),
    ],
)
def test_bad_training_data_is_a_clear_error(change, message):
    x, y = change(*_blobs())
    with pytest.raises(ConfigError, match=message):
        Trainer(MLP((20, 16, 4)), progress=False, log=None).fit(x, y, 1)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(batch_size=0), "batch size"),
        (dict(batch_size=-3), "batch size"),
        (dict(lr=0), "learning rate"),
        (dict(lr=-1.0), "learning rate"),
        (dict(optimizer="rmsprop"), "unknown optimizer"),
        (dict(dropout=1.0), "dropout"),
        (dict(label_smoothing=-0.1), "label_smoothing"),
        (dict(warmup=-1), "warmup"),
        (dict(target_accuracy=1.5), "target_accuracy"),
        (dict(eval_every=0), "eval_every"),
    ],
)
def test_bad_trainer_settings_are_clear_errors(kw, message):
    with pytest.raises(ConfigError, match=message):
        Trainer(MLP((20, 16, 4)), **kw)


def test_uint8_pixels_stay_uint8_on_the_device_and_train_like_the_float_data():
    rng = np.random.default_rng(0)
    x8 = rng.integers(0, 256, (200, 20)).astype(np.uint8)
    y = (x8[:, 0] > 127).astype(np.int64)
    normalized = np.divide(x8, np.float32(255.0), dtype=np.float32)  # load_mnist(normalize=True)
    runs = []
    for x in (x8, normalized):
        model = MLP((20, 16, 2), seed=0)
        trainer = Trainer(model, batch_size=32, progress=False, log=None)
        xd, yd = trainer.prepare(x, y)
        assert xd.dtype == x.dtype  # uint8 kept: a quarter of the memory
        h = trainer.fit(x, y, 2, X_test=x, y_test=y)
        runs.append((model, h))
    (m8, h8), (mf, hf) = runs
    np.testing.assert_allclose(m8.params, mf.params, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(h8["iter_loss"], hf["iter_loss"], rtol=1e-4)
    assert h8["test_acc"] == hf["test_acc"]  # evaluation scales uint8 the same way
    np.testing.assert_allclose(m8.predict_proba(x8), m8.predict_proba(normalized), rtol=1e-5)  # x / 255 vs x * (1 / 255)


def test_dropout_training_is_reproducible_from_the_seed_and_not_a_no_op():
    plain = _train(seed=1)
    a, b = _train(seed=1, dropout=0.3), _train(seed=1, dropout=0.3)
    c = _train(seed=2, dropout=0.3)
    assert np.array_equal(a.params, b.params)
    assert not np.array_equal(a.params, plain.params) and not np.array_equal(a.params, c.params)
    assert np.array_equal(_train(seed=1, dropout=0.0).params, plain.params)


def test_changing_the_recipe_rebuilds_the_step():
    x, y = _blobs()
    trainer = Trainer(MLP((20, 16, 4)), batch_size=32, progress=False, log=None)
    xd, yd = trainer.prepare(x, y)
    first = trainer.prepare_step(xd, yd)
    trainer.dropout = 0.2
    second = trainer.prepare_step(xd, yd)
    assert second is not first and second.dropout.p == 0.2
    trainer.label_smoothing = 0.1
    assert trainer.prepare_step(xd, yd) is not second


def test_warm_up_and_one_cycle_reach_the_trainer():
    x, y = _blobs()
    h = Trainer(MLP((20, 16, 4)), batch_size=32, lr=0.1, warmup=1, progress=False, log=None).fit(x, y, 3)
    assert h["lr"] == pytest.approx([0.1 / 10, 0.1, 0.05])  # 10 steps of warm-up, then cosine over 20
    h = Trainer(MLP((20, 16, 4)), batch_size=32, lr=0.1, schedule="onecycle", progress=False, log=None).fit(x, y, 2)
    assert h["lr"][0] == pytest.approx(0.1 / 25)


def test_target_accuracy_stops_mid_epoch_with_evaluation_off_the_clock():
    x, y = _blobs(n=3000)
    lines = []
    trainer = Trainer(MLP((20, 16, 4), seed=0), batch_size=32, lr=0.05, target_accuracy=0.95, eval_every=5,
                      progress=False, log=lines.append)
    h = trainer.fit(x, y, 3, X_test=x[:500], y_test=y[:500])
    t = h["target"]
    assert t["reached"] and t["split"] == "test" and t["accuracy_reached"] >= 0.95
    assert t["step"] % 5 == 0 and t["step"] == trainer.step_count < 94, "stopped inside the first epoch"
    assert h["epoch"] == [1] and len(h["iter_loss"]) == t["step"]
    assert t["train_seconds"] == h["epoch_time"][0]
    assert "there is no validation split" in lines[0] and "reached" in lines[-1]


def test_target_accuracy_watches_the_validation_split_and_says_when_it_is_not_reached():
    x, y = _blobs()
    h = Trainer(MLP((20, 16, 4), seed=0), batch_size=32, target_accuracy=1.0, progress=False, log=None).fit(
        x, y, 2, X_test=x, y_test=y, X_val=x[:50], y_val=(y[:50] + 1) % 4)  # wrong labels: never reached
    assert h["target"]["split"] == "validation" and not h["target"]["reached"] and h["epoch"] == [1, 2]
    with pytest.raises(ConfigError, match="needs data"):
        Trainer(MLP((20, 16, 4)), target_accuracy=0.9, progress=False, log=None).fit(x, y, 1)


def test_zero_epochs_is_an_error():
    with pytest.raises(ConfigError, match="epochs"):
        Trainer(MLP((20, 16, 4)), progress=False, log=None).fit(*_blobs(), 0)


@pytest.mark.slow
def test_real_mnist_subset_learns_well_above_chance(mnist):
    model = MLP((784, 64, 10), seed=0)
    trainer = Trainer(model, batch_size=128, lr=0.05, progress=False, log=None)
    h = trainer.fit(mnist.x_train[:12000], mnist.y_train[:12000], 2, X_test=mnist.x_test, y_test=mnist.y_test)
    assert h["test_acc"][-1] > 0.90, h["test_acc"]
