"""A PyTorch model to Core ML, added to a candidates file (the logic of
`harness convert coreml`).

    harness convert coreml student.pt --out student.mlpackage --input x=1x3x224x224 \\
        --output logits --precision fp16 --minimum-deployment-target iOS16 \\
        --candidates candidates.yaml --name student

Reads a TorchScript file (`torch.jit.save`) or an exported program
(`torch.export.save`, `.pt2`), converts it with coremltools, prints the
result's spec (inputs, outputs, parameters, precision, op inventory) and, with
`--candidates`, sets `coreml:` on the named candidate through
`harness.manifest`, which edits the file in place: other candidates, key
order and comments outside that entry stay as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harness.kernel.configfile import ConfigError

_IO_DTYPES = {"fp32": "float32", "fp16": "float16", "float32": "float32", "float16": "float16",
              "int32": "int32"}


@dataclass
class Converted:
    out: Path
    notes: list[str]  # what coremltools said worth a line
    summary: list[str]  # the result's spec, one line each
    candidate_created: Optional[bool] = None  # None: no candidates file was edited


def convert_coreml(model, out, precision, target, inputs, outputs, io_dtype, candidates, name, force) -> Converted:
    """Check every option, convert, describe the result and, with a
    candidates file, set `coreml:` on the named candidate."""
    from harness.kernel.coreml_spec import inspect_coreml, summary_lines

    if (candidates is None) != (name is None):
        raise ConfigError("--candidates and --name go together: the file to edit and the candidate to set")
    plan = check_options(model, out, precision, target, inputs, outputs, io_dtype, force)
    notes = convert(plan)
    done = Converted(Path(out), notes, summary_lines(inspect_coreml(out)))
    if candidates is not None:
        done.candidate_created = add_to_manifest(candidates, name, out)
    return done


def _fail(message: str) -> ConfigError:
    return ConfigError(message)


def parse_input(raw: str) -> tuple[str, tuple[int, ...], Optional[str]]:
    """`x=1x3x224x224` or `ids=1x128:int32` -> (name, shape, dtype or None)."""
    name, sep, rest = raw.rpartition("=")
    dims, _, dtype = rest.partition(":")
    if not sep or not name or not dims:
        raise _fail(f"--input {raw!r}: expected NAME=DIMxDIM[:dtype], e.g. --input x=1x3x224x224")
    try:
        shape = tuple(int(d) for d in dims.lower().split("x"))
    except ValueError:
        raise _fail(f"--input {raw!r}: dimensions must be integers separated by 'x'") from None
    if any(d <= 0 for d in shape):
        raise _fail(f"--input {raw!r}: dimensions must be positive")
    if dtype and dtype not in _IO_DTYPES:
        raise _fail(f"--input {raw!r}: dtype {dtype!r}: expected one of {', '.join(sorted(set(_IO_DTYPES)))}")
    return name, shape, (_IO_DTYPES[dtype] if dtype else None)


def check_options(model, out, precision, target, inputs, outputs, io_dtype, force) -> dict:
    """Every option checked before torch or coremltools is imported."""
    model, out = Path(model), Path(out)
    if not model.is_file():
        raise _fail(f"{model}: model file not found")
    if out.suffix not in (".mlpackage", ".mlmodel"):
        raise _fail(f"--out {out}: expected a name ending in .mlpackage (ML program) or .mlmodel (neural network)")
    program = out.suffix == ".mlpackage"
    precision = precision or ("fp16" if program else "fp32")
    if precision not in ("fp16", "fp32"):
        raise _fail(f"--precision {precision!r}: expected fp16 or fp32")
    if not program and precision != "fp32":
        raise _fail("--precision fp16 needs an .mlpackage (ML program); an .mlmodel neural network computes in fp32 "
                    "(compress its weights afterwards instead)")
    if io_dtype not in ("fp32", "fp16"):
        raise _fail(f"--io-dtype {io_dtype!r}: expected fp32 or fp16")
    if out.exists() and not force:
        raise _fail(f"--out {out}: already exists (pass --force to replace it)")
    parsed = [parse_input(i) for i in inputs]
    names = [p[0] for p in parsed]
    if len(set(names)) != len(names):
        raise _fail(f"--input: {sorted({n for n in names if names.count(n) > 1})[0]!r} given twice")
    if len(set(outputs)) != len(outputs):
        raise _fail("--output: an output name is given twice")
    return {"model": model, "out": out, "program": program, "precision": precision, "target": target,
            "inputs": parsed, "outputs": list(outputs), "io_dtype": _IO_DTYPES[io_dtype]}


def _load_torch(path: Path):
    """(module or exported program, kind, input names). Both formats are zip
    archives; TorchScript's holds `code/`, an exported program's
    `archive_format` (torch's pt2 archive layout)."""
    import zipfile

    import torch

    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        names = []
    exported = any(n.endswith("/archive_format") or n == "archive_format" for n in names)
    scripted = any("/code/" in n for n in names)
    if not (exported or scripted):
        raise _fail(f"{path}: not a TorchScript file (torch.jit.save) or an exported program (torch.export.save)")
    try:
        if scripted:
            module = torch.jit.load(str(path), map_location="cpu")
            return module.eval(), "torchscript", [a.name for a in module.forward.schema.arguments][1:]  # drop self
        program = torch.export.load(str(path))
        return program.run_decompositions({}), "exported", list(program.graph_signature.user_inputs)
    except Exception as exc:  # torch raises RuntimeError and its own types
        raise _fail(f"{path}: torch could not load it ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None


def convert(plan: dict) -> list[str]:
    """Convert and save; returns notes worth showing (coremltools' warning
    about an untested torch version)."""
    import os
    import shutil
    import warnings

    import numpy as np

    from harness.kernel.coreml_spec import quiet_coremltools

    # coremltools draws a progress bar per conversion pass; tqdm reads
    # TQDM_DISABLE when it is imported (tqdm.utils.envwrap), so set it first.
    os.environ.setdefault("TQDM_DISABLE", "1")
    with quiet_coremltools() as messages:
        import coremltools as ct
    notes = [m for m in messages if "torch" in m.lower() and "version" in m.lower()]
    # ct.target is an IntEnum whose macOS/tvOS/watchOS names are aliases of
    # the iOS ones (macOS14 = iOS17, _deployment_compatibility.py
    # AvailableTarget): iterating it skips them, its __members__ has them all.
    targets = {name.lower(): t for name, t in ct.target.__members__.items()}
    target = None
    if plan["target"]:
        target = targets.get(plan["target"].lower())
        if target is None:
            raise _fail(f"--minimum-deployment-target {plan['target']!r}: expected one of "
                        f"{', '.join(ct.target.__members__)}")
    module, kind, arg_names = _load_torch(plan["model"])
    given = {n: (shape, dt) for n, shape, dt in plan["inputs"]}
    if kind == "torchscript" and set(given) != set(arg_names) and not (len(given) == len(arg_names) == 1):
        raise _fail(f"{plan['model']}: a TorchScript model carries no input shapes; give --input NAME=DIMS for each "
                    f"of its inputs ({', '.join(arg_names) or 'none'}); got {', '.join(given) or 'none'}")
    unknown = [n for n in given if n not in arg_names and not (len(given) == len(arg_names) == 1)]
    if unknown:
        raise _fail(f"--input {unknown[0]}: the model has no input {unknown[0]!r} (inputs: {', '.join(arg_names)})")
    io = np.float16 if plan["io_dtype"] == "float16" else np.float32
    ct_inputs = []
    for n, (shape, dt) in given.items():
        ct_inputs.append(ct.TensorType(name=n, shape=shape, dtype=np.dtype(dt).type if dt else io))
    if kind == "exported" and not ct_inputs:
        ct_inputs = [ct.TensorType(name=n, dtype=io) for n in arg_names]
    ct_outputs = [ct.TensorType(name=n, dtype=io) for n in plan["outputs"]] or None
    kwargs = dict(inputs=ct_inputs or None, outputs=ct_outputs,
                  convert_to="mlprogram" if plan["program"] else "neuralnetwork")
    if plan["program"]:
        kwargs["compute_precision"] = ct.precision.FLOAT16 if plan["precision"] == "fp16" else ct.precision.FLOAT32
    if target is not None:
        kwargs["minimum_deployment_target"] = target
    try:
        with quiet_coremltools() as said, warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            mlmodel = ct.convert(module, **kwargs)
        # What coremltools says while converting (renamed outputs, ops it
        # approximates) is worth a line each; torch's own deprecations are not.
        notes += said + [str(w.message) for w in warned if "coremltools" in (w.filename or "")]
    except Exception as exc:  # coremltools raises ValueError, NotImplementedError, RuntimeError, ...
        raise _fail(f"{plan['model']}: coremltools could not convert it ({type(exc).__name__}: "
                    f"{' '.join(str(exc).split())[:400]})") from None
    out: Path = plan["out"]
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")  # coremltools picks the format by suffix
    if tmp.exists():
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    mlmodel.save(str(tmp))
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    os.replace(tmp, out)
    return notes


# --- the candidates file -----------------------------------------------------------

def add_to_manifest(path: Path, name: str, artefact: Path) -> bool:
    """Set `coreml:` on candidate `name` (its other keys kept), creating the
    candidate if missing; returns True when it was created. The path is
    written relative to the file, as the file's other paths are read."""
    import os

    import yaml

    from harness.manifest import add_candidate

    path = Path(path)
    rel = os.path.relpath(Path(artefact).resolve(), path.resolve().parent).replace(os.sep, "/")
    existed = False
    if path.exists():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            existed = name in ((data.get("candidates") or {}) if isinstance(data, dict) else {})
        except (yaml.YAMLError, AttributeError, OSError, UnicodeDecodeError):
            pass  # add_candidate reports what is wrong with the file
    add_candidate(path, name, coreml=rel)
    return not existed
