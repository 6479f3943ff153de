"""`harness plan`: how long will this cohort take on our lab?

Plans the run exactly as `harness run` would (same agents, same matching,
same scheduler), then estimates every job from a previous run's measured
durations (`--from-run`), the latency a simulated device publishes, or the
measurement policy's bounds, and prints per-device and total wall time.
Nothing is uploaded and nothing runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def _old_policies(config: dict):
    """(profile id, target key) -> the MeasurePolicy a stored run used."""
    from harness.config.models import MeasureConfig, Target
    from harness.measure.policy import MeasurePolicy

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
    from harness import api
    from harness.capacity import Previous

    store = api.open_store(store_url, create=False)
    try:
        run_id = api.resolve_run(store, ref)
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


def estimate(cohort: str, candidates_file: Optional[Path], models: List[str], lab: Optional[Path],
             drivers: Optional[List[str]], from_run: Optional[str], store: Optional[str]) -> dict:
    from harness import artefacts
    from harness.capacity import Estimator, plan_capacity
    from harness.config.loading import ConfigError
    from harness.config.resolve import candidates_from_models, load_candidates, load_cohort, load_lab
    from harness.controller.agents import EMBEDDED_DRIVERS, connect
    from harness.controller.plan import make_plan

    rc = load_cohort(cohort)
    if candidates_file and models:
        raise ConfigError("give either --candidates FILE or --model NAME=PATH, not both")
    cands = load_candidates(candidates_file) if candidates_file else \
        candidates_from_models(models, reference=rc.cohort.quality.reference)
    arts = {c.name: artefacts.prepare(c)[0] for c in cands.candidates}
    lab_obj = load_lab(lab) if lab else None
    previous = previous_results(store, from_run) if from_run else {}
    conn = connect(lab_obj, lab, embedded_drivers=drivers or EMBEDDED_DRIVERS)
    try:
        plan = make_plan(rc.profiles, [c.name for c in cands.candidates], arts, conn.devices,
                         rc.cohort.measure.policy())
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


def render(cap: dict) -> str:
    from harness.capacity import fmt_range

    lines = [f"cohort {cap['cohort']}: {cap['jobs']} job(s) on {len(cap['devices'])} device(s) of "
             f"{len(cap['agents'])} agent(s), {len(cap['gaps'])} gap(s)"]
    header = ("device", "agent", "jobs", "busy", "estimated from")
    rows = [(r["id"], r["agent"], str(r["jobs"]), fmt_range(r["low_s"], r["high_s"]), "; ".join(r["sources"]))
            for r in cap["devices"]]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.rjust(widths[i]) if i == 2 else c.ljust(widths[i])
                                  for i, c in enumerate(cells)).rstrip()
    lines += ["", fmt(header), fmt(tuple("-" * w for w in widths))] + [fmt(r) for r in rows]
    t, s = cap["total"], cap["serial"]
    lines += ["", f"total wall time: {fmt_range(t['low_s'], t['high_s'])} "
                  f"(devices work in parallel; one after another it would be {fmt_range(s['low_s'], s['high_s'])})"]
    for agent, u in cap["uploads"].items():
        if u["models"]:
            lines.append(f"upload first: {u['models']} model(s), {u['bytes'] / 1e6:.1f} MB to {agent} "
                         "(not included above)")
    if any("policy bounds" in r["sources"] for r in cap["devices"]):
        lines.append("a range means no latency is known for some jobs: the measurement policy's bounds are used "
                     "(pass --from-run RUN to use a previous run's durations)")
    if cap["idle"]:
        lines.append(f"idle: {len(cap['idle'])} device(s) no job needs ({', '.join(cap['idle'])})")
    for g in cap["gaps"]:
        lines.append(f"not run: {g['key']}: {g['message']}")
    return "\n".join(lines)


def register(app) -> None:
    @app.command()
    def plan(
        cohort: str = typer.Option(..., "--cohort", "-c", help="Cohort name or path."),
        candidates: Optional[Path] = typer.Option(None, "--candidates", help="Candidates file (YAML)."),
        model: List[str] = typer.Option([], "--model", "-m", help="NAME=PATH of an ONNX model; repeatable."),
        lab: Optional[Path] = typer.Option(None, "--lab", help="Lab file listing agents; default: an embedded local agent."),
        drivers: Optional[str] = typer.Option(None, "--drivers", help="Embedded agent drivers (default host,browser)."),
        from_run: Optional[str] = typer.Option(None, "--from-run", help="Use this stored run's measured durations."),
        store: Optional[str] = typer.Option(None, "--store", help="Results store for --from-run."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ):
        """Estimate how long a cohort's run takes on the lab, per device and in total."""
        import json

        from harness.cli import guarded

        names = [d.strip() for d in drivers.split(",") if d.strip()] if drivers else None
        cap = guarded(lambda: estimate(cohort, candidates, model, lab, names, from_run, store))
        typer.echo(json.dumps(cap, indent=1) if as_json else render(cap))
