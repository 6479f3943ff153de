"""`harness serve`: the read-only lab dashboard (docs/history.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app) -> None:
    @app.command()
    def serve(
        store: Optional[str] = typer.Option(None, "--store", help="Store path or URL."),
        listen: str = typer.Option("127.0.0.1:8080", "--listen", help="HOST:PORT (port 0 picks one); beyond "
                                                                      "loopback a --token-file is required."),
        token_file: Optional[Path] = typer.Option(None, "--token-file", help="File holding the token callers "
                                                                             "must send."),
        port_file: Optional[Path] = typer.Option(None, "--port-file", help="Write the bound port here once "
                                                                           "listening."),
    ):
        """Serve the lab's runs, reports, history and comparisons in the browser (read-only)."""
        from harness import api
        from harness.cli_render import guarded

        guarded(lambda: api.serve_dashboard(store, listen=listen, token_file=token_file, port_file=port_file))
