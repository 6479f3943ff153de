"""`harness decide RUN` and `harness compare OLD NEW`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from harness.kernel import limits

# `harness decide` exits with this when the recommendation is provisional, so
# a CI step can tell "decided" (0) from "decided on partial evidence".
PROVISIONAL_EXIT = 3
# `harness compare` exits with this when a row has one session on a side: no
# regression found and none ruled out — the same "not enough evidence" as a
# provisional decision, never the 1 of a regression.
CANNOT_TELL_EXIT = 3


def register(app: typer.Typer) -> None:
    @app.command()
    def decide(
        run_ref: str = typer.Argument(..., metavar="RUN", help="Run id, unique prefix, 'latest', or a report.json."),
        store: Optional[str] = typer.Option(None, "--store"),
        as_json: bool = typer.Option(False, "--json", help="Print the decision as JSON."),
    ):
        """The quantisation-vs-distillation recommendation for a run, with its evidence.

        Exit status: 0 a final recommendation; 3 a provisional one (a declared target was not measured or
        its validation is pending: the output says what is missing and the command that measures it);
        1 no recommendation; 2 bad input."""
        from harness import api
        from harness.cli_render import guarded
        from harness.report.analysis_md import render_decision

        doc = guarded(lambda: api.decide(store, run_ref))
        d = doc["decision"]
        if as_json:
            typer.echo(json.dumps(d, indent=1, default=str))
        else:
            typer.echo(render_decision(doc))
        if not d or not d.get("recommendation"):
            raise typer.Exit(1)
        if d.get("status") == "provisional":
            raise typer.Exit(PROVISIONAL_EXIT)

    @app.command()
    def compare(
        old: str = typer.Argument(..., help="Baseline: run id, prefix, or report.json (with --ab: a model file)."),
        new: str = typer.Argument(..., help="Candidate: run id, prefix, 'latest', or report.json (with --ab: a "
                                            "model file)."),
        threshold: float = typer.Option(0.05, "--threshold", help="Relative slow-down that fails (0.05 = 5 %)."),
        memory_threshold: Optional[float] = typer.Option(
            None, "--memory-threshold", help="Relative peak-memory growth that fails (off by default)."),
        store: Optional[str] = typer.Option(None, "--store"),
        as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
        force: bool = typer.Option(False, "--force", help="Compare rows whose environments differ (marked)."),
        ab: bool = typer.Option(False, "--ab", help="Measure the two models now, in alternating sessions (ABBA) "
                                                    "on the same devices: the most robust gate on shared hardware."),
        cohort: Optional[str] = typer.Option(None, "--cohort", "-c", help="With --ab: the cohort to measure on."),
        pairs: int = typer.Option(limits.AB_PAIRS, "--pairs", help="With --ab: sessions of each model (A/B pairs)."),
        lab: Optional[Path] = typer.Option(None, "--lab", help="With --ab: lab file (default: an embedded agent)."),
        drivers: Optional[str] = typer.Option(None, "--drivers", help="With --ab: embedded agent drivers."),
        dim: List[str] = typer.Option([], "--dim", help="With --ab: NAME=N, a symbolic dimension's size."),
        shape: List[str] = typer.Option([], "--shape", help="With --ab: INPUT=1x3x224x224."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="With --ab: folder for the run's reports."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="With --ab: no progress lines."),
    ):
        """Regressions between two runs (or two models, with --ab), judged on their sessions.

        Per device × candidate × target: p50/p90 ratios with hierarchical-bootstrap intervals (sessions, then
        runs) against the device target's noise floor, new and missing devices, fallback changes.
        Exit status: 0 no regression; 1 a regression; 2 bad input or rows that cannot be compared;
        3 cannot tell (one session on a side: no regression found, none ruled out)."""
        from harness import api
        from harness.cli_render import fail, guarded
        from harness.report.compare_md import render_compare

        if not 0 <= threshold < 10:
            fail(f"--threshold {threshold}: expected a fraction such as 0.05")
        if memory_threshold is not None and not 0 <= memory_threshold < 10:
            fail(f"--memory-threshold {memory_threshold}: expected a fraction such as 0.10")
        req = None
        if ab:
            if not cohort:
                fail("--ab needs --cohort NAME: the devices to measure the two models on")
            if not 2 <= pairs <= limits.MAX_SESSIONS:
                fail(f"--pairs {pairs}: expected 2..{limits.MAX_SESSIONS}")
            req = api.RunRequest(cohort=cohort, lab=lab, out=out, shapes=shape, dims=dim,
                                 drivers=[d.strip() for d in drivers.split(",") if d.strip()] if drivers else None)
        elif cohort or lab or drivers or dim or shape or out:
            fail("--cohort, --lab, --drivers, --dim, --shape and --out go with --ab (OLD and NEW are then models)")
        from harness.cli_progress import progress_view

        with progress_view(quiet=quiet or not ab) as view:
            result = guarded(lambda: api.compare(store, old, new, threshold=threshold,
                                                 memory_threshold=memory_threshold, force=force, ab=req,
                                                 pairs=pairs, progress=view))
        typer.echo(json.dumps(result, indent=1, default=str) if as_json else render_compare(result))
        if result["regressions"]:
            raise typer.Exit(1)
        if result["refused"]:
            more = len(result["refused"]) - 1
            fail(result["refused"][0] + (f" (and {more} more row(s))" if more else ""))
        if result["undetermined"]:
            raise typer.Exit(CANNOT_TELL_EXIT)
