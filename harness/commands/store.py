"""`harness store migrate` and `harness store copy`: the results store's
schema and its runs (docs/store.md)."""

from __future__ import annotations

from typing import List, Optional

import typer


def register(app) -> None:
    store_app = typer.Typer(no_args_is_help=True, help="The results store: upgrade its schema, copy runs.")
    app.add_typer(store_app, name="store")

    @store_app.command("migrate")
    def migrate(store: Optional[str] = typer.Option(None, "--store", help="Store path or URL (else HARNESS_STORE, "
                                                                        "else .harness/results.sqlite).")):
        """Upgrade a store to this harness's schema (creates an empty one)."""
        from harness import api
        from harness.cli_render import guarded

        got = guarded(lambda: api.migrate_store(store))
        if got["from"] == got["to"]:
            typer.echo(f"results store {got['store']}: already at schema revision {got['to']}")
        elif got["from"] is None:
            typer.echo(f"results store {got['store']}: created at schema revision {got['to']}")
        else:
            typer.echo(f"results store {got['store']}: upgraded from schema revision {got['from']} to {got['to']}")

    @store_app.command("copy")
    def copy(
        to: str = typer.Option(..., "--to", help="Target store path or URL (created when new)."),
        source: Optional[str] = typer.Option(None, "--from", help="Source store (default: HARNESS_STORE, else "
                                                                  ".harness/results.sqlite)."),
        runs: List[str] = typer.Argument(None, metavar="[RUN]...", help="Runs to copy (default: all)."),
    ):
        """Copy runs, whole, from one store into another; runs it has already are skipped."""
        from harness import api
        from harness.cli_render import guarded

        got = guarded(lambda: api.copy_store(source, to, runs or None))
        typer.echo(f"copied {len(got['copied'])} run(s) to {got['to']}"
                   + (f"; {len(got['already_there'])} already there" if got["already_there"] else ""))
        if got["missing"]:
            typer.echo(f"error: no such run(s) in {got['from']}: {', '.join(got['missing'])}", err=True)
            raise typer.Exit(2)
