"""Models with a known amount of extra work, built for the compare benchmark.

A family is one chain of MatMul+Relu layers (bench.model_files.matmul_chain);
a slower member is the same graph with more layers: real extra compute, not
a sleep. How much slower each depth is on this machine is measured here,
side by side: every depth's session runs a short burst in turn, round after
round (so a busy spell slows all of them alike), and a depth's slowdown is
the median over rounds of its p50 over the base's p50 in the same round.
For each wanted slowdown the depth whose measured one is nearest is used,
and the benchmark reports the measured figure beside the wanted one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import model_files

# (name, batch, width, base depth): about 0.03 ms and 0.5 ms a run on one
# core of this machine; a layer adds about 5 % of the base's time to either.
FAMILIES = {"small": (1, 32, 20), "medium": (32, 160, 20)}


@dataclass(frozen=True)
class Variant:
    family: str
    wanted: float  # wanted slowdown: 0.30 = 30 % more time
    depth: int
    measured: float  # measured p50 ratio - 1, side by side
    path: Path


def _session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _p50(sess, feed: dict, runs: int) -> float:
    out = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        out[i] = time.perf_counter() - t0
    return float(np.median(out))


def build(folder: Path, wanted: dict[str, tuple[float, ...]], rounds: int = 15) -> dict[str, dict[float, Variant]]:
    """For each family, a model per wanted slowdown (0.0 is the base)."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict[float, Variant]] = {}
    for family, (batch, width, base) in FAMILIES.items():
        depths = list(range(base, base + max(1, round(max(wanted[family]) * base * 1.6)) + 1))
        paths = {d: model_files.matmul_chain(folder / f"{family}-d{d}.onnx", batch=batch, width=width, depth=d)
                 for d in depths}
        feed = {"x": np.random.default_rng(0).standard_normal((batch, width)).astype(np.float32)}
        sessions = {d: _session(p) for d, p in paths.items()}
        runs = 400 if batch == 1 else 40
        for s in sessions.values():
            _p50(s, feed, runs)  # warm-up
        ratios: dict[int, list[float]] = {d: [] for d in depths}
        for r in range(rounds):
            order = depths if r % 2 == 0 else depths[::-1]
            got = {d: _p50(sessions[d], feed, runs) for d in order}
            for d in depths:
                ratios[d].append(got[d] / got[base])
        measured = {d: float(np.median(v)) - 1.0 for d, v in ratios.items()}
        out[family] = {}
        for w in wanted[family]:
            d = base if w == 0 else min(depths[1:], key=lambda k: abs(measured[k] - w))
            out[family][w] = Variant(family, w, d, measured[d], paths[d])
    return out
