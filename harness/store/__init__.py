"""Results store: runs, jobs, attempts and results with raw samples.

`open_store(url)` takes a path or `sqlite:///path`; SQLite is the default
(`.harness/results.sqlite` under the working directory).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from harness.store.sqlite import SqliteStore

DEFAULT_STORE = Path(".harness") / "results.sqlite"


class StoreError(Exception):
    pass


def open_store(url: Optional[str] = None, create: bool = True) -> SqliteStore:
    if not url:
        path = Path.cwd() / DEFAULT_STORE
    elif url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
    elif "://" in url:
        scheme = url.split("://", 1)[0]
        raise StoreError(f"--store {url}: unsupported scheme {scheme!r} (expected a path or sqlite:///path)")
    else:
        path = Path(url)
    if not create and not path.exists():
        raise StoreError(f"no results store at {path} (run `harness run` first, or pass --store)")
    return SqliteStore(path)
