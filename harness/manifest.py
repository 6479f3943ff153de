"""Adding or updating candidates in a candidates file (YAML) in place.

Tools that make new artefacts (`harness quantize`, converters) record them
here. The file is edited as text so that everything else in it — other
candidates, key order, comments — stays as the team wrote it: an entry that
already exists keeps the keys it is not given and is rewritten as a one-line
flow mapping (comments *inside* that entry's lines are lost), a new entry is appended at the end of the
`candidates:` block. A file whose layout the text edit cannot follow (for
example `candidates:` written as one flow mapping) is rewritten from its
parsed content, and then its comments are lost; `update_text` says which
happened.

Every result is parsed back and validated against the candidates schema
before anything is written, and the write is atomic (a temporary file in the
same folder, then a rename), so a failed update leaves the old file intact.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from harness.config.schema import CandidateSet
from harness.kernel.configfile import ConfigError, validate

_TOP_KEY = re.compile(r"^([A-Za-z_][\w-]*)\s*:(.*)$")
_ENTRY = re.compile(r"^(\s+)(\"[^\"]*\"|'[^']*'|[^\s#:][^:#]*?)\s*:(\s|$)")


def add_candidate(path: Path, name: str, **fields: Any) -> None:
    """Add a candidate, or update one: the given fields replace those keys,
    keys the entry already has are kept (a Core ML converter adds `coreml:`
    beside an existing `onnx:`), and a field given as None is removed.
    `from_=` stands for the `from` key."""
    add_candidates(path, {name: fields})


def add_candidates(path: Path, entries: Mapping[str, Mapping[str, Any]],
                   top: Optional[Mapping[str, Any]] = None) -> None:
    """Add or update several candidates (as add_candidate) in one atomic write. `top` gives
    top-level keys (`reference`, `eval`) that are set only where the file has
    none. A missing file is created."""
    path = Path(path)
    text, _ = update_text(path, entries, top)
    write_atomic(path, text)


def update_text(path: Path, entries: Mapping[str, Mapping[str, Any]],
                top: Optional[Mapping[str, Any]] = None) -> tuple[str, bool]:
    """The file's new text and whether its comments/layout were kept.

    Raises ConfigError (one line, naming the file) when the file cannot be
    read or the result is not a valid candidates file. Artefact paths are not
    checked for existence here: callers write artefacts after validating."""
    path = Path(path)
    entries = {str(n): _clean(f) for n, f in entries.items()}
    top = {k: v for k, v in (top or {}).items() if v is not None}
    if path.exists():
        try:
            old = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read ({exc})") from None
    else:
        old = ""
    data = _parse(path, old) if old.strip() else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    want = dict(data)
    for k, v in top.items():
        want.setdefault(k, v)
    if not isinstance(want.get("candidates") or {}, dict):
        raise ConfigError(f"{path}: candidates: expected a mapping of name -> candidate")
    cands = dict(want.get("candidates") or {})
    for name, fields in list(entries.items()):
        merged = dict(cands[name]) if isinstance(cands.get(name), dict) else {}
        merged.update(fields)
        entries[name] = {k: v for k, v in merged.items() if v is not None}
    cands.update(entries)
    want["candidates"] = cands
    _validate(path, want)

    text = _edit(old, data, entries, top) if old.strip() else None
    try:
        kept = text is not None and _parse(path, text) == want
    except ConfigError:  # an edit this module got wrong: fall back to the rewrite
        kept = False
    if not kept:
        text = _dump(want)
        kept = not old.strip()
    return text, kept


def write_atomic(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _clean(fields: Mapping[str, Any]) -> dict:
    out = {}
    for k, v in fields.items():
        key = "from" if k == "from_" else k
        out[key] = str(v) if isinstance(v, Path) else v
    return out


def _parse(path: Path, text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{path}: {where}invalid YAML ({getattr(exc, 'problem', None) or exc})") from None


def _validate(path: Path, data: dict) -> None:
    validate(str(path), data, CandidateSet)


def _entry_line(name: str, fields: Mapping[str, Any]) -> str:
    # default_flow_style=None writes a mapping of scalars as `{a: b, c: d}`
    # and quotes whatever YAML would otherwise misread.
    return yaml.safe_dump({name: dict(fields)}, default_flow_style=None, sort_keys=False,
                          width=1 << 20, allow_unicode=True).rstrip("\n")


def _scalar_line(key: str, value: Any) -> str:
    return yaml.safe_dump({key: value}, default_flow_style=False, width=1 << 20).rstrip("\n")


def _edit(old: str, data: dict, entries: Mapping[str, dict], top: Mapping[str, Any]) -> Optional[str]:
    """Text edit of a block-style `candidates:` mapping; None when the layout
    is not one it can follow (the caller then re-dumps)."""
    lines = old.splitlines()
    start = next((i for i, ln in enumerate(lines) if _TOP_KEY.match(ln) and ln.startswith("candidates")), None)
    if start is None:
        return None
    m = _TOP_KEY.match(lines[start])
    rest = m.group(2).split("#", 1)[0].strip()
    if m.group(1) != "candidates" or rest:
        return None  # flow style or anchors: not followed
    end = len(lines)
    for i in range(start + 1, len(lines)):
        if lines[i] and not lines[i][0].isspace() and not lines[i].startswith("#"):
            end = i
            break
    # Entries sit at one indentation: that of the first non-blank, non-comment line.
    indent = None
    for i in range(start + 1, end):
        s = lines[i].strip()
        if s and not s.startswith("#"):
            indent = len(lines[i]) - len(lines[i].lstrip(" "))
            break
    if indent == 0:
        return None
    ind = " " * (indent or 2)
    block = lines[start + 1:end]
    existing = data.get("candidates") or {}
    for name, fields in entries.items():
        new = ind + _entry_line(name, fields)
        if name in existing:
            span = _find_entry(block, name, len(ind))
            if span is None:
                return None
            a, b = span
            block[a:b] = [new]
        else:
            last = max((i for i, ln in enumerate(block) if ln.strip() and not ln.strip().startswith("#")), default=-1)
            block.insert(last + 1, new)
    out = lines[:start + 1] + block + lines[end:]
    for k, v in top.items():
        if k not in data:
            out.insert(start, _scalar_line(k, v))
            start += 1
    return "\n".join(out) + "\n"


def _find_entry(block: list[str], name: str, indent: int) -> Optional[tuple[int, int]]:
    """Line span [a, b) of entry `name` at `indent` within the block."""
    for a, ln in enumerate(block):
        m = _ENTRY.match(ln)
        if not m or len(m.group(1)) != indent:
            continue
        key = m.group(2)
        if key[:1] in "\"'":
            key = yaml.safe_load(key)
        if str(key) != name:
            continue
        b = a + 1
        while b < len(block):
            s = block[b]
            if s.strip() and (len(s) - len(s.lstrip(" "))) <= indent:
                break
            b += 1
        # Trailing blank or comment lines belong to what follows, not to this entry.
        while b > a + 1 and (not block[b - 1].strip() or block[b - 1].lstrip().startswith("#")):
            b -= 1
        return a, b
    return None


def _dump(data: dict) -> str:
    order = ["reference", "eval", "candidates"]
    head = {k: data[k] for k in order if k in data and k != "candidates"}
    extra = {k: v for k, v in data.items() if k not in order}
    text = yaml.safe_dump({**head, **extra}, sort_keys=False, width=1 << 20) if (head or extra) else ""
    text += "candidates:\n"
    for name, fields in (data.get("candidates") or {}).items():
        text += "  " + _entry_line(name, fields) + "\n"
    return text


def read(path: Path) -> Optional[dict]:
    from harness.kernel.configfile import read_yaml

    if not path.exists():
        return None
    data = read_yaml(path)
    return data if isinstance(data, dict) else None


def eval_path(path: Path) -> Optional[Path]:
    data = read(path)
    ev = (data or {}).get("eval")
    return (path.parent / str(ev)) if ev else None


def has_candidate(path: Path, name: str) -> bool:
    data = read(path) or {}
    return name in (data.get("candidates") or {})


def check_base(path: Path, base: str, model: Path) -> None:
    """The variants say `from: BASE`; BASE must be this very model."""
    data = read(path) or {}
    entry = (data.get("candidates") or {}).get(base)
    if not isinstance(entry, dict) or not entry.get("onnx"):
        return
    declared = (path.parent / str(entry["onnx"])).resolve()
    if declared != model.resolve():
        raise ConfigError(f"{path}: candidates.{base}.onnx is {declared}, not the model being quantised "
                          f"({model.resolve()}); give --name for another candidate name")
