"""What a sweep is and where it lives: :class:`SweepSpec`, its storage, its Optuna study.

A study lives in a database: by default the SQLite file ``runs/<name>.db``
(``runs/`` is git-ignored). Many workers, or machines, share one study
through an Optuna RDB storage URL:

* one machine, a few processes: ``sqlite:///runs/<study>.db`` (the default);
* many machines: a server database, e.g.
  ``postgresql://user:password@db-host:5432/sweeps`` (``pip install -e ".[postgres]"``,
  which installs psycopg 3; create the empty database once with ``createdb sweeps``) or
  ``mysql+pymysql://user:password@db-host/sweeps``.

On a database URL every running trial writes a heartbeat each
``SweepSpec.heartbeat_interval`` seconds; a trial silent for three intervals
(its worker or machine died) is marked FAIL and its point queued again.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from cifar_lab.checks import check_choice, check_int, check_optional_int, check_seed

SAMPLERS = ("grid", "random", "tpe")
PRUNERS = ("median", "successive_halving", "none")
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
_GRID_TYPES = (str, int, float, bool, type(None))


class QueueEmptyError(Exception):
    """A grid trial found no queued point: another worker took the last one."""


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep searches and how.

    Attributes:
        name: study name (letters, digits, ``_-.``); also the default SQLite file name.
        space: parameter -> list of choices (grid, or categorical when sampled),
            or an ``optuna.distributions`` object (random/TPE samplers only).
        sampler: ``"grid"`` (every combination once), ``"random"`` or ``"tpe"``.
        n_trials: total finished trials wanted; required unless grid.
        pruner: ``"median"``, ``"successive_halving"`` or ``"none"``.
        warmup_steps: reported steps (epochs) before a trial may be pruned.
        startup_trials: finished trials the median pruner waits for.
        seed: seeds the random and TPE samplers.
        heartbeat_interval: seconds between a running trial's heartbeats on a
            database URL; a trial silent for 3 intervals (its worker died) is
            failed and its point queued again (at most 3 times). Every worker
            must use the same value.
    """

    name: str
    space: Mapping[str, Any]
    sampler: str = "grid"
    n_trials: int | None = None
    pruner: str = "median"
    warmup_steps: int = 1
    startup_trials: int = 2
    seed: int = 0
    heartbeat_interval: int = 60
    _grid: tuple = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        check_study_name(self.name)
        check_choice("sampler", self.sampler, SAMPLERS)
        check_choice("pruner", self.pruner, PRUNERS)
        check_optional_int("n_trials", self.n_trials, minimum=1)
        check_int("warmup_steps", self.warmup_steps, minimum=0)
        check_int("startup_trials", self.startup_trials, minimum=0)
        check_seed("seed", self.seed)
        check_int("heartbeat_interval", self.heartbeat_interval, minimum=1)
        if not self.space:
            raise ValueError("space is empty; give at least one parameter and its choices")
        if self.sampler == "grid":
            object.__setattr__(self, "_grid", tuple(_grid_points(self.space)))
        elif self.n_trials is None:
            raise ValueError(f"sampler {self.sampler!r} needs n_trials > 0, got None")

    @property
    def grid(self) -> list[dict[str, Any]]:
        """Every grid point, in a fixed order (empty unless ``sampler="grid"``)."""
        return [dict(point) for point in self._grid]

    @property
    def total_trials(self) -> int:
        """Finished trials the sweep aims for."""
        return len(self._grid) if self.sampler == "grid" else int(self.n_trials)


def check_study_name(name: str) -> str:
    """Return ``name`` if it is a study (and file) name: letters, digits and ``_-.``."""
    if not isinstance(name, str):
        raise TypeError(f"sweep name must be a str, got {name!r}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"sweep name {name!r} must use only letters, digits and _-.")
    return name


def _grid_points(space: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for name, choices in space.items():
        if isinstance(choices, (str, bytes)) or not isinstance(choices, Sequence) or not choices:
            raise ValueError(f"grid parameter {name!r} needs a non-empty list, got {choices!r}")
        bad = [value for value in choices if not isinstance(value, _GRID_TYPES)]
        if bad:
            raise TypeError(f"grid values of {name!r} must be str/int/float/bool/None; got {bad}")
    names = list(space)
    for values in itertools.product(*(space[name] for name in names)):
        yield dict(zip(names, values, strict=True))


def _make_pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=spec.startup_trials, n_warmup_steps=spec.warmup_steps
        )
    if spec.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(spec.warmup_steps, 1))
    return optuna.pruners.NopPruner()


class _QueueOnlySampler(optuna.samplers.BaseSampler):
    """Grid sweeps: every parameter comes from a queued point; sampling means none was left."""

    def infer_relative_search_space(self, study, trial) -> dict:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict:
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution) -> Any:
        raise QueueEmptyError("another worker took the last queued grid point")


def _make_sampler(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    if spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=spec.seed)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    return _QueueOnlySampler()


def load_study(
    spec: SweepSpec, storage: str | optuna.storages.BaseStorage | None, *, create: bool
) -> optuna.Study:
    """Open the spec's study with its sampler and pruner (``create``: make it if missing)."""
    storage = resolve_storage(storage, spec.name, heartbeat_interval=spec.heartbeat_interval)
    kwargs = {"study_name": spec.name, "storage": storage}
    kwargs.update(sampler=_make_sampler(spec), pruner=_make_pruner(spec))
    if create:
        return optuna.create_study(direction="maximize", load_if_exists=True, **kwargs)
    return optuna.load_study(**kwargs)


def _point_key(params: Mapping[str, Any], names: Sequence[str]) -> str:
    return json.dumps({name: params.get(name) for name in names}, sort_keys=True)


def enqueue_missing(study: optuna.Study, spec: SweepSpec) -> int:
    """Queue each grid point that no trial holds (queued, running or finished)."""
    names = list(spec.space)
    taken = set()
    for trial in study.get_trials(deepcopy=False):
        if trial.state in (*FINISHED_STATES, TrialState.RUNNING, TrialState.WAITING):
            taken.add(_point_key(trial.system_attrs.get("fixed_params") or trial.params, names))
    missing = [point for point in spec.grid if _point_key(point, names) not in taken]
    for point in missing:
        study.enqueue_trial(point)
    return len(missing)


def open_study(
    spec: SweepSpec, storage: str | optuna.storages.BaseStorage | None = None
) -> optuna.Study:
    """Create the study, or load it if it exists, and queue grid points still missing.

    Call it once per sweep (not from every worker: queueing is not atomic).

    Args:
        spec: the sweep.
        storage: database URL or Optuna storage (default ``sqlite:///runs/<name>.db``).

    Returns:
        The ``optuna.Study``.
    """
    study = load_study(spec, storage, create=True)
    if spec.sampler == "grid":
        enqueue_missing(study, spec)
    return study


def default_storage(name: str, runs_dir: str | Path = "runs") -> str:
    """Return ``sqlite:///<runs_dir>/<name>.db``, creating the folder (relative to the CWD)."""
    folder = Path(runs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / f'{name}.db').as_posix()}"


def database_url(url: str) -> str:
    """Name an installed driver in a plain ``postgresql://`` (or ``postgres://``) URL.

    SQLAlchemy's default PostgreSQL driver depends on its version (psycopg2
    before 2.1, psycopg 3 since), and it rejects ``postgres://``. So a plain URL
    gets ``+psycopg`` (the ``postgres`` extra) or, failing that, ``+psycopg2``.
    Other URLs, and URLs that name a driver, are returned unchanged.

    Raises:
        ImportError: a PostgreSQL URL and neither driver installed.
    """
    scheme, _, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres"):
        return url
    for driver in ("psycopg", "psycopg2"):
        if importlib.util.find_spec(driver) is not None:
            return f"postgresql+{driver}://{rest}"
    raise ImportError(f'{scheme}:// storage needs a driver: pip install -e ".[postgres]"')


def make_storage(url: str, *, heartbeat_interval: int | None = 60) -> optuna.storages.RDBStorage:
    """Open an Optuna RDB storage that is safe for several worker processes.

    Args:
        url: SQLAlchemy URL: ``sqlite:///runs/x.db``, ``postgresql://user:pw@host/db``, ...
        heartbeat_interval: seconds between a running trial's heartbeats; a trial
            silent for 3 intervals is failed and queued again (max 3 retries). None:
            no heartbeats (one process, e.g. a notebook's own study).

    Returns:
        An ``optuna.storages.RDBStorage``.
    """
    if heartbeat_interval is not None:
        check_int("heartbeat_interval", heartbeat_interval, minimum=1)
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(
            f"storage must be a database URL such as 'sqlite:///runs/x.db'; got {url!r}"
        )
    url = database_url(url)
    sqlite = url.startswith("sqlite")
    if sqlite:
        # No Python-side implicit transactions; every transaction takes the write lock
        # at BEGIN, which makes Optuna's read-then-update (e.g. popping a queued trial)
        # atomic across processes. Servers need nothing: Optuna locks the trial row
        # (SELECT ... FOR UPDATE) before changing its state.
        engine_kwargs = {"connect_args": {"timeout": 120, "isolation_level": None}}
    else:  # a trial may train for an hour between queries: replace dropped connections
        engine_kwargs = {"pool_pre_ping": True}
    with warnings.catch_warnings():  # heartbeats are "experimental" but stable in practice
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=None if heartbeat_interval is None else 3 * heartbeat_interval,
            heartbeat_stale_trial_callback=None
            if heartbeat_interval is None
            else optuna.storages.RetryHeartbeatStaleTrialCallback(3),
        )
    if sqlite:
        import sqlalchemy

        sqlalchemy.event.listen(
            storage.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE")
        )
    return storage


def resolve_storage(
    storage: str | optuna.storages.BaseStorage | None,
    name: str,
    *,
    heartbeat_interval: int = 60,
) -> optuna.storages.BaseStorage:
    """Turn None (the default file), a URL, or a storage object into an Optuna storage.

    Args:
        storage: None for ``sqlite:///runs/<name>.db``, a database URL, or any
            ``optuna.storages.BaseStorage`` (e.g. ``InMemoryStorage()`` for throw-away sweeps).
        name: the study name, used for the default file.
        heartbeat_interval: for a URL or None, see :func:`make_storage`.

    Returns:
        An Optuna storage.
    """
    if storage is None:
        storage = default_storage(name)
    if isinstance(storage, str):
        return make_storage(storage, heartbeat_interval=heartbeat_interval)
    if not isinstance(storage, optuna.storages.BaseStorage):
        raise TypeError(f"storage must be None, a URL or an Optuna storage; got {storage!r}")
    return storage
