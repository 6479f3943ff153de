"""One run end to end: connect, plan, upload, execute, store, report.

A run can be resumed (`harness run --resume RUN`): the plan is rebuilt from
the stored configuration and probes, jobs that have a result are skipped, and
an attempt that was in flight when the controller died is re-sent under its
own agent job id, so the agent answers with its result instead of running it
twice.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Optional

import harness
from harness import wire
from harness.controller.agents import Connected, connect
from harness.controller.execute import Hooks, Outcome, execute
from harness.controller.plan import Plan, make_plan, repeated, with_policy
from harness.measure.record import build_record
from harness.store.sqlite import pack_arrays

log = logging.getLogger("harness.controller")


def run_prepared(req: Any, prep: Any, progress) -> Any:
    from harness.api import new_run_id

    return _run(req, prep, progress, run_id=None, new_id=new_run_id)


def resume_prepared(req: Any, prep: Any, run_id: str, progress) -> Any:
    return _run(req, prep, progress, run_id=run_id, new_id=None)


def _run(req: Any, prep: Any, progress, run_id: Optional[str], new_id) -> Any:
    from harness.api import RunOutcome, open_store
    from harness.report.document import build_report, write_reports

    # Agents first: an agent that does not answer must not leave a run behind.
    conn = connect(prep.lab, Path(req.lab) if req.lab else None,
                   embedded_drivers=req.drivers or ("host", "browser"))
    store = None
    try:
        store = open_store(req.store)
        plan = make_plan(prep.cohort.profiles, [c.name for c in prep.cands.candidates], prep.artefacts,
                         conn.devices, prep.cohort.cohort.measure.policy())
        sustained_s = prep.config.get("sustained_s")
        if sustained_s:
            plan = with_policy(plan, lambda p: p.sustained(sustained_s))
        plan = repeated(plan, int(prep.config.get("repeat") or 1))
        resuming = run_id is not None
        if resuming:
            plan, prior = _remaining(store, run_id, plan)
        else:
            run_id, prior = new_id(), {}
        progress({"event": "plan", "run_id": run_id, "jobs": len(plan.jobs), "gaps": len(plan.gaps),
                  "resumed": resuming, "agents": {n: c.address for n, c in conn.clients.items()},
                  "drivers": conn.drivers, "matched": {p: [d.key for d in ds] for p, ds in plan.matched.items()}})
        if not resuming:
            _create(store, run_id, plan, prep)
        else:
            store.set_status(run_id, "running")
        interrupted = _execute(store, run_id, plan, prep, conn, progress, prior)
        store.finish_run(run_id, "interrupted" if interrupted else "finished")
        doc = build_report(store, run_id)
        files = write_reports(doc, Path(req.out)) if req.out else []
        return RunOutcome(run_id, doc, files, interrupted)
    finally:
        conn.close()
        if store is not None:
            store.close()


def _create(store, run_id: str, plan: Plan, prep: Any) -> None:
    store.create_run(run_id, prep.cohort.cohort.name, harness.__version__, prep.config)
    store.add_jobs(run_id, [(j.key, j.index, {"profile": j.profile.id, "candidate": j.candidate,
                                              "target": j.target.key()}) for j in plan.jobs]
                   + [(g.key, 100000 + i, {"profile": g.profile.id, "candidate": g.candidate,
                                            "target": g.target.key(), "gap": g.kind})
                      for i, g in enumerate(plan.gaps)])
    for cand, probes in prep.probes.items():
        if probes:
            store.put_blob(run_id, f"probes/{cand}", pack_arrays(probes))
        if prep.labels.get(cand):
            store.put_blob(run_id, f"labels/{cand}", pack_arrays([{"labels": l} for l in prep.labels[cand]]))
    # Reference outputs on this controller's ONNX Runtime CPU EP, before any
    # job, so they never share the CPU with a host measurement.
    from harness.analysis.reference import store_references
    store_references(store, run_id, prep)


def _remaining(store, run_id: str, plan: Plan) -> tuple[Plan, dict[str, int]]:
    """The part of a fresh plan that still has no stored result, with each
    job's stored index and the attempts already recorded for it."""
    from dataclasses import replace

    done = store.done_keys(run_id)
    index = {j["key"]: j["idx"] for j in store.jobs(run_id)}
    prior: dict[str, int] = {}
    for a in store.attempts(run_id):
        prior[a["job_key"]] = max(prior.get(a["job_key"], 0), a["attempt"])
    next_index = max(index.values(), default=-1) + 1
    jobs = []
    for j in plan.jobs:
        if j.key in done:
            continue
        if j.key not in index:
            index[j.key] = next_index
            next_index += 1
            store.add_jobs(run_id, [(j.key, index[j.key], {"profile": j.profile.id, "candidate": j.candidate,
                                                           "target": j.target.key()})])
        jobs.append(replace(j, index=index[j.key]))
    gaps = [g for g in plan.gaps if g.key not in done]
    return Plan(jobs=jobs, gaps=gaps, matched=plan.matched), {k: v for k, v in prior.items() if k not in done}


def _execute(store, run_id: str, plan: Plan, prep: Any, conn: Connected, progress,
             prior: Mapping[str, int]) -> bool:
    technique = {c.name: c.spec.technique for c in prep.cands.candidates}

    def model_record(cand: str, fmt: str):
        info = prep.infos.get(cand, {}).get(fmt)
        return info.record() if info else None

    for g in plan.gaps:
        rec = build_record(job_key=g.key, candidate=g.candidate, technique=technique[g.candidate],
                           profile=g.profile, target=g.target, model=None, device=None, result=None,
                           attempts=0, error={"stage": "plan", "kind": g.kind, "message": g.message})
        store.put_result(run_id, g.key, rec)
        progress({"event": "gap", "key": g.key, "kind": g.kind, "message": g.message})

    devices = {d.key: d for d in conn.devices}
    per_agent: dict[str, dict[str, Any]] = {}
    for j in plan.jobs:
        for k in j.eligible:
            per_agent.setdefault(devices[k].agent, {})[j.artefact.digest] = j.artefact

    def ensure(agent: str) -> None:
        arts = per_agent.get(agent, {})
        t0 = time.monotonic()
        n, sent = conn.clients[agent].ensure_models([(Path(a.path), a.digest, a.format) for a in arts.values()])
        progress({"event": "upload", "agent": agent, "models": n, "bytes": sent, "held": len(arts) - n,
                  "seconds": time.monotonic() - t0})

    for agent in per_agent:
        ensure(agent)

    probes_pb = {c: [wire.tensors_to_pb(p) for p in ps] for c, ps in prep.probes.items()}
    lock = threading.Lock()

    def on_outcome(o: Outcome) -> None:
        dev = o.device
        device = {"id": dev.id, "agent": dev.agent, "platform": dev.platform, "facts": dict(dev.facts)} \
            if dev else None
        rec = build_record(job_key=o.job.key, candidate=o.job.candidate, technique=technique[o.job.candidate],
                           profile=o.job.profile, target=o.job.target,
                           model=model_record(o.job.candidate, o.job.artefact.format),
                           device=device, result=o.result, attempts=o.attempts, error=o.error,
                           policy=o.job.measure, repeat=o.job.repeat,
                           sustained_s=prep.config.get("sustained_s"))
        outputs = (o.result or {}).get("outputs") or None
        with lock:
            stored = store.put_result(run_id, o.job.key, rec, outputs)
        if stored:
            progress({"event": "result", "key": o.job.key, "record": rec})

    def on_event(job, dev, ev) -> None:
        kind = ev.WhichOneof("kind")
        data = {"event": kind, "key": job.key, "device": dev.key}
        if kind == "queued":
            data["position"] = ev.queued.position
        elif kind == "progress":
            data.update(phase=ev.progress.phase, samples=ev.progress.samples, elapsed_s=ev.progress.elapsed_s)
        progress(data)

    def on_attempt(job, dev, attempt, agent_job_id, outcome, message) -> None:
        store.record_attempt(run_id, job.key, attempt, dev.agent, dev.id, agent_job_id, outcome, message)

    def on_device(dev, state) -> None:
        progress({"event": "device", "device": dev.key, "state": state})

    hooks = Hooks(on_outcome=on_outcome, on_event=on_event, on_attempt=on_attempt, ensure_models=ensure,
                  on_device=on_device)
    try:
        execute(run_id, plan.jobs, devices, conn.clients, probes_pb, hooks, prior_attempts=prior,
                cooldown_s=float(prep.config.get("cooldown_s") or 0.0))
    except KeyboardInterrupt:
        return True
    done = store.done_keys(run_id)
    for j in plan.jobs:
        if j.key not in done:
            rec = build_record(job_key=j.key, candidate=j.candidate, technique=technique[j.candidate],
                               profile=j.profile, target=j.target, model=None, device=None, result=None,
                               attempts=0, error={"stage": "schedule", "kind": "not_run",
                                                  "message": "no device ran this job"})
            store.put_result(run_id, j.key, rec)
    return False
