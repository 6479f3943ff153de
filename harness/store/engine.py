"""Where a store lives (a URL), connecting to it, and its schema revision.

A store is named by a path or a URL: `path/to/results.sqlite`,
`sqlite:///path`, or `postgresql://user@host:5432/db` (psycopg 3 is the
driver). SQLAlchemy gives one connection and transaction model over both;
the per-backend settings that matter for many writers are set here:

* SQLite: WAL journal (readers never block the writer), a busy timeout, and
  every write transaction opened with BEGIN IMMEDIATE, so two processes
  never both read-then-upgrade and deadlock (SQLite docs, "BEGIN
  TRANSACTION"; SQLAlchemy's pysqlite dialect notes, "Serializable isolation
  / Savepoints / Transactional DDL", show the `begin` event used for it).
  Foreign keys are enforced (PRAGMA foreign_keys) as PostgreSQL does.
* PostgreSQL: a connect timeout, a statement and a lock timeout, and a
  pool that checks a connection before use (a long-lived dashboard outlives
  server restarts).

A read-only store (the dashboard, reports) refuses writes in the database
session itself: PRAGMA query_only on SQLite, default_transaction_read_only
on PostgreSQL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harness.kernel import limits


class StoreError(Exception):
    """One line for the user: which store, what is wrong, what to do."""


DEFAULT_STORE = Path(".harness") / "results.sqlite"
PG_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")


@dataclass(frozen=True)
class Location:
    backend: str  # sqlite | postgresql
    url: str  # the SQLAlchemy URL
    display: str  # what messages show: a path, or the URL without its password
    path: Optional[Path] = None  # SQLite only


def choose(flag: Optional[str], lab_store: Optional[str] = None, lab_dir: Optional[Path] = None,
           environ: Optional[dict] = None) -> Optional[str]:
    """Which store a command uses: --store, else HARNESS_STORE, else the lab
    file's `store:` (a relative path there is relative to the lab file),
    else None (the default file)."""
    if flag:
        return flag
    env = env_store(environ)
    if env:
        return env
    if lab_store and "://" not in lab_store and lab_dir is not None and not Path(lab_store).is_absolute():
        return str(Path(lab_dir) / Path(lab_store).expanduser())
    return lab_store or None


def locate(url: Optional[str], cwd: Optional[Path] = None, environ: Optional[dict] = None) -> Location:
    """Parse a store path or URL; None means HARNESS_STORE when set, else the
    default SQLite file under the working folder."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    url = url or env_store(environ)
    if not url:
        path = (cwd or Path.cwd()) / DEFAULT_STORE
        return Location("sqlite", f"sqlite+pysqlite:///{path}", str(path), path)
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        return Location("sqlite", f"sqlite+pysqlite:///{path}", str(path), path)
    if "://" not in url:
        path = Path(url).expanduser()
        return Location("sqlite", f"sqlite+pysqlite:///{path}", str(path), path)
    scheme = url.split("://", 1)[0].lower()
    if scheme not in PG_SCHEMES:
        raise StoreError(f"--store {url.split('://', 1)[0]}://...: unsupported scheme {scheme!r} "
                         "(expected a path, sqlite:///PATH or postgresql://USER@HOST:PORT/DB)")
    try:
        u = make_url("postgresql+psycopg://" + url.split("://", 1)[1])
    except ArgumentError as exc:
        raise StoreError(f"--store: not a PostgreSQL URL ({exc})") from None
    if not u.database:
        raise StoreError(f"--store {u.render_as_string(hide_password=True)}: the URL names no database "
                         "(expected postgresql://USER@HOST:PORT/DB)")
    return Location("postgresql", u.render_as_string(hide_password=False), u.render_as_string(hide_password=True))


def _sqlite_engine(loc: Location, readonly: bool, foreign_keys: bool):
    from sqlalchemy import create_engine, event

    engine = create_engine(loc.url, connect_args={"timeout": limits.STORE_SQLITE_BUSY_TIMEOUT_S,
                                                  "check_same_thread": False},
                           pool_size=limits.STORE_POOL_SIZE, max_overflow=limits.STORE_POOL_OVERFLOW,
                           pool_timeout=limits.STORE_POOL_TIMEOUT_S)

    @event.listens_for(engine, "connect")
    def _connect(dbapi, _record):
        dbapi.isolation_level = None  # the driver's implicit BEGIN off: the begin event below decides
        cur = dbapi.cursor()
        cur.execute(f"PRAGMA busy_timeout={int(limits.STORE_SQLITE_BUSY_TIMEOUT_S * 1000)}")
        if not readonly:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at each checkpoint, safe against corruption
        cur.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        if readonly:
            cur.execute("PRAGMA query_only=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        reading = readonly or conn.get_execution_options().get("harness_read")
        conn.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")

    return engine


def _pg_engine(loc: Location, readonly: bool):
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise StoreError(f"--store {loc.display}: PostgreSQL needs psycopg 3 (pip install 'harness[postgres]')") \
            from None
    from sqlalchemy import create_engine

    options = (f"-c statement_timeout={int(limits.STORE_PG_STATEMENT_TIMEOUT_S * 1000)} "
               f"-c lock_timeout={int(limits.STORE_PG_LOCK_TIMEOUT_S * 1000)} "
               f"-c idle_in_transaction_session_timeout={int(limits.STORE_PG_IDLE_IN_TRANSACTION_S * 1000)}")
    if readonly:
        options += " -c default_transaction_read_only=on"
    return create_engine(loc.url, pool_size=limits.STORE_POOL_SIZE, max_overflow=limits.STORE_POOL_OVERFLOW,
                         pool_timeout=limits.STORE_POOL_TIMEOUT_S, pool_pre_ping=True,
                         connect_args={"connect_timeout": int(limits.STORE_PG_CONNECT_TIMEOUT_S), "options": options,
                                       "application_name": "harness"})


def make_engine(loc: Location, readonly: bool = False, foreign_keys: bool = True):
    if loc.backend == "sqlite":
        if not readonly:
            loc.path.parent.mkdir(parents=True, exist_ok=True)
        return _sqlite_engine(loc, readonly, foreign_keys)
    return _pg_engine(loc, readonly)


def connect_error(loc: Location, exc: Exception) -> StoreError:
    """A driver's connection failure as one line (the driver's own words,
    first line only: psycopg's carry the host and port tried)."""
    orig = getattr(exc, "orig", None) or exc
    first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return StoreError(f"results store {loc.display}: cannot connect ({first})")


def env_store(environ: Optional[dict] = None) -> Optional[str]:
    """HARNESS_STORE, when set and not empty."""
    value = (os.environ if environ is None else environ).get("HARNESS_STORE", "").strip()
    return value or None
