"""The time of a fit's matrix products alone, with NumPy's BLAS: a lower bound for
any implementation that does the same products with the same BLAS.

An MLP fit on MNIST-sized data spends most of its time in three products per
layer and batch: the forward ``a @ W``, the weight gradient ``a.T @ delta`` and,
below the top layer, the input gradient ``delta @ W.T`` (none for the first
layer, whose input is the data). :func:`floor_seconds` times exactly those
products, for the shapes of a network and a list of batch sizes, into
preallocated outputs: no bias, activation, loss, optimiser, data movement or
Python overhead. A fit can only be faster than this by doing fewer products, or
products in a faster BLAS or precision.

- stochastic solvers (sgd, adam): one pass per batch, ``n_iter`` epochs of
  ``ceil(n / batch)`` batches;
- lbfgs: one pass over all rows per loss-and-gradient evaluation (in chunks of
  fastmlp's chunk size), ``nfev`` evaluations.

The unit of work (one epoch, one evaluation) is timed ``repeats`` times after one
untimed pass; the median times the count is the floor.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from fastmlp.estimators.base import CHUNK_ROWS  # the rows per pass of fastmlp's lbfgs loss


def _layers(sizes, rows, dtype, rng):
    """Inputs, weights, deltas and outputs for one pass of ``rows`` rows."""
    acts = [rng.random((rows, sizes[0])).astype(dtype)] + [np.empty((rows, m), dtype) for m in sizes[1:]]
    weights = [rng.standard_normal((k, m)).astype(dtype) for k, m in zip(sizes, sizes[1:])]
    deltas = [rng.standard_normal((rows, m)).astype(dtype) for m in sizes[1:]]
    grads = [np.empty_like(w) for w in weights]
    return acts, weights, deltas, grads


def _pass(acts, weights, deltas, grads):
    for i, w in enumerate(weights):
        np.matmul(acts[i], w, out=acts[i + 1])
    for i in range(len(weights)):
        np.matmul(acts[i].T, deltas[i], out=grads[i])
    for i in range(len(weights) - 1, 0, -1):
        np.matmul(deltas[i], weights[i].T, out=acts[i])


def unit_seconds(sizes, row_counts, dtype, repeats=3, seed=0):
    """Median seconds of the products of one pass over batches of ``row_counts`` rows."""
    rng = np.random.default_rng(seed)
    buffers = {r: _layers(sizes, r, dtype, rng) for r in sorted(set(row_counts))}
    for r in buffers:
        _pass(*buffers[r])
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for r in row_counts:
            _pass(*buffers[r])
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def epoch_rows(n, batch):
    """Row counts of the batches of one epoch over ``n`` rows."""
    full, rest = divmod(n, batch)
    return [batch] * full + ([rest] if rest else [])


def floor_seconds(sizes, n, dtype, solver, count, batch=200, chunk=CHUNK_ROWS, repeats=3):
    """The floor of a fit: ``count`` epochs (sgd, adam) or evaluations (lbfgs) of the
    products of a network with layer ``sizes`` on ``n`` rows, in ``dtype``."""
    rows = epoch_rows(n, chunk if solver == "lbfgs" else min(batch, n))
    return count * unit_seconds(list(sizes), rows, np.dtype(dtype), repeats)
