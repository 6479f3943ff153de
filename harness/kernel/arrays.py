"""The one array codec: a list of {name: array} as an npz archive whose
entries are named "<index>/<name>".

Probe inputs, probe outputs and labels travel this way between a driver and
its runner child (job folder files), between the controller and its
reference child, and into the results store (bytes). Loading never unpickles:
an npz from anywhere holds plain arrays or it is refused.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

Arrays = Sequence[Mapping[str, Any]]


def flat(arrays: Arrays) -> dict[str, Any]:
    """[{name: array}, ...] -> {"<index>/<name>": array}."""
    return {f"{i}/{k}": v for i, a in enumerate(arrays) for k, v in a.items()}


def nested(entries: Mapping[str, Any]) -> list[dict[str, np.ndarray]]:
    """{"<index>/<name>": array} -> [{name: array}, ...], by index."""
    out: list[dict[str, np.ndarray]] = []
    for key in sorted(entries, key=lambda k: (int(k.split("/", 1)[0]), k)):
        idx, name = key.split("/", 1)
        while len(out) <= int(idx):
            out.append({})
        out[int(idx)][name] = entries[key]
    return out


def _read(source: Union[Path, io.BytesIO]) -> list[dict[str, np.ndarray]]:
    with np.load(source, allow_pickle=False) as data:
        return nested({k: data[k] for k in data.files})


def save(path: Path, arrays: Arrays) -> None:
    """Write a job folder's array file (uncompressed: it is read once, locally)."""
    np.savez(path, **flat(arrays))


def save_flat(path: Path, entries: Mapping[str, Any]) -> None:
    """Write entries already keyed "<index>/<name>" (a runner's outputs)."""
    np.savez(path, **entries)


def load(path: Path) -> list[dict[str, np.ndarray]]:
    """A job folder's array file; [] when the file is not there."""
    path = Path(path)
    return _read(path) if path.exists() else []


def pack(arrays: Arrays) -> bytes:
    """Compressed bytes for the results store."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **flat(arrays))
    return buf.getvalue()


def unpack(blob: Optional[bytes]) -> list[dict[str, np.ndarray]]:
    if not blob:
        return []
    return _read(io.BytesIO(blob))
