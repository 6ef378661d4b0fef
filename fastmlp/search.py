"""Optuna behind ``fastmlp sweep``: which trial to run next, and which to stop early.

The sweep's lead process owns an Optuna study; Dask workers train the trials.

- **Search** (:data:`SEARCHES`): ``grid`` (every combination once, Optuna's
  ``GridSampler``), ``random`` (``RandomSampler``) or ``tpe`` (``TPESampler``,
  multivariate, so that it models how the settings act together, and with the
  constant liar so that trials running side by side are not suggested the same
  point). All seeded. ``--trials N`` counts settings trained: a suggestion that
  repeats an earlier trial's settings gets that trial's result and does not
  count (:func:`run_search`).
- **Pruning** (:data:`PRUNERS`): ``none``, ``median`` (``MedianPruner``),
  ``halving`` (``SuccessiveHalvingPruner``) or ``hyperband`` (``HyperbandPruner``,
  ASHA-style brackets), their rungs set from the trial's epoch count
  (:func:`make_pruner`).
- **Storage**: Optuna's journal file (``JournalStorage`` over a
  ``JournalFileBackend`` with the ``O_EXCL`` open lock, which works on NFSv3 and
  later) at ``<sweep folder>/study.journal``. Running the sweep again loads the
  study and continues it: the trial count goes on, trials left running by an
  interrupted lead are handed back to be resumed (:meth:`Search.unfinished`).
- **The space**: each swept setting is a :class:`ParamSpec` (a list of choices,
  or a float/int range, linear or log), mapped to an Optuna distribution;
  choices Optuna cannot store (``--sizes`` tuples) are stored as text labels and
  decoded back.

How pruning reaches a worker: the lead ``ask``\\s a trial and submits its
training together with a :class:`PruneReporter`, a small picklable object
naming the journal file, the study and the trial number. After each epoch the
training loop calls ``reporter(epoch, val_accuracy)``: in the worker's process
it opens the same journal file (shared filesystem, as the sweep folder already
is), reports the value to the trial (``optuna.trial.Trial.report``), asks the
pruner (``should_prune``) and, if the trial is to stop, records the epoch and
the reason on the trial and returns True; the loop then stops training. The
lead ``tell``\\s the final state when the task returns: PRUNED if the reporter
recorded a prune, COMPLETE with the validation accuracy otherwise, FAIL (with
the error) if the trial failed. :func:`run_search` is that ask/submit/tell loop
over Dask (or ``concurrent.futures``) futures.

Values are validation accuracies as fractions in [0, 1]; steps are epochs,
counted from 1.
"""

from __future__ import annotations

import functools
import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

SEARCHES = ("grid", "random", "tpe")
PRUNERS = ("none", "median", "halving", "hyperband")
KINDS = ("choice", "float", "int")
JOURNAL = "study.journal"
STUDY_NAME = "sweep"
REDUCTION_FACTOR = 3  # successive halving and Hyperband keep the best third at each rung
REPEATS_IN_A_ROW = 1  # repeats on a finite space before a point not taken yet (see run_search)
ENDLESS_REPEATS = 100  # repeats in a row on a space with a float range before the run stops asking

# user attributes of a trial in the study (see trial_rows)
PRUNED_EPOCH = "pruned_epoch"
PRUNED_REASON = "pruned_reason"
ERROR = "error"
DUPLICATE_OF = "duplicate_of"
SPACE_ATTR = "fastmlp_space"

_OPTUNA_TYPES = (type(None), bool, int, float, str)


def require_optuna():
    """Import optuna, or say how to install it."""
    try:
        import optuna
    except ImportError:
        from .errors import ConfigError

        raise ConfigError('fastmlp sweep --search/--prune needs Optuna: pip install "fastmlp[sweep]"') from None
    return optuna


# --------------------------------------------------------------------------
# The space: one ParamSpec per swept setting
# --------------------------------------------------------------------------


def _plain(value):
    """numpy scalars as Python ones; lists as tuples (hashable)."""
    if hasattr(value, "item") and not isinstance(value, (list, tuple)):
        value = value.item()
    if isinstance(value, list):
        value = tuple(value)
    return value


def _label(value):
    """How Optuna stores a choice: Optuna's own types as they are, others as text."""
    if isinstance(value, _OPTUNA_TYPES):
        return value
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


@dataclass(frozen=True)
class ParamSpec:
    """One swept setting: ``kind`` "choice" with ``choices``, or "float"/"int"
    between ``low`` and ``high`` (both included), log-uniform if ``log``."""

    name: str
    kind: str
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "choice":
            choices = tuple(dict.fromkeys(_plain(c) for c in self.choices))
            if not choices:
                raise ValueError(f"{self.name}: no choices")
            labels = [_label(c) for c in choices]
            if len(set(map(repr, labels))) != len(labels):
                raise ValueError(f"{self.name}: two choices have the same label: {labels}")
            object.__setattr__(self, "choices", choices)
            return
        if self.low is None or self.high is None:
            raise ValueError(f"{self.name}: a {self.kind} range needs low and high")
        low, high = sorted((float(self.low), float(self.high)))
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"{self.name}: the range {self.low}..{self.high} is not finite")
        if self.kind == "int":
            low, high = math.ceil(low), math.floor(high)
            if low > high:
                raise ValueError(f"{self.name}: no integer between {self.low} and {self.high}")
        if self.log and low <= 0:
            raise ValueError(f"{self.name}: a log range needs low > 0, got {low}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "log", bool(self.log))

    @classmethod
    def from_axis(cls, axis, number_kind=float):
        """The spec of one of ``fastmlp.sweep``'s ``Axis`` objects (duck-typed:
        ``dest``, ``values``, ``low``, ``high``, ``log``); ``number_kind`` (int or
        float, the flag's type) decides the kind of a range without a count."""
        if axis.low is None:
            return cls(axis.dest, "choice", tuple(axis.values))
        kind = "int" if number_kind is int else "float"
        return cls(axis.dest, kind, low=axis.low, high=axis.high, log=axis.log)

    def distribution(self):
        """The Optuna distribution of this setting."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "choice":
            return CategoricalDistribution([_label(c) for c in self.choices])
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(self.low, self.high, log=self.log)

    def encode(self, value):
        """A setting's value as Optuna stores it."""
        return _label(_plain(value)) if self.kind == "choice" else value

    def decode(self, stored):
        """The setting's value (a choice as given, e.g. a tuple) from Optuna's stored one."""
        if self.kind == "choice":
            for choice in self.choices:
                if _label(choice) == stored and type(_label(choice)) is type(stored):
                    return choice
            raise ValueError(f"{self.name}: {stored!r} is not one of the choices")
        return int(stored) if self.kind == "int" else float(stored)

    def describe(self):
        """A JSON-able description (what the study records as its space)."""
        from optuna.distributions import distribution_to_json

        return {"name": self.name, "distribution": json.loads(distribution_to_json(self.distribution()))}


def distributions(specs):
    """{name: Optuna distribution} of the specs."""
    return {s.name: s.distribution() for s in specs}


def grid_space(specs):
    """GridSampler's search space: every choice of every spec (ranges need a count)."""
    ranges = [s.name for s in specs if s.kind != "choice"]
    if ranges:
        raise ValueError(f"grid search needs a list of values for every setting; {', '.join(ranges)} "
                         "is a range without a count (give START:STOP:N, or use random or tpe search)")
    return {s.name: [s.encode(c) for c in s.choices] for s in specs}


# --------------------------------------------------------------------------
# Samplers, pruners, storage
# --------------------------------------------------------------------------


def make_sampler(search, specs, seed=0, **options):
    """The Optuna sampler of ``search`` (one of SEARCHES), seeded; ``options`` go to its constructor."""
    optuna = require_optuna()
    if search == "grid":
        return _grid_sampler_class()(grid_space(specs), seed=seed, **options)
    if search == "random":
        return optuna.samplers.RandomSampler(seed=seed, **options)
    if search == "tpe":
        # multivariate: one joint model of the settings (the best learning rate depends
        # on the width, say) rather than one per setting; constant_liar: trials running
        # side by side count as (bad) results, so the lead does not suggest the same
        # point to every free worker
        import warnings

        with warnings.catch_warnings():  # both are "experimental" (since Optuna 2.2 and 2.8)
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(**{"seed": seed, "constant_liar": True, "multivariate": True, **options})
    raise ValueError(f"search must be one of {', '.join(SEARCHES)}, got {search!r}")


@functools.cache
def _grid_sampler_class():
    """(made on first use, so that importing this module does not import optuna)"""
    import optuna

    class AskTellGridSampler(optuna.samplers.GridSampler):
        """GridSampler whose ``after_trial`` does not call ``study.stop()``, which
        raises outside ``study.optimize``; :meth:`Search.ask` stops at the grid's end."""

        def after_trial(self, study, trial, state, values):
            pass

    return AskTellGridSampler


def pruner_defaults(pruner, epochs):
    """The constructor arguments :func:`make_pruner` uses for a trial of ``epochs`` epochs.

    median: no pruning before 5 trials completed, nor before epoch max(1, epochs // 5).
    halving / hyperband: rungs at r, 3r, 9r, ... epochs with r = max(1, round(epochs / 9))
    (about three rungs below the full run), the best third promoted at each;
    Hyperband's largest budget is the full run.
    """
    epochs = max(1, int(epochs))
    first_rung = max(1, round(epochs / REDUCTION_FACTOR**2))
    return {
        "none": {},
        "median": {"n_startup_trials": 5, "n_warmup_steps": max(1, epochs // 5)},
        "halving": {"min_resource": first_rung, "reduction_factor": REDUCTION_FACTOR},
        "hyperband": {"min_resource": first_rung, "max_resource": epochs, "reduction_factor": REDUCTION_FACTOR},
    }[pruner]


def make_pruner(pruner, epochs, **options):
    """The Optuna pruner of ``pruner`` (one of PRUNERS) for trials of ``epochs`` epochs;
    ``options`` override :func:`pruner_defaults`."""
    optuna = require_optuna()
    if pruner not in PRUNERS:
        raise ValueError(f"pruning must be one of {', '.join(PRUNERS)}, got {pruner!r}")
    cls = {"none": optuna.pruners.NopPruner, "median": optuna.pruners.MedianPruner,
           "halving": optuna.pruners.SuccessiveHalvingPruner, "hyperband": optuna.pruners.HyperbandPruner}[pruner]
    return cls(**{**pruner_defaults(pruner, epochs), **options})


def open_storage(path):
    """A journal-file storage at ``path`` (created if new); the lock is an ``O_EXCL``
    lock file next to it, which is atomic on local disks and on NFSv3 or later."""
    require_optuna()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = str(path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))


_CACHE_LOCK = threading.Lock()
_STORAGES: dict[str, Any] = {}


def _cached_storage(path):
    """One storage per journal file per process: opening one replays the whole file."""
    path = str(Path(path).resolve())
    with _CACHE_LOCK:
        if path not in _STORAGES:
            _STORAGES[path] = open_storage(path)
        return _STORAGES[path]


def _quiet_optuna():
    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# --------------------------------------------------------------------------
# The lead's handle on the study
# --------------------------------------------------------------------------


class SpaceMismatch(ValueError):
    """The sweep folder's study was made for other settings."""


@dataclass
class Search:
    """A study in a sweep folder; made by :func:`open_search`."""

    study: Any
    storage: Any
    path: Path
    specs: tuple
    search: str
    pruner: str
    epochs: int
    pruner_options: dict = field(default_factory=dict)
    seed: int = 0

    @property
    def name(self):
        return self.study.study_name

    def trials(self, states=None):
        return self.study.get_trials(deepcopy=False, states=states)

    def params(self, frozen):
        """A trial's settings, decoded ({name: value as given in the spec})."""
        by_name = {s.name: s for s in self.specs}
        return {k: by_name[k].decode(v) if k in by_name else v for k, v in frozen.params.items()}

    def started(self):
        """Trials asked so far (running or finished; not the enqueued ones still waiting)."""
        from optuna.trial import TrialState

        return len(self.trials(states=(TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)))

    def trained(self):
        """Trials asked so far that train (or trained) settings of their own: started,
        less the repeats of an earlier trial's settings (:meth:`mark_repeat`)."""
        from optuna.trial import TrialState

        states = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        return sum(DUPLICATE_OF not in t.user_attrs for t in self.trials(states=states))

    def finished(self):
        """Trials of settings of their own that have ended (completed, pruned or failed)."""
        return sum(t.state.is_finished() and DUPLICATE_OF not in t.user_attrs for t in self.trials())

    def space_size(self):
        """How many distinct settings the space holds, or None if a float range makes it endless."""
        sizes = [len(s.choices) if s.kind == "choice" else int(s.high) - int(s.low) + 1 if s.kind == "int" else None
                 for s in self.specs]
        return None if None in sizes else math.prod(sizes)

    def untried(self, rng, tries=1000):
        """Settings ({name: value}) of a point of a finite space that no trial has
        taken, drawn with ``rng`` (a ``random.Random``); None when every point is taken."""
        size = self.space_size()
        if size is None:
            return None
        taken = {tuple(sorted(t.params.items())) for t in self.trials() if DUPLICATE_OF not in t.user_attrs}
        if len(taken) >= size:
            return None

        def point(index):  # the index-th point of the space, first spec slowest
            values = {}
            for s in reversed(self.specs):
                n = len(s.choices) if s.kind == "choice" else int(s.high) - int(s.low) + 1
                index, i = divmod(index, n)
                values[s.name] = s.encode(s.choices[i]) if s.kind == "choice" else int(s.low) + i
            return values

        def new(values):
            return tuple(sorted(values.items())) not in taken

        for _ in range(tries):  # a large space with few points taken: a draw or two finds a new one
            values = point(rng.randrange(size))
            if new(values):
                return values
        fresh = [v for v in map(point, range(size)) if new(v)]  # nearly used up: choose among the rest
        return rng.choice(fresh) if fresh else None

    def enqueue(self, stored):
        """Make the next :meth:`ask` return these settings (as Optuna stores them)."""
        self.study.enqueue_trial(stored)

    def grid_left(self):
        """Grid points no trial has taken yet (None unless grid search)."""
        if self.search != "grid":
            return None
        size = math.prod(len(s.choices) for s in self.specs)
        trials = self.storage.get_all_trials(self.study._study_id, deepcopy=False)
        taken = {t.system_attrs.get("grid_id") for t in trials}
        return size - len(taken - {None})

    def ask(self):
        """(trial number, settings) of a new trial, or None when the grid is used up."""
        if self.search == "grid" and self.grid_left() <= 0:
            return None
        trial = self.study.ask(distributions(self.specs))
        return trial.number, self.params(self.storage.get_trial(trial._trial_id))

    def unfinished(self):
        """[(number, settings)] of the trials an earlier lead started and never told:
        to be submitted again (their workers resume them from their checkpoints)."""
        from optuna.trial import TrialState

        return [(t.number, self.params(t)) for t in self.trials(states=(TrialState.RUNNING,))]

    def reporter(self, number):
        """The picklable per-epoch callback for trial ``number``, to send to its worker."""
        return PruneReporter(str(self.path), self.name, number, pruner=self.pruner, epochs=self.epochs,
                             pruner_options=self.pruner_options)

    def _trial_id(self, number):
        return self.storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number)

    def tell(self, number, outcome):
        """Record how trial ``number`` ended; returns its FrozenTrial.

        outcome: ``{"status": "ok" | "pruned" | "failed", "val_acc": float, "error": str}``
        (what the worker's task returned). The trial is PRUNED if its reporter
        recorded a prune (whatever the status says), COMPLETE with ``val_acc``
        if it finished, FAIL with ``error`` otherwise."""
        from optuna.trial import TrialState

        tid = self._trial_id(number)
        frozen = self.storage.get_trial(tid)
        if frozen.state.is_finished():
            return frozen
        status = outcome.get("status")
        value = outcome.get("val_acc")
        if PRUNED_EPOCH in frozen.user_attrs or status == "pruned":
            if PRUNED_EPOCH not in frozen.user_attrs:
                last = max(frozen.intermediate_values, default=None)
                self.storage.set_trial_user_attr(tid, PRUNED_EPOCH, last)
                self.storage.set_trial_user_attr(tid, PRUNED_REASON, outcome.get("error") or "stopped by its worker")
            self.study.tell(number, state=TrialState.PRUNED)
        elif status == "ok" and value is not None and math.isfinite(float(value)):
            self.study.tell(number, float(value))
        else:
            error = outcome.get("error") or (f"validation accuracy {value}" if status == "ok" else "failed")
            self.storage.set_trial_user_attr(tid, ERROR, " ".join(str(error).split()))
            self.study.tell(number, state=TrialState.FAIL)
        return self.storage.get_trial(tid)

    def same_as(self, number):
        """An earlier trial (FrozenTrial) with the same settings as trial ``number``, or None."""
        me = self.storage.get_trial(self._trial_id(number))
        for t in self.trials():
            if t.number < number and t.params == me.params and DUPLICATE_OF not in t.user_attrs:
                return t
        return None

    def mark_repeat(self, number, source):
        """Record at once that trial ``number`` repeats ``source``'s settings (before
        it is told), so that it does not count as a trial of its own."""
        self.storage.set_trial_user_attr(self._trial_id(number), DUPLICATE_OF, source.number)

    def tell_copy(self, number, source):
        """Record trial ``number`` as having the result of ``source`` (a finished
        trial with the same settings) without training it again."""
        from optuna.trial import TrialState

        tid = self._trial_id(number)
        self.storage.set_trial_user_attr(tid, DUPLICATE_OF, source.number)
        for key in (PRUNED_EPOCH, PRUNED_REASON, ERROR):
            if key in source.user_attrs:
                self.storage.set_trial_user_attr(tid, key, source.user_attrs[key])
        if source.state == TrialState.COMPLETE:
            self.study.tell(number, source.value)
        elif source.state == TrialState.PRUNED:
            if source.intermediate_values:
                step = max(source.intermediate_values)
                self.storage.set_trial_intermediate_value(tid, step, source.intermediate_values[step])
            self.study.tell(number, state=TrialState.PRUNED)
        else:
            self.study.tell(number, state=TrialState.FAIL)
        return self.storage.get_trial(tid)


def open_search(folder, specs, *, search="tpe", pruner="median", epochs, seed=0, study_name=STUDY_NAME,
                sampler_options=None, pruner_options=None, quiet=True):
    """Create the study in ``folder`` (``folder/study.journal``), or load it to continue.

    specs: the ParamSpecs of the swept settings; a study made for another space
    raises :class:`SpaceMismatch`. The sampler and pruner are not stored: each
    run (and each worker) builds them from ``search``/``pruner``/``epochs``."""
    optuna = _quiet_optuna() if quiet else require_optuna()
    specs = tuple(specs)
    if search not in SEARCHES:
        raise ValueError(f"search must be one of {', '.join(SEARCHES)}, got {search!r}")
    path = Path(folder).resolve() / JOURNAL
    storage = open_storage(path)
    pruner_options = dict(pruner_options or {})
    study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize", load_if_exists=True,
                                sampler=make_sampler(search, specs, seed, **(sampler_options or {})),
                                pruner=make_pruner(pruner, epochs, **pruner_options))
    before = len(study.get_trials(deepcopy=False))
    if before:
        # a sampler's random state is not in the journal: seeded as at the start, it would suggest the
        # first run's points again (as repeats). Seeded from (seed, trials so far): new, and repeatable.
        study.sampler = make_sampler(search, specs, seed + 7919 * before, **(sampler_options or {}))
    space = [s.describe() for s in specs]
    recorded = study.user_attrs.get(SPACE_ATTR)
    if recorded is None:
        study.set_user_attr(SPACE_ATTR, space)
    elif recorded != space:
        names = lambda sp: ", ".join(d["name"] for d in sp)  # noqa: E731
        raise SpaceMismatch(f"{path} holds a study of other settings ({names(recorded) or 'none'}); "
                            f"this sweep varies {names(space) or 'nothing'}: use another folder")
    return Search(study, storage, path, specs, search, pruner, int(epochs), pruner_options, int(seed))


# --------------------------------------------------------------------------
# The worker's side: report after each epoch, learn whether to stop
# --------------------------------------------------------------------------


class PruneReporter:
    """``reporter(epoch, val_accuracy) -> bool``: report one epoch's validation
    accuracy to trial ``trial_number`` of the study in the journal file
    ``storage_path``; True means the pruner stopped the trial (stop training).

    Picklable (only the names travel; the storage is opened, once per process, on
    the first call). The last epoch is reported but never pruned. A trial resumed
    after its worker was killed reports its replayed epochs again harmlessly (a
    step already reported keeps its first value) and stops at once if it had
    been pruned."""

    def __init__(self, storage_path, study_name, trial_number, *, pruner="none", epochs=1, pruner_options=None):
        self.storage_path = str(storage_path)
        self.study_name = study_name
        self.trial_number = int(trial_number)
        self.pruner = pruner
        self.epochs = int(epochs)
        self.pruner_options = dict(pruner_options or {})
        self._trial = None

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_trial"}

    def __setstate__(self, state):
        self.__dict__.update(state, _trial=None)

    def __repr__(self):
        return (f"PruneReporter({self.storage_path!r}, {self.study_name!r}, {self.trial_number}, "
                f"pruner={self.pruner!r}, epochs={self.epochs})")

    def _handle(self):
        if self._trial is None:
            optuna = _quiet_optuna()
            storage = _cached_storage(self.storage_path)
            # RandomSampler: its before_trial does nothing, so opening the trial here
            # changes nothing the lead's sampler decided (GridSampler would pick a point)
            study = optuna.load_study(study_name=self.study_name, storage=storage,
                                      sampler=optuna.samplers.RandomSampler(),
                                      pruner=make_pruner(self.pruner, self.epochs, **self.pruner_options))
            tid = storage.get_trial_id_from_study_id_trial_number(study._study_id, self.trial_number)
            self._trial = optuna.trial.Trial(study, tid)
        return self._trial

    def __call__(self, epoch, val_accuracy):
        trial = self._handle()
        storage, tid = trial.storage, trial._trial_id
        frozen = storage.get_trial(tid)
        if frozen.state.is_finished() or PRUNED_EPOCH in frozen.user_attrs:
            return True  # told or pruned already (this is a resumed attempt)
        epoch = int(epoch)
        if epoch not in frozen.intermediate_values:
            trial.report(float(val_accuracy), epoch)
        if self.pruner == "none" or epoch >= self.epochs or not trial.should_prune():
            return False
        reason = prune_reason(trial.study, storage.get_trial(tid), self.pruner, epoch)
        storage.set_trial_user_attr(tid, PRUNED_EPOCH, epoch)
        storage.set_trial_user_attr(tid, PRUNED_REASON, reason)
        return True


def prune_reason(study, frozen, pruner, epoch):
    """One line saying why the pruner stopped ``frozen`` at ``epoch``."""
    from optuna.trial import TrialState

    value = frozen.intermediate_values.get(epoch, float("nan"))
    if pruner == "median":
        best = max(frozen.intermediate_values.values())
        others = [t.intermediate_values[epoch] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                  if epoch in t.intermediate_values]
        if not math.isfinite(best):
            return f"median: validation accuracy is {best} at epoch {epoch}"
        import statistics

        median = statistics.median(others) if others else float("nan")
        return (f"median: best validation accuracy {best:.4f} by epoch {epoch} is below the median "
                f"{median:.4f} of {len(others)} completed trials at epoch {epoch}")
    if pruner in ("halving", "hyperband"):
        rungs = [int(k.rsplit("_", 1)[1]) for k in frozen.system_attrs if k.startswith("completed_rung_")]
        if rungs:
            key = f"completed_rung_{max(rungs)}"
            bracket = frozen.system_attrs.get("hyperband_bracket_id") if pruner == "hyperband" else None
            rivals = [t.system_attrs[key] for t in study.get_trials(deepcopy=False) if key in t.system_attrs]
            rank = 1 + sum(v > frozen.system_attrs[key] for v in rivals)
            return (f"{pruner}: validation accuracy {value:.4f} at epoch {epoch} ranked {rank} of {len(rivals)} "
                    f"trials at this rung; the best 1/{REDUCTION_FACTOR} go on"
                    + (f" (bracket {bracket})" if bracket is not None else ""))
    return f"{pruner}: validation accuracy {value:.4f} at epoch {epoch}"


# --------------------------------------------------------------------------
# The lead's loop: ask, submit to the cluster, tell
# --------------------------------------------------------------------------


def _wait_first(futures):
    """The finished futures among ``futures`` (Dask or concurrent.futures), blocking until one is."""
    futures = list(futures)
    if type(futures[0]).__module__.startswith("distributed"):
        from distributed import wait
    else:
        from concurrent.futures import wait
    return wait(futures, return_when="FIRST_COMPLETED").done


def _outcome(future):
    """What a finished future's task returned, or its exception as a failure."""
    try:
        out = future.result()
    except Exception as exc:  # the task raised, or its worker died too often (KilledWorker)
        return {"status": "failed", "error": " ".join(f"{type(exc).__name__}: {exc}".split())}
    return out if isinstance(out, dict) else {"status": "failed", "error": f"the trial returned {out!r}"}


def trial_budget(search, n_trials):
    """The trials a run trains in all: ``n_trials``, at most the size of a finite
    space; the whole grid when ``n_trials`` is None (grid search only)."""
    size = search.space_size()
    if n_trials is None:
        if search.search != "grid":
            raise ValueError(f"{search.search} search needs a number of trials")
        return size
    return n_trials if size is None else min(n_trials, size)


def run_search(search: Search, submit: Callable, *, n_trials=None, max_in_flight=1,
               on_result: Callable | None = None, should_stop: Callable | None = None):
    """Run trials until the study has trained ``n_trials`` settings of its own
    (at most the size of a finite space; grid: every point by default).

    submit(number, settings, reporter) -> future: start trial ``number`` on the
    cluster; the task calls ``reporter(epoch, val_acc)`` after each epoch, stops
    training when it returns True, and returns ``{"status": "ok"|"failed",
    "val_acc": final validation accuracy, "error": ...}``.
    At most ``max_in_flight`` trials run at a time (the worker count). Trials an
    earlier lead left running are submitted first (resumed).

    A suggestion equal to an earlier trial's settings (a repeat) is not trained
    again and does not count towards ``n_trials``: it gets that trial's result
    (waiting for it if it is still running), which the sampler learns from. On a
    finite space, after :data:`REPEATS_IN_A_ROW` repeat(s) in a row (TPE suggests the point
    it believes best again once it has settled there) the next trial takes a
    point no trial has taken, drawn at random from the sampler's seed; the run
    ends when every point is taken.
    on_result(frozen_trial): called as each trial is told (results table, log).
    should_stop(frozen_trial) -> bool: True stops asking (running trials finish).
    Returns the FrozenTrials told in this call."""
    import random

    n_trials = trial_budget(search, n_trials)
    finite = search.space_size() is not None
    rng = random.Random(f"{search.seed}:{search.started()}")  # a rerun draws anew, repeatably
    queue = list(search.unfinished())
    in_flight, copies, told = {}, {}, []
    stopping, repeats = False, 0

    def record(frozen):
        told.append(frozen)
        if on_result:
            on_result(frozen)
        return bool(should_stop and should_stop(frozen))

    while True:
        while not stopping and len(in_flight) < max_in_flight:
            if queue:
                number, params = queue.pop(0)
            elif search.trained() >= n_trials:
                break
            else:
                if repeats >= (REPEATS_IN_A_ROW if finite else ENDLESS_REPEATS):
                    fresh = search.untried(rng)
                    if fresh is None:  # every point taken (or an endless space that only repeats)
                        break
                    search.enqueue(fresh)
                    repeats = 0
                asked = search.ask()
                if asked is None:
                    break
                number, params = asked
            source = search.same_as(number)
            if source is not None:  # the same settings as an earlier trial: share its folder and result
                repeats += 1
                search.mark_repeat(number, source)
                if source.state.is_finished():
                    stopping = record(search.tell_copy(number, source)) or stopping
                else:  # running: it was submitted before this one (lower number)
                    copies.setdefault(source.number, []).append(number)
                continue
            repeats = 0
            in_flight[submit(number, params, search.reporter(number))] = number
        if not in_flight:
            break
        for future in _wait_first(in_flight):
            number = in_flight.pop(future)
            frozen = search.tell(number, _outcome(future))
            stopping = record(frozen) or stopping
            for copy in copies.pop(number, []):
                stopping = record(search.tell_copy(copy, frozen)) or stopping
    return told
