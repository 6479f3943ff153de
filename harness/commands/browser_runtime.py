"""`harness browser-runtime install|list|setup`: ONNX Runtime Web versions
for the browser driver, fetched from the npm registry into a local cache
where several versions live side by side (agents/browser/runtimes.py), and
the machine set-up the browser driver needs (agents/browser/provision.py)."""

from __future__ import annotations

from typing import List

import typer


def register(app: typer.Typer) -> None:
    sub = typer.Typer(no_args_is_help=True, help="ONNX Runtime Web versions for the browser driver.")
    sub.command("install")(install)
    sub.command("list")(list_versions)
    sub.command("setup")(setup)
    app.add_typer(sub, name="browser-runtime")


def install(
    versions: List[str] = typer.Argument(None, metavar="VERSION",
                                         help="onnxruntime-web versions (1.30.0) or prefixes (1.22) to fetch."),
    default: bool = typer.Option(False, "--default", help="Also fetch the project's default version if missing."),
):
    """Fetch onnxruntime-web versions from the npm registry into the cache."""
    from agents.browser.runtimes import PACKAGE
    from harness import api

    if not versions and not default:
        typer.echo("error: give a VERSION (e.g. 1.30.0) or --default", err=True)
        raise typer.Exit(2)
    failed = False
    for spec, inst, error in api.install_browser_runtimes(list(versions or []), default=default):
        if error is not None:
            typer.echo(f"error: {PACKAGE} {spec}: {error}", err=True)
            failed = True
            continue
        state = "installed" if inst.fetched else "already cached"
        typer.echo(f"{PACKAGE} {inst.version}: {state} in {inst.path}")
    if failed:
        raise typer.Exit(1)


def list_versions(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Show the cached onnxruntime-web versions and the EPs each one ships."""
    import json

    from harness import api

    info = api.browser_runtimes()
    PACKAGE = info["package"]
    root, rows = info["cache"], info["versions"]
    if as_json:
        typer.echo(json.dumps({"cache": root, "versions": rows}, indent=1))
        return
    if not rows:
        typer.echo(f"no {PACKAGE} version in {root}; fetch one with `harness browser-runtime install --default`")
        return
    typer.echo(f"cache: {root}")
    for r in rows:
        mark = " (default)" if r["default"] else ""
        typer.echo(f"  {r['version']}{mark}  eps: {' '.join(r['eps'])}  {r['size_mb']} MB")


def setup():
    """Get what the browser driver needs: a Chromium, npm and the default onnxruntime-web.

    A missing Chromium comes from Playwright's download, else from the OS package when this user may install
    one (root or passwordless sudo); otherwise one line names the command to run. Exits 0 either way: the
    host driver does not need the browser."""
    from agents.browser.runtimes import PACKAGE
    from harness import api

    got = api.setup_browser(say=lambda line: typer.echo(line, err=True))
    for spec, inst, error in got["ort_web"]:
        if error is not None:
            typer.echo(f"browser set-up: {PACKAGE} {spec}: {error}; the browser rows will not run", err=True)
        else:
            typer.echo(f"browser set-up: {PACKAGE} {inst.version}: {'installed' if inst.fetched else 'cached'} "
                       f"in {inst.path}", err=True)
