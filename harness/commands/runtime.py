"""`harness runtime install|list|remove`: ONNX Runtime builds and versions for
the host driver, each in its own environment made from the package index
(agents/host/runtimes.py), so they live side by side with harness's own."""

from __future__ import annotations

from typing import List

import typer


def register(app: typer.Typer) -> None:
    sub = typer.Typer(no_args_is_help=True, help="ONNX Runtime builds and versions for the host driver.")
    sub.command("install")(install)
    sub.command("list")(list_runtimes)
    sub.command("remove")(remove)
    app.add_typer(sub, name="runtime")


_SPECS_HELP = ("ONNX Runtime distributions, optionally with a version: onnxruntime==1.20.1, "
               "onnxruntime-openvino==1.24.1, onnxruntime-gpu (the newest), onnxruntime==1.22 (the newest 1.22.x).")


def install(specs: List[str] = typer.Argument(..., metavar="DIST[==VERSION]", help=_SPECS_HELP)):
    """Make an environment per build from the package index (pip) and list what it offers."""
    from harness import api

    failed = False
    for spec, env, error in api.install_runtimes(specs):
        if error is not None:
            typer.echo(f"error: {spec}: {error}", err=True)
            failed = True
            continue
        state = "installed" if env["fetched"] else "already installed"
        typer.echo(f"{env['label']}: {state} in {env['path']}")
    if failed:
        raise typer.Exit(1)


def list_runtimes(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Show harness's own ONNX Runtime and every installed build, with their EPs."""
    import json

    from harness import api

    info = api.runtimes()
    if as_json:
        typer.echo(json.dumps(info, indent=1))
        return
    own = info["own"]
    typer.echo(f"harness's environment: {own['label'] + ' (default)' if own else 'no onnxruntime'}")
    typer.echo(f"environments in {info['cache']}:")
    if not info["environments"]:
        typer.echo("  none; add one with `harness runtime install onnxruntime==1.20.1`")
    for r in info["environments"]:
        typer.echo(f"  {r['label']}  {r['size_mb']} MB")


def remove(specs: List[str] = typer.Argument(..., metavar="DIST[==VERSION]", help=_SPECS_HELP)):
    """Delete installed environments (every version of a distribution when no version is given)."""
    from harness import api

    failed = False
    for spec, gone, error in api.remove_runtimes(specs):
        if error is not None or not gone:
            typer.echo(f"error: {spec}: {error or 'no such environment installed'}", err=True)
            failed = True
            continue
        for label in gone:
            typer.echo(f"removed {label}")
    if failed:
        raise typer.Exit(1)
