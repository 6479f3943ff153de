"""Sustained-load analysis: latency over time in windows, steady state vs the
first minute, and where throttling sets in.

Time is the running sum of the samples themselves (the runs are back to
back, so this is the measurement's own clock, free of the loop's overhead).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

# A window whose median is this much slower than the first window's, and all
# windows after it too, marks throttling onset.
THROTTLE_FRACTION = 0.10


def windows(samples: Sequence[float], window_s: float) -> list[dict]:
    a = np.asarray(samples, dtype=np.float64)
    if a.size == 0 or window_s <= 0:
        return []
    t = np.cumsum(a) / 1e3  # seconds since the first measured run started
    idx = np.floor((t - a / 1e3) / window_s).astype(int)  # window of each run's start
    out = []
    for w in range(int(idx.max()) + 1):
        sel = a[idx == w]
        if sel.size == 0:
            continue
        out.append({"start_s": w * window_s, "n": int(sel.size), "p50_ms": float(np.median(sel)),
                    "p90_ms": float(np.percentile(sel, 90)), "mean_ms": float(sel.mean())})
    return out


def analyse(samples: Sequence[float], window_s: Optional[float] = None, first_s: float = 60.0) -> dict:
    """Windows, first-minute and steady-state figures, throttling onset."""
    a = np.asarray(samples, dtype=np.float64)
    total_s = float(a.sum()) / 1e3 if a.size else 0.0
    if window_s is None:
        window_s = max(1.0, total_s / 30.0)
    ws = windows(a, window_s)
    t = np.cumsum(a) / 1e3
    first = a[t <= first_s]
    # Steady state: everything after the first minute, or the last half of a
    # shorter run.
    steady = a[t > first_s] if total_s > 2 * first_s else a[t > total_s / 2]
    onset = None
    if len(ws) >= 3:
        base = ws[0]["p50_ms"]
        for i, w in enumerate(ws[1:], start=1):
            if all(x["p50_ms"] > base * (1 + THROTTLE_FRACTION) for x in ws[i:]):
                onset = w["start_s"]
                break
    def fig(x):
        return None if x.size == 0 else {"n": int(x.size), "p50_ms": float(np.median(x)),
                                          "p90_ms": float(np.percentile(x, 90))}
    first_fig, steady_fig = fig(first), fig(steady)
    slowdown = None
    if first_fig and steady_fig and first_fig["p50_ms"] > 0:
        slowdown = steady_fig["p50_ms"] / first_fig["p50_ms"] - 1
    return {"duration_s": total_s, "window_s": window_s, "windows": ws, "first_minute": first_fig,
            "steady_state": steady_fig, "steady_vs_first": slowdown, "throttling_onset_s": onset}
