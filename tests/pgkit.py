"""A real PostgreSQL server for the tests and benchmarks: the OS package's
initdb + pg_ctl in a temporary folder, on a free loopback port.

initdb refuses to run as root ("cannot be run as root"), so under root the
cluster belongs to the `postgres` account the Debian package creates and
every server command runs through `runuser -u postgres`. The server listens
on 127.0.0.1 only, trusts local connections (it exists for one test session
and dies with it), and every wait is bounded. `.ci/run` installs the
package when it is missing; locally a missing server skips the tests that
need it with the reason, unless HARNESS_REQUIRE_POSTGRES=1 (CI) makes that a
failure.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

START_TIMEOUT_S = 60  # initdb + first start on a busy 2-core machine
STOP_TIMEOUT_S = 30
CMD_TIMEOUT_S = 120


def find_bindir() -> Optional[Path]:
    """The newest /usr/lib/postgresql/N/bin (Debian's layout), else the PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    exe = shutil.which("pg_ctl")
    return Path(exe).resolve().parent if exe else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, bindir: Path, fsync: bool = False):
        self.bindir = bindir
        self.fsync = fsync
        self.root = Path(tempfile.mkdtemp(prefix="harness-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self.user = "harness"
        self._as = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self.started = False

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        p = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=CMD_TIMEOUT_S,
                           cwd=self.root)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}")
        return p

    def start(self) -> "PostgresServer":
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user, "-A", "trust",
                  "-E", "UTF8", "--no-sync", "--locale=C.UTF-8" if _has_c_utf8() else "--locale=C")
        opts = f"-p {{port}} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=100"
        if not self.fsync:
            # A throwaway cluster: durability buys nothing and costs each commit an fsync.
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        for _ in range(3):  # the port may be taken between choosing and binding it
            self.port = free_port()
            try:
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                          "-w", "-t", str(START_TIMEOUT_S), "-o", opts.format(port=self.port), "start")
                self.started = True
                break
            except RuntimeError:
                if "could not bind" not in self.log_tail():
                    raise
        if not self.started:
            raise RuntimeError(f"PostgreSQL did not start: {self.log_tail()}")
        atexit.register(self.stop)
        return self

    def log_tail(self, n: int = 2000) -> str:
        try:
            return (self.root / "server.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: Optional[str] = None) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = name or f"t_{secrets.token_hex(6)}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres",
                             autocommit=True, connect_timeout=10) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres",
                             autocommit=True, connect_timeout=10) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.started:
            self.started = False
            try:
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                          "-t", str(STOP_TIMEOUT_S), "stop")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def _has_c_utf8() -> bool:
    try:
        out = subprocess.run(["locale", "-a"], capture_output=True, text=True, timeout=10).stdout.lower()
    except (OSError, subprocess.SubprocessError):
        return False
    return "c.utf8" in out or "c.utf-8" in out


def unavailable_reason() -> Optional[str]:
    if find_bindir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` account to run initdb as"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'harness[postgres]')"
    return None


# -- pytest fixtures (imported by tests/conftest.py) -------------------------
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the whole session."""
    reason = unavailable_reason()
    if reason:
        if os.environ.get("HARNESS_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required (HARNESS_REQUIRE_POSTGRES=1): {reason}")
        pytest.skip(reason)
    server = PostgresServer(find_bindir()).start()
    yield server
    server.stop()


@pytest.fixture
def pg_url(postgres_server):
    """A fresh, empty database on the session's server, dropped afterwards."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A new, empty store on each backend: a SQLite file, or a fresh
    database on the session's real PostgreSQL server."""
    if request.param == "sqlite":
        return str(tmp_path / "results.sqlite")
    return request.getfixturevalue("pg_url")
