"""`harness decide RUN` and `harness compare OLD NEW`."""

from __future__ import annotations

import json
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def decide(
        run_ref: str = typer.Argument(..., metavar="RUN", help="Run id, unique prefix, 'latest', or a report.json."),
        store: Optional[str] = typer.Option(None, "--store"),
        as_json: bool = typer.Option(False, "--json", help="Print the decision as JSON."),
    ):
        """The quantisation-vs-distillation recommendation for a run, with its evidence."""
        from harness import api
        from harness.cli_render import guarded
        from harness.report.analysis_md import render_decision

        doc = guarded(lambda: api.decide(store, run_ref))
        if as_json:
            typer.echo(json.dumps(doc["decision"], indent=1, default=str))
        else:
            typer.echo(render_decision(doc))
        if not doc["decision"]:
            raise typer.Exit(1)

    @app.command()
    def compare(
        old: str = typer.Argument(..., help="Baseline: run id, prefix, or report.json."),
        new: str = typer.Argument(..., help="Candidate run: run id, prefix, 'latest', or report.json."),
        threshold: float = typer.Option(0.05, "--threshold", help="Relative p90 slow-down that fails (0.05 = 5 %)."),
        memory_threshold: Optional[float] = typer.Option(
            None, "--memory-threshold", help="Relative peak-memory growth that fails (off by default)."),
        store: Optional[str] = typer.Option(None, "--store"),
        as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
        force: bool = typer.Option(False, "--force", help="Compare rows whose environments differ (marked)."),
    ):
        """Regressions between two runs; exits 1 on one beyond the threshold.

        Per device × candidate × target: p50/p90 deltas with bootstrap intervals and a
        Mann–Whitney test on the raw samples, new and missing devices, fallback changes."""
        from harness import api
        from harness.cli_render import fail, guarded
        from harness.report.analysis_md import render_compare

        if not 0 <= threshold < 10:
            fail(f"--threshold {threshold}: expected a fraction such as 0.05")
        if memory_threshold is not None and not 0 <= memory_threshold < 10:
            fail(f"--memory-threshold {memory_threshold}: expected a fraction such as 0.10")
        result = guarded(lambda: api.compare(store, old, new, threshold=threshold,
                                             memory_threshold=memory_threshold, force=force))
        typer.echo(json.dumps(result, indent=1, default=str) if as_json else render_compare(result))
        if result["regressions"]:
            raise typer.Exit(1)
        if result["refused"]:
            more = len(result["refused"]) - 1
            fail(result["refused"][0] + (f" (and {more} more row(s))" if more else ""))
