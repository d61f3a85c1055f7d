"""A throwaway PostgreSQL server for registry tests (Debian's ``postgresql`` package).

``start_postgres`` runs ``initdb`` and ``pg_ctl`` from ``/usr/lib/postgresql/<v>/bin`` on a
temporary folder and a free port on 127.0.0.1, with trust authentication; no systemd and no
system cluster are involved. ``initdb`` refuses to run as root, so as root the server runs
as the ``postgres`` user (or ``nobody``) through ``runuser``.

When no PostgreSQL is installed (or psycopg is missing) the tests that need it are skipped,
unless ``TUNESHIP_REQUIRE_POSTGRES=1`` (CI sets it), which makes that a failure instead.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REQUIRE_ENV = "TUNESHIP_REQUIRE_POSTGRES"
PG_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "tuneship"


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway server."""

    host: str
    port: int
    version: str

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3) of ``database`` on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def create_database(self) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(
            host=self.host, port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<v>/bin`` with initdb and pg_ctl (15 preferred)."""
    if not PG_ROOT.is_dir():
        return None
    found = [p / "bin" for p in PG_ROOT.iterdir() if (p / "bin" / "initdb").is_file()]
    found.sort(
        key=lambda p: (p.parent.name != "15", -int(p.parent.name) if p.parent.name.isdigit() else 0)
    )
    return found[0] if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> list[str]:
    """Command prefix that drops root (initdb refuses to run as root)."""
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return ["runuser", "-u", user, "--"]
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")


def _owner_ids(prefix: list[str]) -> tuple[int, int] | None:
    if not prefix:
        return None
    entry = pwd.getpwnam(prefix[2])
    return entry.pw_uid, entry.pw_gid


@contextlib.contextmanager
def start_postgres() -> Iterator[PostgresServer]:
    """Start a throwaway server; stop it and delete its files on exit.

    Raises:
        FileNotFoundError: PostgreSQL is not installed.
        subprocess.CalledProcessError: initdb or pg_ctl failed (their output is attached).
    """
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError(f"no PostgreSQL under {PG_ROOT} (apt-get install postgresql)")
    prefix = _run_as()
    root = Path(tempfile.mkdtemp(prefix="tuneship-pg-"))
    data = root / "data"
    ids = _owner_ids(prefix)
    if ids is not None:
        os.chown(root, *ids)
    port = _free_port()

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, text=True, cwd=root)

    try:
        run(
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        # fsync off: a throwaway test cluster needs no durability, and it is faster.
        options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c full_page_writes=off"
        log = str(root / "server.log")
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", log, "-o", options, "-w", "start")
        try:
            yield PostgresServer("127.0.0.1", port, bin_dir.parent.name)
        finally:
            subprocess.run(
                [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                check=False,
                capture_output=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def postgres_unavailable(reason: str) -> None:
    """Skip (or fail when ``TUNESHIP_REQUIRE_POSTGRES=1``) because PostgreSQL cannot run."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but PostgreSQL is unavailable: {reason}")
    pytest.skip(f"PostgreSQL unavailable: {reason}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the session (skipped when none can start)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        postgres_unavailable("psycopg is not installed (pip install 'tuneship[postgres]')")
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(start_postgres())
        except (FileNotFoundError, RuntimeError) as exc:
            postgres_unavailable(str(exc))
        except subprocess.CalledProcessError as exc:
            postgres_unavailable(f"{exc.cmd} failed: {exc.stderr or exc.stdout}")
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh, empty database on the session's server."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgres"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty registry database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry-db' / 'registry.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url
