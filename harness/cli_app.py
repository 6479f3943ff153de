"""The `harness` command line's typer application: parses, calls
harness.api, renders. Heavy imports happen inside the commands so `harness
--help` stays instant. The console script's entry point is harness.cli,
which hands `harness run` to a resident process first (harness/resident/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from harness.cli_render import emit, fail, guarded
from harness.kernel import limits

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Device-lab benchmark harness for edge ML.")
agent_app = typer.Typer(no_args_is_help=True, help="Run a device-lab agent.")
app.add_typer(agent_app, name="agent")


def parse_duration(text: str) -> float:
    """'90s', '10m', '1h', '1.5m' or plain seconds -> seconds."""
    from harness.kernel.configfile import ConfigError

    t = text.strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600}.get(t[-1:], None)
    number = t[:-1] if scale else t
    try:
        value = float(number) * (scale or 1)
    except ValueError:
        raise ConfigError(f"--sustained {text!r}: expected a duration such as 90s, 10m or 1h") from None
    if value <= 0:
        raise ConfigError(f"--sustained {text!r}: expected a positive duration")
    return value


@app.command()
def run(
    cohort: Optional[str] = typer.Option(None, "--cohort", "-c",
                                         help="Cohort name (device_profiles/cohorts/NAME.yaml) or path."),
    candidates: Optional[Path] = typer.Option(None, "--candidates", help="Candidates file (YAML)."),
    model: List[str] = typer.Option([], "--model", "-m", help="NAME=PATH of an ONNX model; repeatable."),
    shape: List[str] = typer.Option([], "--shape", help="[CANDIDATE:]INPUT=1x3x224x224: an input's whole shape, for "
                                    "every candidate with that input or for one; repeatable. Not needed for inputs "
                                    "the eval set holds."),
    dim: List[str] = typer.Option([], "--dim", help="[CANDIDATE:]NAME=N: size of a symbolic dimension; repeatable."),
    eval_set: Optional[Path] = typer.Option(None, "--eval", help="Eval set (.npz, one array per input name, optional "
                                            "labels): the probe inputs and their shapes (default: the candidates "
                                            "file's eval)."),
    lab: Optional[Path] = typer.Option(None, "--lab", help="Lab file listing agents; default: an embedded local agent."),
    store: Optional[str] = typer.Option(None, "--store", help="Results store path (default .harness/results.sqlite)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for report.json / report.md / report.html."),
    probes: int = typer.Option(8, "--probes", help="Generated probe inputs per candidate (no eval set)."),
    drivers: Optional[str] = typer.Option(None, "--drivers", help="Embedded agent drivers (default host,browser)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress (a live panel on a terminal, plain lines "
                                                           "otherwise)."),
    resume: Optional[str] = typer.Option(None, "--resume", metavar="RUN",
                                         help="Finish a stored run: only jobs without a result run."),
    sustained: Optional[str] = typer.Option(None, "--sustained", metavar="DURATION",
                                            help="Run each job for this long (e.g. 10m): latency over time, "
                                                 "steady state vs first minute, throttling onset."),
    repeat: Optional[int] = typer.Option(None, "--repeat", metavar="N",
                                         help="Sessions per job (default: the cohort's measure.sessions, 5)."),
    cooldown: float = typer.Option(0.0, "--cooldown", help="Seconds to pause before each later session of a job."),
    warn_only: bool = typer.Option(False, "--warn-only", help="Report failed budgets but exit 0."),
    keep_agent: bool = typer.Option(True, "--keep-agent/--no-keep-agent",
                                    help="Run in a process forked from a resident harness process that keeps the "
                                         "controller imported and the local agent warm (this user's only; it "
                                         f"exits after {limits.RESIDENT_IDLE_S / 60:g} idle minutes). "
                                         "--no-keep-agent, or HARNESS_KEEP_AGENT=0: all in this process."),
):
    """Benchmark candidates on a cohort's devices and store the results."""
    del keep_agent  # read before this process was chosen (harness.cli, harness/resident/client.py)
    if not cohort and not resume:
        fail("give --cohort NAME (or --resume RUN to finish a stored run)")
    if resume and (cohort or candidates or model):
        fail("--resume takes the stored run's cohort and candidates; drop --cohort/--candidates/--model")
    from harness import api
    from harness.cli_progress import progress_view
    from harness.cli_render import print_summary

    req = api.RunRequest(
        cohort=cohort or "", resume=resume, sustained_s=guarded(lambda: parse_duration(sustained)) if sustained else None,
        repeat=repeat, cooldown_s=cooldown, candidates_file=candidates, models=model, shapes=shape, dims=dim,
        eval_set=eval_set, lab=lab, store=store,
        out=out, probes=probes, drivers=[d.strip() for d in drivers.split(",") if d.strip()] if drivers else None,
    )
    with progress_view(quiet=quiet) as view:
        outcome = guarded(lambda: api.run_cohort(req, view))
    print_summary(outcome)
    if outcome.interrupted:
        raise typer.Exit(130)
    failures = outcome.budget_failures()
    for line in failures:
        typer.echo(f"budget failed: {line}", err=True)
    if failures and not warn_only:
        raise typer.Exit(1)


@app.command()
def devices(
    lab: Optional[Path] = typer.Option(None, "--lab", help="Lab file; default: a local agent in this process."),
    drivers: Optional[str] = typer.Option(None, "--drivers", help="Embedded agent drivers (default host,browser)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """List the devices every agent can reach, with their state and runtimes."""
    from harness import api
    from harness.cli_render import print_devices

    info = guarded(lambda: api.list_devices(lab, [d.strip() for d in drivers.split(",")] if drivers else None))
    if as_json:
        typer.echo(json.dumps(info, indent=1))
    else:
        print_devices(info)


@app.command()
def runs(store: Optional[str] = typer.Option(None, "--store"), limit: int = typer.Option(20, "--limit")):
    """List stored runs, newest first."""
    from harness import api
    from harness.cli_render import print_runs

    print_runs(guarded(lambda: api.list_runs(store, limit)))


@app.command()
def report(
    run_ref: str = typer.Argument(..., metavar="RUN", help="Run id, unique prefix, 'latest', or a report.json."),
    format: str = typer.Option("md", "--format", "-f", help="md | json | html"),
    store: Optional[str] = typer.Option(None, "--store"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
):
    """Print (or write) a stored run's report."""
    from harness import api

    if format not in ("md", "json", "html"):
        fail(f"--format {format!r}: expected md, json or html")
    doc = guarded(lambda: api.report(store, run_ref))
    if format == "json":
        from harness.report.document import json_text

        text = json_text(doc)
    elif format == "md":
        from harness.report.markdown import render

        text = render(doc)
    else:
        from harness.report.html import render as render_html

        text = render_html(doc)
    emit(text, out)


@agent_app.command("kept")
def agent_kept(stop: bool = typer.Option(False, "--stop", help="Stop them (runs in flight lose their agent).")):
    """This user's resident harness processes and their kept local agents."""
    from harness.resident.manage import residents, stop_all

    found = stop_all() if stop else residents()
    if not found:
        typer.echo("no resident harness process", err=True)
    for r in found:
        agents = ", ".join(f"{','.join(a['drivers'])} (pid {a['pid']}{'' if a['ready'] else ', starting'})"
                           for a in r.get("agents", [])) or "none"
        typer.echo(f"{'stopped ' if stop else ''}pid {r['pid']}  key {r['key']}  runs {len(r['runs'])}  "
                   f"idle {r['idle_s']:g} s of {r['idle_limit_s']:g}  agents: {agents}")


@agent_app.command("serve")
def agent_serve(
    listen: Optional[str] = typer.Option(None, "--listen", help="HOST:PORT (default 127.0.0.1:50051; port 0 picks one)."),
    drivers: Optional[str] = typer.Option(None, "--drivers", help="Comma-separated drivers (default host)."),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="File holding the bearer token callers must send."),
    config: Optional[Path] = typer.Option(None, "--config", help="agent.yaml; flags override its keys."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Model cache folder."),
    port_file: Optional[Path] = typer.Option(None, "--port-file", help="Write the bound port here once listening."),
):
    """Serve this machine's devices to controllers over gRPC until stopped."""
    from harness import api

    guarded(lambda: api.serve_agent(listen=listen, drivers=drivers, token_file=token_file, config=config,
                          cache_dir=cache_dir, port_file=port_file))


_registered = False


def application() -> typer.Typer:
    """The application with every command of harness/commands registered (once)."""
    global _registered
    if not _registered:
        from harness.commands import register_all

        register_all(app)
        _registered = True
    return app
