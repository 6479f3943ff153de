"""From measurements to a decision: parity, divergence, cohort baselines,
coverage matrices, the quantisation-vs-distillation rules.

``analyse(doc, store, run)`` reads only the store and the run's own config
(what the cohort and the candidates were when it ran), fills each result's
``parity`` in place and returns the report's analysis sections:

  baseline          per candidate: device rows, median device, lowest tier,
                    per platform, budget checks            (baseline.py)
  decision          the rules, the recommendation, its evidence, what would
                    change it, the suggested candidate and the student
                    capacity target                        (decision.py, student.py)
  divergence        per candidate: pairwise comparison of its outputs on every
                    target it ran on                        (divergence.py)
  coverage          per candidate: device × runtime version (coverage.py)
  operator_support  per candidate: op type × runtime/EP     (coverage.py)
  validation        per candidate: the three validation points (validation.py)
  reference         where the reference outputs come from and whether each
                    candidate's could be computed           (reference.py)
"""

from __future__ import annotations

import logging
import traceback
from typing import Mapping

from harness.analysis.baseline import budget_failures, cohort_baseline

__all__ = ["analyse", "budget_failures", "cohort_baseline"]

log = logging.getLogger("harness.analysis")


def _candidates(config: Mapping, results: list[dict]) -> list[str]:
    return list(dict.fromkeys(list((config.get("candidates") or {}).keys()) + [r["candidate"] for r in results]))


def reference_of(config: Mapping) -> str | None:
    return config.get("reference") or ((config.get("cohort") or {}).get("quality") or {}).get("reference")


def analyse(doc: dict, store, run: Mapping) -> dict:
    from harness.analysis import student, coverage, decision, divergence, facts, parity, reference, validation
    from harness.kernel import arrays

    config = run.get("config") or {}
    run_id = run["id"]
    results = doc["results"]
    errors: list[str] = []
    out: dict = {"baseline": None, "decision": None, "divergence": None, "coverage": None,
                 "operator_support": None, "validation": None, "reference": None}

    def stage(name, fn):
        # One analysis bug must not cost the whole report of a finished run:
        # the section is left empty and the failure is shown in the report.
        try:
            return fn()
        except Exception as exc:
            log.exception("analysis stage %s failed", name)
            where = traceback.extract_tb(exc.__traceback__)[-1]
            errors.append(f"{name}: {type(exc).__name__}: {exc} (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})")
            return None

    quality = dict((config.get("cohort") or {}).get("quality") or {})
    ref = reference_of(config)
    cands = _candidates(config, results)
    outputs_by_job = store.outputs(run_id)
    ctx = parity.ParityContext(reference=ref, quality=quality)
    inventories = {}
    for c in cands:
        ctx.refs[c], ctx.ref_meta[c] = reference.load_reference(store, run_id, c)
        ctx.probes[c] = arrays.unpack(store.get_blob(run_id, f"probes/{c}"))
        ctx.labels[c] = [d["labels"] for d in arrays.unpack(store.get_blob(run_id, f"labels/{c}")) if "labels" in d]
        inventories[c] = reference.load_inventory(store, run_id, c)
    out["reference"] = {"candidate": ref, "computed": ctx.ref_meta}

    stage("parity", lambda: parity.fill(results, outputs_by_job, ctx))
    out["divergence"] = stage("divergence", lambda: divergence.matrices(results, outputs_by_job, quality)) or {}
    out["baseline"] = stage("baseline", lambda: cohort_baseline(results, config))
    profile_ids = [p["id"] for p in config.get("profiles") or []]
    cov = stage("coverage", lambda: coverage.matrices(results, profile_ids, inventories))
    if cov:
        out["coverage"], out["operator_support"] = cov
    ref_acc = stage("accuracy", lambda: parity.reference_accuracy(ctx)) or {}
    out["validation"] = stage("validation", lambda: validation.all_validation(results, ref, ref_acc))

    def _decide():
        base = out["baseline"] or {"candidates": {}}
        f = facts.gather(config, results, base, out["divergence"], inventories)
        d = decision.decide(f)
        d["reference"] = ref
        d["suggested"] = validation.suggest(d["recommendation"], f, base, out["validation"] or {})
        d["capacity"] = student.student_capacity(results, base, inventories, f.memory_fraction)
        d["budget_failures"] = budget_failures({"baseline": base, "decision": d})
        return d

    out["decision"] = stage("decision", _decide)
    if errors:
        out["analysis_errors"] = errors
    return out
