"""A throw-away PostgreSQL server for the tests marked ``postgres``.

:func:`start_server` runs Debian's ``initdb`` and ``pg_ctl`` (package
``postgresql``; ``.ci/run`` installs it) on a fresh data folder in a temporary
directory, listening on 127.0.0.1 at a free port with trust authentication
and no Unix socket outside that folder. PostgreSQL refuses to run as root, so
under root (as in CI) the server runs as the unprivileged user ``nobody``.
Each test gets an empty database of its own (:meth:`PostgresServer.new_database`),
dropped after the test. The folder is on /dev/shm where there is one (creating
and deleting a database's thousand files on a busy disk takes seconds). The
server stops, and its folder is deleted, when the test session ends.

Where the server cannot start (no binaries, no driver, no ``nobody``), the
fixtures skip with the reason; ``.ci/run`` fails when they skipped.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SUPERUSER = "postgres"
RUN_AS = "nobody"  # the user the server runs as when the tests run as root


class ServerUnavailableError(RuntimeError):
    """The throw-away server could not be started here; the message says why."""


def find_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: Debian's newest version, or the PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresServer:
    """A running server: its binaries, data folder, port and the user it runs as."""

    bin_dir: Path
    root: Path
    port: int
    run_as: str | None
    _names: itertools.count = field(default_factory=itertools.count, repr=False)

    def url(self, database: str = "postgres") -> str:
        """A plain ``postgresql://`` URL, as docs/part5.md writes it."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database and return its name."""
        name = f"test_{next(self._names)}"
        self.execute(f"CREATE DATABASE {name}")
        return name

    def execute(self, sql: str) -> None:
        """Run one statement, outside a transaction, in the ``postgres`` database."""
        import psycopg

        dsn = f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(sql)

    def pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return _run(self, [str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), *args],
                    check=check)  # fmt: skip

    def stop(self) -> None:
        """Stop the server at once and delete its folder."""
        try:
            self.pg_ctl("stop", "-m", "immediate", "-w", check=False)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _run(server: PostgresServer, command: list[str], *, check: bool = True):
    user = {}
    if server.run_as is not None:  # root: drop to the unprivileged user, its group only
        entry = pwd.getpwnam(server.run_as)
        user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    result = subprocess.run(
        command, cwd=server.root, capture_output=True, text=True, timeout=120,
        env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "HOME": str(server.root)},
        **user,
    )  # fmt: skip
    if check and result.returncode != 0:
        raise ServerUnavailableError(
            f"{' '.join(command[:2])} failed ({result.returncode}): "
            f"{(result.stderr or result.stdout).strip()[-800:]}"
        )
    return result


def start_server() -> PostgresServer:
    """Initialise and start a server on 127.0.0.1 at a free port.

    Raises:
        ServerUnavailableError: no binaries, no driver, no unprivileged user, or a start failure.
    """
    try:
        import psycopg  # noqa: F401
    except ImportError as error:
        raise ServerUnavailableError(f'pip install -e ".[postgres]": {error}') from None
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise ServerUnavailableError("initdb not found: apt-get install postgresql")
    run_as = None
    if os.geteuid() == 0:
        try:
            entry = pwd.getpwnam(RUN_AS)
        except KeyError:
            raise ServerUnavailableError(f"running as root and no user {RUN_AS!r}") from None
        run_as = RUN_AS
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK | os.X_OK) else None
    root = Path(tempfile.mkdtemp(prefix="cifar_lab_pg_", dir=shm))
    if run_as is not None:
        os.chown(root, entry.pw_uid, entry.pw_gid)
    server = PostgresServer(bin_dir, root, free_port(), run_as)
    try:
        _run(server, [str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", SUPERUSER,
                      "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"])  # fmt: skip
        options = f"-h 127.0.0.1 -p {server.port} -k {root} -F -c max_connections=200"
        server.pg_ctl("start", "-w", "-t", "60", "-l", str(root / "server.log"), "-o", options)
    except (ServerUnavailableError, OSError, subprocess.TimeoutExpired) as error:
        log = root / "server.log"
        tail = log.read_text()[-800:] if log.exists() else ""
        server.stop()
        raise ServerUnavailableError(f"{error} {tail}".strip()) from None
    return server


@pytest.fixture(scope="session")
def postgres_server():
    """One throw-away server for the test session, or a skip that says why not."""
    try:
        server = start_server()
    except ServerUnavailableError as error:
        pytest.skip(f"PostgreSQL server unavailable: {error}")
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server):
    """The URL of an empty database on the session's server, dropped after the test."""
    name = postgres_server.new_database()
    yield postgres_server.url(name)
    postgres_server.execute(f"DROP DATABASE {name} WITH (FORCE)")
