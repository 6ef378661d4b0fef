"""The training loop: reproducibility, partial batches, errors, and real MNIST."""

import numpy as np
import pytest

from fastmlp import MLP, ConfigError, DivergenceError, Trainer

# Plain mini-batch training, without the default recipe's weight decay, warm-up and
# dropout: what the hand-written references below compute.
PLAIN = dict(weight_decay=0.0, warmup=0.0, dropout=0.0)


def _blobs(n=300, d=20, k=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 3
    y = rng.integers(0, k, n)
    return (centers[y] + rng.standard_normal((n, d))).astype(np.float32), y


def _train(seed=0, epochs=1, **kw):
    x, y = _blobs()
    model = MLP((20, 16, 4), seed=seed)
    Trainer(model, batch_size=32, seed=seed, progress=False, log=None, **{**PLAIN, **kw}).fit(x, y, epochs)
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
    Trainer(model, optimizer="sgd", lr=0.1, batch_size=32, schedule="constant", progress=False, log=None, **PLAIN).fit(
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


def test_trains_and_evaluates_a_logistic_output():
    x, y = _blobs(k=2)
    model = MLP((20, 8, 1), seed=0, loss="logistic")
    h = Trainer(model, batch_size=32, lr=0.05, progress=False, log=None).fit(x, y, 3, X_test=x, y_test=y)
    assert h["train_loss"][-1] < h["train_loss"][0] < 1 and h["test_acc"][-1] > 0.95
    assert h["test_acc"][-1] == (model.predict(x) == y).mean()
    with pytest.raises(ConfigError, match=r"labels span 0\.\.2 but the model has 2 classes"):
        Trainer(model, progress=False, log=None).fit(x, np.where(y == 1, 2, 0), 1)


def test_row_scale_and_step_rows_weight_the_rows_and_the_decay():
    # train_epoch's hooks for sample weights: with every row's loss and gradient times 2
    # and half the step_rows (so twice the decay_per_row / step_rows), plain SGD takes
    # the steps it takes at twice the learning rate.
    x, y = _blobs(n=70)
    perm = np.random.default_rng(3).permutation(70)
    results = []
    for lr, scale, step_rows in ((0.2, None, [16.0, 16.0, 3.0]), (0.1, 2.0, [8.0, 8.0, 1.5]),
                                 (0.2, None, None)):
        model = MLP((20, 8, 4), seed=0, dtype="float64")
        trainer = Trainer(model, optimizer="sgd", batch_size=32, progress=False, log=None)
        trainer.optimizer.decay_per_row = 0.5
        X, Y = trainer.prepare(x, y)
        row_scale = None if scale is None else np.full(70, scale)
        trainer.train_epoch(X, Y, lr, permutation=perm, row_scale=row_scale, step_rows=step_rows)
        results.append(model.params.copy())
    np.testing.assert_allclose(results[1], results[0], rtol=1e-12, atol=1e-15)
    assert np.abs(results[2] - results[0]).max() > 1e-3  # decay / rows (32, 32, 6) is not decay / step_rows


def test_row_scale_is_read_in_batch_order():
    # row_scale[j] belongs to the epoch's j-th row, X[perm[j]]: zero at three positions and
    # 40/37 elsewhere, one full batch is the plain mean over the other 37 rows
    x, y = _blobs(n=40)
    perm = np.random.default_rng(4).permutation(40)
    scale = np.full(40, 40 / 37)
    scale[[3, 17, 38]] = 0.0
    kept = perm[scale > 0]
    results = []
    for rows, order, row_scale in ((np.arange(40), perm, scale), (kept, np.arange(37), None)):
        model = MLP((20, 8, 4), seed=0, dtype="float64")
        trainer = Trainer(model, optimizer="sgd", batch_size=40, progress=False, log=None, **PLAIN)
        X, Y = trainer.prepare(x[rows], y[rows])
        trainer.train_epoch(X, Y, 0.1, permutation=order, row_scale=row_scale)
        results.append(model.params.copy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12, atol=1e-15)


def test_row_scale_and_step_rows_must_fit_the_epoch():
    x, y = _blobs(n=70)
    trainer = Trainer(MLP((20, 8, 4), seed=0), batch_size=32, progress=False, log=None)
    X, Y = trainer.prepare(x, y)
    with pytest.raises(ConfigError, match=r"row_scale has shape \(69,\); give one factor per row, \(70,\)"):
        trainer.train_epoch(X, Y, 0.1, row_scale=np.ones(69))
    with pytest.raises(ConfigError, match="2 step_rows for 3 steps"):
        trainer.train_epoch(X, Y, 0.1, step_rows=[32.0, 38.0])


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
        (dict(batch_size=0), "batch_size must be an integer >= 1"),
        (dict(batch_size=-3), "batch_size"),
        (dict(batch_size=2.5), "batch_size"),
        (dict(batch_size=None), "batch_size"),
        (dict(lr=0), "lr must be a positive finite number"),
        (dict(lr=-1.0), "lr"),
        (dict(lr=float("inf")), "lr"),
        (dict(lr=True), "lr"),
        (dict(seed=-1), "seed must be an integer >= 0, got -1"),
        (dict(seed=1.5), "seed"),
        (dict(weight_decay=float("inf")), "weight_decay"),
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


def test_numpy_scalars_are_accepted_wherever_python_numbers_are():
    x, y = _blobs(n=70)
    kw = dict(optimizer="nesterov", lr=0.1, momentum=0.5, weight_decay=1e-3, batch_size=32, seed=3, warmup=0.0,
              dropout=0.0)
    results = []
    for convert in (lambda v: v, lambda v: np.float32(v) if isinstance(v, float) else np.int64(v)):
        model = MLP((np.int64(20), 8, 4), init="normal", init_std=convert(0.1), seed=convert(2), dtype="float64")
        args = {k: (convert(v) if k != "optimizer" else v) for k, v in kw.items()}
        Trainer(model, progress=False, log=None, **args).fit(x, y, np.int64(2))
        results.append(model.params)
    # the same run: np.float32(0.1) is the float 0.1 rounded to float32, so allow that much
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5)


@pytest.mark.parametrize(
    "labels, message",
    [
        (lambda y: y + 0.5, r"y must hold integer class labels; y\[0\] is \d\.5"),
        (lambda y: np.where(y == y[0], np.nan, y), r"y\[0\] is nan"),
        (lambda y: y.astype(str), "integer class labels, got an array of dtype <U"),
    ],
)
def test_labels_that_are_not_whole_numbers_are_config_errors(labels, message):
    x, y = _blobs()
    with pytest.raises(ConfigError, match=message):
        Trainer(MLP((20, 16, 4)), progress=False, log=None).fit(x, labels(y), 1)
    with pytest.raises(ConfigError, match="y_test must hold integer class labels"):
        Trainer(MLP((20, 16, 4)), progress=False, log=None).fit(x, y, 1, X_test=x, y_test=labels(y))
    # whole numbers stored as floats are labels
    Trainer(MLP((20, 16, 4)), progress=False, log=None).fit(x, y.astype(np.float64), 1)


@pytest.mark.parametrize(
    "perms, message",
    [
        (lambda p: [p[:-1]], r"permutations\[0\] has 69 indices for 70 training rows"),
        (lambda p: [np.concatenate([p[:-1], p[:1]])], r"permutations\[0\] is not a permutation: row \d+ appears 2 times"),
        (lambda p: [p + 1], r"permutations\[0\] holds indices outside 0..69"),
        (lambda p: [p.astype(np.float64)], r"permutations\[0\] must be a 1-D array of integer row indices"),
        (lambda p: [p, p], "2 permutations given for 1 epochs"),
        (lambda p: [], "0 permutations given for 1 epochs"),
    ],
)
def test_permutations_are_checked_not_clipped_or_truncated(perms, message):
    x, y = _blobs(n=70)
    perm = np.random.default_rng(3).permutation(70)
    model = MLP((20, 8, 4), seed=0)
    before = model.params.copy()
    with pytest.raises(ConfigError, match=message):
        Trainer(model, batch_size=32, progress=False, log=None).fit(x, y, 1, permutations=perms(perm))
    np.testing.assert_array_equal(model.params, before)  # refused before any step


def test_repr_shows_the_settings():
    trainer = Trainer(MLP((20, 16, 4)), optimizer="nesterov", lr=0.1, momentum=0.8, weight_decay=2e-4,
                      batch_size=64, schedule="step", seed=5)
    assert repr(trainer) == (
        "Trainer(MLP(sizes=(20, 16, 4), activation='relu', init='he', dtype=float32, device='cpu', "
        "loss='softmax'), optimizer='nesterov', lr=0.1, momentum=0.8, weight_decay=0.0002, batch_size=64, "
        "schedule='step', seed=5, warmup=1.0, dropout=0.1, epochs_done=0)"
    )
    eager = Trainer(MLP((20, 4)), cuda_graph="off", graph_scope="epoch")
    assert "cuda_graph='off', graph_scope='epoch', epochs_done=0)" in repr(eager)


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
    from fastmlp.optim import make_schedule

    h = Trainer(MLP((20, 16, 4)), batch_size=32, lr=0.1, warmup=1, progress=False, log=None).fit(x, y, 3)
    # lr_end: the rate of each epoch's last step; 10 steps of warm-up end at the full rate, then cosine over 20
    cosine = make_schedule("cosine", 0.1, 30, 10, warmup_steps=10)
    assert h["lr_end"] == pytest.approx([0.1, cosine(19), cosine(29)]) and h["lr_end"][0] == 0.1
    assert "lr" not in h
    h = Trainer(MLP((20, 16, 4)), batch_size=32, lr=0.1, schedule="onecycle", progress=False, log=None).fit(x, y, 2)
    # the default warm-up (one epoch) is onecycle's rising part: its peak is the first epoch's last step
    assert h["lr_end"] == pytest.approx([0.1, make_schedule("onecycle", 0.1, 20, 10, warmup_steps=10)(19)])


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


def test_repr_shows_the_recipe_options_that_are_set():
    trainer = Trainer(MLP((20, 4)), warmup=0.5, dropout=0.2, target_accuracy=0.98, eval_every=50)
    assert "seed=0, warmup=0.5, dropout=0.2, target_accuracy=0.98, eval_every=50, epochs_done=0)" in repr(trainer)


def test_label_smoothing_needs_the_softmax_loss():
    with pytest.raises(ConfigError, match="label_smoothing needs the softmax loss"):
        Trainer(MLP((20, 1), loss="logistic"), label_smoothing=0.1)


def test_zero_epochs_is_an_error():
    with pytest.raises(ConfigError, match="epochs"):
        Trainer(MLP((20, 16, 4)), progress=False, log=None).fit(*_blobs(), 0)


@pytest.mark.slow
def test_real_mnist_subset_learns_well_above_chance(mnist):
    model = MLP((784, 64, 10), seed=0)
    trainer = Trainer(model, batch_size=128, lr=0.05, progress=False, log=None)
    h = trainer.fit(mnist.x_train[:12000], mnist.y_train[:12000], 2, X_test=mnist.x_test, y_test=mnist.y_test)
    assert h["test_acc"][-1] > 0.90, h["test_acc"]
