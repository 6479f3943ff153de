"""Finding and loading cohorts, profiles, candidate sets and labs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from harness.config.schema import Candidate, CandidateSet, Cohort, DeviceProfile, Lab
from harness.kernel.configfile import ConfigError, load_yaml, read_yaml, validate

# The project's own profiles; a `device_profiles/` in the working directory
# is searched first so a team's profiles override the shipped ones.
PROJECT_PROFILES = Path(__file__).resolve().parents[2] / "device_profiles"


def profile_roots() -> list[Path]:
    roots = []
    env = os.environ.get("HARNESS_PROFILES")
    if env:
        roots.extend(Path(p) for p in env.split(os.pathsep) if p)
    roots.append(Path.cwd() / "device_profiles")
    roots.append(PROJECT_PROFILES)
    out: list[Path] = []
    for r in roots:
        if r.is_dir() and r.resolve() not in [o.resolve() for o in out]:
            out.append(r)
    return out


@dataclass(frozen=True)
class ResolvedCohort:
    cohort: Cohort
    profiles: tuple[DeviceProfile, ...]
    path: Path


def find_cohort(name_or_path: str) -> Path:
    p = Path(name_or_path).expanduser()
    if p.suffix in (".yaml", ".yml") or os.sep in name_or_path or p.is_file():
        if not p.is_file():
            raise ConfigError(f"{p}: cohort file not found")
        return p
    tried = []
    for root in profile_roots():
        for ext in (".yaml", ".yml"):
            cand = root / "cohorts" / f"{name_or_path}{ext}"
            if cand.is_file():
                return cand
        tried.append(str(root / "cohorts"))
    known = sorted({c.stem for root in profile_roots() for c in (root / "cohorts").glob("*.y*ml")})
    raise ConfigError(
        f"unknown cohort {name_or_path!r}: no {name_or_path}.yaml in {', '.join(tried) or 'any profile folder'}"
        + (f" (known cohorts: {', '.join(known)})" if known else "")
    )


def load_profile_file(path: Path) -> DeviceProfile:
    prof = load_yaml(path, DeviceProfile)
    return prof


def load_cohort(name_or_path: str) -> ResolvedCohort:
    path = find_cohort(name_or_path)
    cohort = load_yaml(path, Cohort)
    devices_dir = path.parent.parent / "devices"
    profiles: list[DeviceProfile] = []
    for i, entry in enumerate(cohort.devices):
        if isinstance(entry, DeviceProfile):
            profiles.append(entry)
            continue
        found: Optional[Path] = None
        for d in [devices_dir] + [r / "devices" for r in profile_roots()]:
            for ext in (".yaml", ".yml"):
                if (d / f"{entry}{ext}").is_file():
                    found = d / f"{entry}{ext}"
                    break
            if found:
                break
        if found is None:
            raise ConfigError(f"{path}: devices[{i}]: unknown device profile {entry!r} (no {entry}.yaml in {devices_dir})")
        prof = load_profile_file(found)
        if prof.id != entry:
            raise ConfigError(f"{found}: id: expected {entry!r} (the file name), got {prof.id!r}")
        profiles.append(prof)
    ids = [p.id for p in profiles]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(f"{path}: devices: profile {dupes[0]!r} is listed twice")
    return ResolvedCohort(cohort, tuple(profiles), path)


@dataclass(frozen=True)
class ResolvedCandidate:
    name: str
    spec: Candidate
    onnx: Optional[Path]
    coreml: Optional[Path]


@dataclass(frozen=True)
class ResolvedCandidates:
    reference: Optional[str]
    eval: Optional[Path]
    candidates: tuple[ResolvedCandidate, ...]
    path: Optional[Path]

    def get(self, name: str) -> ResolvedCandidate:
        for c in self.candidates:
            if c.name == name:
                return c
        raise KeyError(name)


def _artefact(source: str, key: str, base: Path, value: Optional[str]) -> Optional[Path]:
    if not value:
        return None
    p = (base / Path(value).expanduser()).resolve()
    if not p.exists():
        raise ConfigError(f"{source}: {key}: file not found: {p}")
    return p


def load_candidates(path: Path) -> ResolvedCandidates:
    path = Path(path)
    cs = load_yaml(path, CandidateSet)
    base = path.parent
    out = []
    for name, c in cs.candidates.items():
        out.append(ResolvedCandidate(
            name=name, spec=c,
            onnx=_artefact(str(path), f"candidates.{name}.onnx", base, c.onnx),
            coreml=_artefact(str(path), f"candidates.{name}.coreml", base, c.coreml),
        ))
    ev = _artefact(str(path), "eval", base, cs.eval)
    return ResolvedCandidates(cs.reference, ev, tuple(out), path)


def candidates_from_models(specs: Sequence[str], reference: Optional[str] = None) -> ResolvedCandidates:
    """`--model NAME=PATH` options as a candidate set (first one is the reference)."""
    out = []
    for raw in specs:
        name, sep, value = raw.partition("=")
        if not sep or not name or not value:
            raise ConfigError(f"--model {raw!r}: expected NAME=PATH, e.g. --model student=student.onnx")
        if any(c.name == name for c in out):
            raise ConfigError(f"--model {raw!r}: candidate name {name!r} given twice")
        p = Path(value).expanduser().resolve()
        if not p.exists():
            raise ConfigError(f"--model {name}: file not found: {p}")
        key = "coreml" if p.suffix in (".mlpackage", ".mlmodel") else "onnx"
        spec = Candidate.model_validate({key: str(p)})
        out.append(ResolvedCandidate(name, spec, p if key == "onnx" else None, p if key == "coreml" else None))
    if not out:
        raise ConfigError("no candidates: give --candidates FILE or at least one --model NAME=PATH")
    return ResolvedCandidates(reference or out[0].name, None, tuple(out), None)


def load_lab(path: Path) -> Lab:
    return load_yaml(Path(path), Lab)


__all__ = [
    "ConfigError", "ResolvedCohort", "ResolvedCandidates", "ResolvedCandidate", "load_cohort",
    "load_candidates", "candidates_from_models", "load_lab", "read_yaml", "validate",
]
