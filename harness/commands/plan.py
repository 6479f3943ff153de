"""`harness plan`: per-device and total wall time of a cohort's run on the
lab, estimated without running anything (harness.controller.forecast)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def render(cap: dict) -> str:
    from harness.controller.estimate import fmt_range

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

        from harness import api
        from harness.cli_render import guarded

        names = [d.strip() for d in drivers.split(",") if d.strip()] if drivers else None
        cap = guarded(lambda: api.plan(cohort, candidates, model, lab, names, from_run, store))
        typer.echo(json.dumps(cap, indent=1) if as_json else render(cap))
