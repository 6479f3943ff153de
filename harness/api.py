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

from harness.controller.request import RunOutcome, RunRequest
from harness.kernel import limits

__all__ = [
    "RunRequest", "RunOutcome",
    "run_cohort", "resume", "list_devices", "list_runs", "report", "decide", "compare",
    "plan", "quantize", "convert_coreml", "install_browser_runtimes", "browser_runtimes", "setup_browser",
    "install_runtimes", "runtimes", "remove_runtimes",
    "serve_agent", "migrate_store", "copy_store", "history", "serve_dashboard",
]

Progress = Callable[[dict], None]


def _local(drivers: Optional[Sequence[str]]):
    from harness.agent_start import local_agent

    # Kept between the runs of one process (warm runners, cached placements);
    # see local_agent.
    return local_agent(drivers, keep=True)


def run_cohort(req: RunRequest, progress: Progress = lambda e: None) -> RunOutcome:
    """Benchmark a cohort's candidates (or finish a stored run: `req.resume`)."""
    start = _local(req.drivers)
    if req.lab is None and not req.resume:
        # The local agent is certainly needed: start it before the controller
        # loads, so its runners warm up on another core meanwhile.
        start = _started(start)
    from harness.controller import run

    return run.run(req, progress, start_local=start)


def _started(start: Callable[[], Any]) -> Callable[[], Any]:
    """`start` running in the background now; calling the result waits for
    it (and raises what it raised)."""
    import threading

    box: dict = {}

    def go() -> None:
        try:
            box["agent"] = start()
        except BaseException as exc:
            box["error"] = exc

    th = threading.Thread(target=go, name="local-agent", daemon=True)
    th.start()

    def wait() -> Any:
        th.join()
        if "error" in box:
            raise box["error"]
        return box["agent"]

    return wait


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
                         "runtimes": [{"name": r.name, "version": r.version, "eps": list(r.eps), "build": r.build,
                                       "label": r.label} for r in d.runtimes]}
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
    """A run's report document: a stored run (id, unique prefix or 'latest')
    or a saved report.json of any version, both read through harness.record.load."""
    from harness.controller.run import resolve_run
    from harness.record.load import read_report
    from harness.report.document import build_report
    from harness.store import open_store

    p = Path(ref)
    if p.suffix == ".json" or p.is_file():
        return read_report(p)
    store = open_store(store_url, create=False)
    try:
        return build_report(store, resolve_run(store, ref))
    finally:
        store.close()


def decide(store_url: Optional[str], ref: str) -> dict:
    """The quantisation-vs-distillation decision of a run, with its evidence:
    {run, decision (None without an analysis), analysis_errors}."""
    doc = report(store_url, ref)
    return {"run": doc["run"], "decision": doc.get("decision"), "analysis_errors": doc.get("analysis_errors") or []}


def compare(store_url: Optional[str], old: str, new: str, threshold: float = 0.05,
            memory_threshold: Optional[float] = None, force: bool = False, ab: Optional[RunRequest] = None,
            pairs: int = limits.AB_PAIRS, progress: Progress = lambda e: None) -> dict:
    """Per device x candidate x target deltas between two runs, judged on
    their sessions against each device target's noise floor (learnt from the
    store); `regressions` lists what should fail CI, `undetermined` the rows
    with one session on a side, `refused` what could not be compared.

    With `ab` (`harness compare --ab OLD.onnx NEW.onnx --cohort ...`): run
    the two models — `ab.models`, named old and new — in `pairs` alternating
    sessions each (ABBA) on every device of the cohort, and judge them pair
    by pair; `run` is the stored run's id."""
    from dataclasses import replace

    from harness.analysis.compare import compare_docs, compare_pairs
    from harness.analysis.noise import store_book

    if ab is None:
        o, n = report(store_url, old), report(store_url, new)
        return compare_docs(o, n, threshold=threshold, memory_threshold=memory_threshold, force=force,
                            noise=store_book(store_url, [o, n]))
    from harness.controller import run

    outcome = run.run(replace(ab, models=[f"old={old}", f"new={new}"], repeat=pairs, store=store_url), progress,
                      start_local=_local(ab.drivers))
    doc = report(store_url, outcome.run_id)  # with the sessions' samples (the outcome has none)
    out = compare_pairs(doc, "old", "new", threshold=threshold, memory_threshold=memory_threshold,
                        noise=store_book(store_url, [doc]))
    out["run"] = outcome.run_id
    out["out_files"] = [str(p) for p in outcome.out_files]
    return out


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


def _environment_row(env) -> dict:
    from agents.host import runtimes, targets

    build = targets.build_of(env)
    return {"dist": env.dist, "version": env.version, "runtime_version": env.runtime_version,
            "eps": list(build.eps), "label": build.label, "path": str(env.path), "fetched": env.fetched,
            "size_mb": round(runtimes.size_bytes(env) / 1e6, 1)}


def install_runtimes(specs: Sequence[str]) -> list[tuple[str, Optional[dict], Optional[str]]]:
    """Make an environment per ONNX Runtime build for the host driver: (spec, environment or None, error or None)."""
    from agents.host import runtimes

    out = []
    for text in specs:
        try:
            out.append((text, _environment_row(runtimes.install(runtimes.parse_spec(text))), None))
        except runtimes.RuntimeEnvError as exc:
            out.append((text, None, str(exc)))
    return out


def runtimes() -> dict:
    """harness's own ONNX Runtime and the installed environments, with their EPs."""
    from agents.host import runtimes as rt, targets

    own, why = targets.own_build()
    return {"own": None if own is None else {"label": own.label, "dist": own.build, "version": own.version,
                                             "eps": list(own.eps)},
            "own_missing": why, "cache": str(rt.cache_root()),
            "environments": [_environment_row(e) for e in rt.installed()]}


def remove_runtimes(specs: Sequence[str]) -> list[tuple[str, list[str], Optional[str]]]:
    """Delete installed environments: (spec, labels removed, error or None)."""
    from agents.host import runtimes as rt, targets

    out = []
    for text in specs:
        try:
            out.append((text, [targets.build_of(e).label for e in rt.remove(rt.parse_spec(text))], None))
        except rt.RuntimeEnvError as exc:
            out.append((text, [], str(exc)))
    return out


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
