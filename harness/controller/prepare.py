"""Everything a run needs, loaded and validated before anything is written:
cohort, candidates, artefacts, probes. Bad input ends in one ConfigError
line, with no run in the store and no report folder created.

`prepare` reads the files a run names; `prepare_from_store` rebuilds the
same from a stored run (its configuration and probes), for a resume.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import artefacts
from harness import probes as probes_mod
from harness.config.resolve import (
    ResolvedCandidate, ResolvedCandidates, ResolvedCohort, candidates_from_models, load_candidates, load_cohort,
    load_lab,
)
from harness.config.schema import Candidate, Cohort, DeviceProfile
from harness.kernel import arrays, limits
from harness.kernel.configfile import ConfigError

log = logging.getLogger("harness")


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


def prepare(req: Any) -> Prepared:
    """Load and validate everything; raises ConfigError with one line."""
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
    if not 1 <= req.probes <= limits.MAX_PROBES:
        raise ConfigError(f"--probes {req.probes}: expected 1..{limits.MAX_PROBES}")
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
            probes[c.name], labels[c.name] = probes_mod.load_eval(cands.eval, inputs, limits.MAX_PROBES)
        else:
            probes[c.name], labels[c.name] = probes_mod.generate(inputs, req.probes), None
    for name, ps in probes.items():
        fit = probes_mod.fitting(ps, limits.MAX_PROBE_BYTES)
        if fit < len(ps):
            log.warning("candidate %s: %d probe inputs of %.1f MiB each; sending %d (%d MiB per job)", name, len(ps),
                        probes_mod.nbytes(ps[0]) / limits.MiB, fit,
                        limits.MAX_PROBE_BYTES // limits.MiB)
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


def prepare_from_store(store, run_id: str) -> Prepared:
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
        probes[c.name] = arrays.unpack(store.get_blob(run_id, f"probes/{c.name}"))
        lab = store.get_blob(run_id, f"labels/{c.name}")
        labels[c.name] = [d["labels"] for d in arrays.unpack(lab)] if lab else None
    return Prepared(cohort, rc, arts, infos, probes, labels, cfg, None)
