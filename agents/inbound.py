"""What the agent accepts from the wire, checked in one place before anything
is queued, written or decoded: every identifier matched whole (`fullmatch`;
a `$` also matches before a final newline), every number finite and in range,
every count and size within its limit. Each refusal is one line naming the
field, the (shortened) value and the limit, and carries the gRPC status the
servicer answers with.

Pure functions of protocol messages and plain values; no gRPC context.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from harness._proto.v1 import agent_pb2 as pb
from harness.kernel import limits, wire
from harness.kernel.formats import MODEL_FORMATS
from harness.kernel.measure.policy import MeasurePolicy


class Refused(ValueError):
    """`code` is the gRPC status name (INVALID_ARGUMENT, RESOURCE_EXHAUSTED, ...)."""

    def __init__(self, message: str, code: str = "INVALID_ARGUMENT"):
        super().__init__(message)
        self.code = code


# -- identifiers ------------------------------------------------------------------------
# Each pattern is used with fullmatch only; none allows '/', '\\', whitespace,
# control characters or anything outside ASCII, and `..` is refused on top
# (see _ident), so no identifier can be read as a path or a second line.
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,199}")
DEVICE_ID = re.compile(r"[a-z][a-z0-9_]{0,31}:[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}")
DIGEST = re.compile(r"[0-9a-f]{64}")
RUNTIME = re.compile(r"[a-z][a-z0-9-]{0,31}")
VERSION = re.compile(r"(?:[0-9]{1,6}(?:\.[0-9]{1,6}){0,3}(?:-[A-Za-z0-9.]{1,40})?)?")
EP = re.compile(r"[a-z][a-z0-9_]{0,31}")
# ONNX tensor names are free text in the model; printable ASCII without spaces
# covers what exporters write ("input.1", "onnx::Gemm_0", "serving_default:0").
TENSOR_NAME = re.compile(r"[!-~]{1,256}")
LABEL_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
LABEL_VALUE = re.compile(r"[ -~]{0,256}")


def short(value: str, n: int = 60) -> str:
    """A value for an error line: shortened, and with control characters
    shown escaped (repr), so a hostile value cannot forge log lines."""
    return repr(value if len(value) <= n else value[:n] + "...")


def ident(field: str, value: str, pattern: re.Pattern, expected: str) -> str:
    if not pattern.fullmatch(value) or ".." in value:
        raise Refused(f"{field} {short(value)}: expected {expected}")
    return value


def job_id(value: str, field: str = "job_id") -> str:
    return ident(field, value, JOB_ID, "1-200 ASCII letters, digits and ._:+- starting with a letter or digit, "
                                       "without '..'")


def digest(value: str, field: str = "digest") -> str:
    return ident(field, value, DIGEST, "64 lowercase hex characters (sha256)")


def model_format(value: str, field: str = "format") -> str:
    if value not in MODEL_FORMATS:
        raise Refused(f"{field} {short(value, 40)}: expected one of {', '.join(sorted(MODEL_FORMATS))}")
    return value


# -- numbers ----------------------------------------------------------------------------
def seconds(field: str, value: float, hi: float, positive: bool = False) -> float:
    """A finite duration in [0, hi] (or (0, hi] when positive); NaN and
    infinities fail every comparison, so they are named first."""
    if not math.isfinite(value):
        raise Refused(f"{field}={value}: expected a finite number of seconds")
    if value < 0 or (positive and value == 0) or value > hi:
        lo = "above 0" if positive else "from 0"
        raise Refused(f"{field}={value:g}: expected {lo} up to {hi:g} seconds")
    return value


def count(field: str, value: int, hi: int, lo: int = 0) -> int:
    if not lo <= value <= hi:
        raise Refused(f"{field}: {value} given; expected {lo} to {hi} (limit {hi})")
    return value


def policy(m: pb.MeasurePolicy) -> MeasurePolicy:
    seconds("measure.warmup_s", m.warmup_s, limits.MAX_MEASURE_S)
    seconds("measure.min_s", m.min_s, limits.MAX_MEASURE_S)
    seconds("measure.max_s", m.max_s, limits.MAX_MEASURE_S, positive=True)
    if not math.isfinite(m.target_ci) or not 0 <= m.target_ci < 1:
        raise Refused(f"measure.target_ci={m.target_ci}: expected a fraction from 0 up to (not including) 1")
    for name in ("warmup_runs", "min_runs", "max_runs"):
        count(f"measure.{name}", getattr(m, name), limits.MAX_RUNS)
    if m.min_s > m.max_s:
        raise Refused(f"measure.min_s={m.min_s:g} exceeds measure.max_s={m.max_s:g}")
    if m.max_runs and m.max_runs < m.min_runs:
        raise Refused(f"measure.max_runs={m.max_runs} is below measure.min_runs={m.min_runs}")
    return wire.policy_from_pb(m)


# -- tensors ----------------------------------------------------------------------------
def tensor_bytes(field: str, t: pb.Tensor) -> int:
    """Check a probe tensor's name, dtype and shape against its data, with
    Python integers (numpy's int64 product overflows: 2**32 x 2**32 is 0)."""
    ident(f"{field}.name", t.name, TENSOR_NAME, "1-256 printable ASCII characters without spaces or '..'")
    if t.dtype not in wire.DTYPES:
        raise Refused(f"{field} {t.name!r}: dtype {short(t.dtype, 20)} is not one of {', '.join(sorted(wire.DTYPES))}")
    if len(t.shape) > limits.MAX_TENSOR_RANK:
        raise Refused(f"{field} {t.name!r}: shape has {len(t.shape)} dimensions, at most {limits.MAX_TENSOR_RANK}")
    elements = 1
    for d in t.shape:
        if d < 0:
            raise Refused(f"{field} {t.name!r}: shape {list(t.shape)[:8]} has a negative dimension")
        elements *= d
        if elements * np.dtype(t.dtype).itemsize > limits.MAX_PROBE_BYTES:
            raise Refused(f"{field} {t.name!r}: shape {list(t.shape)[:8]} holds more than the "
                          f"{limits.MAX_PROBE_BYTES // limits.MiB} MiB probe limit")
    need = elements * np.dtype(t.dtype).itemsize
    if need != len(t.data):
        raise Refused(f"{field} {t.name!r}: {len(t.data)} bytes do not hold {list(t.shape)} of {t.dtype}")
    return need


def probes(sets: Iterable[pb.TensorSet]) -> tuple[tuple[dict, ...], int]:
    """Decoded probe inputs and their bytes, within the documented limits."""
    sets = list(sets)
    count("probes", len(sets), limits.MAX_PROBES)
    total = 0
    for i, ts in enumerate(sets):
        count(f"probes[{i}].tensors", len(ts.tensors), limits.MAX_PROBE_TENSORS)
        names = set()
        for t in ts.tensors:
            total += tensor_bytes(f"probes[{i}].tensors", t)
            if t.name in names:
                raise Refused(f"probes[{i}].tensors: {t.name!r} appears twice")
            names.add(t.name)
    if total > limits.MAX_PROBE_BYTES:
        raise Refused(f"probes: {total} bytes, at most {limits.MAX_PROBE_BYTES // limits.MiB} MiB a job "
                      "(the documented probe limit)", "RESOURCE_EXHAUSTED")
    return tuple(wire.tensors_from_pb(ts) for ts in sets), total


# -- messages ---------------------------------------------------------------------------
def labels(values: Mapping[str, str]) -> None:
    count("labels", len(values), limits.MAX_LABELS)
    for k, v in values.items():
        ident("labels key", k, LABEL_KEY, "1-64 ASCII letters, digits and _.- starting with a letter")
        if not LABEL_VALUE.fullmatch(v):
            raise Refused(f"labels[{k!r}] {short(v)}: expected at most 256 printable ASCII characters")


@dataclass(frozen=True)
class Admitted:
    """A job that passed every check: the message without its probes (what
    the job keeps while it waits), the decoded probes, the measurement policy,
    and the fingerprint that tells a re-sent job from another one under the
    same id."""

    job: pb.Job
    probes: tuple
    probe_bytes: int
    measure: MeasurePolicy
    fingerprint: str


def job(j: pb.Job) -> Admitted:
    job_id(j.job_id)
    ident("device_id", j.device_id, DEVICE_ID, "DRIVER:LOCAL_ID in ASCII letters, digits and ._:@+-")
    count("models", len(j.models), limits.MAX_MODELS_PER_JOB, lo=1)
    for i, m in enumerate(j.models):
        digest(m.digest, f"models[{i}].digest")
        model_format(m.format, f"models[{i}].format")
    t = j.target
    ident("target.runtime", t.runtime, RUNTIME, "a runtime name such as onnxruntime, onnxruntime-web or coreml")
    if t.version:
        ident("target.version", t.version, VERSION, "a version such as 1.20 or 1.20.1")
    ident("target.ep", t.ep, EP, "an execution provider's short name such as cpu, nnapi or webgpu")
    seconds("timeout_s", j.timeout_s, limits.MAX_JOB_TIMEOUT_S, positive=True)
    measure = policy(j.measure)
    labels(j.labels)
    decoded, nbytes = probes(j.probes)
    return Admitted(without_probes(j), decoded, nbytes, measure, fingerprint(j))


def without_probes(j: pb.Job) -> pb.Job:
    """The job as it waits in a queue: everything but its probes (which are
    decoded once, into the arrays the driver gets)."""
    return pb.Job(job_id=j.job_id, device_id=j.device_id, models=j.models, target=j.target, measure=j.measure,
                  timeout_s=j.timeout_s, labels=j.labels)


def fingerprint(j: pb.Job) -> str:
    """sha256 of the job as it would run: everything but its free labels.
    The probes are hashed tensor by tensor, without copying the whole job."""
    h = hashlib.sha256()
    head = without_probes(j)
    head.labels.clear()
    h.update(head.SerializeToString(deterministic=True))
    for ts in j.probes:
        h.update(b"\0set")
        for t in ts.tensors:
            h.update(t.SerializeToString(deterministic=True))
    return h.hexdigest()


def find_missing(digests: Iterable[str]) -> list[str]:
    digests = list(digests)
    count("digests", len(digests), limits.MAX_FIND_DIGESTS)
    return [digest(d, f"digests[{i}]") for i, d in enumerate(digests)]


def header(h: pb.ModelHeader, max_model_bytes: int) -> None:
    digest(h.digest, "header.digest")
    model_format(h.format, "header.format")
    if h.size_bytes > max_model_bytes:
        raise Refused(f"header.size_bytes={h.size_bytes}: above this agent's model limit of {max_model_bytes} "
                      "bytes (max_model_mb)", "RESOURCE_EXHAUSTED")
    if h.size_bytes == 0:
        raise Refused("header.size_bytes=0: expected the model's size in bytes")
