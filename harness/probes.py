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

from harness.config.inputs import resolve
from harness.kernel.configfile import ConfigError
from harness.kernel.modelfile import ModelInfo

DEFAULT_PROBES = 8
SEED = 20240428


def resolve_shapes(info: ModelInfo, shapes: Mapping[str, Sequence[int]], dims: Mapping[str, int]
                   ) -> list[tuple[str, str, tuple[int, ...]]]:
    """Concrete (name, dtype, shape) per input from size flags alone (no eval
    set): harness.config.inputs.resolve for a single model."""
    return resolve(info.path.stem, info, {k: tuple(v) for k, v in shapes.items()}, dims).inputs


def _family(dtype: str) -> str:
    """Inputs of one name share their values across candidates whatever
    their precision (an fp16 build's float16 input gets the fp32 one's
    values, rounded): the seed keys on the kind of number, not its width."""
    if dtype.startswith("float"):
        return "float32"
    return "bool" if dtype == "bool" else "int64"


def _rng_for(name: str, dtype: str, shape: tuple[int, ...], index: int) -> np.random.Generator:
    key = f"{SEED}|{name}|{_family(dtype)}|{shape}|{index}".encode()
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
                p[name] = rng.standard_normal(shape).astype(np.float32).astype(dtype)
            elif dtype == "bool":
                p[name] = rng.random(shape) < 0.5
            else:
                p[name] = rng.integers(0, 10, size=shape).astype(dtype)
        probes.append(p)
    return probes


def generated_warning(candidate: str, inputs: Sequence[tuple[str, str, tuple[int, ...]]],
                      eval_path: Optional[Path]) -> Optional[str]:
    """What the user should know about generated inputs: with an eval set,
    that it lacks them (a misspelt array name reads the same); without one,
    that random integers and booleans are where a model's branch hides (a
    sample rate, a mode flag, a token id past the vocabulary)."""
    odd = [f"{n} ({d}{', scalar' if not s else ''})" for n, d, s in inputs if not d.startswith("float")]
    if eval_path is not None and inputs:
        names = ", ".join(n for n, _, _ in inputs)
        return (f"candidate {candidate}: the eval set {eval_path} has no array for input(s) {names}; generated "
                "seeded values instead" + ("; integers and booleans at random may take another branch of the model "
                                            "than real values" if odd else ""))
    if not odd:
        return None
    return (f"candidate {candidate}: input(s) {', '.join(odd)} generated at random (integers in [0, 10), booleans by "
            "coin flip): a model that branches on such a value (a sample rate, a mode, a token id) may take another "
            "path than in use; give the real values as arrays of those names in an eval set (--eval, or eval: in "
            "the candidates file)")


def load_eval(
    path: Path, inputs: Sequence[tuple[str, str, tuple[int, ...]]], limit: int
) -> tuple[list[dict[str, np.ndarray]], Optional[list[np.ndarray]]]:
    """Probes (and per-probe labels) from an eval .npz.

    Each input's array is a stack of whole inputs (ndim = input ndim + 1),
    samples along the batch axis (ndim = input ndim), cut into batches of
    the input's batch size, or one value for every probe (a 0-d array for a
    scalar input; any input the set holds only one of). `labels` (or `y`)
    holds one label per sample of the first batched input.
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
            elif arr.ndim == 0 and shape == ():
                items = [arr]
            elif arr.ndim == len(shape) and tuple(arr.shape[1:]) == shape[1:] and shape and shape[0] > 0:
                b = shape[0]
                items = [arr[i:i + b] for i in range(0, arr.shape[0] - b + 1, b)]
            else:
                raise ConfigError(f"{path}: array {name!r} has shape {arr.shape}; expected (N, *{shape}) or (N*{shape[0] if shape else 1}, *{shape[1:]})")
            if not items:
                raise ConfigError(f"{path}: array {name!r} of shape {arr.shape} holds no complete input of shape {shape}")
            # np.array, not ascontiguousarray: that one returns at least 1-d
            # arrays, turning a scalar input into shape (1,).
            batches[name] = [np.array(x, dtype=dtype, order="C") for x in items]
        counts = [len(v) for v in batches.values() if len(v) > 1]
        n = min(min(counts) if counts else 1, limit)
        # An input given once (a sample rate) is the same in every probe.
        probes = [{k: v[i] if len(v) > 1 else v[0] for k, v in batches.items()} for i in range(n)]
        labels = None
        key = "labels" if "labels" in data.files else ("y" if "y" in data.files else None)
        if key and probes:
            lab = np.asarray(data[key]).reshape(-1)
            batched = [k for k, _, s in inputs if s and len(batches[k]) > 1] or [inputs[0][0]]
            first = probes[0][batched[0]]
            per = int(first.shape[0]) if first.ndim else 1  # samples per probe
            if lab.shape[0] < n * per:
                raise ConfigError(f"{path}: {key} holds {lab.shape[0]} labels, the probes need {n * per}")
            labels = [lab[i * per:(i + 1) * per] for i in range(n)]
    if not probes:
        raise ConfigError(f"{path}: the eval set holds no complete batch")
    return probes, labels


def candidate_probes(resolved, eval_path: Optional[Path], count: int, limit: int
                     ) -> tuple[list[dict[str, np.ndarray]], Optional[list[np.ndarray]]]:
    """One candidate's probes: its inputs the eval set holds from there, the
    rest generated (seeded by input name, so candidates share them), in the
    model's input order."""
    ev = [i for i in resolved.inputs if i[0] in resolved.from_eval]
    gen = [i for i in resolved.inputs if i[0] not in resolved.from_eval]
    if ev and eval_path is not None:
        probes, labels = load_eval(eval_path, ev, limit)
    else:
        probes, labels = [{} for _ in range(count)], None
    if gen:
        for p, g in zip(probes, generate(gen, len(probes))):
            p.update(g)
    order = [name for name, _, _ in resolved.inputs]
    return [{k: p[k] for k in order} for p in probes], labels


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
