"""Grading on a Dask cluster: each submission is one task on a worker (``grade --workers N``).

``grade --workers N`` starts a Dask ``LocalCluster`` of N worker processes on this
machine (one task at a time each), with TensorFlow's and BLAS's threads set to
``cores // N`` per worker (:func:`~cifar_lab.instructor.sandbox.thread_variables`);
each worker passes its own setting on to the re-run kernels it starts
(:func:`worker_threads`), so the workers share the cores instead of each starting a
pool of every core. ``grade --scheduler
tcp://HOST:8786`` uses a running cluster instead (``dask scheduler`` and ``dask
worker``, dask-jobqueue, Kubernetes; see docs/cluster.md).

**One row per student, written once.** The per-submission work,
:func:`~cifar_lab.instructor.grading.grade_safely` of one student, is one task
(:func:`grade_task`). Workers write nothing the report needs: the task returns the row,
the scoring peaks and the feedback page, and this process writes them as tasks finish
(``as_completed``), through the same :class:`~cifar_lab.instructor.report.ReportFile` as
a one-process batch. When a worker dies mid-task (its machine or process killed), Dask
runs the task again on another worker; the future still finishes once, so the row is
written once. A submission that kills every worker it is sent to (Dask's
``allowed-failures``, default 3) gets a ``damaged`` row, and the batch goes on.

**Before any task**, every worker is asked (:func:`worker_facts`) for a digest of its
``cifar_lab`` source files (and its version, shown), and whether it sees the submissions and
the CIFAR-10 copy at the paths this process uses: a worker that differs stops the batch
with one line naming it, before a single row is written. Without the ``cluster``
extra (``distributed``), ``--workers`` and ``--scheduler`` fail with one line that
says what to install; without them, nothing here is imported and grading runs in one
process.

**What a worker does not enforce**: tasks run in a worker thread, where no
``SIGALRM`` can interrupt the reading and checking, so ``--submission-seconds`` bounds
only the scoring child there (which gets the time left); the re-run keeps its own
``--cell-timeout`` and ``--total-timeout``, and every file is size-checked before it
is read, as in one process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib.metadata
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifar_lab.checks import check_optional_int
from cifar_lab.devices import usable_cores
from cifar_lab.instructor.claims import LazyTestSet
from cifar_lab.instructor.findings import GradingSetupError
from cifar_lab.instructor.grading import (
    GradeMany,
    GradeSettings,
    error_row,
    grade_safely,
    grade_submission,
)
from cifar_lab.instructor.report import ReportRow, feedback_path
from cifar_lab.instructor.sandbox import THREAD_VARIABLES, Budget, choose_backend, thread_variables

INSTALL_HINT = 'pip install "cifar_lab[cluster]"'
WORKER_WAIT_SECONDS = 60  # for the first worker of a --scheduler cluster
TaskResult = tuple[ReportRow, list[int], str | None]  # (row, child peaks, feedback page)


@dataclass(frozen=True)
class ClusterSettings:
    """Where ``grade`` sends its tasks: a local cluster of ``workers`` processes, or ``scheduler``.

    Attributes:
        workers: worker processes of a ``LocalCluster`` on this machine (None: not local).
        scheduler: address of a running Dask scheduler, e.g. ``tcp://HOST:8786``.
        cores: cores the local workers share (None: the cores this process may use).
    """

    workers: int | None = None
    scheduler: str | None = None
    cores: int | None = None

    def __post_init__(self) -> None:
        check_optional_int("workers", self.workers, minimum=1)
        check_optional_int("cores", self.cores, minimum=1)
        if self.scheduler is not None and not isinstance(self.scheduler, str):
            raise TypeError(f"scheduler must be an address string, got {self.scheduler!r}")
        if (self.workers is None) == (self.scheduler is None):
            raise ValueError(
                "give exactly one of --workers (a cluster on this machine) and --scheduler"
            )

    @property
    def threads(self) -> int | None:
        """TensorFlow/BLAS threads per local worker: its share of the cores (None: remote)."""
        if self.workers is None:
            return None  # remote workers are started by whoever runs them (docs/cluster.md)
        cores = self.cores or usable_cores()
        return max(1, cores // self.workers)


def worker_threads(environment: dict[str, str]) -> int | None:
    """The TensorFlow threads a worker was started with (``TF_NUM_INTRAOP_THREADS``), or None.

    Args:
        environment: the worker process's environment (``os.environ`` there).

    Returns:
        The worker's threads per pool, passed on to the kernels it re-runs (None: unset).
    """
    value = environment.get(THREAD_VARIABLES[0], "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def with_threads(settings: GradeSettings, threads: int | None) -> GradeSettings:
    """``settings`` whose re-run kernels use ``threads`` threads per pool.

    Args:
        settings: the batch's settings.
        threads: threads per pool (None, or settings that already name theirs: unchanged).

    Returns:
        The settings a task grades with.
    """
    if threads is None or settings.rerun is None or settings.rerun.threads is not None:
        return settings
    rerun = dataclasses.replace(settings.rerun, threads=threads)
    return dataclasses.replace(settings, rerun=rerun)


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise GradingSetupError(
            f"--workers and --scheduler need Dask's distributed package: {INSTALL_HINT}"
        ) from None
    return distributed


@contextlib.contextmanager
def dask_client(cluster: ClusterSettings | None, paths: Iterable[Path | str]) -> Iterator[Any]:
    """Start or reach the cluster, check its workers, and yield a client (None: no cluster).

    Args:
        cluster: where to grade (None: in this process; nothing is started).
        paths: files every worker must see at the same path (submissions, CIFAR-10 copy).

    Yields:
        A ``distributed.Client`` whose workers passed :func:`check_workers`, or None.

    Raises:
        GradingSetupError: no ``distributed``, no scheduler there, or a worker that
            differs (one line, naming the worker).
    """
    if cluster is None:
        yield None
        return
    distributed = _distributed()
    with contextlib.ExitStack() as stack:
        if cluster.scheduler is not None:
            try:
                client = stack.enter_context(distributed.Client(cluster.scheduler, timeout=30))
                client.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)
            except (OSError, TimeoutError) as error:
                raise GradingSetupError(
                    f"cannot use the Dask scheduler at {cluster.scheduler} "
                    f"(or no worker joined it in {WORKER_WAIT_SECONDS} s): {error}"
                ) from None
        else:
            local = distributed.LocalCluster(
                n_workers=cluster.workers,
                threads_per_worker=1,  # one submission at a time per worker process
                processes=True,
                env=thread_variables(cluster.threads),
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            stack.enter_context(local)
            client = stack.enter_context(distributed.Client(local))
        check_workers(client, paths)
        yield client


PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the cifar_lab package this module is in


def installed_version() -> str:
    """This ``cifar_lab``'s installed version, shown beside the digest ("unknown": none)."""
    try:
        return importlib.metadata.version("cifar_lab")
    except importlib.metadata.PackageNotFoundError:  # a checkout on PYTHONPATH
        return "unknown"


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """SHA-256 (first 16 hex digits) of every ``.py`` file of this ``cifar_lab``, by path."""
    package = PACKAGE_DIR
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def worker_facts(paths: list[str]) -> dict[str, Any]:
    """What :func:`check_workers` compares: run on each worker (and here).

    Args:
        paths: absolute paths the worker must see.

    Returns:
        ``{"version", "digest", "missing": paths it does not see, "sandbox": backend or None}``.
    """
    return {
        "version": installed_version(),
        "digest": source_digest(),
        "missing": [path for path in paths if not Path(path).exists()],
        "sandbox": choose_backend(),
    }


def worker_problems(facts: dict[str, Any], here: dict[str, Any]) -> list[str]:
    """What is wrong with a worker whose :func:`worker_facts` are ``facts`` (``here``: ours).

    Args:
        facts: the worker's facts, or the exception raised running it there.
        here: this process's facts.

    Returns:
        One phrase per problem (empty: the worker may grade).
    """
    if isinstance(facts, BaseException):  # e.g. it cannot unpickle a cifar_lab function
        return [f"cannot run cifar_lab ({type(facts).__name__}: {str(facts)[:200]})"]
    problems = []
    if facts["digest"] != here["digest"]:  # the same source; the version is only shown
        problems.append(
            f"has cifar_lab {facts['version']} (source {facts['digest']}), "
            f"not {here['version']} (source {here['digest']})"
        )
    problems += [f"does not see {path}" for path in facts["missing"]]
    return problems


def check_workers(client: Any, paths: Iterable[Path | str]) -> None:
    """Fail unless every worker runs this ``cifar_lab`` and sees ``paths``.

    Args:
        client: a ``distributed.Client``.
        paths: files and folders the tasks read, as this process names them.

    Raises:
        GradingSetupError: one line naming each worker that differs and how.
    """
    wanted = [str(Path(path).resolve()) for path in paths]
    here = worker_facts(wanted)
    answers = client.run(worker_facts, wanted, on_error="return")
    if not answers:
        raise GradingSetupError("the Dask cluster has no workers")
    problems = [
        f"worker {address} {problem}"
        for address, facts in sorted(answers.items())
        for problem in worker_problems(facts, here)
    ]
    if problems:
        fix = f"install this cifar_lab on every worker ({INSTALL_HINT}) and share the files"
        raise GradingSetupError("; ".join(problems) + f"; {fix}")
    unconfined = sorted(a for a, facts in answers.items() if facts["sandbox"] is None)
    if unconfined:
        print(f"WARNING: no bubblewrap or unshare on {', '.join(unconfined)}: the re-run runs "
              "student code there unconfined (install bubblewrap)", flush=True)  # fmt: skip


@functools.lru_cache(maxsize=2)
def _test_set(source: str | None, num_test: int | None, private_test: Path | None) -> LazyTestSet:
    """The worker process's test sets, loaded by its first task and reused by the next."""
    return LazyTestSet(source, num_test, private_test=private_test)


def grade_task(student: str, path: str, settings: GradeSettings) -> TaskResult:
    """Grade one submission on a worker: :func:`grade_safely` of it, and its feedback page.

    The kernels it re-runs get the worker's own TensorFlow/BLAS threads (set for the
    workers of ``--workers N``; for ``dask worker``, by whoever starts it).

    Args:
        student: the row's name.
        path: the ``<student>.zip`` or ``<student>/`` folder, as the worker sees it.
        settings: the batch's settings (``feedback_dir``: whether to make a page).

    Returns:
        (the row, the child processes' peak bytes, the feedback page's HTML or None);
        the grader writes the page, so that it lands where the grader's report is.
    """
    settings = with_threads(settings, worker_threads(dict(os.environ)))
    test_set = _test_set(settings.source, settings.num_test, settings.private_test)
    with tempfile.TemporaryDirectory(prefix="cifar_lab_task_") as temporary:
        folder = Path(temporary) if settings.feedback_dir is not None else None
        local = dataclasses.replace(settings, feedback_dir=folder)

        def grade_one(student: str, path: Path, budget: Budget) -> ReportRow:
            return grade_submission(student, path, local, test_set, budget)

        row, peaks = grade_safely(student, Path(path), grade_one, settings.limits)
        page = None
        if folder is not None and feedback_path(folder, student).is_file():
            page = feedback_path(folder, student).read_text(encoding="utf-8")
    return row, peaks, page


def _absolute(source: str | None) -> str | None:
    """A source that names an existing file or folder, made absolute for the workers."""
    if source is None or not Path(source).exists():
        return source  # "synthetic", "keras", or missing (the task's row will say so)
    return str(Path(source).resolve())


def task_settings(settings: GradeSettings) -> GradeSettings:
    """``settings`` with the paths the workers read made absolute."""
    rerun = settings.rerun
    if rerun is not None:
        rerun = dataclasses.replace(rerun, source=_absolute(rerun.source))
    private = None if settings.private_test is None else Path(settings.private_test).resolve()
    return dataclasses.replace(
        settings, source=_absolute(settings.source), rerun=rerun, private_test=private
    )


def _outcome(future: Any, student: str, killed: type[BaseException]) -> TaskResult:
    """The task's result; a submission that killed every worker it ran on is its own row."""
    try:
        return future.result()
    except killed as error:  # Dask gave up after allowed-failures worker deaths
        problem = f"submission: not graded: every worker grading it died ({error})"
        return error_row(student, "damaged", problem[:400]), [], None


def grade_on(client: Any, settings: GradeSettings) -> GradeMany:
    """A ``grade_many`` for :func:`~cifar_lab.instructor.grading.run_batch`: one task each.

    Args:
        client: a ``distributed.Client`` (from :func:`dask_client`).
        settings: the batch's settings; feedback pages go to its ``feedback_dir`` here.

    Returns:
        A function from (student, path) pairs to (row, child peaks) as each task finishes.
    """
    distributed = _distributed()
    remote = task_settings(settings)

    def grade_many(pending: list[tuple[str, Path]]) -> Iterator[tuple[ReportRow, list[int]]]:
        futures = {
            client.submit(grade_task, student, str(Path(path).resolve()), remote, pure=False): (
                student
            )
            for student, path in pending
        }
        try:
            for future in distributed.as_completed(futures):  # each future once, retries or not
                row, peaks, page = _outcome(future, futures[future], distributed.KilledWorker)
                if page is not None and settings.feedback_dir is not None:
                    target = feedback_path(settings.feedback_dir, row.student)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(page, encoding="utf-8")
                yield row, peaks
        finally:  # the batch stopped (a setup error, Ctrl-C): leave no task running
            client.cancel(list(futures))

    return grade_many
