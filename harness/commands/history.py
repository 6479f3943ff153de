"""`harness history`: one candidate's results across runs, with change
points; `--check` fails CI when the newest run regressed (docs/history.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app) -> None:
    @app.command()
    def history(
        candidate: str = typer.Option(..., "--candidate", help="Candidate name, as in the candidates file."),
        device: Optional[str] = typer.Option(None, "--device", help="Device profile id (default: every profile)."),
        target: Optional[str] = typer.Option(None, "--target", help="Runtime target key, e.g. "
                                                                    "'onnxruntime@1.20/nnapi' (default: all)."),
        last: Optional[int] = typer.Option(None, "--last", help="Only the newest N runs of each series."),
        metric: str = typer.Option("p90", "--metric", help="p90 | p50: what change points are found on."),
        format: str = typer.Option("table", "--format", "-f", help="table | json | html"),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
        check: bool = typer.Option(False, "--check", help="Exit 1 when a series' newest run regressed or broke."),
        store: Optional[str] = typer.Option(None, "--store", help="Store path or URL."),
    ):
        """The history of a candidate on each device profile and target, with regressions."""
        from harness import api
        from harness.cli_render import emit, fail, guarded

        if format not in ("table", "json", "html"):
            fail(f"--format {format!r}: expected table, json or html")
        doc = guarded(lambda: api.history(store, candidate, device=device, target=target, last=last,
                                          metric=metric))
        if format == "json":
            import json

            text = json.dumps(doc, indent=1)
        elif format == "html":
            from harness.report import history_html

            text = history_html.page(doc)
        else:
            from harness.report import history_text

            text = history_text.render(doc)
        emit(text, out)
        if check:
            for line in doc["regressions"]:
                typer.echo(f"regression: {line}", err=True)
            if doc["regressions"]:
                raise typer.Exit(1)
