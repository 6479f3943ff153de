"""How often `harness compare` cries wolf, and what it can see, on this
machine: runs of unchanged models, and of the same models with more work.

Two families of models (bench.slowdown: about 0.03 ms and 0.5 ms a run),
each as its base and variants with measured extra work, all through the
real controller, the real host driver (a new runner process per session)
and the real store, under a CI-style short policy (`min_runs: 200, min_s: 1,
max_s: 3`, a 0.2 s warm-up per session, the default 5 sessions, target_ci
0.02):

* **default policy** — R rounds, each one `harness run` of every model, the
  way a nightly job measures. Pair i is round i's base against round i+1's
  base (same model: a "regression" is a false one) or round i+1's variant
  (more work: a regression should be found). Each comparison sees the noise
  floor the store had then (rounds up to i+1).
* **interleaved A/B** — R rounds, each one run of every model with `--repeat
  10`-style fixed sessions, interleaved ABBA by the scheduler, judged by
  `compare_pairs` (what `harness compare --ab` runs): the base against a
  second copy of itself, and against each variant. Here all variants share
  one interleaved run, so a pair's two sessions are up to four sessions
  apart instead of adjacent as in `--ab` proper.

The slowdowns are the measured ones (p50 ratios side by side in one process,
bench.slowdown), not the layer counts.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from bench import slowdown
from bench.common import Row, host_cohort, load_average
from harness.kernel import limits

POLICY = "{warmup_runs: 10, warmup_s: 0.2, min_runs: 200, min_s: 1, max_s: 3, target_ci: 0.02}"
PAIRS = limits.AB_PAIRS  # harness compare --ab's default
DEFAULT_LEVELS = {"small": (0.0, 0.10, 0.30), "medium": (0.0, 0.10, 0.30)}
AB_LEVELS = {"small": (0.0, 0.30), "medium": (0.0, 0.05, 0.10, 0.30)}


def _cohort(root: Path) -> Path:
    return host_cohort(root, "ci", POLICY)


def _name(family: str, level: float, copy: str = "") -> str:
    return f"{family}{int(round(100 * level)):02d}{copy}"


def _rounds(api, req_for, rounds: int, say) -> list[dict]:
    docs = []
    for r in range(rounds):
        t0 = time.perf_counter()
        req = req_for(r)
        docs.append(api.report(req.store, api.run_cohort(req).run_id))  # with every sample (the outcome has none)
        say(f"  round {r + 1}/{rounds}: {time.perf_counter() - t0:.0f} s, load {load_average()}")
    return docs


def _rate(verdicts: list[dict]) -> tuple[int, int]:
    return sum(v["bucket"] == "regression" for v in verdicts), len(verdicts)


def _verdict(row: dict) -> dict:
    """What one comparison said, for the raw figures."""
    lat = row.get("latency") or {}
    floors = lat.get("noise_floor") or {}
    out = {"bucket": row["bucket"], "judged_on": lat.get("judged_on"),
           "sessions": [lat.get("old_sessions"), lat.get("new_sessions")]}
    for m in ("p50", "p90"):
        out[m] = {"ratio": lat.get(f"{m}_ratio"), "ci": lat.get(f"{m}_ratio_ci"),
                  "floor": (floors.get(m) or {}).get("fraction")}
    return out


def _smallest(rates: dict[float, tuple[int, int]]) -> str:
    ok = [lvl for lvl, (k, n) in sorted(rates.items()) if lvl > 0 and n and k >= 0.95 * n]
    return "none of those tried" if not ok else f"+{100 * ok[0]:.0f} %"


def run(tmp: Path, quick: bool = False, say=None) -> list[Row]:
    from agents.server import AgentConfig, start
    from harness import api

    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    rounds_default, rounds_ab = (4, 3) if quick else (21, 20)
    wanted = {f: tuple(sorted(set(DEFAULT_LEVELS[f]) | set(AB_LEVELS[f]))) for f in slowdown.FAMILIES}
    variants = slowdown.build(tmp / "models", wanted, rounds=5 if quick else 15)
    cohort = _cohort(tmp / "profiles")
    agent = start(AgentConfig(listen="127.0.0.1:0", drivers=("host",), cache_dir=str(tmp / "cache"),
                              driver_config={"host": {"work_dir": str(tmp / "work")}}))
    lab = tmp / "lab.yaml"
    lab.write_text(f"agents:\n  - {{name: bench, address: '{agent.address}'}}\n")
    store = str(tmp / "compare.sqlite")
    try:
        reuse = os.environ.get("BENCH_COMPARE_REUSE_DEFAULT")
        if reuse:
            # The default-policy rounds of an earlier pass (its KEEP file),
            # to measure the interleaved rounds again on their own.
            default_docs = json.loads(Path(reuse).read_text())["default"]
            say(f"  default policy: {len(default_docs)} rounds reused from {reuse}")
        else:
            say("  default policy: rounds of one run of every model")
            models = [f"{_name(f, lvl)}={variants[f][lvl].path}" for f in slowdown.FAMILIES
                      for lvl in DEFAULT_LEVELS[f]]
            default_docs = _rounds(api, lambda r: api.RunRequest(cohort=str(cohort), models=models, lab=lab,
                                                                 store=store, probes=1), rounds_default, say)
        _keep({"default": default_docs}, variants)
        say("  interleaved A/B: rounds of one run of every model, fixed sessions")
        ab_models = []
        for f in slowdown.FAMILIES:
            ab_models += [f"{_name(f, 0)}={variants[f][0.0].path}", f"{_name(f, 0, 'b')}={variants[f][0.0].path}"]
            ab_models += [f"{_name(f, lvl)}={variants[f][lvl].path}" for lvl in AB_LEVELS[f] if lvl]
        ab_docs = _rounds(api, lambda r: api.RunRequest(cohort=str(cohort), models=ab_models, lab=lab, store=store,
                                                        probes=1, repeat=PAIRS), rounds_ab, say)
    finally:
        agent.stop(grace=1.0)

    return analyse(default_docs, ab_docs, _keep({"default": default_docs, "ab": ab_docs}, variants))


def _meta(variants: dict) -> dict:
    return {f: {str(lvl): {"depth": v.depth, "measured_slowdown": v.measured} for lvl, v in vs.items()}
            for f, vs in variants.items()}


def _keep(docs: dict, variants: dict) -> dict:
    """With BENCH_COMPARE_KEEP=FILE, every run's report so far, to judge
    again without measuring (`analyse`); the variants' figures either way."""
    meta = _meta(variants)
    keep = os.environ.get("BENCH_COMPARE_KEEP")
    if keep:
        Path(keep).write_text(json.dumps({**docs, "variants": meta}, default=str))
    return meta


def only(doc: dict, cand: str) -> dict:
    return {"run": doc["run"], "results": [r for r in doc["results"] if r["candidate"] == cand]}


def analyse(default_docs: list[dict], ab_docs: list[dict], meta: dict) -> list[Row]:
    """The table from the rounds' report documents (what `run` measured)."""
    from harness.analysis.compare import compare_docs, compare_pairs
    from harness.analysis.noise import NoiseBook

    measured_of = {f: {float(k): v["measured_slowdown"] for k, v in vs.items()} for f, vs in meta.items()}
    figures: dict = {"policy": POLICY, "pairs": PAIRS, "load_at_end": load_average(), "cpus": os.cpu_count(),
                     "variants": meta}
    rows: list[Row] = []
    for family in meta:
        base = _name(family, 0)
        rates, floors, ratios = {}, [], {}
        for lvl in DEFAULT_LEVELS[family]:
            verdicts = []
            for i in range(len(default_docs) - 1):
                book = NoiseBook()
                for d in default_docs[: i + 2]:
                    book.learn(d["results"], run_id=d["run"]["id"])
                c = compare_docs(only(default_docs[i], base), _rename(only(default_docs[i + 1], _name(family, lvl)),
                                                                      base), noise=book)
                row = c["rows"][0]
                verdicts.append(_verdict(row))
                lat = row.get("latency") or {}
                ratios.setdefault(lvl, []).append(lat.get("p90_ratio"))
                if lvl == 0:
                    floors.append(((lat.get("noise_floor") or {}).get("p90") or {}).get("fraction"))
            rates[lvl] = _rate(verdicts)
            figures.setdefault("default", {}).setdefault(family, {})[str(lvl)] = {"verdicts": verdicts,
                                                                                 "p90_ratios": ratios[lvl]}
        k, n = rates[0.0]
        measured = measured_of[family]
        known = [f for f in floors if f is not None]
        rows.append(Row(f"compare, same {family} model, default policy: called a regression", "≤ 1 in 20",
                        f"{k} in {n}", k <= 0.05 * n,
                        f"median p90 noise floor ±{100 * sorted(known)[len(known) // 2]:.0f}%" if known else "",
                        {"k": k, "n": n}))
        k30, n30 = rates[0.30]
        rows.append(Row(f"compare, {family} model +30 % work (measured +{100 * measured[0.30]:.0f} %), default policy: "
                        "detected", "≥ 19 in 20", f"{k30} in {n30}", k30 >= 0.95 * n30,
                        "; ".join(f"+{100 * lvl:.0f} % (measured +{100 * measured[lvl]:.0f} %): {rates[lvl][0]} in "
                                  f"{rates[lvl][1]}" for lvl in DEFAULT_LEVELS[family] if lvl),
                        {"rates": {str(lvl): rates[lvl] for lvl in rates}}))
        rows.append(Row(f"compare, {family} model, default policy: smallest slowdown detected ≥ 95 %", "shown",
                        _smallest(rates), None))
        # Interleaved A/B.
        ab_rates = {}
        for lvl in AB_LEVELS[family]:
            other = _name(family, 0, "b") if lvl == 0 else _name(family, lvl)
            verdicts = []
            for i, d in enumerate(ab_docs):
                book = NoiseBook()
                for prev in ab_docs[: i + 1]:
                    book.learn(prev["results"], run_id=prev["run"]["id"])
                c = compare_pairs(d, base, other, noise=book)
                verdicts.append(_verdict(c["rows"][0]))
            ab_rates[lvl] = _rate(verdicts)
            figures.setdefault("ab", {}).setdefault(family, {})[str(lvl)] = {"verdicts": verdicts}
        k, n = ab_rates[0.0]
        rows.append(Row(f"compare --ab, same {family} model: called a regression", "shown (≤ 1 in 20 expected)",
                        f"{k} in {n}", None))
        k30, n30 = ab_rates[0.30]
        rows.append(Row(f"compare --ab, {family} model +30 % work: detected", "≥ 19 in 20", f"{k30} in {n30}",
                        k30 >= 0.95 * n30,
                        "; ".join(f"+{100 * lvl:.0f} % (measured +{100 * measured_of[family][lvl]:.0f} %): "
                                  f"{ab_rates[lvl][0]} in {ab_rates[lvl][1]}" for lvl in AB_LEVELS[family] if lvl)))
        smallest = _smallest(ab_rates)
        target_ok = None
        if family == "medium":
            good = [lvl for lvl, (kk, nn) in ab_rates.items() if 0 < lvl <= 0.10 and nn and kk >= 0.95 * nn]
            target_ok = bool(good)
        rows.append(Row(f"compare --ab, {family} model: smallest slowdown detected ≥ 95 %",
                        "≤ 10 %" if family == "medium" else "shown", smallest, target_ok))
    rows[-1].figures = figures
    return rows


def _rename(doc: dict, candidate: str) -> dict:
    """A run's rows as if its model were `candidate`: a new model under the
    same name, as CI compares it."""
    out = []
    for r in doc["results"]:
        job = r["job"].split("/")
        job[1] = candidate
        out.append({**r, "candidate": candidate, "job": "/".join(job)})
    return {"run": doc["run"], "results": out}


def main(argv: list[str]) -> int:
    """`python -m bench.compare KEPT.json`: judge the runs a measuring pass
    kept (BENCH_COMPARE_KEEP=KEPT.json python -m bench compare) again, with
    this checkout's compare, and record the table in bench/RESULTS-compare.md."""
    from bench.__main__ import RESULTS, record
    from bench.common import machine, table

    if len(argv) != 1:
        print(main.__doc__, file=sys.stderr)
        return 2
    kept = json.loads(Path(argv[0]).read_text())
    t0 = time.perf_counter()
    rows = analyse(kept["default"], kept["ab"], kept["variants"])
    print(table(rows))
    record(rows, {**machine(), "note": f"judged again from {len(kept['default'])} + {len(kept['ab'])} kept runs"},
           time.perf_counter() - t0, ["compare (from kept runs)"], RESULTS.with_name("RESULTS-compare.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
