"""Peak memory of a perf_test run, and what that figure cannot see.

perf_test's `Peak working set size` is getrusage(RUSAGE_SELF).ru_maxrss × 1024
of its own process (onnxruntime/test/perftest/posix/utils.cc); the delta is
taken over the same runner's peak with a one-node model. Memory an
accelerator keeps outside the process is not in it: NNAPI drivers run in the
vendor's neuralnetworks HAL service process (Android's NNAPI HAL is a
separate binderised service), and QNN/SNPE's DSP and GPU buffers are the
DSP's and the GPU driver's.
"""

from __future__ import annotations

from typing import Optional

from agents.contract import Memory

METHOD = "onnxruntime_perf_test's peak working set (getrusage ru_maxrss of the runner process)"
BLIND_SPOTS = {
    "nnapi": "memory the NNAPI driver holds in the vendor's neuralnetworks HAL service process",
    "qnn": "memory the QNN backend holds on the DSP/HTP and in the GPU driver",
    "snpe": "memory SNPE holds on the DSP and in the GPU driver",
    "webgpu": "GPU memory held by the GPU driver",
}


def memory_from(peak: int, base: Optional[int], why: str, ep: str) -> Memory:
    """The record's memory: peak, delta over the one-node baseline (or why
    there is none), the method and the EP's blind spot."""
    method = METHOD
    if base is not None:
        method += "; delta over the same runner's peak with a one-node model"
        delta = peak - base
        if delta < 0:
            method += " (below that baseline: no measurable increase, reported as 0)"
            delta = 0
    else:
        method += f"; delta unknown, the one-node baseline run failed: {why}"
        delta = 0
    return Memory(peak_bytes=int(peak), delta_bytes=int(delta), method=method, blind_spot=BLIND_SPOTS.get(ep, ""))
