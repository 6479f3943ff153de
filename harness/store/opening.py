"""Opening a store by URL, with its schema checked before any use.

The revision is read through a read-only session first, so a store this
program must refuse (newer, or not yet migrated) is left byte for byte as it
was: no journal-mode switch, no table created, nothing written.
"""

from __future__ import annotations

from typing import Optional

from harness.store import migrate
from harness.store.engine import Location, StoreError, connect_error, locate, make_engine
from harness.store.store import Store


def open_location(loc: Location, create: bool = True, readonly: bool = False) -> Store:
    from sqlalchemy.exc import OperationalError

    if loc.backend == "sqlite" and not loc.path.exists() and (readonly or not create):
        raise StoreError(f"no results store at {loc.display} (run `harness run` first, or pass --store)")
    state = migrate.current(loc)
    if state.revision is None:
        if readonly or not create:
            raise StoreError(f"results store {loc.display} is empty (run `harness run` first, or "
                             f"`harness store migrate --store {loc.display}` to create it)")
        migrate.upgrade(loc)  # a new store, at the newest revision
    else:
        migrate.check(loc, state)
    engine = make_engine(loc, readonly=readonly)
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        engine.dispose()
        raise connect_error(loc, exc) from None
    return Store(engine, loc, readonly=readonly)


def open_store(url: Optional[str] = None, create: bool = True, readonly: bool = False) -> Store:
    """A path, sqlite:///PATH or postgresql://...; None: .harness/results.sqlite
    under the working folder. Refuses a store whose schema is not this
    program's (newer: upgrade harness; older: `harness store migrate`)."""
    return open_location(locate(url), create=create, readonly=readonly)
