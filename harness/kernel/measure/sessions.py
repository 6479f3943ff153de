"""Statistics of a job measured as several independent sessions.

A session is one runner process (one page, one perf_test process) that warms
up and measures on its own. On shared hardware the sessions of one job differ
more than the runs inside one session do (which core, its frequency, cache and
page placement, the neighbours), so an interval computed from one session's
runs, as if they were independent draws, is too narrow for a verdict across
runs. pyperf spawns worker processes for the same reason.

Here the sessions are the unit of evidence:

* the headline percentiles are those of the sessions' mixture, every session
  weighing the same (numpy's default linear interpolation, generalised to
  weights: the sample at rank i sits at (weight below it) / (total weight -
  the last sample's weight); with equal sessions this is exactly
  `numpy.percentile` of all samples);
* their intervals come from a **hierarchical bootstrap**: resample the
  sessions with replacement, then the runs inside each chosen session, and
  take the percentile of the pooled resample (Saravanan et al., "Application
  of the hierarchical bootstrap to multi-level data in neuroscience", 2020).
  Inside a session the resample's counts are Gamma weights (the Bayesian
  bootstrap, Rubin 1981) over at most GRID representative runs, so the cost
  is bounded whatever the session length;
* a percentile bootstrap over S top-level units is too narrow for small S
  (its spread is that of a divide-by-S variance, and its quantiles are
  normal ones): the interval's two arms are widened by
  t(0.975, S-1) / z(0.975) * sqrt(S / (S-1)), Student's small-sample factor.
  Two sessions give a very wide interval, as they should.

Everything is computed on log latency (ratios are what is compared) and is
pure: samples in, figures out, with an injectable random generator.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from harness.kernel import limits
from harness.kernel.measure import stats

# Student's t quantiles for df = 1..30 (any statistics table, e.g. NIST/SEMATECH
# e-Handbook of Statistical Methods, 1.3.6.7.2); beyond 30 the Cornish-Fisher
# term z + (z^3 + z) / (4 df) is within 0.1 % of the exact value.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
_T99 = (31.821, 6.965, 4.541, 3.747, 3.365, 3.143, 2.998, 2.896, 2.821, 2.764, 2.718, 2.681, 2.650, 2.624, 2.602,
        2.583, 2.567, 2.552, 2.539, 2.528, 2.518, 2.508, 2.500, 2.492, 2.485, 2.479, 2.473, 2.467, 2.462, 2.457)
_Z = {0.975: 1.959964, 0.99: 2.326348}
_TABLE = {0.975: _T975, 0.99: _T99}


def t_quantile(p: float, df: float) -> float:
    """Student's t quantile for p in (0.975, 0.99) at df >= 1 (fractional df
    interpolated in 1/df, which is near linear there)."""
    table, z = _TABLE[p], _Z[p]
    df = max(1.0, float(df))
    if df >= 30:
        return z + (z ** 3 + z) / (4 * df)
    lo = int(math.floor(df))
    if lo == df:
        return table[lo - 1]
    hi_v = table[lo] if lo < 30 else z + (z ** 3 + z) / 120
    w = (1 / lo - 1 / df) / (1 / lo - 1 / (lo + 1))
    return table[lo - 1] + w * (hi_v - table[lo - 1])


def widening(sessions: float, df: Optional[float] = None, p: float = 0.975) -> float:
    """How much wider than a percentile bootstrap's arms an interval over
    `sessions` top-level units must be (see the module docstring)."""
    s = float(sessions)
    if s < 2:
        return math.inf
    return t_quantile(p, s - 1 if df is None else df) / _Z[p] * math.sqrt(s / (s - 1))


def split(samples: Sequence[float], counts: Sequence[int]) -> list[np.ndarray]:
    """The runs of each session from a record's `samples_ms` (session after
    session) and its sessions' run counts; one session when counts is empty."""
    a = np.asarray(samples, dtype=np.float64)
    if not counts:
        return [a] if a.size else []
    edges = np.cumsum([0] + [int(c) for c in counts])
    if edges[-1] != a.size:
        raise ValueError(f"sessions hold {int(edges[-1])} runs but there are {a.size} samples")
    return [a[edges[i]:edges[i + 1]] for i in range(len(counts))]


def of_timing(timing: Optional[dict]) -> list[np.ndarray]:
    """The sessions of a record's `timing` block (older records and single
    sessions: one)."""
    t = timing or {}
    counts = [s.get("n") or 0 for s in (t.get("sessions") or [])]
    return [x for x in split(t.get("samples_ms") if t.get("samples_ms") is not None else [], counts) if x.size]


def _weights(sessions: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    values = np.concatenate(sessions)
    weights = np.concatenate([np.full(s.size, 1.0 / s.size) for s in sessions])
    order = np.argsort(values, kind="mergesort")
    return values[order], weights[order]


def weighted_quantiles(values_sorted: np.ndarray, weights: np.ndarray, qs: Sequence[float]) -> list[float]:
    """Quantiles of sorted values with weights (numpy's linear method
    generalised, see the module docstring)."""
    n = values_sorted.size
    if n == 1:
        return [float(values_sorted[0])] * len(qs)
    below = np.cumsum(weights) - weights
    span = below[-1]
    pos = below / span if span > 0 else np.linspace(0, 1, n)
    return [float(np.interp(q, pos, values_sorted)) for q in qs]


def mixture_quantiles(sessions: Sequence[np.ndarray], qs: Sequence[float]) -> list[float]:
    """The qs-quantiles of the sessions' mixture, each session weighing the same."""
    v, w = _weights(sessions)
    return weighted_quantiles(v, w, qs)


def _grid(s: np.ndarray) -> np.ndarray:
    """At most GRID representative runs of a session: its sorted runs, or its
    quantiles at the centres of GRID equal slices."""
    s = np.sort(s)
    if s.size <= limits.SESSION_GRID:
        return s
    pos = (np.arange(limits.SESSION_GRID) + 0.5) / limits.SESSION_GRID * (s.size - 1)
    return np.interp(pos, np.arange(s.size), s)


def _weights_like_gamma(shape: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random weights with the mean and variance of Gamma(shape) for shape 0
    or >= 1: shape * max(0, 1 + (E - 1) / sqrt(shape)), E ~ Exp(1) — exactly
    Gamma(1) at shape 1, a fifth of the cost of numpy's Gamma sampler, and
    only the weights' spread matters for the resampled quantile. Shape 0
    gives 0 (a session not drawn this round)."""
    e = rng.standard_exponential(shape.shape)
    a = np.maximum(shape, 1.0)
    return np.where(shape > 0, np.maximum(a + (e - 1.0) * np.sqrt(a), 0.0), 0.0)


def bootstrap(sessions: Sequence[np.ndarray], qs: Sequence[float], rng: np.random.Generator,
              rounds: int = limits.SESSION_BOOTSTRAP, chunk: int = 200, top: Optional[np.ndarray] = None
              ) -> np.ndarray:
    """Hierarchical-bootstrap replicates of the mixture's qs-quantiles:
    shape (rounds, len(qs)), inverted-CDF quantiles of each pooled resample.

    Top level: k sessions drawn with replacement from the k there are. Lower
    level: each drawn copy of a session resamples its runs; the resample's
    counts are drawn as Gamma weights (the Bayesian bootstrap, Rubin 1981,
    whose weights have the multinomial's mean and, to O(1/n), its variance),
    one Gamma(copies x runs/size)-like weight per representative run, normalised so each
    drawn copy of a session weighs 1/k. Vectorised over rounds; no loop per
    session.

    `top` fixes the top-level draws (shape (rounds, k), session indices): two
    sides of an interleaved A/B given the same draws resample their pairs
    together, so what the pairs share cancels in the ratio."""
    grids = [_grid(np.asarray(s, dtype=np.float64)) for s in sessions]
    k = len(grids)
    sizes = np.array([g.size for g in grids])
    per_point = np.repeat(np.array([len(s) for s in sessions], dtype=np.float64) / sizes, sizes)
    owner = np.repeat(np.arange(k), sizes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    values = np.concatenate(grids)
    order = np.argsort(values, kind="mergesort")
    values_sorted = values[order]
    qs_arr = np.asarray(qs, dtype=np.float64)
    out = np.empty((rounds, len(qs)))
    if top is None:
        top = rng.integers(0, k, (rounds, k))
    for r0 in range(0, rounds, chunk):
        m = min(chunk, rounds - r0)
        draws = top[r0:r0 + m]
        copies = (draws[:, :, None] == np.arange(k)).sum(axis=1).astype(np.float64)  # (m, k)
        shape = copies[:, owner] * per_point  # (m, points); 0 where a session was not drawn
        g = _weights_like_gamma(shape, rng)
        block = np.add.reduceat(g, starts, axis=1)  # (m, k): each session's total
        w = g / np.where(block > 0, block, 1.0)[:, owner] * (copies[:, owner] / k)
        cum = np.cumsum(w[:, order], axis=1)
        cum /= cum[:, -1:]
        idx = np.minimum((cum[:, :, None] < qs_arr[None, None, :] - 1e-12).sum(axis=1), values.size - 1)
        out[r0:r0 + m] = values_sorted[idx]
    return out


def arms(estimate: float, replicates: np.ndarray, factor: float, p_lo: float = 0.025,
         p_hi: float = 0.975) -> tuple[float, float]:
    """An interval around `estimate` from bootstrap replicates (positive
    values), in log space: the replicates' arms about their median, each
    widened by `factor`. Measured about the replicates' own median, so the
    estimator the replicates use need not be the headline's."""
    lr = np.log(np.maximum(replicates, 1e-300))
    mid = float(np.median(lr))
    lo_arm, hi_arm = mid - float(np.quantile(lr, p_lo)), float(np.quantile(lr, p_hi)) - mid
    e = math.log(max(estimate, 1e-300))
    if not math.isfinite(factor):
        return 0.0, math.inf
    return math.exp(e - factor * lo_arm), math.exp(e + factor * hi_arm)


def percentile_ci(sessions: Sequence[np.ndarray], q: float, rng: np.random.Generator,
                  rounds: int = limits.SESSION_BOOTSTRAP) -> Optional[tuple[float, float, float]]:
    """(estimate, lo, hi): the mixture's q-quantile and its hierarchical 95 %
    interval; None with fewer than two sessions."""
    ses = [np.asarray(s, dtype=np.float64) for s in sessions if len(s)]
    if len(ses) < 2:
        return None
    est = mixture_quantiles(ses, [q])[0]
    lo, hi = arms(est, bootstrap(ses, [q], rng, rounds)[:, 0], widening(len(ses)))
    return est, lo, hi


def log_sigma(values: Sequence[float]) -> Optional[float]:
    """Standard deviation of log values (ddof 1): the relative between-session
    variation of a statistic; None below two values."""
    v = np.log(np.asarray([x for x in values if x and x > 0], dtype=np.float64))
    return float(v.std(ddof=1)) if v.size >= 2 else None


def summarize(sessions: Sequence[Sequence[float]], rng: Optional[np.random.Generator] = None,
              rounds: int = limits.SESSION_BOOTSTRAP) -> dict:
    """The record's timing statistics over several sessions: the keys of
    `stats.summarize`, from the mixture (every session weighing the same),
    intervals and bounds from the hierarchical bootstrap, and `ci_method`."""
    ses = [np.asarray(s, dtype=np.float64) for s in sessions if len(s)]
    if len(ses) < 2:
        out = stats.summarize(ses[0] if ses else [])
        out["ci_method"] = "order statistics"
        return out
    rng = rng if rng is not None else np.random.default_rng(0)
    pooled = np.sort(np.concatenate(ses))
    out: dict = {"n": int(pooled.size)}
    names = [k for k, _ in stats.PERCENTILES]
    qs = [p for _, p in stats.PERCENTILES]
    est = mixture_quantiles(ses, qs)
    # A tail percentile is reported only where the pooled runs could give it
    # an interval at all (the same rule as one session's).
    shown = {name: p == 0.5 or pooled.size >= stats.min_samples_for(p) for name, p in stats.PERCENTILES}
    for name, e in zip(names, est):
        out[name] = e if shown[name] else None
    out["mean_ms"] = float(np.mean([s.mean() for s in ses]))
    out["std_ms"] = float(pooled.std(ddof=1))
    out["min_ms"], out["max_ms"] = float(pooled[0]), float(pooled[-1])
    reps = bootstrap(ses, [0.9, 0.99], rng, rounds)
    k95, k99 = widening(len(ses)), widening(len(ses), p=0.99)
    for col, (name, p) in enumerate((("p90", 0.9), ("p99", 0.99))):
        e = out[f"{name}_ms"]
        if e is None:
            out[f"{name}_ci_ms"] = out[f"{name}_bound_ms"] = None
            continue
        out[f"{name}_ci_ms"] = list(arms(e, reps[:, col], k95))
        # One-sided 99 % upper bound: the upper arm at 99 %, widened likewise.
        out[f"{name}_bound_ms"] = arms(e, reps[:, col], k99, 0.01, 0.99)[1]
    out["ci_method"] = "hierarchical bootstrap"
    return out


def relative_half_width(ci: Optional[Sequence[float]], estimate: Optional[float]) -> Optional[float]:
    if not ci or not estimate or estimate <= 0 or not all(math.isfinite(x) for x in ci):
        return None
    return (ci[1] - ci[0]) / 2 / estimate


def stop_reason(sessions: Sequence[Sequence[float]], planned: int, target_ci: float, max_s: float,
                measured_s: float, last_s: float, rng: Optional[np.random.Generator] = None
                ) -> Optional[str]:
    """After a finished session: None to measure another, or why the job is
    done. `planned` sessions always run; after them the job stops once the
    p90's hierarchical interval is within ±target_ci (``ci_reached``), when
    target_ci is 0 (``sessions_done``), when another session like the last
    one would pass max_s of measured time in all (``max_s``), or at
    MAX_SESSIONS (``max_sessions``)."""
    k = len(sessions)
    if k < planned:
        return None
    if target_ci <= 0:
        return "sessions_done"
    got = percentile_ci(sessions, 0.9, rng if rng is not None else np.random.default_rng(0))
    if got is not None:
        half = relative_half_width(got[1:], got[0])
        if half is not None and half <= target_ci:
            return "ci_reached"
    if k >= limits.MAX_SESSIONS:
        return "max_sessions"
    if measured_s + last_s > max_s:
        return "max_s"
    return None
