"""Parity metrics: exact values on hand-computable outputs, the classifier
rule, output matching, tolerance judgement."""

import math

import numpy as np
import pytest

from harness.analysis import metrics


def probes(values, name="y"):
    return [{name: np.asarray(v, dtype=np.float32)} for v in values]


def test_identical_outputs_are_exact():
    a = probes([np.arange(12).reshape(3, 4)])
    m = metrics.compare(a, a)
    assert m["identical"] is True and m["max_abs"] == 0 and m["rel_l2"] == 0 and m["cosine"] == 1.0
    assert m["snr_db"] is None  # infinite SNR has no JSON form; `identical` says it
    assert metrics.within_tolerance(m, {"min_snr_db": 200})["ok"] is True


def test_snr_rel_l2_max_abs_match_the_formulas():
    ref = probes([np.ones((1000, 1))])
    cand = probes([np.ones((1000, 1)) + 0.1])
    m = metrics.compare(cand, ref)
    # signal energy 1000, error energy 1000 * 0.01 = 10 -> 20 dB
    assert m["snr_db"] == pytest.approx(20.0, abs=1e-4)
    assert m["rel_l2"] == pytest.approx(0.1, rel=1e-5)
    assert m["max_abs"] == pytest.approx(0.1, rel=1e-5)
    assert m["cosine"] == pytest.approx(1.0)
    assert m["top1_agreement"] is None  # (N, 1) is one score per sample, not class scores


def test_cosine_of_orthogonal_and_opposite_outputs():
    assert metrics.compare(probes([[[1.0, 0.0]]]), probes([[[0.0, 1.0]]]))["cosine"] == pytest.approx(0.0)
    assert metrics.compare(probes([[[-1.0, -2.0]]]), probes([[[1.0, 2.0]]]))["cosine"] == pytest.approx(-1.0)


@pytest.mark.parametrize("shape,dtype,expected", [
    ((8, 10), np.float32, True), ((10,), np.float32, True), ((8, 1), np.float32, False),
    ((8, 5, 10), np.float32, False), ((8, 10), np.int64, False), ((8, 2), np.float16, True),
])
def test_class_score_rule(shape, dtype, expected):
    assert metrics.is_class_scores(np.zeros(shape, dtype)) is expected


def test_top1_agreement_counts_rows_across_probes():
    ref = probes([[[0, 1, 0], [1, 0, 0]], [[0, 0, 1], [0, 1, 0]]])
    cand = probes([[[0, 1, 0], [0, 0, 1]], [[0, 0, 1], [0, 1, 0]]])  # one of four rows differs
    m = metrics.compare(cand, ref)
    assert m["top1_agreement"] == 0.75 and m["samples"] == 4 and m["class_output"] == "y"


def test_outputs_match_by_name_then_by_position_and_skip_shape_mismatch():
    a = [{"logits": np.zeros((2, 3), np.float32)}]
    b = [{"out": np.zeros((2, 3), np.float32)}]
    assert metrics.match_outputs(a[0], b[0]) == [("logits", "out")]
    assert metrics.compare(a, b)["outputs"] == ["logits~out"]
    c = [{"logits": np.zeros((2, 4), np.float32)}]
    m = metrics.compare(c, a)
    assert m["max_abs"] is None and m["skipped"] and "no output with the same shape" in m["note"]
    two = [{"p": np.zeros(2), "q": np.zeros(2)}]
    assert metrics.compare(two, a)["note"].startswith("outputs cannot be matched")


def test_non_finite_values_are_counted_and_fail_tolerance():
    ref = probes([[[1.0, 2.0, 3.0]]])
    cand = probes([[[1.0, np.nan, 3.0]]])
    m = metrics.compare(cand, ref)
    assert m["non_finite"] == 1 and m["max_abs"] == 0.0
    t = metrics.within_tolerance(m, {"max_top1_disagreement": 1.0})
    assert t["ok"] is False and t["checks"][0]["check"] == "finite"


def test_accuracy_against_labels_and_mismatched_counts():
    outs = probes([[[0.1, 0.9], [0.8, 0.2]], [[0.3, 0.7], [0.6, 0.4]]])
    acc = metrics.accuracy(outs, [np.array([1, 0]), np.array([0, 0])])
    assert acc["accuracy"] == 0.75 and acc["samples"] == 4
    assert metrics.accuracy(outs, [np.array([1, 0, 1]), np.array([0, 0])]) is None
    assert metrics.accuracy(probes([[[0.5]]]), [np.array([0])]) is None  # not class scores


def test_tolerance_uses_top1_for_classifiers_and_snr_otherwise():
    q = {"max_top1_disagreement": 0.25, "min_snr_db": 30.0}
    cls = {"max_abs": 1.0, "top1_agreement": 0.75, "snr_db": 3.0, "rel_l2": 0.5}
    assert metrics.within_tolerance(cls, q)["ok"] is True  # 25 % disagreement allowed; SNR not judged
    assert metrics.within_tolerance({**cls, "top1_agreement": 0.7}, q)["ok"] is False
    reg = {"max_abs": 1.0, "top1_agreement": None, "snr_db": 31.0, "rel_l2": 0.03}
    assert metrics.within_tolerance(reg, q)["ok"] is True
    assert metrics.within_tolerance({**reg, "snr_db": 29.9}, q)["ok"] is False
    strict = {**q, "max_rel_l2": 0.01}
    t = metrics.within_tolerance(reg, strict)
    assert t["ok"] is False and [c["check"] for c in t["checks"]] == ["snr_db", "rel_l2"]
    assert metrics.within_tolerance({"max_abs": None}, q) is None
    assert "top-1 disagreement 25.00%" in metrics.describe_checks(metrics.within_tolerance(cls, q))


def test_metrics_are_finite_json_values():
    m = metrics.compare(probes([[[0.0, 0.0]]]), probes([[[0.0, 0.0]]]))
    for k in ("max_abs", "rel_l2", "cosine"):
        assert m[k] is not None and math.isfinite(m[k])
