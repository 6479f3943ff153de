"""The verbs behind the CLI: run a cohort, list devices and runs, report.

Everything a command needs is validated before anything is written: bad
input ends in one ConfigError line, with no run in the store and no report
folder created.
"""

from __future__ import annotations

import datetime as _dt
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import harness
from harness.config.loading import ConfigError
from harness.config.resolve import (
    ResolvedCandidates, ResolvedCohort, candidates_from_models, load_candidates, load_cohort, load_lab,
)

log = logging.getLogger("harness")
Progress = Callable[[dict], None]


@dataclass
class RunRequest:
    cohort: str
    candidates_file: Optional[Path] = None
    models: Sequence[str] = ()
    shapes: Sequence[str] = ()
    dims: Sequence[str] = ()
    lab: Optional[Path] = None
    store: Optional[str] = None
    out: Optional[Path] = None
    probes: int = 8
    drivers: Optional[Sequence[str]] = None  # embedded agent's drivers
    resume: Optional[str] = None
    sustained_s: Optional[float] = None  # run each job for exactly this long (windows, throttling)
    repeat: int = 1  # independent sessions per job
    cooldown_s: float = 0.0  # pause between a job's sessions


@dataclass
class RunOutcome:
    run_id: str
    report: dict
    out_files: list[Path] = field(default_factory=list)
    interrupted: bool = False


def new_run_id(now: Optional[float] = None) -> str:
    t = _dt.datetime.fromtimestamp(now or time.time(), tz=_dt.timezone.utc)
    return t.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


@dataclass
class Prepared:
    cohort: ResolvedCohort
    cands: ResolvedCandidates
    artefacts: dict  # candidate -> fmt -> Artefact
    infos: dict  # candidate -> fmt -> ModelInfo
    probes: dict  # candidate -> list[dict[str, ndarray]]
    labels: dict  # candidate -> list[ndarray] | None
    config: dict
    lab: Any = None


def prepare(req: RunRequest) -> Prepared:
    """Load and validate everything; raises ConfigError with one line."""
    from harness import artefacts, probes as probes_mod

    cohort = load_cohort(req.cohort)
    if req.candidates_file and req.models:
        raise ConfigError("give either --candidates FILE or --model NAME=PATH, not both")
    if req.candidates_file:
        cands = load_candidates(Path(req.candidates_file))
    else:
        cands = candidates_from_models(req.models, reference=cohort.cohort.quality.reference)
    if req.repeat < 1:
        raise ConfigError(f"--repeat {req.repeat}: expected 1 or more sessions")
    if req.sustained_s is not None and req.sustained_s <= 0:
        raise ConfigError("--sustained: expected a positive duration such as 90s, 10m or 1h")
    if not 1 <= req.probes <= harness.limits.MAX_PROBES:
        raise ConfigError(f"--probes {req.probes}: expected 1..{harness.limits.MAX_PROBES}")
    shapes = dict(probes_mod.parse_shape_option(s) for s in req.shapes)
    dims = dict(probes_mod.parse_dim_option(d) for d in req.dims)
    arts, infos, probes, labels = {}, {}, {}, {}
    for c in cands.candidates:
        a, i = artefacts.prepare(c)
        arts[c.name], infos[c.name] = a, i
        # Probes follow the ONNX model's inputs, or a Core ML model's when that
        # is all the candidate has (image inputs are fed as tensors then, so
        # they are left to a sibling's probes via `from:`).
        spec = i.get("onnx") or i.get("mlpackage.zip") or i.get("mlmodel")
        if spec is None or not spec.inputs or any(t.dtype == "image" for t in spec.inputs):
            probes[c.name], labels[c.name] = [], None
            continue
        inputs = probes_mod.resolve_shapes(spec, shapes, dims)
        if cands.eval:
            probes[c.name], labels[c.name] = probes_mod.load_eval(cands.eval, inputs, harness.limits.MAX_PROBES)
        else:
            probes[c.name], labels[c.name] = probes_mod.generate(inputs, req.probes), None
    for name, ps in probes.items():
        fit = probes_mod.fitting(ps, harness.limits.MAX_PROBE_BYTES)
        if fit < len(ps):
            log.warning("candidate %s: %d probe inputs of %.1f MiB each; sending %d (%d MiB per job)", name, len(ps),
                        probes_mod.nbytes(ps[0]) / harness.limits.MiB, fit,
                        harness.limits.MAX_PROBE_BYTES // harness.limits.MiB)
            probes[name] = ps[:fit]
            if labels.get(name):
                labels[name] = labels[name][:fit]
    # A Core ML-only candidate borrows the probes of the candidate it derives from.
    for c in cands.candidates:
        if not probes[c.name] and c.spec.from_ and probes.get(c.spec.from_):
            probes[c.name], labels[c.name] = probes[c.spec.from_], labels[c.spec.from_]
    lab = load_lab(req.lab) if req.lab else None
    config = {
        "cohort_path": str(cohort.path), "cohort": cohort.cohort.model_dump(mode="json"),
        "profiles": [p.model_dump(mode="json") for p in cohort.profiles],
        "candidates_file": str(req.candidates_file) if req.candidates_file else None,
        "models": list(req.models), "shapes": list(req.shapes), "dims": list(req.dims),
        "lab": str(req.lab) if req.lab else None, "probes": req.probes,
        "reference": cands.reference,
        "candidates": {c.name: {"technique": c.spec.technique, "from": c.spec.from_,
                                "onnx": str(c.onnx) if c.onnx else None,
                                "coreml": str(c.coreml) if c.coreml else None}
                       for c in cands.candidates},
        "lab_agents": [a.model_dump(mode="json") for a in lab.agents] if lab else None,
        "sustained_s": req.sustained_s, "repeat": req.repeat, "cooldown_s": req.cooldown_s,
    }
    return Prepared(cohort, cands, arts, infos, probes, labels, config, lab)


def run_cohort(req: RunRequest, progress: Progress = lambda e: None) -> RunOutcome:
    from harness.controller import run as run_mod

    if req.resume:
        return resume(req, progress)
    prep = prepare(req)
    return run_mod.run_prepared(req, prep, progress)


def resume(req: RunRequest, progress: Progress = lambda e: None) -> RunOutcome:
    """Finish a stored run: only its jobs without a result run, on the
    configuration and probes it was started with."""
    from harness.controller import run as run_mod

    store = open_store(req.store, create=False)
    try:
        run_id = resolve_run(store, req.resume)
        prep = prepare_from_store(store, run_id)
    finally:
        store.close()
    if req.lab is None and prep.config.get("lab"):
        req.lab = Path(prep.config["lab"])
    if req.lab is not None:
        prep.lab = load_lab(req.lab)
    return run_mod.resume_prepared(req, prep, run_id, progress)


def prepare_from_store(store, run_id: str) -> Prepared:
    from harness import artefacts
    from harness.config.models import Cohort, DeviceProfile
    from harness.config.resolve import ResolvedCandidate, ResolvedCandidates
    from harness.config.models import Candidate
    from harness.store.sqlite import unpack_arrays

    run = store.get_run(run_id)
    cfg = run["config"]
    cohort = ResolvedCohort(Cohort.model_validate(cfg["cohort"]),
                            tuple(DeviceProfile.model_validate(p) for p in cfg["profiles"]), Path(cfg["cohort_path"]))
    cands = []
    for name, c in cfg["candidates"].items():
        spec = Candidate.model_validate({k: v for k, v in (("onnx", c.get("onnx")), ("coreml", c.get("coreml")),
                                                            ("technique", c.get("technique")), ("from", c.get("from")))
                                         if v is not None})
        for key in ("onnx", "coreml"):
            if c.get(key) and not Path(c[key]).exists():
                raise ConfigError(f"run {run_id}: candidate {name}: {key} artefact {c[key]} no longer exists")
        cands.append(ResolvedCandidate(name, spec, Path(c["onnx"]) if c.get("onnx") else None,
                                       Path(c["coreml"]) if c.get("coreml") else None))
    rc = ResolvedCandidates(cfg.get("reference"), None, tuple(cands), None)
    arts, infos, probes, labels = {}, {}, {}, {}
    for c in cands:
        arts[c.name], infos[c.name] = artefacts.prepare(c)
        probes[c.name] = unpack_arrays(store.get_blob(run_id, f"probes/{c.name}"))
        lab = store.get_blob(run_id, f"labels/{c.name}")
        labels[c.name] = [d["labels"] for d in unpack_arrays(lab)] if lab else None
    return Prepared(cohort, rc, arts, infos, probes, labels, cfg, None)


def open_store(url: Optional[str], create: bool = True):
    from harness.store import open_store as _open

    return _open(url, create=create)


def list_devices(lab: Optional[Path], drivers: Optional[Sequence[str]] = None) -> dict:
    from harness.controller.agents import EMBEDDED_DRIVERS, connect

    lab_obj = load_lab(lab) if lab else None
    conn = connect(lab_obj, lab, embedded_drivers=drivers or EMBEDDED_DRIVERS)
    try:
        return {"agents": {name: {"address": c.address, "drivers": [
            {"name": d, "available": ok, "reason": why} for d, ok, why in conn.drivers.get(name, [])]}
            for name, c in conn.clients.items()},
            "devices": [{"agent": d.agent, "id": d.id, "platform": d.platform, "state": d.state,
                         "state_reason": d.state_reason, "facts": dict(d.facts),
                         "runtimes": [{"name": r.name, "version": r.version, "eps": list(r.eps)} for r in d.runtimes]}
                        for d in conn.devices]}
    finally:
        conn.close()


def resolve_run(store, ref: str) -> str:
    run_id = store.resolve_run(ref)
    if run_id is None:
        raise ConfigError(f"unknown run {ref!r} in {store.path} (see `harness runs`)")
    return run_id


def report(store_url: Optional[str], ref: str) -> dict:
    from harness.report.document import build_report

    store = open_store(store_url, create=False)
    try:
        return build_report(store, resolve_run(store, ref))
    finally:
        store.close()


def load_report(store_url: Optional[str], ref: str) -> dict:
    """A stored run by id / prefix / 'latest', or a saved report.json file."""
    import json

    p = Path(ref)
    if p.suffix == ".json" or p.is_file():
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{p}: cannot read a report ({type(exc).__name__}: {exc})") from None
        if not isinstance(doc, dict) or "results" not in doc or "run" not in doc:
            raise ConfigError(f"{p}: not a harness report (expected the keys run and results)")
        return doc
    return report(store_url, ref)


def decide(store_url: Optional[str], ref: str) -> Optional[dict]:
    """The quantisation-vs-distillation decision of a run, with its evidence."""
    return load_report(store_url, ref).get("decision")


def compare(store_url: Optional[str], old: str, new: str, threshold: float = 0.05,
            memory_threshold: Optional[float] = None, force: bool = False) -> dict:
    """Per device x candidate x target deltas between two runs; `regressions`
    lists what should fail CI, `refused` what could not be compared."""
    from harness.analysis.compare import compare_docs

    return compare_docs(load_report(store_url, old), load_report(store_url, new), threshold=threshold,
                        memory_threshold=memory_threshold, force=force)
