"""`harness plan`: how long will this cohort take on our lab?

Plans the run exactly as `harness run` would (same agents, same matching,
same scheduler), then estimates every job from a previous run's measured
durations (`--from-run`), the latency a simulated device publishes, or the
measurement policy's bounds (harness.controller.estimate). Nothing is
uploaded and nothing runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from harness import artefacts
from harness.config.resolve import candidates_from_models, load_candidates, load_cohort, load_lab
from harness.config.schema import MeasureConfig, Target
from harness.controller.connect import LocalAgent, connect
from harness.controller.estimate import Estimator, Previous, plan_capacity
from harness.controller.planner import make_plan
from harness.controller.run import resolve_run
from harness.kernel.configfile import ConfigError
from harness.kernel.measure.policy import MeasurePolicy
from harness.store import open_store


def _old_policies(config: dict):
    """(profile id, target key) -> the MeasurePolicy a stored run used."""
    default = MeasureConfig(**(config.get("cohort") or {}).get("measure") or {}).policy()
    per_target: dict[tuple[str, str], MeasurePolicy] = {}
    for prof in config.get("profiles") or []:
        for t in prof.get("targets") or []:
            try:
                target = Target.model_validate(t)
            except ValueError:
                continue
            per_target[(prof.get("id"), target.key())] = target.measure.policy() if target.measure else default
    return default, per_target


def previous_results(store_url: Optional[str], ref: str) -> dict:
    """job key -> Previous, from a stored run's results that have samples."""
    store = open_store(store_url, create=False)
    try:
        run_id = resolve_run(store, ref)
        run = store.get_run(run_id) or {}
        default, per_target = _old_policies(run.get("config") or {})
        out = {}
        for rec in store.results(run_id):
            if rec.get("error") or not (rec.get("timing") or {}).get("samples_ms"):
                continue
            prof = (rec.get("device") or {}).get("profile")
            out[rec["job"]] = Previous(rec, per_target.get((prof, rec.get("target")), default), run_id)
        return out
    finally:
        store.close()


def forecast(cohort: str, candidates_file: Optional[Path], models: Sequence[str], lab: Optional[Path],
             from_run: Optional[str], store: Optional[str], start_local: Optional[LocalAgent] = None) -> dict:
    """The plan `harness run` would make, and how long it would take."""

    rc = load_cohort(cohort)
    if candidates_file and models:
        raise ConfigError("give either --candidates FILE or --model NAME=PATH, not both")
    cands = load_candidates(candidates_file) if candidates_file else \
        candidates_from_models(models, reference=rc.cohort.quality.reference)
    arts = {c.name: artefacts.prepare(c)[0] for c in cands.candidates}
    lab_obj = load_lab(lab) if lab else None
    previous = previous_results(store, from_run) if from_run else {}
    conn = connect(lab_obj, lab, start_local=start_local)
    try:
        plan = make_plan(rc.profiles, [c.name for c in cands.candidates], arts, conn.devices,
                         rc.cohort.measure.policy(), drivers=conn.drivers)
        devices = {d.key: d for d in conn.devices}
        # What each agent would be sent: its FindMissingModels answer, as a run's upload step asks it.
        need: dict[str, dict[str, tuple[str, int]]] = {}
        for j in plan.jobs:
            for k in j.eligible:
                need.setdefault(devices[k].agent, {})[j.artefact.digest] = (j.artefact.path, j.artefact.size_bytes)
        uploads = {}
        for agent, arts_needed in sorted(need.items()):
            missing = conn.clients[agent].find_missing(sorted(arts_needed))
            uploads[agent] = {"models": len(missing), "held": len(arts_needed) - len(missing),
                              "bytes": sum(arts_needed[d][1] - committed for d, committed in missing.items())}
        agents = {n: c.address for n, c in conn.clients.items()}
    finally:
        conn.close()
    cap = plan_capacity(plan.jobs, devices, Estimator(previous))
    for row in cap["devices"]:
        row["agent"] = devices[row["device"]].agent
        row["id"] = devices[row["device"]].id
    cap.update(
        cohort=rc.cohort.name, agents=agents, uploads=uploads, from_run=from_run,
        gaps=[{"key": g.key, "kind": g.kind, "message": g.message} for g in plan.gaps],
        idle=sorted(k for k in devices if k not in {r["device"] for r in cap["devices"]}),
    )
    return cap
