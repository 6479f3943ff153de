"""Every verb of harness: what each CLI command calls, one verb per command.

The verbs translate between the command line's values and the controller,
and they are where the controller and the agent side meet (a run without a
lab file gets its local agent from harness.agent_start). Each verb imports
what it needs when called, so importing this module stays cheap.

Bad input ends in one ConfigError line, with no run in the store and no
report folder created.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from harness.controller.run import RunOutcome, RunRequest

__all__ = [
    "RunRequest", "RunOutcome",
    "run_cohort", "resume", "list_devices", "list_runs", "report", "load_report", "decide", "compare",
    "plan", "quantize", "convert_coreml", "install_browser_runtimes", "browser_runtimes", "setup_browser",
    "serve_agent", "migrate_store", "copy_store", "history", "serve_dashboard",
]

Progress = Callable[[dict], None]


def _local(drivers: Optional[Sequence[str]]):
    from harness.agent_start import local_agent

    return local_agent(drivers)


def run_cohort(req: RunRequest, progress: Progress = lambda e: None) -> RunOutcome:
    """Benchmark a cohort's candidates (or finish a stored run: `req.resume`)."""
    from harness.controller import run

    return run.run(req, progress, start_local=_local(req.drivers))


def resume(req: RunRequest, progress: Progress = lambda e: None) -> RunOutcome:
    """Finish a stored run: only its jobs without a result run."""
    from harness.controller import run

    return run.resume(req, progress, start_local=_local(req.drivers))


def list_devices(lab: Optional[Path], drivers: Optional[Sequence[str]] = None) -> dict:
    """Every agent, its drivers and every device it reaches, with state and runtimes."""
    from harness.config.resolve import load_lab
    from harness.controller.connect import connect

    conn = connect(load_lab(lab) if lab else None, lab, start_local=_local(drivers))
    try:
        return {"agents": {name: {"address": c.address, "drivers": [
            {"name": d, "available": ok, "reason": why} for d, ok, why in conn.drivers.get(name, [])]}
            for name, c in conn.clients.items()},
            "devices": [{"agent": d.agent, "id": d.id, "platform": d.platform, "state": d.state,
                         "state_reason": d.state_reason, "facts": dict(d.facts),
                         "runtimes": [{"name": r.name, "version": r.version, "eps": list(r.eps)} for r in d.runtimes]}
                        for d in conn.devices]}
    finally:
        conn.close()


def list_runs(store_url: Optional[str], limit: int = 20) -> list[dict]:
    """Stored runs, newest first."""
    from harness.store import open_store

    store = open_store(store_url, create=False)
    try:
        return store.list_runs(limit)
    finally:
        store.close()


def report(store_url: Optional[str], ref: str) -> dict:
    """A stored run's report document (run id, unique prefix or 'latest')."""
    from harness.controller.run import resolve_run
    from harness.report.document import build_report
    from harness.store import open_store

    store = open_store(store_url, create=False)
    try:
        return build_report(store, resolve_run(store, ref))
    finally:
        store.close()


def load_report(store_url: Optional[str], ref: str) -> dict:
    """A stored run by id / prefix / 'latest', or a saved report.json file."""
    import json

    from harness.kernel.configfile import ConfigError

    p = Path(ref)
    if p.suffix == ".json" or p.is_file():
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{p}: cannot read a report ({type(exc).__name__}: {exc})") from None
        if not isinstance(doc, dict) or "results" not in doc or "run" not in doc:
            raise ConfigError(f"{p}: not a harness report (expected the keys run and results)")
        return doc
    return report(store_url, ref)


def decide(store_url: Optional[str], ref: str) -> dict:
    """The quantisation-vs-distillation decision of a run, with its evidence:
    {run, decision (None without an analysis), analysis_errors}."""
    doc = load_report(store_url, ref)
    return {"run": doc["run"], "decision": doc.get("decision"), "analysis_errors": doc.get("analysis_errors") or []}


def compare(store_url: Optional[str], old: str, new: str, threshold: float = 0.05,
            memory_threshold: Optional[float] = None, force: bool = False) -> dict:
    """Per device x candidate x target deltas between two runs; `regressions`
    lists what should fail CI, `refused` what could not be compared."""
    from harness.analysis.compare import compare_docs

    return compare_docs(load_report(store_url, old), load_report(store_url, new), threshold=threshold,
                        memory_threshold=memory_threshold, force=force)


def plan(cohort: str, candidates_file: Optional[Path], models: Sequence[str], lab: Optional[Path],
         drivers: Optional[Sequence[str]], from_run: Optional[str], store: Optional[str]) -> dict:
    """How long a cohort's run takes on the lab, per device and in total."""
    from harness.controller.forecast import forecast

    return forecast(cohort, candidates_file, models, lab, from_run, store, start_local=_local(drivers))


def quantize(model: Path, **options: Any):
    """INT8 / FP16 variants of an ONNX model (harness.quantize.quantize)."""
    from harness.quantize import quantize as run

    return run(model, **options)


def convert_coreml(model: Path, out: Path, precision: Optional[str], target: Optional[str], inputs: Sequence[str],
                   outputs: Sequence[str], io_dtype: str, candidates: Optional[Path], name: Optional[str],
                   force: bool):
    """A PyTorch model to Core ML, optionally added to a candidates file."""
    from harness.coreml_convert import convert_coreml as run

    return run(model, out, precision, target, inputs, outputs, io_dtype, candidates, name, force)


def install_browser_runtimes(versions: Sequence[str], default: bool = False) -> list[tuple[str, Any, Optional[str]]]:
    """Fetch onnxruntime-web versions into the cache: (spec, install or None, error or None) each."""
    from agents.browser import runtimes

    wanted = list(versions or [])
    if default:
        wanted.insert(0, runtimes.DEFAULT_VERSION)
    root = runtimes.cache_root()
    out = []
    for spec in wanted:
        try:
            out.append((spec, runtimes.install(spec, root), None))
        except runtimes.InstallError as exc:
            out.append((spec, None, str(exc)))
    return out


def browser_runtimes() -> dict:
    """The cached onnxruntime-web versions and the EPs each one ships."""
    from agents.browser import runtimes

    root = runtimes.cache_root()
    rows = [{"version": i.version, "eps": list(runtimes.eps_of(i)), "path": str(i.path),
             "size_mb": round(runtimes.size_bytes(i) / 1e6, 1), "default": i.version == runtimes.DEFAULT_VERSION}
            for i in runtimes.cached(root)]
    return {"cache": str(root), "package": runtimes.PACKAGE, "versions": rows}


def setup_browser(say: Callable[[str], None] = print) -> dict:
    """Make this machine ready for the browser driver: a Chromium and npm
    (Playwright's download, else the OS package where this user may install
    one, else the command to run), then the default onnxruntime-web.
    {chromium, npm, ort_web: [(spec, install or None, error or None)]}."""
    from agents.browser import provision

    rep = provision.setup(say=say)
    ort = install_browser_runtimes([], default=True) if rep.npm else []
    return {"chromium": rep.chromium, "npm": rep.npm, "ort_web": ort}


def serve_agent(**options: Any) -> None:
    """`harness agent serve`: serve this machine's devices until stopped."""
    from harness.agent_start import serve

    serve(**options)


def migrate_store(store_url: Optional[str]) -> dict:
    """`harness store migrate`: bring a store to this harness's schema (an
    empty or missing one is created). {store, from, to}."""
    from harness.store import migrate
    from harness.store.engine import locate

    loc = locate(store_url)
    before, after = migrate.upgrade(loc)
    return {"store": loc.display, "from": before, "to": after}


def copy_store(source_url: Optional[str], target_url: str, runs: Optional[Sequence[str]] = None) -> dict:
    """`harness store copy`: runs, whole, from one store into another.
    {from, to, copied, already_there, missing}."""
    from harness.store import open_store
    from harness.store.transfer import copy_runs

    src = open_store(source_url, create=False, readonly=True)
    try:
        dst = open_store(target_url)
        try:
            got = copy_runs(src, dst, runs)
            return {"from": src.location.display, "to": dst.location.display, **got}
        finally:
            dst.close()
    finally:
        src.close()


def history(store_url: Optional[str], candidate: str, device: Optional[str] = None, target: Optional[str] = None,
            last: Optional[int] = None, metric: str = "p90") -> dict:
    """`harness history`: a candidate's series across runs with change points
    and the newest run's verdict (`regressions` is what --check fails on)."""
    from harness.analysis.history import METRICS, from_store
    from harness.kernel import limits
    from harness.kernel.configfile import ConfigError
    from harness.store import open_store

    if metric not in METRICS:
        raise ConfigError(f"--metric {metric!r}: expected {' or '.join(METRICS)}")
    if last is not None and not 1 <= last <= limits.HISTORY_MAX_RUNS:
        raise ConfigError(f"--last {last}: expected 1..{limits.HISTORY_MAX_RUNS}")
    store = open_store(store_url, create=False, readonly=True)
    try:
        return from_store(store, candidate, profile=device, target=target, last=last, metric=metric)
    finally:
        store.close()


def serve_dashboard(store_url: Optional[str], listen: str = "127.0.0.1:8080", token_file: Optional[Path] = None,
                    port_file: Optional[Path] = None) -> None:
    """`harness serve`: the read-only lab dashboard, until stopped."""
    from harness.dashboard.serve import ServeError, serve
    from harness.kernel.configfile import ConfigError

    try:
        serve(store_url, listen=listen, token_file=token_file, port_file=port_file)
    except ServeError as exc:
        raise ConfigError(str(exc)) from None
