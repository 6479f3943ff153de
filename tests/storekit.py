"""Records shaped as a run writes them, for the store tests."""

import numpy as np


def record(key: str, candidate: str = "m", profile: str = "p", target: str = "onnxruntime@any/cpu",
           samples=None, error=None, seed: int = 0) -> dict:
    if samples is None and error is None:
        samples = (5.0 + np.random.default_rng(seed).random(50)).tolist()
    return {"job": key, "candidate": candidate, "technique": "baseline",
            "device": {"id": "host:vm", "agent": "local", "profile": profile, "platform": "linux", "facts": {}},
            "runtime": {"name": "onnxruntime", "version": "1.22.0", "ep": "cpu", "options": {}},
            "target": target, "timing": {"samples_ms": samples or [], "p50_ms": float(np.median(samples))
                                         if samples else None},
            "memory": {"peak_bytes": 1 << 20, "delta_bytes": 1 << 19, "method": "VmHWM"} if samples else None,
            "placement": None, "parity": None, "validity": None, "error": error}
