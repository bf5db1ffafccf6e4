"""Shared fixtures: small CIFAR-10 copies written in the real on-disk formats."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from postgres_server import postgres_server, postgres_url  # noqa: F401  (fixtures)
from sandbox_fixtures import sandbox  # noqa: F401  (fixture)

from cifar_lab.data.formats import CLASS_NAMES

REPO_ROOT = Path(__file__).resolve().parents[1]
# Read before the autouse fixture below hides CIFAR10_SOURCE from each test: .ci/run sets
# it to the shared archive wherever the clone lives.
SHARED_ARCHIVE = Path(
    os.environ.get("CIFAR10_SOURCE") or REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg.tgz"
)
# The real CIFAR-10 copy the slow and notebook tests use, or None; one skip marker for them.
REAL_SOURCE = SHARED_ARCHIVE if SHARED_ARCHIVE.exists() else None
requires_real_data = pytest.mark.skipif(
    REAL_SOURCE is None,
    reason=f"real CIFAR-10 not found at {SHARED_ARCHIVE} and $CIFAR10_SOURCE is not set",
)


@pytest.fixture(scope="session")
def executed_notebooks(request, tmp_path_factory):
    """The course notebooks, each executed once in this session (tests/executed_notebooks.py).

    ``executed_notebooks["01_preparation"]`` runs the notebook when first asked for; a
    kernel stays up for the notebook's mutation test when one was collected.
    """
    from executed_notebooks import ExecutedNotebooks, mutation_tests_collected

    claim_for_this_worker(tmp_path_factory, "executed_notebooks")
    runs = ExecutedNotebooks(
        REPO_ROOT / "notebooks",
        tmp_path_factory.mktemp("executed_notebooks"),
        REAL_SOURCE,
        mutation_tests_collected(request.session.items),
    )
    link_decoded_real_data(tmp_path_factory, runs.cache)
    yield runs
    runs.close()


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory):
    """The wheel of this checkout, built and installed once per run (tests/installed_wheel.py)."""
    from installed_wheel import installed_wheel

    return installed_wheel(tmp_path_factory)


# Tests that share one expensive session resource run on one pytest-xdist worker (`make test`
# runs three, `--dist loadgroup`): a worker executes a notebook only if one of its tests asks,
# and the mutation tests need the kernel that executed it, in the same process.
SHARED_RESOURCES = {
    "executed_notebooks": "notebooks",  # each course notebook, executed once
    "postgres_server": "postgres",  # one throw-away PostgreSQL server
    "postgres_url": "postgres",
}


# tryfirst: pytest-xdist's own hook turns each xdist_group marker into the "@group" suffix
# of the node id that `--dist loadgroup` schedules by; it must find our markers already there
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Put each test that uses a shared session resource in that resource's xdist group.

    The tests that share a module-scoped fixture (a graded batch, a built wheel, the real
    CIFAR-10 splits of the training promises) form a group per module, so that the fixture
    is built once per run rather than once on each worker.
    """
    for item in items:
        groups = {SHARED_RESOURCES[name] for name in item.fixturenames if name in SHARED_RESOURCES}
        if not groups and module_scoped_fixtures(item):
            # a module-scoped fixture is set up once per worker that runs one of its tests:
            # keep its module's tests on one worker so that it is built once, not twice
            groups.add(item.module.__name__)
        assert len(groups) <= 1, f"{item.nodeid} needs two worker groups: {groups}"
        for group in groups:
            item.add_marker(pytest.mark.xdist_group(group))


# tryfirst: before pytest-xdist's own hook sends the worker's node ids to the scheduler
@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session):
    """Give each grouped test the ``@group`` node-id suffix that ``--dist loadgroup`` reads.

    pytest-xdist 3.8 adds the suffix by setting ``item._nodeid``, which pytest 9.2 no
    longer reads (a node id is ``item._id`` now): without this, every group is spread
    over both workers and each worker executes the course notebooks again. A no-op where
    xdist's own suffix took, and outside an xdist worker.
    """
    if not session.config.getoption("loadgroup", default=False):
        return
    try:
        from _pytest.nodeid import NodeId  # pytest >= 9.2
    except ImportError:
        return  # pytest reads item._nodeid, where xdist put the suffix
    for item in session.items:
        groups = sorted({str(mark.args[0]) for mark in item.iter_markers("xdist_group")})
        suffix = "@" + "_".join(groups)
        if groups and not item.nodeid.endswith(suffix):
            item._id = NodeId.parse(item.nodeid + suffix)


def module_scoped_fixtures(item) -> list[str]:
    """The module-scoped fixtures that the test ``item`` uses (pytest's own record of them)."""
    definitions = item._fixtureinfo.name2fixturedefs
    return [name for name in item.fixturenames if (definitions.get(name) or [None])[-1] is not None
            and definitions[name][-1].scope == "module"]  # fmt: skip


def shared_root(tmp_path_factory) -> Path:
    """The run's temporary folder that every pytest-xdist worker sees (its own without xdist)."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


def claim_for_this_worker(tmp_path_factory, resource: str) -> None:
    """Fail if another pytest-xdist worker of this run has already set up ``resource``.

    A resource in :data:`SHARED_RESOURCES` must be set up once per run; a second worker
    setting it up means the grouping did not reach xdist's scheduler, and the work would
    silently be done twice.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    claim = shared_root(tmp_path_factory) / f"{resource}.worker"
    try:
        with claim.open("x") as file:
            file.write(worker)
    except FileExistsError:
        owner = claim.read_text()
        if owner != worker:
            pytest.fail(
                f"{resource} was already set up by worker {owner}; this is {worker}: "
                "its tests are not in one xdist group (conftest.SHARED_RESOURCES)"
            )


_DECODED: dict[str, Path | None] = {}  # this worker's answer of decoded_real_data()


def decoded_real_data(tmp_path_factory) -> Path | None:
    """The decode cache entry of ``REAL_SOURCE``, decoded once per test run; None without one.

    Decoding the shared archive's 55,000 JPEGs takes ~20 s of CPU, and every test
    gets a fresh, empty ``$CIFAR_LAB_CACHE``; so the first test of the run decodes it
    into a folder the pytest-xdist workers share (under a lock), and each test's cache
    folder gets a hard link to that one entry (:func:`link_decoded_real_data`). A test
    of decoding itself passes its own ``cache_dir``. Sources that are not decoded (the
    pickled python batches) have no entry.
    """
    if "entry" not in _DECODED:
        _DECODED["entry"] = None
        if REAL_SOURCE is not None:
            import fcntl

            from cifar_lab.data import sources

            root = shared_root(tmp_path_factory)
            folder = root / "decoded_cifar10"
            folder.mkdir(exist_ok=True)
            with (root / "decoded_cifar10.lock").open("w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                entries = list(folder.glob("*.npz"))
                if not entries:
                    sources.read_source(REAL_SOURCE, cache_dir=folder, num_train=0, num_test=0)
                    entries = list(folder.glob("*.npz"))
            _DECODED["entry"] = entries[0] if entries else None
    return _DECODED["entry"]


def link_decoded_real_data(tmp_path_factory, cache: Path) -> None:
    """Give the cache folder ``cache`` the run's decoded real data (a hard link, no copy)."""
    entry = decoded_real_data(tmp_path_factory)
    if entry is not None and not (cache / entry.name).exists():
        os.link(entry, cache / entry.name)


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path_factory, monkeypatch):
    """Keep every test away from the user's caches and data settings."""
    monkeypatch.delenv("CIFAR10_SOURCE", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("keras_home")))
    cache = tmp_path_factory.mktemp("cache")
    link_decoded_real_data(tmp_path_factory, cache)
    monkeypatch.setenv("CIFAR_LAB_CACHE", str(cache))


def make_pool(num_images: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images (N, 32, 32, 3) whose labels are class-sorted, like image folders."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(10), num_images // 10).astype(np.int32)
    X = rng.integers(0, 256, size=(len(y), 32, 32, 3), dtype=np.uint8)
    return X, y


def pickled_batch(X: np.ndarray, y: np.ndarray) -> bytes:
    """Serialise images as an official CIFAR-10 python batch (CHW rows, protocol 2)."""
    rows = X.transpose(0, 3, 1, 2).reshape(len(X), 3072)
    batch = {b"batch_label": b"test batch", b"labels": [int(v) for v in y], b"data": rows}
    return pickle.dumps(batch, protocol=2)


def write_python_dir(folder: Path, per_batch: int = 20, test_size: int = 30) -> dict:
    """Write ``cifar-10-batches-py`` with five training batches and a test batch."""
    folder.mkdir(parents=True)
    train_X, train_y = make_pool(per_batch * 5, seed=1)
    order = np.random.default_rng(2).permutation(len(train_y))  # official files are shuffled
    train_X, train_y = train_X[order], train_y[order]
    for i in range(5):
        part = slice(i * per_batch, (i + 1) * per_batch)
        (folder / f"data_batch_{i + 1}").write_bytes(pickled_batch(train_X[part], train_y[part]))
    test_X, test_y = make_pool(test_size, seed=3)
    (folder / "test_batch").write_bytes(pickled_batch(test_X, test_y))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": list(CLASS_NAMES)}))
    return {"X_train": train_X, "y_train": train_y, "X_test": test_X, "y_test": test_y}


def tar_folder(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def write_image_dir(root: Path, per_class: int = 12, test_per_class: int = 4, fmt="PNG") -> dict:
    """Write ``root/train/<class>/NNNN.png`` and ``root/test/<class>/NNNN.png``."""
    from PIL import Image

    arrays = {}
    for split, count, seed in (("train", per_class, 4), ("test", test_per_class, 5)):
        X, y = make_pool(count * 10, seed)
        for i, (image, label) in enumerate(zip(X, y, strict=True)):
            path = root / split / CLASS_NAMES[label] / f"{i:04d}.{fmt.lower()}"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path, format=fmt)
        arrays[split] = (X, y)
    return arrays


def zip_folder(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted(folder.rglob("*")):
            out.write(path, arcname=path.relative_to(folder.parent).as_posix())
    return archive


class Exploit:
    """A pickle payload that would create a file if it were ever unpickled naively."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def exploit_bytes(marker: Path) -> bytes:
    buffer = io.BytesIO()
    pickle.dump({b"data": Exploit(marker), b"labels": [0]}, buffer, protocol=2)
    return buffer.getvalue()


@pytest.fixture
def python_dir(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    return folder, write_python_dir(folder)


@pytest.fixture
def image_dir(tmp_path):
    root = tmp_path / "cifar10-png"
    return root, write_image_dir(root)


@pytest.fixture(scope="module")
def synthetic():
    """Small deterministic synthetic splits (2,000 / 200 / 200) shared by the loop tests."""
    import cifar_lab as lab

    return lab.load_cifar10(2000, 200, 200, source="synthetic", verbose=False)


def datasets(splits, seed: int = 0):
    """(shuffled train, validation) Datasets of batch 64 over ``splits``."""
    import cifar_lab as lab

    train = lab.Dataset(splits.X_train, splits.y_train, 64, shuffle=True, seed=seed)
    return train, lab.Dataset(splits.X_val, splits.y_val, 64)
