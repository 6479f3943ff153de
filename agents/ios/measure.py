"""The measurement every Core ML session goes through, local or remote.

Load (compile + load), first prediction, warm-up and measured predictions
under the job's StopRule, then one prediction per probe input for parity.
Pure over a `CoreMLSession`: the same loop runs on a Mac, against a phone's
runner app, and against a recorded session in tests.

Samples are Core ML's own prediction durations where the session reports
them (coremltools' `last_predict_duration_in_nano_seconds`, the time of
`predictionFromFeatures:`), else the wall clock around `predict`. For a phone
the wall clock would mostly measure `devicectl` file copies, so the device's
figure is the only honest one.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from harness.kernel import limits
from harness.kernel.measure.policy import MeasurePolicy, StopRule

_CASTABLE = {"float16", "float32", "float64", "int32", "int8"}


class JobFailed(Exception):
    def __init__(self, stage: str, kind: str, message: str):
        super().__init__(message)
        self.stage, self.kind, self.message = stage, kind, message


def build_feed(inputs: Sequence[Any], probe: Mapping[str, np.ndarray], notes: list[str]) -> dict[str, np.ndarray]:
    """Probe tensors for the model's inputs, by name, cast to the dtype the
    model declares (a float16-input model gets float16 arrays)."""
    names = [i.name for i in inputs]
    feed: dict[str, np.ndarray] = {}
    missing = [n for n in names if n not in probe]
    if missing and len(names) == 1 and len(probe) == 1:
        only = next(iter(probe))
        notes.append(f"probe input {only!r} fed to the model's only input {names[0]!r}")
        probe = {names[0]: probe[only]}
        missing = []
    if missing:
        raise JobFailed("job", "bad_input",
                        f"probe inputs lack model input(s) {missing}; model expects {names}, probes have {sorted(probe)}")
    for spec in inputs:
        value = np.asarray(probe[spec.name])
        if spec.dtype == "image":
            raise JobFailed("job", "bad_input", f"input {spec.name!r} is an image input; the iOS driver feeds "
                                                "tensors (convert with a tensor input)")
        if spec.dtype in _CASTABLE and value.dtype.name != spec.dtype:
            note = f"input {spec.name!r} cast from {value.dtype.name} to {spec.dtype}, as the model declares"
            if note not in notes:
                notes.append(note)
            value = value.astype(spec.dtype)
        fixed = [d for d in spec.dims]
        if fixed and all(isinstance(d, int) for d in fixed) and tuple(value.shape) != tuple(fixed):
            raise JobFailed("job", "bad_input", f"input {spec.name!r}: probe shape {tuple(value.shape)}, "
                                                f"the model declares {tuple(fixed)}")
        feed[spec.name] = np.ascontiguousarray(value)
    return feed


def tensor_outputs(out: Mapping[str, Any], notes: list[str]) -> dict[str, np.ndarray]:
    kept = {}
    for name, value in out.items():
        if isinstance(value, np.ndarray):
            kept[name] = value
        elif isinstance(value, (int, float, np.number)):
            kept[name] = np.asarray(value)
        else:
            note = f"output {name!r} is a {type(value).__name__}, not a tensor: left out of parity"
            if note not in notes:
                notes.append(note)
    return kept


def measure(session: Any, probes: Sequence[Mapping[str, np.ndarray]], policy: MeasurePolicy,
            emit: Callable[[dict], None] = lambda e: None,
            clock: Callable[[], float] = time.perf_counter) -> dict:
    """Run the whole measurement; returns the result fields (load_ms,
    first_run_ms, samples_ms, validity, outputs, details). Raises JobFailed
    with the stage that failed."""
    if not probes:
        raise JobFailed("job", "bad_input", "the job carries no probe inputs")
    res: dict = {"validity": {}, "details": {}, "outputs": []}
    notes: list[str] = []
    res["details"]["notes"] = notes

    stage = "load"
    try:
        load = session.load()
    except JobFailed:
        raise
    except Exception as exc:
        raise JobFailed("load", _kind(exc, "load"), _text(exc)) from None
    res["load_ms"] = load.get("load_ms")
    res["details"]["load"] = load
    emit({"phase": "load", "samples": 0, "elapsed_s": (res["load_ms"] or 0) / 1e3})

    inputs = session.inputs()
    feeds = [build_feed(inputs, p, notes) for p in probes]
    feed = feeds[0]

    def timed() -> float:
        t = clock()
        session.predict(feed)
        wall = (clock() - t) * 1e3
        reported = session.last_predict_ms()
        return reported if reported is not None else wall

    try:
        stage = "warmup"
        res["first_run_ms"] = timed()
        reported = session.last_predict_ms() is not None
        res["details"]["sample_clock"] = (
            "Core ML's prediction duration (MLModel last_predict_duration_in_nano_seconds)" if reported
            else "wall clock around MLModel.predict")
        rule = StopRule(policy)
        start = clock()
        runs = 1
        while not rule.warmup_complete(runs, clock() - start) and clock() - start <= policy.max_s:
            timed()
            runs += 1
        res["validity"]["warmup_done"] = rule.warmup_complete(runs, clock() - start)
        res["details"]["warmup_runs"] = runs

        stage = "measure"
        samples: list[float] = []
        start = last = clock()
        reason: Optional[str] = None
        while reason is None:
            samples.append(timed())
            now = clock()
            reason = rule.stop_reason(samples, now - start)
            if now - last >= limits.PROGRESS_INTERVAL_S:
                last = now
                emit({"phase": "measure", "samples": len(samples), "elapsed_s": now - start})
        elapsed = clock() - start
        res["samples_ms"] = samples
        res["validity"].update(min_runs_met=len(samples) >= policy.min_runs, min_time_met=elapsed >= policy.min_s,
                               stop_reason=reason)
        res["details"]["measure_s"] = round(elapsed, 3)

        stage = "probes"
        emit({"phase": "probes", "samples": len(samples), "elapsed_s": elapsed})
        for f in feeds:
            res["outputs"].append(tensor_outputs(session.predict(f), notes))
    except JobFailed:
        raise
    except Exception as exc:
        raise JobFailed(stage, _kind(exc, stage), _text(exc)) from None
    return res


def _text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()[:4000]


def _kind(exc: BaseException, stage: str) -> str:
    low = str(exc).lower()
    if isinstance(exc, MemoryError) or "out of memory" in low:
        return "oom"
    if "timed out" in low or isinstance(exc, TimeoutError):
        return "timeout"
    if stage == "load":
        if "compile" in low or "parse" in low or "not a valid" in low or "corrupt" in low:
            return "model_invalid"
        return "load_failed"
    if "input" in low and ("shape" in low or "type" in low or "missing" in low):
        return "bad_input"
    return "runtime_error"
