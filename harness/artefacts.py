"""Candidate artefacts as the agents receive them: one file each, named by
its SHA-256. A Core ML `.mlpackage` is a folder, so it travels as a zip with
fixed timestamps and sorted entries: the same package always hashes the same."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

from harness.config.resolve import ResolvedCandidate
from harness.controller.planner import Artefact
from harness.kernel.configfile import ConfigError
from harness.kernel.modelfile import ModelInfo, inspect_onnx, sha256_file

_EPOCH = (1980, 1, 1, 0, 0, 0)


def artefact_cache() -> Path:
    root = Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "harness")) / "artefacts"
    root.mkdir(parents=True, exist_ok=True)
    return root


def zip_package(folder: Path) -> Path:
    """Deterministic zip of a folder, cached by the hash of its contents."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for p in files:
        h.update(str(p.relative_to(folder)).encode() + b"\0")
        h.update(sha256_file(p).encode())
    out = artefact_cache() / f"{folder.name}-{h.hexdigest()[:16]}.zip"
    if out.exists():
        return out
    tmp = out.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in files:
            info = zipfile.ZipInfo(f"{folder.name}/{p.relative_to(folder).as_posix()}", date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, p.read_bytes())
    os.replace(tmp, out)
    return out


def coreml_info(path: Path) -> ModelInfo:
    """The Core ML artefact as it travels (a deterministic zip for a package,
    the file itself for an .mlmodel), described from its spec: inputs,
    outputs, parameters, weight precision and op inventory."""
    from harness.kernel.coreml_spec import model_info

    if path.is_dir():
        if path.suffix != ".mlpackage":
            raise ConfigError(f"{path}: a Core ML folder must be an .mlpackage")
        packed = zip_package(path)
        return model_info(path, path=packed, sha256=sha256_file(packed), fmt="mlpackage.zip",
                          size_bytes=packed.stat().st_size)
    if path.suffix != ".mlmodel":
        raise ConfigError(f"{path}: expected an .mlpackage folder or an .mlmodel file for coreml:")
    return model_info(path, path=path, sha256=sha256_file(path), fmt="mlmodel", size_bytes=path.stat().st_size)


def prepare(c: ResolvedCandidate, facts=None) -> tuple[dict[str, Artefact], dict[str, ModelInfo]]:
    """Inspect a candidate's artefacts: (format -> Artefact, format -> ModelInfo).
    `facts` (a harness.modelfacts.FactsCache) answers for ONNX files whose
    digest it knows, and learns the others."""
    arts: dict[str, Artefact] = {}
    infos: dict[str, ModelInfo] = {}
    if c.onnx:
        if facts is not None:
            from harness.modelfacts import onnx_facts

            info = onnx_facts(c.onnx, facts)[0]
        else:
            info = inspect_onnx(c.onnx)
        infos["onnx"] = info
    if c.coreml:
        info = coreml_info(c.coreml)
        infos[info.format] = info
    for fmt, info in infos.items():
        arts[fmt] = Artefact(c.name, fmt, info.sha256, str(info.path), info.size_bytes)
    return arts, infos
