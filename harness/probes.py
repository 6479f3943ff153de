"""Probe inputs: the tensors every device runs so outputs can be compared.

Probes come from the candidate set's eval file (`.npz` with one array per
model input, plus optional `labels`) or are generated from the model's input
spec with a fixed seed, so that every candidate with the same inputs gets the
very same probes and every run of the same cohort is comparable. The first
probe is also the timing input.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from harness.kernel.configfile import ConfigError
from harness.kernel.modelfile import ModelInfo, TensorSpec

DEFAULT_PROBES = 8
SEED = 20240428


def parse_shape_option(raw: str) -> tuple[str, tuple[int, ...]]:
    """`--shape NAME=1x3x224x224` -> ("NAME", (1, 3, 224, 224))."""
    name, sep, dims = raw.rpartition("=")
    if not sep or not name or not dims:
        raise ConfigError(f"--shape {raw!r}: expected INPUT=DIMxDIM..., e.g. --shape input=1x3x224x224")
    try:
        shape = tuple(int(d) for d in dims.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--shape {raw!r}: dimensions must be integers separated by 'x'") from None
    if any(d <= 0 for d in shape):
        raise ConfigError(f"--shape {raw!r}: dimensions must be positive")
    return name, shape


def parse_dim_option(raw: str) -> tuple[str, int]:
    """`--dim batch=1` -> ("batch", 1)."""
    name, sep, value = raw.partition("=")
    try:
        v = int(value)
    except ValueError:
        v = 0
    if not sep or not name or v <= 0:
        raise ConfigError(f"--dim {raw!r}: expected NAME=POSITIVE_INT, e.g. --dim batch=1")
    return name, v


def resolve_shapes(
    info: ModelInfo, shapes: Mapping[str, Sequence[int]], dims: Mapping[str, int]
) -> list[tuple[str, str, tuple[int, ...]]]:
    """Concrete (name, dtype, shape) per input, or one clear error saying how
    to give the missing sizes."""
    out = []
    names = {i.name for i in info.inputs}
    unknown = [n for n in shapes if n not in names]
    if unknown:
        raise ConfigError(f"--shape {unknown[0]}: {info.path.name} has no input {unknown[0]!r} "
                          f"(inputs: {', '.join(sorted(names))})")
    for spec in info.inputs:
        if spec.dtype in ("unknown", "bfloat16"):
            raise ConfigError(f"{info.path}: input {spec.name!r} has element type {spec.dtype}, which probes cannot be generated for")
        if spec.name in shapes:
            shape = tuple(int(d) for d in shapes[spec.name])
            if len(spec.dims) and len(shape) != len(spec.dims):
                raise ConfigError(f"--shape {spec.name}: {len(shape)} dimensions given, the model declares "
                                  f"{len(spec.dims)} ({_fmt(spec)})")
            for given, declared in zip(shape, spec.dims):
                if isinstance(declared, int) and declared != given:
                    raise ConfigError(f"--shape {spec.name}: {shape} conflicts with the model's fixed shape {_fmt(spec)}")
            out.append((spec.name, spec.dtype, shape))
            continue
        shape_l = []
        for axis, d in enumerate(spec.dims):
            if isinstance(d, int) and d > 0:
                shape_l.append(d)
            elif isinstance(d, str) and d in dims:
                shape_l.append(int(dims[d]))
            else:
                what = f"symbolic dimension {d!r}" if isinstance(d, str) else f"an unnamed dimension at axis {axis}"
                hint = f"--dim {d}=N or " if isinstance(d, str) else ""
                example = "x".join(str(x) if isinstance(x, int) and x > 0 else "N" for x in spec.dims)
                raise ConfigError(
                    f"{info.path.name}: input {spec.name!r} has {what} (shape {_fmt(spec)}); "
                    f"give its size with {hint}--shape {spec.name}={example}")
        out.append((spec.name, spec.dtype, tuple(shape_l)))
    return out


def _fmt(spec: TensorSpec) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in spec.dims) + "]"


def _rng_for(name: str, dtype: str, shape: tuple[int, ...], index: int) -> np.random.Generator:
    key = f"{SEED}|{name}|{dtype}|{shape}|{index}".encode()
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8], "little"))


def generate(inputs: Sequence[tuple[str, str, tuple[int, ...]]], count: int = DEFAULT_PROBES) -> list[dict[str, np.ndarray]]:
    """Seeded random probes: floats ~ N(0, 1); integers in [0, 10) (small, so
    index-like inputs stay in range); booleans fair coin flips."""
    probes = []
    for i in range(count):
        p = {}
        for name, dtype, shape in inputs:
            rng = _rng_for(name, dtype, shape, i)
            if dtype.startswith("float"):
                p[name] = rng.standard_normal(shape).astype(dtype)
            elif dtype == "bool":
                p[name] = rng.random(shape) < 0.5
            else:
                p[name] = rng.integers(0, 10, size=shape).astype(dtype)
        probes.append(p)
    return probes


def load_eval(
    path: Path, inputs: Sequence[tuple[str, str, tuple[int, ...]]], limit: int
) -> tuple[list[dict[str, np.ndarray]], Optional[list[np.ndarray]]]:
    """Probes (and per-probe labels) from an eval .npz.

    Each input's array is either a stack of whole batches (ndim = model ndim
    + 1) or samples along the batch axis (ndim = model ndim), cut into
    batches of the model's batch size. `labels` (or `y`) holds one label per
    sample.
    """
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise ConfigError(f"{path}: cannot read the eval set ({type(exc).__name__}: {exc})") from None
    with data:
        batches: dict[str, list[np.ndarray]] = {}
        for name, dtype, shape in inputs:
            if name not in data.files:
                raise ConfigError(f"{path}: no array named {name!r} for model input {name!r} (arrays: {', '.join(data.files)})")
            arr = data[name]
            if arr.ndim == len(shape) + 1 and tuple(arr.shape[1:]) == shape:
                items = [arr[i] for i in range(arr.shape[0])]
            elif arr.ndim == len(shape) and tuple(arr.shape[1:]) == shape[1:] and shape and shape[0] > 0:
                b = shape[0]
                items = [arr[i:i + b] for i in range(0, arr.shape[0] - b + 1, b)]
            else:
                raise ConfigError(f"{path}: array {name!r} has shape {arr.shape}; expected (N, *{shape}) or (N*{shape[0] if shape else 1}, *{shape[1:]})")
            batches[name] = [np.ascontiguousarray(x.astype(dtype)) for x in items]
        n = min(len(v) for v in batches.values())
        n = min(n, limit)
        probes = [{k: v[i] for k, v in batches.items()} for i in range(n)]
        labels = None
        key = "labels" if "labels" in data.files else ("y" if "y" in data.files else None)
        if key:
            lab = np.asarray(data[key]).reshape(-1)
            first = probes[0][inputs[0][0]] if probes else None
            per = int(first.shape[0]) if first is not None and first.ndim else 1  # samples per probe
            if lab.shape[0] < n * per:
                raise ConfigError(f"{path}: {key} holds {lab.shape[0]} labels, the probes need {n * per}")
            labels = [lab[i * per:(i + 1) * per] for i in range(n)]
    if not probes:
        raise ConfigError(f"{path}: the eval set holds no complete batch")
    return probes, labels


def nbytes(probe: Mapping[str, np.ndarray]) -> int:
    return int(sum(np.asarray(v).nbytes for v in probe.values()))


def fitting(probes: Sequence[Mapping[str, np.ndarray]], limit: int) -> int:
    """How many leading probes fit in `limit` bytes (at least one: a single
    probe too large for a message is the model's own size problem)."""
    total = 0
    for i, p in enumerate(probes):
        total += nbytes(p)
        if total > limit:
            return max(1, i)
    return len(probes)
