"""What is generated from the record models: the JSON Schema shipped as
harness/record/schema.json, and docs/record.md.

    python -m harness.record          # rewrite both
    python -m harness.record --check  # exit 1 if either is stale (the tests check it too)
"""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from harness.record import types as record

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = Path(__file__).with_name("schema.json")
DOCS_PATH = ROOT / "docs" / "record.md"

# The sections in the order the page shows them.
SECTIONS = (record.Report, record.Run, record.Result, record.Device, record.ModelFile, record.Runtime,
            record.Timing, record.Memory, record.Placement, record.Parity, record.Validity, record.Thermal,
            record.Error, record.Measure, record.Ran, record.Environment, record.Sustained, record.Window,
            record.Figure)


def schema_text() -> str:
    schema = record.Report.model_json_schema()
    schema["$id"] = f"https://harness.invalid/record/v{record.SCHEMA_VERSION}/report.schema.json"
    schema["title"] = f"harness report.json, schema version {record.SCHEMA_VERSION}"
    return json.dumps(schema, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def _type(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp)]
    if origin in (typing.Union, types.UnionType):
        real = [a for a in args if a is not type(None)]
        text = " or ".join(_type(a) for a in real)
        return text + (" or null" if len(real) < len(args) else "")
    if origin is list:
        return f"list of {_type(args[0])}"
    if origin is dict:
        return f"map of {_type(args[0])} to {_type(args[1])}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return f"[{tp.__name__}](#{tp.__name__.lower()})"
    if tp is Any:
        return "any"
    return {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}.get(tp, str(tp))


def _table(model: type[BaseModel]) -> list[str]:
    rows = ["| field | type | meaning |", "| --- | --- | --- |"]
    for name, f in model.model_fields.items():
        kind = _type(f.annotation)
        if f.is_required():
            kind += ", required"
        rows.append(f"| `{name}` | {kind} | {(f.description or '').replace('|', '/')} |")
    return rows


HEAD = f"""# The result record

<!-- Generated from harness/record/types.py by `python -m harness.record`; edit the models, not this page. -->

`harness run ... --out DIR` writes `DIR/report.json`; `harness report RUN --format json` prints the same
document. It is one **Report**: the run, one **Result** row per device × candidate × runtime target
(failures and gaps are rows too, with `error` set), and the analysis sections. Its shape is schema
version **{record.SCHEMA_VERSION}**, published as a JSON Schema in `harness/record/schema.json`.
How each figure is obtained — statistics, the stop rule, memory, placement, validity — is in
[measurement](measurement.md); what the analysis sections hold is in [the decision](decision.md).

`harness report`, `harness decide` and `harness compare` read a report.json of any earlier version
(and a stored run of any earlier release) through one loader, `harness/record/load.py`, which upgrades
it step by step to the current version and checks it against the models.

## Adding a field

1. Add one line to the section it belongs to in `harness/record/types.py`, with a default (`None` for
   "not measured here" or "an older release did not record it") and a description, e.g.
   `blind_spot: Optional[str] = _f("what this method cannot see")` in `Memory`.
2. Fill it where the record is built (`harness/record/build.py`, or the analysis for analysis fields).
3. Run `python -m harness.record` to regenerate `harness/record/schema.json` and this page; the test
   suite fails while either is stale, and fails a report that carries a field the models do not declare.

A new optional field keeps the schema version: older documents simply lack it. Renaming or removing a
field, or changing what one means, raises `SCHEMA_VERSION` and adds an upgrade step to
`harness/record/load.py` (`UPGRADES[old]`), with a saved report of the old version as a test fixture.
"""


def docs_text() -> str:
    parts = [HEAD]
    for model in SECTIONS:
        doc = (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ and model is not record.Part else ""
        parts += [f"## {model.__name__}", ""] + ([doc, ""] if doc and not doc.startswith("A section") else [])
        parts += _table(model) + [""]
    return "\n".join(parts).rstrip() + "\n"


def write() -> list[Path]:
    SCHEMA_PATH.write_text(schema_text(), encoding="utf-8")
    DOCS_PATH.write_text(docs_text(), encoding="utf-8")
    return [SCHEMA_PATH, DOCS_PATH]


def stale() -> list[Path]:
    out = []
    for path, text in ((SCHEMA_PATH, schema_text()), (DOCS_PATH, docs_text())):
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            out.append(path)
    return out
