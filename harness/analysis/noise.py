"""The noise floor of a device target: how far noise alone moves a latency
between two measurements, learnt from the store.

Two parts, both on log latency (so they are relative), per device profile x
runtime target x model size class, for the p50 and the p90 apart:

* **between sessions** (sigma): how much the sessions of one job differ —
  the pooled standard deviation of the sessions' own figures about their
  record's mean, over every stored record with two or more sessions
  (degrees of freedom summed);
* **between runs** (tau): what two runs of the *same* model (same digest,
  same environment fingerprint) differ by beyond what their sessions
  explain — the variance of those runs' means less sigma^2 / sessions,
  pooled over every model measured in two or more runs (the compared runs
  themselves left out, or a change would explain itself away);
* **between pairs** (sigma_pair): how much the ratio of two models measured
  in the same round of one run (the scheduler interleaves every job's
  sessions ABBA) varies from round to round — the pooled deviation of the
  log ratio of session k of one candidate to session k of the next, over
  disjoint pairs of candidates of similar speed in each stored run. What
  two interleaved sessions share (drift, neighbours) cancels in it.

The floor of a comparison is the 95 % band of that noise for its design.
For two runs: where the store holds NOISE_MIN_RUN_STEPS or more steps from
one run of an unchanged model to its next (same digest and environment, the
compared runs left out; each step measured as compare measures a change, the
sessions' Hodges–Lehmann shift), the 95th percentile of those steps — what noise did
here, outliers (a load burst that slowed a whole run) included, which no
spread-based formula sees; else 1.96 * sqrt(sigma^2 (1/S_old + 1/S_new) +
2 tau^2). For P interleaved A/B pairs: 1.96 * sqrt(pi/3) * sigma_pair / sqrt(P),
the band of the pairs' Hodges–Lehmann shift, sigma_pair a robust spread
(1.4826 x the pooled median absolute deviation; sqrt(2) sigma in its place
while no stored run had pairs). A change
inside its floor is never called significant.

Size classes are by the median latency on that target, a decade each: the
relative noise of a 30 us model (interrupts, timer, cache) is not that of a
30 ms one, and the latency, unlike the file size, is what the noise acts on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

import numpy as np

from harness.analysis.environment import MUST_MATCH, fingerprint
from harness.kernel import limits
from harness.kernel.measure.shift import hl_two

METRICS = ("p50", "p90")
Z95 = 1.959964
CLASS_EDGES = ((0.1, "< 0.1 ms"), (1.0, "0.1–1 ms"), (10.0, "1–10 ms"), (100.0, "10–100 ms"))


def size_class(p50_ms: Optional[float]) -> Optional[str]:
    if p50_ms is None or not p50_ms > 0:
        return None
    for edge, name in CLASS_EDGES:
        if p50_ms < edge:
            return name
    return "≥ 100 ms"


def device_target(record: Mapping[str, Any]) -> tuple[str, str]:
    return str((record.get("device") or {}).get("profile") or ""), str(record.get("target") or "")


def session_figures(record: Mapping[str, Any], metric: str) -> list[float]:
    ses = (record.get("timing") or {}).get("sessions") or []
    return [float(s[f"{metric}_ms"]) for s in ses if (s.get(f"{metric}_ms") or 0) > 0]


@dataclass
class Part:
    """Sums behind one metric's sigma and tau."""

    ss: float = 0.0  # squared log deviations of sessions about their record's mean
    df: int = 0
    sessions: int = 0
    records: int = 0
    # model identity -> [(run id, mean log figure, sessions)]
    runs: dict[tuple, list[tuple[str, float, int]]] = field(default_factory=dict)
    # model identity -> [(run id, log figures of the record's sessions (its
    # headline figure when it has no sessions))]
    heads: dict[tuple, list[tuple[str, np.ndarray]]] = field(default_factory=dict)
    # |deviations| of log pair ratios from their pair set's median (the most
    # recent NOISE_MAX_PAIR_DEVS), and the pair sets they came from
    pair_devs: list[float] = field(default_factory=list)
    pair_sets: int = 0

    @property
    def sigma_pair(self) -> Optional[float]:
        """The pairs' spread as a robust sigma: 1.4826 x the median absolute
        deviation, pooled over pair sets (scaled by n / (n - sets) for the
        median each set's deviations are taken about). A session in a slow
        machine state makes its pair an outlier (×0.8 or ×2.3 where the pair
        set's bulk is ×1.3); a standard deviation would let one such pair set
        the floor, while the comparison's estimate (the pairs' Hodges–Lehmann
        shift) hardly moves."""
        n = len(self.pair_devs)
        if n - self.pair_sets < 1:
            return None
        return 1.4826 * float(np.median(self.pair_devs)) * math.sqrt(n / (n - self.pair_sets))

    @property
    def sigma(self) -> Optional[float]:
        return math.sqrt(self.ss / self.df) if self.df else None

    def run_steps(self, exclude: frozenset = frozenset()) -> list[float]:
        """|log change| from each run of a model to its next run (run ids in
        order: they start with the time) as `harness compare` measures it —
        the sessions' Hodges–Lehmann shift (harness.kernel.measure.shift) —
        for every model measured in two or more runs, the excluded runs left
        out."""
        steps = []
        for entries in self.heads.values():
            kept = dict(sorted(((rid, h) for rid, h in entries if rid not in exclude), key=lambda e: e[0]))
            hs = list(kept.values())
            steps += [abs(float(hl_two(a, b))) for a, b in zip(hs, hs[1:])]
        return steps

    def tau(self, exclude: frozenset = frozenset()) -> tuple[Optional[float], int]:
        """(tau, models seen in 2+ runs); tau None when no model was."""
        sig2 = self.sigma ** 2 if self.sigma is not None else None
        num = den = 0.0
        models = 0
        for entries in self.runs.values():
            kept = {}
            for run_id, m, s in entries:
                if run_id not in exclude:
                    kept[run_id] = (m, s)  # one value per run
            if len(kept) < 2:
                continue
            ms = np.array([m for m, _ in kept.values()])
            inv = float(np.mean([1.0 / s for _, s in kept.values()]))
            if sig2 is None and inv < 1.0:
                continue  # sessions there, but no sigma to take off: cannot split the parts
            explained = (sig2 or 0.0) * inv
            num += (len(ms) - 1) * (float(ms.var(ddof=1)) - explained)
            den += len(ms) - 1
            models += 1
        if not den:
            return None, 0
        return math.sqrt(max(0.0, num / den)), models


@dataclass
class Noise:
    """What the store says about one device target and size class."""

    profile: str
    target: str
    size_class: str
    parts: dict[str, Part] = field(default_factory=lambda: {m: Part() for m in METRICS})

    def floor(self, metric: str, old_sessions: int, new_sessions: int, paired: bool = False,
              exclude: Iterable[str] = ()) -> dict:
        """The floor (a fraction: 0.08 = ±8 %) of a comparison with these
        session counts, and what it rests on. `fraction` is None when the
        store cannot tell (no session figures, and for one-session sides no
        model measured twice either)."""
        part = self.parts[metric]
        sigma = part.sigma
        tau, models = part.tau(frozenset(exclude))
        out = {"metric": metric, "profile": self.profile, "target": self.target, "size_class": self.size_class,
               "sigma_session": sigma, "tau_run": tau, "records": part.records, "sessions": part.sessions,
               "models_rerun": models, "fraction": None, "design": "interleaved pairs" if paired else "two runs"}
        if paired:
            pair = part.sigma_pair
            out["sigma_pair"] = pair
            if pair is None:
                if sigma is None:
                    return out
                pair = math.sqrt(2.0) * sigma
                out["note"] = "no stored interleaved pairs on this target: twice the between-session variance"
            # The pairs' Hodges–Lehmann shift has variance pi/3 sigma^2 / P for
            # normal differences (Hodges & Lehmann 1963), less than the
            # mean's for heavier tails.
            var = math.pi / 3.0 * pair ** 2 / max(1, min(old_sessions, new_sessions))
            out["method"] = "pairs' spread"
        else:
            steps = part.run_steps(frozenset(exclude))
            out["run_steps"] = len(steps)
            if len(steps) >= limits.NOISE_MIN_RUN_STEPS:
                # What unchanged models did between one run and the next here:
                # the 95th percentile of those changes, the noise itself.
                out.update(fraction=math.exp(float(np.quantile(steps, 0.95))) - 1.0,
                           method="unchanged models' run-to-run changes")
                return out
            if sigma is None and not (tau is not None and old_sessions == new_sessions == 1):
                return out
            var = (sigma or 0.0) ** 2 * (1.0 / max(1, old_sessions) + 1.0 / max(1, new_sessions)) + 2 * (tau or 0.0) ** 2
            out["method"] = "sessions' spread"
            if tau is None:
                out["note"] = "run-to-run part unknown: no model of this class measured in two runs on this target"
        out["fraction"] = math.exp(Z95 * math.sqrt(var)) - 1.0
        return out


def _identity(record: Mapping[str, Any]) -> tuple:
    env = record.get("environment") or fingerprint(record)
    return ((record.get("model") or {}).get("sha256"), record.get("candidate"),
            tuple((k, str(env.get(k))) for k in MUST_MATCH))


class NoiseBook:
    """Noise per (profile, target, size class), learnt from records (each
    with its run id); a record seen twice (store and report) counts once."""

    def __init__(self) -> None:
        self._by: dict[tuple[str, str, str], Noise] = {}
        self._seen: set[tuple[str, str]] = set()
        self._seen_pairs: set[tuple[str, str, str]] = set()

    def learn(self, records: Iterable[Mapping[str, Any]], run_id: Optional[str] = None) -> "NoiseBook":
        for r in records:
            rid = str(run_id or r.get("_run_id") or "")
            if (rid, str(r.get("job"))) in self._seen or r.get("error"):
                continue
            self._seen.add((rid, str(r.get("job"))))
            cls = size_class((r.get("timing") or {}).get("p50_ms"))
            if cls is None:
                continue
            profile, target = device_target(r)
            noise = self._by.setdefault((profile, target, cls), Noise(profile, target, cls))
            ident = _identity(r)
            for metric in METRICS:
                xs = session_figures(r, metric)
                part = noise.parts[metric]
                if len(xs) >= 2:
                    lx = np.log(xs)
                    part.ss += float(((lx - lx.mean()) ** 2).sum())
                    part.df += len(xs) - 1
                    part.sessions += len(xs)
                    part.records += 1
                    mean, count = float(lx.mean()), len(xs)
                else:
                    t = (r.get("timing") or {}).get(f"{metric}_ms")
                    if not t or t <= 0:
                        continue
                    mean, count = math.log(t), 1
                if rid and ident[0]:
                    part.runs.setdefault(ident, []).append((rid, mean, count))
                    head = (r.get("timing") or {}).get(f"{metric}_ms")
                    if len(xs) >= 2:
                        part.heads.setdefault(ident, []).append((rid, np.log(xs)))
                    elif head and head > 0:
                        part.heads.setdefault(ident, []).append((rid, np.array([math.log(head)])))
        return self

    def learn_pairs(self, records: Iterable[Mapping[str, Any]], run_id: Optional[str] = None) -> "NoiseBook":
        """Learn sigma_pair from the records of one run: per device target,
        candidates in order of their median paired off (first with second,
        third with fourth) while the two are within 3x of each other, session
        k with session k; a pair counts for its faster member's size class
        (two models either side of a class edge are still one pair)."""
        groups: dict[tuple, list[Mapping[str, Any]]] = {}
        for r in records:
            if size_class((r.get("timing") or {}).get("p50_ms")) and not r.get("error"):
                groups.setdefault(device_target(r), []).append(r)
        for (profile, target), recs in groups.items():
            recs = sorted(recs, key=lambda r: (r["timing"]["p50_ms"], str(r.get("candidate"))))
            i = 0
            while i + 1 < len(recs):
                a, b = recs[i], recs[i + 1]
                if b["timing"]["p50_ms"] > 3 * a["timing"]["p50_ms"]:
                    i += 1
                    continue
                i += 2
                seen = (str(run_id or a.get("_run_id")), str(a.get("job")), str(b.get("job")))
                if seen in self._seen_pairs:
                    continue
                self._seen_pairs.add(seen)
                cls = size_class(a["timing"]["p50_ms"])
                noise = self._by.setdefault((profile, target, cls), Noise(profile, target, cls))
                for metric in METRICS:
                    xa, xb = session_figures(a, metric), session_figures(b, metric)
                    k = min(len(xa), len(xb))
                    if k < 2:
                        continue
                    d = np.log(xb[:k]) - np.log(xa[:k])
                    part = noise.parts[metric]
                    part.pair_devs.extend(np.abs(d - np.median(d)).tolist())
                    del part.pair_devs[:-limits.NOISE_MAX_PAIR_DEVS]
                    part.pair_sets += 1
        return self

    def get(self, profile: str, target: str, p50_ms: Optional[float]) -> Optional[Noise]:
        cls = size_class(p50_ms)
        return self._by.get((profile, target, cls)) if cls else None


def floor_line(f: Optional[Mapping[str, Any]]) -> str:
    """The floor in words, for tables and verdicts."""
    if not f or f.get("fraction") is None:
        return "noise floor unknown (no between-session history for this device target and size class)"
    parts = [f"σ between sessions {100 * f['sigma_session']:.1f}%"] if f.get("sigma_session") is not None else []
    if f.get("sigma_pair") is not None:
        parts.append(f"σ between pairs {100 * f['sigma_pair']:.1f}%")
    if f.get("tau_run") is not None:
        parts.append(f"between runs {100 * f['tau_run']:.1f}%")
    if f.get("method") == "unchanged models' run-to-run changes":
        parts = [f"95th percentile of {f['run_steps']} run-to-run changes of unchanged models"]
    elif f.get("note"):
        parts.append("run-to-run part unknown")
    return (f"noise floor ±{100 * f['fraction']:.1f}% ({f['size_class']}; {', '.join(parts) or 'run-to-run'}; "
            f"{f['records']} record(s), {f['sessions']} session(s))")


def from_store(store, keys: Iterable[tuple[str, str]], book: Optional[NoiseBook] = None,
               other_than: Optional[str] = None) -> NoiseBook:
    """What the store knows of these (profile, target) device targets (with
    `other_than`, of every candidate but that one: the caller has its records)."""
    book = book if book is not None else NoiseBook()
    for profile, target in dict.fromkeys(keys):
        recs = store.records_on(profile, target, other_than=other_than)
        book.learn(recs)
        by_run: dict[str, list] = {}
        for r in recs:
            by_run.setdefault(r["_run_id"], []).append(r)
        for run_id, rs in by_run.items():
            book.learn_pairs(rs, run_id)
    return book


def store_book(store_url: Optional[str], docs: Iterable[Mapping[str, Any]]) -> NoiseBook:
    """A NoiseBook from the store's history of every device target in these
    report documents; an empty one when there is no store to read (a
    comparison of two report files needs none)."""
    from harness.store import StoreError, open_store

    keys = [device_target(r) for d in docs for r in d.get("results") or () if not r.get("error")]
    try:
        store = open_store(store_url, create=False, readonly=True)
    except (StoreError, OSError, ValueError):
        return NoiseBook()
    try:
        return from_store(store, keys)
    finally:
        store.close()
