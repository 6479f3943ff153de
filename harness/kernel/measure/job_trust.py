"""A job's trust over several sessions: only what moves its headline.

Each session is checked on its own for drift and disturbance
(`trust.finding`). On shared hardware such findings are common and real: a
neighbour on the other core, a frequency step, a page that takes a
garbage collection. A flag for every one of them would flag every row, so a
session's finding makes the *job* unstable only when it moves the job's
headline, the p50 and p90 of the sessions' mixture (`sessions`):

* a finding splits its session into two regimes, the usual runs and the
  affected ones (the runs after a drift's change point, a disturbance's odd
  stretches);
* for each regime, the job is recomputed as if that session had measured
  only that regime: the mixture's p50 and p90 and their hierarchical 95 %
  intervals (the same bootstrap and small-sample widening as the headline's);
* the finding moves the headline when, for either regime, the reported p50
  or p90 lies outside that interval (by more than two timer ticks: each of
  the two figures compared may be off by one on a quantised clock) and
  more than trust.EFFECT from that estimate. The interval is the
  counterfactual's, not the headline's own: a disturbance widens the
  interval it sits in, and would hide itself.

A finding whose regimes both leave the headline inside those intervals is
variation the sessions already show, and the interval already carries: it is
kept as a note (the job's `validity.warnings`, and the session's own
`stable` / `instability` in `timing.sessions`), not a flag. A hog that
takes the core for part of one session, while the other sessions agree,
moves the p90 far outside the interval the quiet regime alone would give,
and is flagged.

One session (`sessions=1`) has no such interval to compare with: its
order-statistics interval assumes one stationary run, so any drift or
material disturbance of it stays a problem (`trust.problems`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from harness.kernel.measure import repeats, stats, trust
from harness.kernel.measure import sessions as S

# The headline figures a finding is judged on.
HEADLINE = (("p50", 0.5), ("p90", 0.9))
# Timer ticks two compared figures may differ by from rounding alone.
TICKS = 2


@dataclass
class Judgement:
    findings: list[Optional[trust.Finding]] = field(default_factory=list)  # per session
    problems: list[str] = field(default_factory=list)  # what makes the job unstable
    notes: list[str] = field(default_factory=list)  # findings kept as evidence, not flags


def _moved(reported: list[float], ses: list[np.ndarray], tick: float, seed: int
           ) -> Optional[tuple[str, float, float, float, float]]:
    """The headline figure that lies outside this set of sessions'
    interval, as (name, estimate, lo, hi, reported); the one moved most.
    Its own generator: each verdict is the same whatever else was judged."""
    qs = [q for _, q in HEADLINE]
    est = S.mixture_quantiles(ses, qs)
    reps = S.bootstrap(ses, qs, np.random.default_rng(seed))
    k = S.widening(len(ses))
    worst, worst_by = None, 0.0
    for col, ((name, _), h, e) in enumerate(zip(HEADLINE, reported, est)):
        lo, hi = S.arms(e, reps[:, col], k)
        beyond = max(lo - h, h - hi) - TICKS * tick
        by = abs(h - e) / e if e > 0 else 0.0
        if beyond > 0 and by > trust.EFFECT and by > worst_by:
            worst, worst_by = (name, e, lo, hi, h), by
    return worst


def judge(sessions: Sequence[np.ndarray], tick: float = 0.0, seed: int = 0) -> Judgement:
    """Each session's finding, and whether it moves the job's headline
    (module docstring). `sessions` in order, empty ones kept (they keep the
    numbering); at least two non-empty. `tick`: the timer's resolution."""
    full = [i for i, s in enumerate(sessions) if s.size]
    reported = S.mixture_quantiles([sessions[i] for i in full], [q for _, q in HEADLINE])
    out = Judgement()
    for i, s in enumerate(sessions):
        f = trust.finding(s) if s.size >= trust.P90_MIN_SAMPLES else None
        out.findings.append(f)
        if f is None:
            continue
        moved = None
        for regime, part in f.regimes(s):
            if part.size < trust.P90_MIN_SAMPLES:
                continue  # too few runs to stand for the session
            got = _moved(reported, [part if j == i else sessions[j] for j in full], tick, seed)
            if got:
                moved = (regime, *got)
                break
        if moved:
            regime, name, e, lo, hi, h = moved
            out.problems.append(
                f"session {i + 1}: {f.message}; it moves the job's headline: had this session measured only its "
                f"{regime}, the job's {name} would be {e:.4g} ms (95% interval {lo:.4g}-{hi:.4g} ms), not the "
                f"{h:.4g} ms reported")
        else:
            out.notes.append(
                f"session {i + 1}: {f.message} (a note, not unstable: with either of this session's regimes "
                f"alone the job's p50 and p90 intervals still hold the {reported[0]:.4g} and {reported[1]:.4g} ms "
                "reported)")
    return out


def figures(s: np.ndarray) -> dict:
    """One session's own figures (numpy's default percentiles)."""
    if s.size == 0:
        return {"p50_ms": None, "p90_ms": None, "mean_ms": None, "min_ms": None, "max_ms": None}
    p50, p90 = np.percentile(s, [50, 90])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "mean_ms": float(s.mean()), "min_ms": float(s.min()),
            "max_ms": float(s.max())}


def describe(samples: Sequence[float], entries: Sequence[dict], target_ci: Optional[float] = None,
             stop_reason: Optional[str] = None, rng: Optional[np.random.Generator] = None,
             tick: Optional[float] = None) -> tuple[dict, list[str], list[str]]:
    """A record's timing statistics, the problems that make it unstable and
    the notes that do not, from its samples (session after session) and its
    sessions' entries ({n, ...}; none or one: a single session, judged as
    one run by `trust.problems`).

    With several sessions: each session's drift or disturbance is a problem
    only when it moves the headline (`judge`), else a note; the pooled runs
    are checked for their count, and the job for its target: stopped at
    max_s or MAX_SESSIONS with the p90's hierarchical interval wider than
    ±target_ci. `timing.sessions` gets each session's figures and its own
    stability, `timing.between_sessions` how much they differ. `tick`: the
    timer's resolution (None: the step of a quantised clock, where the
    samples show one)."""
    a = np.asarray(samples, dtype=np.float64)
    ses = S.split(a, [e.get("n") or 0 for e in entries]) if entries else ([a] if a.size else [])
    if sum(1 for x in ses if x.size) <= 1:
        timing = stats.summarize(a)
        timing["ci_method"] = "order statistics"
        problems = trust.problems(a, stop_reason=stop_reason, target_ci=target_ci) if a.size else []
        if entries:
            timing["sessions"] = [{**e, **figures(x)} for e, x in zip(entries, ses)]
        return timing, problems, []
    full = [x for x in ses if x.size]
    timing = S.summarize(full, rng)
    verdict = judge(ses, stats.resolution_of(a, tick))
    problems = list(verdict.problems)
    per = [{**e, **figures(x), "stable": f is None, "instability": [f.message] if f else []}
           for e, x, f in zip(entries, ses, verdict.findings)]
    if a.size < trust.P90_MIN_SAMPLES:
        problems += trust.problems(a)
    if stop_reason in ("max_s", "max_sessions") and target_ci:
        half = S.relative_half_width(timing.get("p90_ci_ms"), timing.get("p90_ms"))
        if half is None or half > target_ci:
            got = "no interval" if half is None else f"±{100 * half:.1f}%"
            problems.append(f"target interval not reached: stopped at {stop_reason} after {len(full)} sessions with "
                            f"the p90's hierarchical 95% interval at {got} (target ±{100 * target_ci:.1f}%)")
    between = {k: v for k, v in repeats.analyse(full).items() if k != "session_p50_ms"}
    between["p50_cv"] = S.log_sigma([p["p50_ms"] for p in per if p["p50_ms"]])
    between["p90_cv"] = S.log_sigma([p["p90_ms"] for p in per if p["p90_ms"]])
    timing["sessions"] = per
    timing["between_sessions"] = between
    return timing, problems, verdict.notes
