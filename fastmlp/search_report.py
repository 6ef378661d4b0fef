"""What a search study says, for people: table rows, best-so-far over time, each setting's effect.

- :func:`trial_rows`: one dict per trial (number, state, validation accuracy,
  epoch reached, why it was pruned or how it failed, seconds, settings);
- :func:`best_so_far`: the best validation accuracy of the completed trials
  against the sweep's busy time (seconds during which at least one trial ran, so
  the time between an interrupted run and its re-run does not count);
- :func:`write_plots`: ``best-so-far.png`` and ``params.png`` (each setting's
  importance, from Optuna's fANOVA evaluator, and validation accuracy against
  its value), drawn with matplotlib the way :mod:`fastmlp.plots` draws.
"""

from __future__ import annotations

import math
from pathlib import Path

from .search import DUPLICATE_OF, ERROR, PRUNED_EPOCH, PRUNED_REASON, _label

ROW_COLUMNS = ("trial", "state", "val_acc", "epoch", "seconds", "pruned_reason", "error", "duplicate_of")
_STATE = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}
_C_DONE, _C_PRUNED, _C_BEST, _C_LINE = "#1f77b4", "#ff7f0e", "#d62728", "#2ca02c"


def _seconds(t):
    if t.datetime_start is None or t.datetime_complete is None:
        return None
    return (t.datetime_complete - t.datetime_start).total_seconds()


def trial_rows(search):
    """One dict per trial of the study, in trial order: ROW_COLUMNS, then each
    swept setting by name (decoded: e.g. ``sizes`` as the tuple given).

    state: complete, pruned, failed or running; val_acc: the final validation
    accuracy of a complete trial, the last reported one of a pruned trial, None
    otherwise; epoch: the last epoch reported (the one a pruned trial stopped at)."""
    rows = []
    for t in search.study.get_trials(deepcopy=False):
        state = _STATE.get(t.state.name, t.state.name.lower())
        epoch = t.user_attrs.get(PRUNED_EPOCH) if state == "pruned" else None
        if epoch is None:
            epoch = max(t.intermediate_values, default=None)
        rows.append({
            "trial": t.number,
            "state": state,
            "val_acc": t.value if state in ("complete", "pruned") else None,
            "epoch": epoch,
            "seconds": _seconds(t),
            "pruned_reason": t.user_attrs.get(PRUNED_REASON, "") if state == "pruned" else "",
            "error": t.user_attrs.get(ERROR, "") if state == "failed" else "",
            "duplicate_of": t.user_attrs.get(DUPLICATE_OF),
            **search.params(t),
        })
    return rows


def _busy_clock(trials):
    """seconds(t): how long, from the first trial's start up to datetime t, at least one trial ran."""
    spans = sorted((t.datetime_start, t.datetime_complete) for t in trials
                   if t.datetime_start is not None and t.datetime_complete is not None)
    merged = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])

    def seconds(when):
        return sum(max(0.0, (min(end, when) - start).total_seconds()) for start, end in merged if start < when)

    return seconds


def best_so_far(trials):
    """[(busy seconds, best validation accuracy so far, the number of the trial that
    holds it)] at each completed trial's end, in the order they ended (FrozenTrials
    of a study; copies of earlier trials left out)."""
    from optuna.trial import TrialState

    clock = _busy_clock(trials)
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE and t.datetime_complete is not None
                   and DUPLICATE_OF not in t.user_attrs), key=lambda t: t.datetime_complete)
    points, best = [], None
    for t in done:
        if best is None or t.value > best.value:
            best = t
        points.append((clock(t.datetime_complete), best.value, best.number))
    return points


def param_importances(search):
    """{setting: importance} (summing to 1) from Optuna's fANOVA evaluator (PED-ANOVA
    without scikit-learn), over the completed trials; {} if there are too few."""
    import optuna
    from optuna.trial import TrialState

    complete = [t for t in search.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if len(complete) < 2 or not search.specs:
        return {}
    try:
        import sklearn  # noqa: F401

        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    except ImportError:
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    try:
        return dict(optuna.importance.get_param_importances(search.study, evaluator=evaluator))
    except (ValueError, RuntimeError, ZeroDivisionError):
        return {}


def plot_best_so_far(search, path):
    """best-so-far validation accuracy against busy time; completed and pruned trials as points."""
    from optuna.trial import TrialState

    from .plots import _new_figure, _save_atomic

    trials = [t for t in search.study.get_trials(deepcopy=False) if DUPLICATE_OF not in t.user_attrs]
    clock = _busy_clock(trials)
    points = best_so_far(trials)
    fig = _new_figure((7, 4.2))
    ax = fig.add_subplot()
    for state, color, marker, label in ((TrialState.COMPLETE, _C_DONE, "o", "completed"),
                                        (TrialState.PRUNED, _C_PRUNED, "x", "pruned (last reported)")):
        ts = [t for t in trials if t.state == state and t.value is not None and t.datetime_complete is not None]
        if ts:
            ax.scatter([clock(t.datetime_complete) for t in ts], [100 * t.value for t in ts], s=18, c=color,
                       marker=marker, alpha=0.6, label=f"{label}: {len(ts)}")
    if points:
        xs, ys = [p[0] for p in points], [100 * p[1] for p in points]
        ax.step(xs, ys, where="post", color=_C_LINE, lw=2, label="best so far")
        ax.scatter([xs[-1]], [ys[-1]], s=60, c=_C_BEST, zorder=3,
                   label=f"best: trial {points[-1][2]}, {ys[-1]:.2f}%")
    ax.set_xlabel("sweep time (s, while a trial ran)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"{search.search} search, {search.pruner} pruning: best so far")
    ax.grid(alpha=0.3)
    if points or trials:  # below the axes: a legend inside would cover points
        fig.legend(loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    _save_atomic(fig, str(path))
    return Path(path)


def plot_params(search, path, importances=None):
    """One panel of importances (if known), then validation accuracy against each setting's value."""
    from optuna.trial import TrialState

    from .plots import _new_figure, _save_atomic

    specs = list(search.specs)
    importances = param_importances(search) if importances is None else importances
    panels = len(specs) + bool(importances)
    cols = min(3, max(1, panels))
    rows = math.ceil(max(1, panels) / cols)
    fig = _new_figure((4.2 * cols, 3.4 * rows))
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(max(1, panels))]
    if importances:
        ax = axes.pop(0)
        names = list(importances)[::-1]
        ax.barh(names, [importances[n] for n in names], color=_C_DONE)
        ax.set_xlabel("importance (fANOVA, sums to 1)")
        ax.set_title("what decides validation accuracy")
        ax.grid(axis="x", alpha=0.3)
    trials = [t for t in search.study.get_trials(deepcopy=False) if DUPLICATE_OF not in t.user_attrs]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value, default=None)
    for ax, spec in zip(axes, specs):
        def x_of(t):
            v = t.params.get(spec.name)
            if spec.kind != "choice":
                return v
            labels = [_label(c) for c in spec.choices]
            return labels.index(v) if v in labels else None

        for state, color, marker, label in ((TrialState.COMPLETE, _C_DONE, "o", "completed"),
                                            (TrialState.PRUNED, _C_PRUNED, "x", "pruned (last reported)")):
            pts = [(x_of(t), 100 * t.value) for t in trials
                   if t.state == state and t.value is not None and spec.name in t.params]
            pts = [p for p in pts if p[0] is not None]
            if pts:
                ax.scatter(*zip(*pts), s=18, c=color, marker=marker, alpha=0.6, label=label)
        if best is not None and spec.name in best.params:
            ax.scatter([x_of(best)], [100 * best.value], s=70, facecolors="none", edgecolors=_C_BEST, lw=2,
                       label=f"best (trial {best.number})", zorder=3)
        if spec.kind == "choice":
            ax.set_xticks(range(len(spec.choices)))
            ax.set_xticklabels([str(_label(c)) for c in spec.choices], rotation=30 if len(spec.choices) > 3 else 0,
                               fontsize=8)
            ax.set_xlim(-0.5, len(spec.choices) - 0.5)
        elif spec.log:
            ax.set_xscale("log")
        title = spec.name + (f" (importance {importances[spec.name]:.2f})" if spec.name in importances else "")
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(alpha=0.3)
    if specs and trials:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    for ax in axes[len(specs):]:
        ax.set_axis_off()
    _save_atomic(fig, str(path))
    return Path(path)


def write_plots(search, folder):
    """Write ``best-so-far.png`` and ``params.png`` into ``folder``; returns {name: path}."""
    folder = Path(folder)
    return {"best_so_far": plot_best_so_far(search, folder / "best-so-far.png"),
            "params": plot_params(search, folder / "params.png")}
