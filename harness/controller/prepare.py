"""Everything a run needs, loaded and validated before anything is written:
cohort, candidates, artefacts, probes. Bad input ends in one ConfigError
line, with no run in the store and no report folder created.

`prepare` reads the files a run names; `prepare_from_store` rebuilds the
same from a stored run (its configuration and probes), for a resume.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import artefacts
from harness import probes as probes_mod
from harness.config import inputs as inputs_mod
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
    warnings: list = field(default_factory=list)  # said before the run starts (generated integer inputs, ...)
    facts: Any = None  # harness.modelfacts.FactsCache: model facts by digest, written to the run's store


def prepare(req: Any, facts: Any = None) -> Prepared:
    """Load and validate everything; raises ConfigError with one line.
    `facts` (harness.modelfacts.FactsCache) spares inspecting a file whose
    digest the store has seen."""
    cohort = load_cohort(req.cohort)
    if req.candidates_file and req.models:
        raise ConfigError("give either --candidates FILE or --model NAME=PATH, not both")
    if req.candidates_file:
        cands = load_candidates(Path(req.candidates_file))
    else:
        cands = candidates_from_models(req.models, reference=cohort.cohort.quality.reference)
    if req.repeat is not None and not 1 <= req.repeat <= limits.MAX_SESSIONS:
        raise ConfigError(f"--repeat {req.repeat}: expected 1..{limits.MAX_SESSIONS} sessions")
    if req.sustained_s is not None and req.sustained_s <= 0:
        raise ConfigError("--sustained: expected a positive duration such as 90s, 10m or 1h")
    if not 1 <= req.probes <= limits.MAX_PROBES:
        raise ConfigError(f"--probes {req.probes}: expected 1..{limits.MAX_PROBES}")
    eval_path = _eval_path(getattr(req, "eval_set", None), cands.eval)
    arts, infos, probes, labels, specs = {}, {}, {}, {}, {}
    for c in cands.candidates:
        a, i = artefacts.prepare(c, facts)
        arts[c.name], infos[c.name] = a, i
        # Probes follow the ONNX model's inputs, or a Core ML model's when that
        # is all the candidate has (image inputs are fed as tensors then, so
        # they are left to a sibling's probes via `from:`).
        spec = i.get("onnx") or i.get("mlpackage.zip") or i.get("mlmodel")
        if spec is not None and spec.inputs and not any(t.dtype == "image" for t in spec.inputs):
            specs[c.name] = spec
    flags = inputs_mod.parse_flags(req.shapes, req.dims, specs)
    arrays_in_eval = inputs_mod.eval_shapes(eval_path) if eval_path else {}
    warnings: list[str] = []
    sources: dict = {}
    for c in cands.candidates:
        if c.name not in specs:
            probes[c.name], labels[c.name] = [], None
            continue
        shapes, dims = inputs_mod.flags_for(c.name, flags)
        res = inputs_mod.resolve(c.name, specs[c.name], shapes, dims, arrays_in_eval, eval_path)
        probes[c.name], labels[c.name] = probes_mod.candidate_probes(res, eval_path, req.probes, limits.MAX_PROBES)
        sources[c.name] = {"eval": res.from_eval, "generated": res.generated,
                           "shapes": {n: list(sh) for n, _, sh in res.inputs}}
        flagged = set(shapes)
        note = probes_mod.generated_warning(
            c.name, [i for i in res.inputs if i[0] in res.generated and (i[0] not in flagged or not eval_path)],
            eval_path)
        if note:
            warnings.append(note)
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
        "eval": str(eval_path) if eval_path else None, "inputs": sources, "input_warnings": warnings,
        "eval_flag": str(req.eval_set) if getattr(req, "eval_set", None) else None,
    }
    return Prepared(cohort, cands, arts, infos, probes, labels, config, lab, warnings, facts)


def _eval_path(flag, from_file) -> Path | None:
    if flag is None:
        return from_file
    p = Path(flag).expanduser()
    if not p.is_file():
        raise ConfigError(f"--eval {p}: file not found")
    return p.resolve()


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
    from harness.modelfacts import FactsCache

    facts = FactsCache(store)
    arts, infos, probes, labels = {}, {}, {}, {}
    for c in cands:
        arts[c.name], infos[c.name] = artefacts.prepare(c, facts)
        probes[c.name] = arrays.unpack(store.get_blob(run_id, f"probes/{c.name}"))
        lab = store.get_blob(run_id, f"labels/{c.name}")
        labels[c.name] = [d["labels"] for d in arrays.unpack(lab)] if lab else None
    return Prepared(cohort, rc, arts, infos, probes, labels, cfg, None, facts=facts)
