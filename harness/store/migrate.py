"""The store's schema revision: reading it, refusing what this program does
not know, and upgrading (`harness store migrate`).

Alembic keeps the revision in the table `alembic_version`. A store made by
harness 0.1.0 predates it: it has the tables of revision 0001 and no version
table, and is recognised by its tables. Opening a store never changes its
schema, with one exception: a store that does not exist yet is created at
the newest revision. Every other gap is an error naming the command that
closes it; a store whose revision this program does not know (written by a
newer harness) is refused before anything is read or written.

Migrations run in one transaction (both backends have transactional DDL),
so a failed upgrade leaves the store as it was. On PostgreSQL an advisory
lock makes concurrent upgraders (or two controllers creating one new store)
take turns; on SQLite BEGIN IMMEDIATE does the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harness.kernel import limits
from harness.store.engine import Location, StoreError, connect_error, make_engine

LEGACY_REVISION = "0001"  # the store of harness 0.1.0, which has no alembic_version table
# The newest revision, so that opening a store already at it reads one row and
# imports no Alembic (a quarter second of a short run's start); a test checks
# it is Alembic's head of migrations/versions.
HEAD = "0003"
LEGACY_TABLES = {"runs", "jobs", "attempts", "results", "blobs"}
_ADVISORY_KEY = 0x6861726E657373  # "harness": one lock id for every upgrader of one database


def _config(connection):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).resolve().parent / "migrations"))
    cfg.attributes["connection"] = connection
    return cfg


def _script():
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(Path(__file__).resolve().parent / "migrations"))


def head() -> str:
    return _script().get_current_head()


def known_revisions() -> set[str]:
    return {s.revision for s in _script().walk_revisions()}


@dataclass(frozen=True)
class State:
    revision: Optional[str]  # None: an empty database
    legacy: bool = False  # the tables of 0.1.0 without a version table


def read_state(conn) -> State:
    from sqlalchemy import inspect

    tables = set(inspect(conn).get_table_names())
    if "alembic_version" in tables:
        rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").fetchall()
        if len(rows) == 1 and rows[0][0] == HEAD:
            return State(HEAD)
        from alembic.runtime.migration import MigrationContext

        rev = MigrationContext.configure(conn).get_current_revision()
        if rev is not None:
            return State(rev)
    if LEGACY_TABLES <= tables:
        return State(LEGACY_REVISION, legacy=True)
    if tables & LEGACY_TABLES:
        raise StoreError(f"has only some of a harness store's tables ({', '.join(sorted(tables & LEGACY_TABLES))})")
    return State(None)


def check(loc: Location, state: State) -> None:
    """Raise unless a program of this version may use a store in `state`."""
    if state.revision == HEAD:
        return
    newest = head()
    if state.revision == newest:
        return
    if state.revision not in known_revisions():
        raise StoreError(f"results store {loc.display} has schema revision {state.revision!r}, newer than this "
                         f"harness knows (up to {newest!r}): it was written by a newer harness. Upgrade harness "
                         "to use it; nothing was read or written")
    raise StoreError(f"results store {loc.display} has schema revision {state.revision} "
                     f"({'harness 0.1.0' if state.legacy else 'an older harness'}); this harness needs {newest}. "
                     f"Run `harness store migrate --store {loc.display}` to upgrade it")


def _lock(conn, backend: str, statement_timeout_s: float) -> None:
    if backend == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(statement_timeout_s * 1000)}")
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_ADVISORY_KEY})")


def upgrade(loc: Location, create: bool = True) -> tuple[Optional[str], str]:
    """Bring the store to the newest revision; returns (from, to). A store
    newer than this program is refused untouched."""
    from alembic import command
    from sqlalchemy.exc import OperationalError

    if loc.backend == "sqlite" and not create and not loc.path.exists():
        raise StoreError(f"no results store at {loc.display}")
    # Foreign keys off while migrating: SQLite's batch mode copies tables,
    # which PRAGMA foreign_keys=ON would turn into cascading checks.
    engine = make_engine(loc, foreign_keys=False)
    try:
        with engine.connect() as conn:
            with conn.begin():
                _lock(conn, loc.backend, limits.STORE_MIGRATE_STATEMENT_TIMEOUT_S)
                try:
                    state = read_state(conn)
                except StoreError as exc:
                    raise StoreError(f"results store {loc.display}: {exc}") from None
                newest = head()
                if state.revision is not None and state.revision not in known_revisions():
                    check(loc, state)
                if state.revision == newest:
                    return state.revision, newest
                cfg = _config(conn)
                if state.legacy:
                    command.stamp(cfg, LEGACY_REVISION)
                command.upgrade(cfg, "head")
                if loc.backend == "sqlite":
                    bad = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if bad:
                        raise StoreError(f"results store {loc.display}: rows without their run "
                                         f"({len(bad)}, first in table {bad[0][0]}); nothing was changed")
                return state.revision, newest
    except OperationalError as exc:
        raise connect_error(loc, exc) from None
    finally:
        engine.dispose()


def current(loc: Location) -> State:
    """The store's state, read without changing anything."""
    from sqlalchemy.exc import OperationalError

    if loc.backend == "sqlite" and not loc.path.exists():
        return State(None)
    engine = make_engine(loc, readonly=True)
    try:
        with engine.connect() as conn:
            try:
                return read_state(conn)
            except StoreError as exc:
                raise StoreError(f"results store {loc.display}: {exc}") from None
    except OperationalError as exc:
        raise connect_error(loc, exc) from None
    finally:
        engine.dispose()
