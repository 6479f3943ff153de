"""Translation between protocol messages and plain values.

Both edges (the agent servicer and the controller's client) use these, so
the two sides of the wire cannot drift apart.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import numpy as np

from harness._proto.v1 import agent_pb2 as pb
from harness.kernel import limits
from harness.kernel.measure.policy import MeasurePolicy

# dtypes a tensor may carry; anything else is refused rather than guessed.
DTYPES = frozenset(
    {"float32", "float16", "float64", "int8", "uint8", "int16", "uint16", "int32",
     "uint32", "int64", "uint64", "bool"}
)

DEVICE_STATE_TO_PB = {
    "ready": pb.DEVICE_STATE_READY,
    "busy": pb.DEVICE_STATE_BUSY,
    "offline": pb.DEVICE_STATE_OFFLINE,
    "unauthorized": pb.DEVICE_STATE_UNAUTHORIZED,
    "too_hot": pb.DEVICE_STATE_TOO_HOT,
}
DEVICE_STATE_FROM_PB = {v: k for k, v in DEVICE_STATE_TO_PB.items()}


def tensor_to_pb(name: str, array: np.ndarray) -> pb.Tensor:
    array = np.ascontiguousarray(array)
    dtype = array.dtype.name
    if dtype not in DTYPES:
        raise ValueError(f"tensor {name!r}: dtype {dtype} is not supported on the wire")
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return pb.Tensor(name=name, dtype=dtype, shape=list(array.shape), data=array.tobytes())


def tensor_from_pb(t: pb.Tensor) -> np.ndarray:
    if t.dtype not in DTYPES:
        raise ValueError(f"tensor {t.name!r}: unknown dtype {t.dtype!r}")
    dtype = np.dtype(t.dtype).newbyteorder("<")
    shape = tuple(int(d) for d in t.shape)
    if any(d < 0 for d in shape):
        raise ValueError(f"tensor {t.name!r}: negative dimension in {shape}")
    count = int(np.prod(shape)) if shape else 1
    if count * dtype.itemsize != len(t.data):
        raise ValueError(
            f"tensor {t.name!r}: {len(t.data)} bytes do not hold {shape} of {t.dtype}"
        )
    return np.frombuffer(t.data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def tensors_to_pb(tensors: Mapping[str, np.ndarray]) -> pb.TensorSet:
    return pb.TensorSet(tensors=[tensor_to_pb(k, v) for k, v in tensors.items()])


def tensors_from_pb(ts: pb.TensorSet) -> dict[str, np.ndarray]:
    return {t.name: tensor_from_pb(t) for t in ts.tensors}


def policy_to_pb(p: MeasurePolicy) -> pb.MeasurePolicy:
    return pb.MeasurePolicy(
        warmup_runs=p.warmup_runs, warmup_s=p.warmup_s, min_runs=p.min_runs,
        min_s=p.min_s, max_s=p.max_s, target_ci=p.target_ci, max_runs=p.max_runs,
    )


def policy_from_pb(m: pb.MeasurePolicy) -> MeasurePolicy:
    return MeasurePolicy(
        warmup_runs=m.warmup_runs, warmup_s=m.warmup_s, min_runs=m.min_runs,
        min_s=m.min_s, max_s=m.max_s, target_ci=m.target_ci, max_runs=m.max_runs,
    )


def bounded_outputs(outputs, notes: dict, limit: int = limits.MAX_OUTPUT_BYTES) -> list[pb.TensorSet]:
    """Probe outputs that fit one message: whole probes, in order, until the
    byte limit; tensors of a dtype the wire does not carry (strings, maps)
    are left out. What was left out is said in `notes`."""
    out: list[pb.TensorSet] = []
    total = 0
    skipped: set[str] = set()
    for i, o in enumerate(outputs):
        kept = {}
        for name, value in o.items():
            arr = np.asarray(value)
            if arr.dtype.name not in DTYPES:
                skipped.add(f"{name} ({arr.dtype.name})")
                continue
            kept[name] = arr
        size = sum(a.nbytes for a in kept.values())
        if out and total + size > limit:
            notes["outputs_truncated"] = (f"outputs of {i} of {len(outputs)} probes returned: the rest would "
                                          f"exceed {limit // limits.MiB} MiB per result")
            break
        total += size
        out.append(tensors_to_pb(kept))
    if skipped:
        notes["outputs_not_returned"] = sorted(skipped)
    return out


def result_to_pb(r: Any, device_id: str, started: float, finished: float) -> pb.Result:
    """agents.contract.DriverResult -> pb.Result."""
    notes: dict = {}
    outputs = bounded_outputs(r.outputs, notes)
    msg = pb.Result(
        device_id=device_id,
        runtime=pb.RuntimeInfo(
            name=r.runtime_name, version=r.runtime_version, ep=r.ep,
            options={str(k): str(v) for k, v in r.options.items()}, build=r.runtime_build,
        ),
        samples_ms=list(r.samples_ms),
        validity=pb.Validity(
            warmup_done=r.validity.warmup_done, min_runs_met=r.validity.min_runs_met,
            min_time_met=r.validity.min_time_met, stop_reason=r.validity.stop_reason,
            warnings=list(r.validity.warnings),
        ),
        outputs=outputs,
        started_unix=started,
        finished_unix=finished,
        details_json=json.dumps({**dict(r.details), **notes}, default=str),
    )
    # Absent measurements travel as NaN so "not measured" never reads as 0 ms.
    msg.load_ms = float("nan") if r.load_ms is None else float(r.load_ms)
    msg.first_run_ms = float("nan") if r.first_run_ms is None else float(r.first_run_ms)
    if r.memory is not None:
        msg.memory.CopyFrom(pb.Memory(
            peak_bytes=int(r.memory.peak_bytes), delta_bytes=int(r.memory.delta_bytes),
            method=r.memory.method, blind_spot=r.memory.blind_spot,
        ))
    if r.placement is not None:
        p = r.placement
        msg.placement.CopyFrom(pb.Placement(
            nodes_by_ep={k: int(v) for k, v in p.nodes_by_ep.items()},
            partitions_by_ep={k: int(v) for k, v in p.partitions_by_ep.items()},
            fallback_op_types={k: int(v) for k, v in p.fallback_op_types.items()},
            time_share_by_ep={k: float(v) for k, v in p.time_share_by_ep.items()},
            source=p.source,
        ))
        # Unset, not 0, where the source could not count (a fused subgraph's nodes).
        if p.nodes_total is not None:
            msg.placement.nodes_total = int(p.nodes_total)
        if p.cpu_fallback_nodes is not None:
            msg.placement.cpu_fallback_nodes = int(p.cpu_fallback_nodes)
        if p.fully_accelerated is not None:
            msg.placement.fully_accelerated = bool(p.fully_accelerated)
    if r.error is not None:
        msg.error.CopyFrom(pb.ErrorInfo(stage=r.error.stage, kind=r.error.kind, message=r.error.message))
    return msg


def error_result(device_id: str, stage: str, kind: str, message: str, now: float) -> pb.Result:
    msg = pb.Result(device_id=device_id, started_unix=now, finished_unix=now, details_json="{}")
    msg.load_ms = float("nan")
    msg.first_run_ms = float("nan")
    msg.error.CopyFrom(pb.ErrorInfo(stage=stage, kind=kind, message=message))
    msg.validity.stop_reason = "error"
    return msg


def nan_to_none(x: float) -> float | None:
    return None if x != x else float(x)


def result_from_pb(msg: pb.Result) -> dict[str, Any]:
    """pb.Result -> plain dict with numpy outputs (controller side)."""
    placement = None
    if msg.HasField("placement"):
        p = msg.placement
        placement = {
            "nodes_total": p.nodes_total if p.HasField("nodes_total") else None,
            "nodes_by_ep": dict(p.nodes_by_ep),
            "cpu_fallback_nodes": p.cpu_fallback_nodes if p.HasField("cpu_fallback_nodes") else None,
            "fallback_op_types": dict(p.fallback_op_types),
            "time_share_by_ep": dict(p.time_share_by_ep),
            "fully_accelerated": p.fully_accelerated if p.HasField("fully_accelerated") else None,
            "source": p.source,
            "partitions_by_ep": dict(p.partitions_by_ep),
        }
    memory = None
    if msg.HasField("memory"):
        memory = {
            "peak_bytes": msg.memory.peak_bytes,
            "delta_bytes": msg.memory.delta_bytes,
            "method": msg.memory.method,
            "blind_spot": msg.memory.blind_spot,
        }
    error = None
    if msg.HasField("error"):
        error = {"stage": msg.error.stage, "kind": msg.error.kind, "message": msg.error.message}
    try:
        details = json.loads(msg.details_json) if msg.details_json else {}
    except json.JSONDecodeError:
        details = {"unparsed": msg.details_json[:2000]}
    return {
        "device_id": msg.device_id,
        "runtime": {
            "name": msg.runtime.name, "version": msg.runtime.version,
            "ep": msg.runtime.ep, "options": dict(msg.runtime.options), "build": msg.runtime.build,
        },
        "load_ms": nan_to_none(msg.load_ms),
        "first_run_ms": nan_to_none(msg.first_run_ms),
        "samples_ms": list(msg.samples_ms),
        "memory": memory,
        "placement": placement,
        "validity": {
            "warmup_done": msg.validity.warmup_done,
            "min_runs_met": msg.validity.min_runs_met,
            "min_time_met": msg.validity.min_time_met,
            "stop_reason": msg.validity.stop_reason,
            "warnings": list(msg.validity.warnings),
        },
        "outputs": [tensors_from_pb(o) for o in msg.outputs],
        "error": error,
        "started_unix": msg.started_unix,
        "finished_unix": msg.finished_unix,
        "details": details,
    }


