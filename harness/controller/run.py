"""One run end to end: connect, plan, upload, execute, store, report.

This module owns a run: its request, its id, its outcome, and resuming it.

A run can be resumed (`harness run --resume RUN`): the plan is rebuilt from
the stored configuration and probes, jobs that have a result are skipped, and
an attempt that was in flight when the controller died is re-sent under its
own agent job id, so the agent answers with its result instead of running it
twice.
"""

from __future__ import annotations

import datetime as _dt
import logging
import secrets
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import harness
from harness.config.resolve import load_lab
from harness.controller.connect import Connected, EarlyAgent, LocalAgent, connect
from harness.controller.execute import Hooks, Outcome, execute
from harness.controller.planner import Plan, make_plan, with_policy
from harness.controller.scheduler import job_key_of
from harness.controller.estimate import job_estimates
from harness.controller.prepare import Prepared, prepare, prepare_from_store
from harness.controller.request import RunOutcome, RunRequest
from harness.controller.writer import ResultWriter
from harness.modelfacts import FactsCache
from harness.kernel import arrays, wire
from harness.kernel.configfile import ConfigError
from harness.record.build import build_record
from harness.store import RunExists, open_store
from harness.store.engine import choose
from harness.store.lease import Lease, new_session_id
from harness.store.provenance import provenance

log = logging.getLogger("harness.controller")


def new_run_id(now: Optional[float] = None) -> str:
    t = _dt.datetime.fromtimestamp(now or time.time(), tz=_dt.timezone.utc)
    return t.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)



Progress = Callable[[dict], None]


def resolve_run(store, ref: str) -> str:
    """A run id from an id, a unique prefix or 'latest'; one line if unknown."""
    run_id = store.resolve_run(ref)
    if run_id is None:
        raise ConfigError(f"unknown run {ref!r} in {store.path} (see `harness runs`)")
    return run_id


def run(req: RunRequest, progress: Progress = lambda e: None, start_local: Optional[LocalAgent] = None) -> RunOutcome:
    """Run a cohort (or finish a stored run when `req.resume` is set).
    `start_local` starts the agent used when there is no lab file."""
    if req.resume:
        return resume(req, progress, start_local)
    # The local agent starts while the files are read (it loads its drivers,
    # which warm their runners), and a store that exists already answers for
    # model files it has seen (harness/modelfacts.py); bad input still ends
    # with nothing started or written.
    local = EarlyAgent(start_local) if req.lab is None and start_local is not None else None
    store = _existing_store(req)
    try:
        prep = prepare(req, FactsCache(store))
    except BaseException:
        if local is not None:
            local.discard()
        if store is not None:
            store.close()
        raise
    return _run(req, prep, progress, None, local or start_local, store)


def _existing_store(req: RunRequest):
    """The run's store when it exists already (nothing is created here); None otherwise."""
    try:
        lab = load_lab(req.lab) if req.lab else None
        url = choose(req.store, lab.store if lab is not None else None, Path(req.lab).parent if req.lab else None)
        return open_store(url, create=False)
    except Exception:  # no store yet, or one the run will refuse with its own message
        return None


def resume(req: RunRequest, progress: Progress = lambda e: None,
           start_local: Optional[LocalAgent] = None) -> RunOutcome:
    """Finish a stored run: only its jobs without a result run, on the
    configuration and probes it was started with."""
    lab = load_lab(req.lab) if req.lab else None
    req.store = choose(req.store, lab.store if lab else None, Path(req.lab).parent if req.lab else None)
    store = open_store(req.store, create=False)  # the run is finished in the store it was found in
    try:
        run_id = resolve_run(store, req.resume)
        prep = prepare_from_store(store, run_id)
    finally:
        store.close()
    if req.lab is None and prep.config.get("lab"):
        req.lab = Path(prep.config["lab"])
    if req.lab is not None:
        prep.lab = load_lab(req.lab)
    return _run(req, prep, progress, run_id, start_local)


def store_choice(req: RunRequest, prep: Prepared) -> Optional[str]:
    """--store, else HARNESS_STORE, else the lab file's `store:`."""
    lab_dir = Path(req.lab).parent if req.lab else None
    return choose(req.store, prep.lab.store if prep.lab is not None else None, lab_dir)


def _run(req: RunRequest, prep: Prepared, progress: Progress, run_id: Optional[str],
         start_local: Optional[LocalAgent], opened: Any = None) -> RunOutcome:
    from harness.report.document import build_report
    from harness.report.stream import write_run_reports

    for note in prep.warnings:
        progress({"event": "warning", "message": note})
    # Agents first: an agent that does not answer must not leave a run behind.
    try:
        conn = connect(prep.lab, Path(req.lab) if req.lab else None, start_local=start_local)
    except BaseException:
        if opened is not None:
            opened.close()
        raise
    store = lease = None
    session, who = new_session_id(), provenance()
    try:
        store = opened if opened is not None else open_store(store_choice(req, prep))
        if prep.facts is not None:
            prep.facts.flush(store)
        resuming = run_id is not None
        if resuming:
            # Before reading what is left: another controller working on this
            # run (here or on another machine) keeps it until its lease ends.
            lease = Lease(store, run_id, session).acquire()
            store.open_session(run_id, session, "resume", who, harness.__version__)
        plan = make_plan(prep.cohort.profiles, [c.name for c in prep.cands.candidates], prep.artefacts,
                         conn.devices, prep.cohort.cohort.measure.policy(), drivers=conn.drivers)
        sustained_s = prep.config.get("sustained_s")
        if sustained_s:
            plan = with_policy(plan, lambda p: p.sustained(sustained_s))
        if prep.config.get("repeat"):
            # `--repeat N`: exactly N sessions of every job (with --sustained,
            # each of the whole duration: the job's is N times it).
            n = int(prep.config["repeat"])
            scale = n if sustained_s else 1

            def sessions_of(p):
                return replace(p, sessions=n, min_s=p.min_s * scale, max_s=p.max_s * scale)

            plan = Plan(jobs=[replace(j, measure=sessions_of(j.measure), fixed_sessions=True) for j in plan.jobs],
                        gaps=plan.gaps, matched=plan.matched)
        if resuming:
            plan, prior = _remaining(store, run_id, plan)
        else:
            run_id, prior = _new_run(store, prep, session, who), {}
            lease = Lease(store, run_id, session)
        lease.start()
        progress({"event": "plan", "run_id": run_id, "jobs": len(plan.jobs), "gaps": len(plan.gaps),
                  "resumed": resuming, "agents": {n: c.address for n, c in conn.clients.items()},
                  "drivers": conn.drivers, "matched": {p: [d.key for d in ds] for p, ds in plan.matched.items()},
                  "causes": {g.profile.id: g.cause for g in plan.gaps if g.kind == "not_covered" and g.cause},
                  "estimates": job_estimates(plan.jobs, {d.key: d for d in conn.devices})})
        if not resuming:
            _create(store, run_id, plan, prep)
        else:
            store.set_status(run_id, "running")
        interrupted = _execute(store, run_id, plan, prep, conn, progress, prior)
        lease.stop(release=False)
        store.finish_run(run_id, "interrupted" if interrupted else "finished", session=session)
        store.close_session(run_id, session)
        # Samples stay in the store: the report files stream them past
        # (harness/report/stream.py), so the end of a run of thousands of
        # results holds their statistics only; api.report has every sample.
        doc = build_report(store, run_id, samples=False)
        files = write_run_reports(store, run_id, Path(req.out), doc=doc)[1] if req.out else []
        return RunOutcome(run_id, doc, files, interrupted)
    finally:
        conn.close()
        if lease is not None:
            lease.stop()  # a failed run frees its lease at once, for a resume anywhere
        if store is not None:
            store.close()


def _new_run(store, prep: Any, session: str, who: Mapping[str, Any]) -> str:
    """Create the run's row under a fresh id, held by this session; an id
    another controller took in the same second is drawn again."""
    from harness.kernel import limits

    for _ in range(limits.RUN_ID_ATTEMPTS):
        run_id = new_run_id()
        try:
            store.create_run(run_id, prep.cohort.cohort.name, harness.__version__, prep.config, who=who,
                             session=session)
            return run_id
        except RunExists:
            continue
    raise ConfigError(f"no free run id after {limits.RUN_ID_ATTEMPTS} tries (is the store's clock far off?)")


def _create(store, run_id: str, plan: Plan, prep: Any) -> None:
    store.add_jobs(run_id, [(j.key, j.index, {"profile": j.profile.id, "candidate": j.candidate,
                                              "target": j.target.key()}) for j in plan.jobs]
                   + [(g.key, 100000 + i, {"profile": g.profile.id, "candidate": g.candidate,
                                            "target": g.target.key(), "gap": g.kind})
                      for i, g in enumerate(plan.gaps)])
    for cand, probes in prep.probes.items():
        if probes:
            store.put_blob(run_id, f"probes/{cand}", arrays.pack(probes))
        if prep.labels.get(cand):
            store.put_blob(run_id, f"labels/{cand}", arrays.pack([{"labels": l} for l in prep.labels[cand]]))
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
    last: dict[str, tuple[int, str]] = {}
    for a in store.attempts(run_id):  # keyed per session (scheduler.Ticket.key)
        if a["attempt"] >= last.get(a["job_key"], (0, ""))[0]:
            last[a["job_key"]] = (a["attempt"], a["outcome"])
    # A job cut short between sessions starts again from its first: a session
    # that had finished is re-sent under its own agent job id (the agent
    # answers with the result it kept), one in flight under the next id,
    # which is the id it was sent under.
    prior = {k: n - 1 if outcome in ("result", "error_result") else n for k, (n, outcome) in last.items()}
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
    return Plan(jobs=jobs, gaps=gaps, matched=plan.matched), {k: v for k, v in prior.items()
                                                              if job_key_of(k) not in done}


def _execute(store, run_id: str, plan: Plan, prep: Any, conn: Connected, progress,
             prior: Mapping[str, int]) -> bool:
    technique = {c.name: c.spec.technique for c in prep.cands.candidates}

    def model_record(cand: str, fmt: str):
        info = prep.infos.get(cand, {}).get(fmt)
        return info.record() if info else None

    gaps = [(g.key, build_record(job_key=g.key, candidate=g.candidate, technique=technique[g.candidate],
                                 profile=g.profile, target=g.target, model=None, device=None, result=None,
                                 attempts=0, error={"stage": "plan", "kind": g.kind, "message": g.message,
                                                    "cause": g.cause or None}), None)
            for g in plan.gaps]
    store.put_results(run_id, gaps)  # one transaction for all of them
    for g in plan.gaps:
        progress({"event": "gap", "key": g.key, "kind": g.kind, "message": g.message, "cause": g.cause,
                  "profile": g.profile.id})

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

    def record_of(o: Outcome) -> tuple[str, dict, Any]:
        dev = o.device
        device = {"id": dev.id, "agent": dev.agent, "platform": dev.platform, "facts": dict(dev.facts)} \
            if dev else None
        rec = build_record(job_key=o.job.key, candidate=o.job.candidate, technique=technique[o.job.candidate],
                           profile=o.job.profile, target=o.job.target,
                           model=model_record(o.job.candidate, o.job.artefact.format),
                           device=device, result=o.result, attempts=o.attempts, error=o.error,
                           policy=o.job.measure,
                           sustained_s=prep.config.get("sustained_s"))
        return o.job.key, rec, (o.result or {}).get("outputs") or None

    # Records are built and written by one thread, in batches (harness/controller/writer.py).
    writer = ResultWriter(store, run_id, record_of,
                          lambda key, rec: progress({"event": "result", "key": key, "record": rec}))

    def on_event(job, dev, ev) -> None:
        kind = ev.WhichOneof("kind")
        data = {"event": kind, "key": job.key, "device": dev.key}
        if kind == "queued":
            data["position"] = ev.queued.position
        elif kind == "progress":
            data.update(phase=ev.progress.phase, samples=ev.progress.samples, elapsed_s=ev.progress.elapsed_s)
        progress(data)

    def on_attempt(job, dev, attempt, agent_job_id, outcome, message) -> None:
        writer.attempt(job.key, attempt, dev.agent, dev.id, agent_job_id, outcome, message)

    def on_device(dev, state) -> None:
        progress({"event": "device", "device": dev.key, "state": state})

    def on_session(job, dev, done) -> None:
        # A session finished and the job measures another (events `started`
        # and `progress` come once per session).
        progress({"event": "session", "key": job.key, "device": dev.key, "sessions": done,
                  "planned": job.measure.sessions})

    hooks = Hooks(on_outcome=writer.result, on_event=on_event, on_attempt=on_attempt, ensure_models=ensure,
                  on_device=on_device, on_session=on_session)
    try:
        execute(run_id, plan.jobs, devices, conn.clients, probes_pb, hooks, prior_attempts=prior,
                cooldown_s=float(prep.config.get("cooldown_s") or 0.0))
    except KeyboardInterrupt:
        writer.close()
        return True
    except BaseException:
        try:
            writer.close()
        except Exception:
            pass  # the first error is the one to see
        raise
    writer.close()
    done = store.done_keys(run_id)
    store.put_results(run_id, [(j.key, build_record(
        job_key=j.key, candidate=j.candidate, technique=technique[j.candidate], profile=j.profile, target=j.target,
        model=None, device=None, result=None, attempts=0,
        error={"stage": "schedule", "kind": "not_run", "message": "no device ran this job"}), None)
        for j in plan.jobs if j.key not in done])
    return False
