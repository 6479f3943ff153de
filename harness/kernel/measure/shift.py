"""How much slower one set of sessions is than another: the verdict statistic
of `harness compare`.

A comparison asks whether the *sessions* of the new measurement are slower
than those of the old one. Each session has its own percentile (its p50, its
p90); the shift between the two sets is the Hodges–Lehmann estimate on log
latency — the median of all (new session, old session) differences, the
shift that a rank test of the sessions (Mann–Whitney) would call zero — and
for interleaved A/B pairs the one-sample Hodges–Lehmann estimate of the
pairs' differences (the median of their Walsh averages).

Why not the ratio of the two mixtures' percentiles, which the headline
reports? On shared hardware a session is often in one of a few states (an
idle core or a busy one, a high clock or a low one): here the digits-sized
model ran at 0.014 ms a run in most sessions and 0.021–0.028 ms in a few.
The mixture's median then sits in the fast state unless more than half of
the weight is in the slow one, so a bootstrap that redraws the sessions
flips it from one state to the other in a few per cent of its rounds, and
the interval of the ratio spans both states (×0.64–×1.48 for an unchanged
model) — a regression of 30 % could not be told. The median of session
differences moves by one step per session that changes state, so it stays
with the state most sessions share and its interval shrinks with the number
of sessions, as the sessions' evidence does. (Hodges & Lehmann, "Estimates
of location based on rank tests", Ann. Math. Statist. 1963; its efficiency
is 0.955 of the mean's for normal data and much higher for heavy tails.)

The interval comes from the same hierarchical bootstrap as the headline's
(harness.kernel.measure.sessions): sessions redrawn with replacement on each
side (the same draws for both sides of a pair), each drawn session's runs
reweighted with Bayesian-bootstrap weights over at most GRID representative
runs, the statistic recomputed from the resampled sessions' percentiles.
Pure: samples in, figures out, an injectable random generator.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from harness.kernel import limits
from harness.kernel.measure.sessions import _grid, _weights_like_gamma


def session_quantiles(sessions: Sequence[np.ndarray], qs: Sequence[float]) -> np.ndarray:
    """Each session's own qs-quantiles (numpy's linear method): (sessions, qs)."""
    return np.array([[float(np.percentile(s, 100 * q)) for q in qs] for s in sessions])


def session_replicates(sessions: Sequence[np.ndarray], qs: Sequence[float], rng: np.random.Generator,
                       rounds: int) -> np.ndarray:
    """Each session's qs-quantiles under `rounds` Bayesian-bootstrap
    reweightings of its runs: (rounds, sessions, qs). Inverted-CDF quantiles
    of the reweighted grid, as sessions.bootstrap takes them."""
    qs_arr = np.asarray(qs, dtype=np.float64)
    out = np.empty((rounds, len(sessions), len(qs)))
    for i, s in enumerate(sessions):
        grid = _grid(np.asarray(s, dtype=np.float64))  # sorted
        shape = np.full((rounds, grid.size), len(s) / grid.size)
        w = _weights_like_gamma(shape, rng)
        cum = np.cumsum(w, axis=1)
        cum /= np.where(cum[:, -1:] > 0, cum[:, -1:], 1.0)
        idx = np.minimum((cum[:, :, None] < qs_arr[None, None, :] - 1e-12).sum(axis=1), grid.size - 1)
        out[:, i, :] = grid[idx]
    return out


def hl_two(old_logs: np.ndarray, new_logs: np.ndarray) -> np.ndarray:
    """Hodges–Lehmann shift new − old over the last axis (sessions): the
    median of every pairwise difference. Works on (..., k_old) and (..., k_new)."""
    d = new_logs[..., None, :] - old_logs[..., :, None]
    return np.median(d.reshape(*d.shape[:-2], -1), axis=-1)


def hl_one(diffs: np.ndarray) -> np.ndarray:
    """One-sample Hodges–Lehmann estimate over the last axis: the median of
    the Walsh averages (d_i + d_j) / 2, i <= j."""
    k = diffs.shape[-1]
    i, j = np.triu_indices(k)
    return np.median((diffs[..., i] + diffs[..., j]) / 2.0, axis=-1)


def shift(old: Sequence[np.ndarray], new: Sequence[np.ndarray], qs: Sequence[float], rng: np.random.Generator,
          paired: bool = False, rounds: int = limits.COMPARE_BOOTSTRAP) -> dict:
    """The shift (new over old, as a ratio) of each of `qs` between two sets
    of sessions (two or more on each side), with its bootstrap replicates.

    Returns {"ratio": [per q], "replicates": (rounds, qs) ratios, "old_spread",
    "new_spread": (qs,) variances of each side's replicated median session
    figure (for the interval's small-sample widening)}. `paired`: session k
    of old and session k of new ran back to back (the first min(k) pairs)."""
    if paired:
        k = min(len(old), len(new))
        old, new = list(old)[:k], list(new)[:k]
    lo_est = np.log(np.maximum(session_quantiles(old, qs), 1e-300))  # (k_old, qs)
    ln_est = np.log(np.maximum(session_quantiles(new, qs), 1e-300))
    lo_rep = np.log(np.maximum(session_replicates(old, qs, rng, rounds), 1e-300))  # (rounds, k_old, qs)
    ln_rep = np.log(np.maximum(session_replicates(new, qs, rng, rounds), 1e-300))
    top_old = rng.integers(0, len(old), (rounds, len(old)))
    top_new = top_old if paired else rng.integers(0, len(new), (rounds, len(new)))
    rows = np.arange(rounds)[:, None]
    a, b = lo_rep[rows, top_old], ln_rep[rows, top_new]  # (rounds, k, qs)
    if paired:
        est = hl_one((ln_est - lo_est).T)
        rep = hl_one(np.moveaxis(b - a, 1, 2))
    else:
        est = hl_two(lo_est.T, ln_est.T)
        rep = hl_two(np.moveaxis(a, 1, 2), np.moveaxis(b, 1, 2))
    return {"ratio": [float(x) for x in np.exp(est)], "replicates": np.exp(rep),
            "old_spread": np.median(a, axis=1).var(axis=0), "new_spread": np.median(b, axis=1).var(axis=0)}
