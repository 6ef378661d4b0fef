"""``fastmlp sweep --search random|tpe`` and ``--prune``: the trials an Optuna study
asks for (fastmlp.search), run on the sweep's Dask cluster like the grid's, one
row of results.csv each, the study kept in the sweep folder's journal file.

:func:`fastmlp.sweep.run_sweep` calls :func:`run_study` when the command asks for
a search other than the plain grid, for pruning, or for ``--trials``.
"""

from __future__ import annotations

import json
import sys
import uuid

from . import config as cfg
from .errors import ConfigError
from .sweep import (_check_sizes, _check_workers, _format, _number_kind, _result_text, _train_actions, _what,
                    _write_meta, _write_trial_json, append_row, make_trials, read_rows, trial_row)
from .sweep_report import report


def _pruner_epochs(axes):
    """The most epochs a trial can have (the pruner's rungs are set from it)."""
    by = {a.dest: a for a in axes}
    if "epochs" in by:
        a = by["epochs"]
        return int(max(a.values) if a.low is None else a.high)
    presets_ = by["preset"].values if "preset" in by else ["default"]
    return max(cfg.TrainConfig.from_preset(p).epochs for p in presets_)


def run_study(args, axes, argv, again, device, out, data, log):
    from . import search as S

    S.require_optuna()
    actions = _train_actions()
    varied = [a for a in axes if a.varies]
    fixed = {a.dest: a.values[0] for a in axes if not a.varies}
    shared = {"dataset": args.dataset, "val_split": args.val_split, "checkpoint_every": args.checkpoint_every}
    specs = [S.ParamSpec.from_axis(a, _number_kind(actions[a.dest])) for a in varied]
    epochs = _pruner_epochs(axes)
    pruner_options = S.pruner_defaults(args.prune, epochs)
    try:
        search = S.open_search(out, specs, search=args.search, pruner=args.prune, epochs=epochs,
                               seed=args.random_seed, pruner_options=pruner_options)
    except S.SpaceMismatch as exc:
        raise ConfigError(str(exc)) from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    recorded = search.study.user_attrs.get("fastmlp_fixed")
    fixed_record = json.loads(json.dumps({**{k: _format(v) for k, v in fixed.items()}, **shared}))
    if recorded is None:
        search.study.set_user_attr("fastmlp_fixed", fixed_record)
    elif recorded != fixed_record:
        changed = sorted(k for k in {*recorded, *fixed_record} if recorded.get(k) != fixed_record.get(k))
        raise ConfigError(f"{out} holds a study whose trials share other settings ({', '.join(changed)}: "
                          f"{', '.join(f'{k}={recorded.get(k)}' for k in changed)}); give the same flags, or choose "
                          "another --out")

    cache = {}

    def trial_of(params):
        key = json.dumps(params, sort_keys=True, default=list)
        if key not in cache:
            (t,) = make_trials([{**fixed, **params}], shared, data.features, data.classes)
            _check_sizes([t], args, data)
            cache[key] = t
        return cache[key]

    n_trials = S.trial_budget(search, args.trials)
    results = out / "results.csv"
    rows = read_rows(results)
    known = {}
    # trials told before whose rows were not written (the lead stopped in between): write them now
    for ft in search.trials():
        if ft.state.is_finished() and S.DUPLICATE_OF not in ft.user_attrs:
            t = trial_of(search.params(ft))
            known[t.id] = t
            if rows.get(t.id, {}).get("study_trial") != str(ft.number):
                append_row(results, _study_row(S, t, out, ft))
    for _, params in search.unfinished():
        t = trial_of(params)
        known[t.id] = t
    unfinished = search.unfinished()
    left = max(0, n_trials - search.trained())
    if args.search == "grid":
        left = min(left, search.grid_left())
    _write_meta(out, again, args, data, known.values(), _study_meta(search, specs, fixed, n_trials, epochs,
                                                                    pruner_options))
    finished = search.finished()
    size = search.space_size()
    capped = args.trials is not None and args.trials > n_trials
    log(f"{args.search} search, {args.prune} pruning, {n_trials} trials in {out}"
        f"{f' (--trials {args.trials}, but the space has {size} points)' if capped else ''}: "
        f"{finished} finished before, {len(unfinished)} to continue, {left} to start")
    log(f"validation: {args.val_split:g} of the training set, held out as 'fastmlp train --val-split "
        f"{args.val_split:g}' does; the test set is evaluated for the best trial only")
    if unfinished or left:
        try:
            _run_study_trials(args, device, out, data, search, trial_of, known, n_trials, specs, fixed, epochs,
                              pruner_options, again, varied, log)
        except KeyboardInterrupt:
            done = search.finished()
            log(f"interrupted: {done} of {n_trials} trials finished (rows in {results}); continue with: {again}")
            print("fastmlp: interrupted", file=sys.stderr)
            return 130
    trials = []
    for ft in search.trials():
        if ft.state.is_finished() and S.DUPLICATE_OF not in ft.user_attrs:
            trials.append(trial_of(search.params(ft)))
    return report(out, list({t.id: t for t in trials}.values()), axes, data, log, search=search)


def _study_meta(search, specs, fixed, n_trials, epochs, pruner_options):
    return {"study": {"journal": search.path.name, "name": search.name, "trials": n_trials,
                      "pruner_epochs": epochs, "pruner_options": pruner_options},
            "space": [s.describe() for s in specs], "fixed": {k: _format(v) for k, v in fixed.items()}}


def _study_row(S, trial, out, frozen):
    """The results row of a trial told in the study."""
    status = {"COMPLETE": "ok", "PRUNED": "pruned"}.get(frozen.state.name, "failed")
    outcome = {"status": status, "error": frozen.user_attrs.get(S.ERROR, ""),
               "pruned_reason": frozen.user_attrs.get(S.PRUNED_REASON, ""), "study_trial": frozen.number}
    if status != "failed" and not (out / "trials" / trial.id / "metrics.json").exists():
        outcome.update(status="failed", error=outcome["error"] or "its metrics.json is missing")
    return trial_row(trial, out / "trials" / trial.id, outcome)


def _run_study_trials(args, device, out, data, search, trial_of, known, n_trials, specs, fixed, epochs,
                      pruner_options, again, varied, log):
    from tqdm.auto import tqdm

    from . import search as S
    from .cluster import open_client, trial_task
    from .trial import check_worker

    actions = _train_actions()
    varied = [a.dest for a in varied]
    token = uuid.uuid4().hex[:8]
    with open_client(device, args.workers, args.scheduler, args.scheduler_file) as (client, where, gpu_per_worker):
        workers = max(1, len(client.scheduler_info()["workers"]))
        log(f"running on {where}, device {device}; at most {workers} trial{'s' if workers > 1 else ''} at a time")
        _check_workers(client, check_worker, out / "sweep.json")
        number_to_trial = {}

        def submit(number, params, reporter):
            t = trial_of(params)
            number_to_trial[number] = t
            if t.id not in known:
                known[t.id] = t
                _write_meta(out, again, args, data, known.values(),
                            _study_meta(search, specs, fixed, n_trials, epochs, pruner_options))
            _write_trial_json(out / "trials" / t.id, t, args, actions)
            reporter = S.PruneReporter(str(search.path), search.name, number, pruner=args.prune,
                                       epochs=t.settings["epochs"], pruner_options=pruner_options)
            return client.submit(trial_task, str(out / "trials" / t.id), t.settings,
                                 data.split(out, t.settings["seed"]), device, gpu_per_worker, reporter,
                                 key=f"fastmlp-trial-{t.id}-{number}-{token}", pure=False)

        done = search.finished()
        with tqdm(total=n_trials, initial=min(done, n_trials), unit="trial", desc="sweep", disable=None) as bar:
            def on_result(frozen):
                if S.DUPLICATE_OF in frozen.user_attrs:
                    bar.write(f"trial #{frozen.number}: the settings of trial #{frozen.user_attrs[S.DUPLICATE_OF]}, "
                              "not trained again (a repeat does not count as one of the trials)")
                    return
                bar.update(1)
                t = number_to_trial.get(frozen.number) or trial_of(search.params(frozen))
                row = _study_row(S, t, out, frozen)
                append_row(out / "results.csv", row)
                bar.write(f"trial #{frozen.number} ({t.id}) {_what(row, varied, actions)}: {_result_text(row)}")

            S.run_search(search, submit, n_trials=n_trials, max_in_flight=workers, on_result=on_result)
