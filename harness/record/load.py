"""The one way a report document is read: any version the harness ever
wrote, upgraded step by step to the current one, then checked against the
typed record (harness.record.types).

`harness report`, `harness decide` and `harness compare` read saved
report.json files and stored runs through `load_document`; a run's report
is checked the same way before it is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from harness.kernel.configfile import ConfigError, describe_validation_error
from harness.record.types import SCHEMA_VERSION, Report, Result


def _from_0(doc: dict) -> dict:
    # harness 0.1.0 wrote no schema_version; its record is version 1's shape.
    return {"schema_version": 1, **doc}


# UPGRADES[v] turns a version-v document into a version v+1 one.
UPGRADES: dict[int, Callable[[dict], dict]] = {0: _from_0}


def upgrade(doc: dict, source: str) -> dict:
    version = doc.get("schema_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ConfigError(f"{source}: schema_version: expected a whole number, got {version!r}")
    if version > SCHEMA_VERSION:
        raise ConfigError(f"{source}: schema_version {version} is newer than this harness reads "
                          f"({SCHEMA_VERSION}); use a newer harness")
    while version < SCHEMA_VERSION:
        doc = UPGRADES[version](doc)
        version += 1
    return doc


def load_document(doc: Any, source: str) -> dict:
    """A report document (parsed JSON) of any version -> the current
    version's document, checked; one ConfigError line naming the field
    otherwise. The document stays a plain dict (what renderers read)."""
    if not isinstance(doc, dict) or "results" not in doc or "run" not in doc:
        raise ConfigError(f"{source}: not a harness report (expected the keys run and results)")
    doc = upgrade(dict(doc), source)
    try:
        # The rows one at a time, so checking a report of many results never
        # holds them all as models at once (harness/report/stream.py).
        results = doc.get("results")
        if isinstance(results, list) and len(results) > 1:
            Report.model_validate({**doc, "results": []})
            for r in results:
                Result.model_validate(r)
        else:
            Report.model_validate(doc)
    except ValidationError:
        try:
            Report.model_validate(doc)  # again whole, so the message names the row (results.<i>...)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(source, exc, Report)) from None
    return doc


def read_report(path: Path) -> dict:
    """A saved report.json, of any version."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{p}: cannot read a report ({type(exc).__name__}: {exc})") from None
    return load_document(doc, str(p))
