"""Every candidate's input shapes, from the eval set and the size flags.

Sources, first that applies, per input:

1. `--shape [CANDIDATE:]INPUT=1x3x224x224` — the whole shape. Unqualified it
   applies to every candidate with an input of that name (at least one must
   have it); qualified, to that candidate only.
2. The eval set's array of that name. An array with one more axis than the
   input is a stack of whole inputs (its first axis counts them; the usual
   form for sequences, recurrent state and scalars); with as many axes, axis
   0 is the batch axis and samples are cut into batches of the model's batch
   size (a fixed one, a `--dim`, one another input's stack fixes, else 1); a
   0-d array is one value every probe shares (a sample rate). Symbolic
   dimensions take the sizes the arrays give, and must agree across inputs.
3. The model's fixed dimensions and `--dim [CANDIDATE:]NAME=N` for symbolic
   ones (or sizes the eval arrays gave another input): the input is then
   generated (seeded), also when an eval set lacks it.

Pure: ModelInfo specs and array shapes in, (name, dtype, shape) out; errors
are one ConfigError line naming the flag, file, array or input.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence

from harness.kernel.configfile import ConfigError
from harness.kernel.modelfile import ModelInfo, TensorSpec

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Flag:
    option: str  # --shape | --dim
    candidate: Optional[str]  # None: every candidate with that input / dimension
    name: str  # input name (--shape) or dimension name (--dim)
    value: object  # Shape for --shape, int for --dim
    raw: str


def _split(raw: str, option: str, example: str) -> tuple[str, str]:
    key, sep, value = raw.rpartition("=")
    if not sep or not key or not value:
        raise ConfigError(f"{option} {raw!r}: expected {example}")
    return key, value


def parse_shape(raw: str) -> tuple[str, Shape]:
    """`[CAND:]INPUT=1x3x224x224` -> ("[CAND:]INPUT", (1, 3, 224, 224))."""
    key, dims = _split(raw, "--shape", "[CANDIDATE:]INPUT=DIMxDIM..., e.g. --shape input=1x3x224x224")
    try:
        shape = tuple(int(d) for d in dims.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--shape {raw!r}: dimensions must be integers separated by 'x'") from None
    if any(d <= 0 for d in shape):
        raise ConfigError(f"--shape {raw!r}: dimensions must be positive")
    return key, shape


def parse_dim(raw: str) -> tuple[str, int]:
    """`[CAND:]NAME=N` -> ("[CAND:]NAME", N)."""
    key, sep, value = raw.rpartition("=")
    try:
        v = int(value)
    except ValueError:
        v = 0
    if not sep or not key or v <= 0:
        raise ConfigError(f"--dim {raw!r}: expected [CANDIDATE:]NAME=POSITIVE_INT, e.g. --dim batch=1")
    return key, v


def _symbolic(info: ModelInfo) -> list[str]:
    return list(dict.fromkeys(d for t in info.inputs for d in t.dims if isinstance(d, str)))


def qualify(option: str, raw: str, key: str, value, infos: Mapping[str, ModelInfo]) -> Flag:
    """Which candidate a flag's KEY names: `CAND:NAME` when CAND is a
    candidate, else every candidate with NAME (an input name may itself hold
    a colon, as TensorFlow exports' `input:0` do)."""
    names = (lambda i: [t.name for t in i.inputs]) if option == "--shape" else _symbolic
    what = "input" if option == "--shape" else "symbolic dimension"
    a_what = "an input" if option == "--shape" else "a symbolic dimension"
    cand, sep, rest = key.partition(":")
    if sep and cand in infos:
        if rest not in names(infos[cand]):
            have = ", ".join(names(infos[cand])) or "none"
            raise ConfigError(f"{option} {raw}: candidate {cand} has no {what} {rest!r} ({what}s: {have})")
        return Flag(option, cand, rest, value, raw)
    if not any(key in names(i) for i in infos.values()):
        have = "; ".join(f"{c}: {', '.join(names(i)) or 'none'}" for c, i in infos.items())
        raise ConfigError(f"{option} {raw}: no candidate has {a_what} {key!r} ({what}s: {have})")
    return Flag(option, None, key, value, raw)


def parse_flags(shapes: Sequence[str], dims: Sequence[str], infos: Mapping[str, ModelInfo]) -> list[Flag]:
    flags = [qualify("--shape", raw, *parse_shape(raw), infos) for raw in shapes]
    flags += [qualify("--dim", raw, *parse_dim(raw), infos) for raw in dims]
    seen: dict[tuple, str] = {}
    for f in flags:
        k = (f.option, f.candidate, f.name)
        if k in seen and seen[k] != f.raw:
            raise ConfigError(f"{f.option} {f.raw}: {f.name} is already given by {f.option} {seen[k]}")
        seen[k] = f.raw
    return flags


def flags_for(candidate: str, flags: Sequence[Flag]) -> tuple[dict[str, Shape], dict[str, int]]:
    """The shapes and dims that apply to one candidate; its own qualified
    flags win over unqualified ones."""
    shapes: dict[str, Shape] = {}
    dims: dict[str, int] = {}
    for f in sorted(flags, key=lambda f: f.candidate is not None):
        if f.candidate not in (None, candidate):
            continue
        (shapes if f.option == "--shape" else dims)[f.name] = f.value  # type: ignore[assignment]
    return shapes, dims


def eval_shapes(path: Path) -> dict[str, Shape]:
    """The shape of every array in an .npz, read from the .npy headers alone
    (numpy.lib.format's read_magic / read_array_header_{1,2}_0, the public
    readers of format versions 1.0 and 2.0), so a large eval set is not
    loaded to learn it."""
    import numpy as np

    out: dict[str, Shape] = {}
    try:
        with zipfile.ZipFile(path) as z:
            for member in z.namelist():
                if not member.endswith(".npy"):
                    continue
                with z.open(member) as fh:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        shape, _, _ = np.lib.format.read_array_header_1_0(fh)
                    elif version == (2, 0):
                        shape, _, _ = np.lib.format.read_array_header_2_0(fh)
                    else:  # a format with no public header reader: read the array
                        shape = np.load(path, allow_pickle=False)[member[:-4]].shape
                out[member[:-4]] = tuple(int(d) for d in shape)
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the eval set ({type(exc).__name__}: {exc})") from None
    return out


@dataclass
class Resolved:
    inputs: list[tuple[str, str, Shape]] = field(default_factory=list)  # model order
    from_eval: list[str] = field(default_factory=list)
    generated: list[str] = field(default_factory=list)


def _fmt(spec: TensorSpec) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in spec.dims) + "]"


def _check_fixed(spec: TensorSpec, shape: Shape, where: str) -> None:
    if spec.dims and len(shape) != len(spec.dims):
        raise ConfigError(f"{where}: {len(shape)} dimensions, the model declares {len(spec.dims)} ({_fmt(spec)})")
    for given, declared in zip(shape, spec.dims):
        if isinstance(declared, int) and declared > 0 and declared != given:
            raise ConfigError(f"{where}: {shape} conflicts with the model's fixed shape {_fmt(spec)}")


def resolve(candidate: str, info: ModelInfo, shapes: Mapping[str, Shape], dims: Mapping[str, int],
            arrays: Optional[Mapping[str, Shape]] = None, eval_path: Optional[Path] = None) -> Resolved:
    """Concrete (name, dtype, shape) for every input of one candidate (see
    module doc), or one ConfigError saying how to give what is missing."""
    arrays = arrays or {}
    src = str(eval_path) if eval_path else "the eval set"
    sizes: dict[str, tuple[int, str]] = {k: (v, f"--dim {k}={v}") for k, v in dims.items()}
    got: dict[str, Shape] = {}
    out = Resolved()

    def learn(spec: TensorSpec, shape: Shape, why: str) -> None:
        for d, n in zip(spec.dims, shape):
            if not isinstance(d, str):
                continue
            if d in sizes and sizes[d][0] != n:
                raise ConfigError(f"{candidate}: dimension {d!r} is {sizes[d][0]} by {sizes[d][1]} but {n} by {why}")
            sizes.setdefault(d, (n, why))

    for spec in info.inputs:
        if spec.dtype in ("unknown", "bfloat16"):
            raise ConfigError(f"{info.path}: input {spec.name!r} has element type {spec.dtype}, which probes "
                              "cannot be made for")
    # Whole shapes first (flags, then stacks of whole inputs): they fix the
    # symbolic sizes that batch-axis arrays and generated inputs then use.
    for spec in info.inputs:
        arr = arrays.get(spec.name)
        if spec.name in shapes:
            shape = tuple(shapes[spec.name])
            _check_fixed(spec, shape, f"--shape {spec.name}")
            got[spec.name] = shape
            learn(spec, shape, f"--shape {spec.name}")
        elif arr is not None and len(arr) == len(spec.dims) + 1:
            shape = tuple(arr[1:])
            _check_fixed(spec, shape, f"{src}: array {spec.name!r} of shape {arr} (a stack of inputs {shape})")
            got[spec.name] = shape
            learn(spec, shape, f"{src} array {spec.name!r}")
    for spec in info.inputs:
        arr = arrays.get(spec.name)
        if spec.name in got or arr is None:
            continue
        nd = len(spec.dims)
        if len(arr) != nd:
            raise ConfigError(f"{src}: array {spec.name!r} has shape {arr}; input {spec.name!r} of {candidate} "
                              f"declares {nd} dimension(s) {_fmt(spec)}, so expected {nd + 1} (a stack of inputs) "
                              f"or {nd} (samples along the batch axis)")
        if nd == 0:
            got[spec.name] = ()
            continue
        d0 = spec.dims[0]
        batch = d0 if isinstance(d0, int) and d0 > 0 else (sizes[d0][0] if isinstance(d0, str) and d0 in sizes else 1)
        shape = (batch,) + tuple(arr[1:])
        _check_fixed(spec, shape, f"{src}: array {spec.name!r} of shape {arr} (samples, in batches of {batch})")
        got[spec.name] = shape
        learn(spec, shape, f"{src} array {spec.name!r}")
    for spec in info.inputs:
        if spec.name in got:
            out.inputs.append((spec.name, spec.dtype, got[spec.name]))
            (out.from_eval if spec.name in arrays else out.generated).append(spec.name)
            continue
        shape_l = []
        for axis, d in enumerate(spec.dims):
            if isinstance(d, int) and d > 0:
                shape_l.append(d)
            elif isinstance(d, str) and d in sizes:
                shape_l.append(sizes[d][0])
            else:
                what = f"symbolic dimension {d!r}" if isinstance(d, str) else f"an unnamed dimension at axis {axis}"
                hint = f"--dim {d}=N or " if isinstance(d, str) else ""
                example = "x".join(str(x) if isinstance(x, int) and x > 0 else "N" for x in spec.dims)
                raise ConfigError(
                    f"{info.path.name}: input {spec.name!r} has {what} (shape {_fmt(spec)}); give its size with "
                    f"{hint}--shape {spec.name}={example} (or --shape {candidate}:{spec.name}=... for this "
                    f"candidate only), or an array {spec.name!r} in the eval set")
        out.inputs.append((spec.name, spec.dtype, tuple(shape_l)))
        out.generated.append(spec.name)
    return out
