"""The end of ``fastmlp sweep``: the table of trials sorted by validation accuracy,
the plot, the best trial's model and its test accuracy (best.json)."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import FastMLPError
from .io import atomic_write
from .sweep import TABLE_ROWS, _train_actions, read_rows


def report(out, trials, axes, data, log=print, search=None):
    rows = read_rows(out / "results.csv")
    rows = [rows[t.id] for t in trials if t.id in rows]
    ok = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: -float(r["val_acc"]))
    pruned = sorted((r for r in rows if r["status"] == "pruned"), key=lambda r: -float(r["val_acc"] or 0))
    failed = [r for r in rows if r["status"] not in ("ok", "pruned")]
    actions = _train_actions()
    varied = [a.dest for a in axes if a.varies]

    def seconds(r, key):
        return f"{float(r[key]):.1f}" if r.get(key) not in (None, "") else "-"

    header = ["rank", "val acc", "epochs", "train s", "start-up s", *(actions[d].option_strings[0][2:] for d in varied),
              "trial"]
    table = [[str(i + 1), f"{100 * float(r['val_acc']):.2f}%", r.get("epochs_done") or "-", seconds(r, "train_seconds"),
              seconds(r, "startup_seconds"), *(r.get(d) or "" for d in varied), r["trial"]]
             for i, r in enumerate(ok[:TABLE_ROWS])]
    table += [["-", f"{100 * float(r['val_acc']):.2f}%", r.get("epochs_done") or "-", seconds(r, "train_seconds"),
               seconds(r, "startup_seconds"), *(r.get(d) or "" for d in varied),
               f"{r['trial']}: pruned: {r['pruned_reason']}"] for r in pruned[:TABLE_ROWS]]
    table += [["-", "failed", "-", "-", "-", *(r.get(d) or "" for d in varied), f"{r['trial']}: {r['error']}"]
              for r in failed[:TABLE_ROWS]]
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        log("  ".join(cell.rjust(w) if i < 5 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    if max(len(ok), len(pruned), len(failed)) > TABLE_ROWS:
        log(f"(the best {TABLE_ROWS} completed, pruned and failed trials shown; all {len(rows)} are in results.csv)")
    log("train s: the epochs' training steps; start-up s: loading the split, setting up and compiling the kernels "
        "(the first trial on each worker compiles them), apart")
    if not ok:
        raise FastMLPError(f"all {len(failed)} trials failed; the first: {failed[0]['error']}" if failed
                           else "no trial finished")
    best = ok[0]
    plots = ["sweep.png"]
    plot_sweep(ok, best, out / "sweep.png", title=f"{data.args.dataset}: {len(ok)} trials", pruned=pruned)
    if search is not None:
        from .search_report import write_plots

        write_plots(search, out)
        plots += ["best-so-far.png", "params.png"]
    model_file = out / "trials" / best["trial"] / "model.npz"
    info = {"trial": best["trial"], "settings": next(t.settings for t in trials if t.id == best["trial"]),
            "val_acc": float(best["val_acc"]), "test_acc": None, "train_seconds": float(best["train_seconds"]),
            "test_note": "the test set was evaluated for this trial only; trials were compared on validation accuracy"}
    before = _read_json(out / "best.json")
    digest = _sha256(model_file)
    if (before.get("trial") == best["trial"] and before.get("model_sha256") == digest
            and isinstance(before.get("test_acc"), float) and (out / "best-model.npz").is_file()):
        info["test_acc"] = before["test_acc"]  # the same best model as last time: no data to load
    else:
        atomic_write(out / "best-model.npz", lambda f: f.write(model_file.read_bytes()))
        info["test_acc"] = _test_accuracy(out / "best-model.npz", data.ds)
    info["model_sha256"] = digest
    atomic_write(out / "best.json", lambda f: f.write(json.dumps(info, indent=1).encode()))
    test_acc = info["test_acc"]
    log(f"best: trial {best['trial']}, validation accuracy {100 * info['val_acc']:.2f}%; test accuracy "
        f"{100 * test_acc:.2f}% (the test set was evaluated for this trial only)")
    counts = [f"{len(pruned)} trial(s) pruned" if pruned else "", f"{len(failed)} trial(s) failed" if failed else ""]
    log(f"wrote results.csv, {', '.join(plots)}, best-model.npz and best.json to {out}"
        + "".join(f"; {c}" for c in counts if c))
    return 0


def _read_json(path):
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _sha256(path):
    from .files import sha256_file

    return sha256_file(path)


def _test_accuracy(model_file, ds):
    """Accuracy of a saved model on the test set of ``ds`` (uint8 images, which the model
    scales as train's gather kernel does)."""
    from .io import load

    x = ds.x_test.reshape(len(ds.x_test), -1)
    return float((load(model_file).predict(x) == ds.y_test).mean())


def plot_sweep(rows, best, path, title, pruned=()):
    """Validation accuracy against training time, one point per trial, the best one starred
    (pruned trials as crosses at their last validation accuracy); the legend below the axes."""
    from .plots import _new_figure, _save_atomic

    fig = _new_figure((6.4, 4.2))
    ax = fig.add_subplot()
    seconds = [float(r["train_seconds"]) for r in rows]
    acc = [100 * float(r["val_acc"]) for r in rows]
    ax.scatter(seconds, acc, s=22, color="#1f77b4", label="trial")
    if pruned:
        ax.scatter([float(r["train_seconds"]) for r in pruned], [100 * float(r["val_acc"]) for r in pruned], s=22,
                   marker="x", color="#ff7f0e", label="pruned (when stopped)")
    ax.scatter([float(best["train_seconds"])], [100 * float(best["val_acc"])], marker="*", s=260, color="#d62728",
               zorder=3, label=f"best: {best['trial']} ({100 * float(best['val_acc']):.2f}%)")
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=3, fontsize=8, frameon=False)  # inside, it covered points
    _save_atomic(fig, str(path))
