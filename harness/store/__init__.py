"""Results store: runs, their sessions, jobs, attempts and results with raw
samples — SQLite (the default, `.harness/results.sqlite` under the working
folder) or PostgreSQL by URL, one schema and one implementation for both
(docs/store.md).

`open_store(url)` takes a path, `sqlite:///path` or `postgresql://...` and
refuses a store whose schema revision is not this program's.
"""

from __future__ import annotations

from harness.store.engine import DEFAULT_STORE, StoreError
from harness.store.opening import open_store
from harness.store.store import RunExists, Store

__all__ = ["DEFAULT_STORE", "RunExists", "Store", "StoreError", "open_store"]
