"""`harness browser-runtime install|list`: ONNX Runtime Web versions for the
browser driver, fetched from the npm registry into a local cache where
several versions live side by side (agents/browser/runtimes.py)."""

from __future__ import annotations

from typing import List

import typer


def register(app: typer.Typer) -> None:
    sub = typer.Typer(no_args_is_help=True, help="ONNX Runtime Web versions for the browser driver.")
    sub.command("install")(install)
    sub.command("list")(list_versions)
    app.add_typer(sub, name="browser-runtime")


def install(
    versions: List[str] = typer.Argument(None, metavar="VERSION",
                                         help="onnxruntime-web versions (1.30.0) or prefixes (1.22) to fetch."),
    default: bool = typer.Option(False, "--default", help="Also fetch the project's default version if missing."),
):
    """Fetch onnxruntime-web versions from the npm registry into the cache."""
    from agents.browser import runtimes

    wanted = list(versions or [])
    if default:
        wanted.insert(0, runtimes.DEFAULT_VERSION)
    if not wanted:
        typer.echo("error: give a VERSION (e.g. 1.30.0) or --default", err=True)
        raise typer.Exit(2)
    root = runtimes.cache_root()
    failed = False
    for spec in wanted:
        try:
            inst = runtimes.install(spec, root)
        except runtimes.InstallError as exc:
            typer.echo(f"error: {runtimes.PACKAGE} {spec}: {exc}", err=True)
            failed = True
            continue
        state = "installed" if inst.fetched else "already cached"
        typer.echo(f"{runtimes.PACKAGE} {inst.version}: {state} in {inst.path}")
    if failed:
        raise typer.Exit(1)


def list_versions(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Show the cached onnxruntime-web versions and the EPs each one ships."""
    import json

    from agents.browser import runtimes

    root = runtimes.cache_root()
    have = runtimes.cached(root)
    rows = [{"version": i.version, "eps": list(runtimes.eps_of(i)), "path": str(i.path),
             "size_mb": round(runtimes.size_bytes(i) / 1e6, 1), "default": i.version == runtimes.DEFAULT_VERSION}
            for i in have]
    if as_json:
        typer.echo(json.dumps({"cache": str(root), "versions": rows}, indent=1))
        return
    if not rows:
        typer.echo(f"no {runtimes.PACKAGE} version in {root}; fetch one with "
                   f"`harness browser-runtime install --default`")
        return
    typer.echo(f"cache: {root}")
    for r in rows:
        mark = " (default)" if r["default"] else ""
        typer.echo(f"  {r['version']}{mark}  eps: {' '.join(r['eps'])}  {r['size_mb']} MB")
