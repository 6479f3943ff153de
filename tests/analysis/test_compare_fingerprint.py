"""`harness compare` refuses rows measured in different environments unless forced."""

import copy
import json

import numpy as np

from labkit import harness_cli


def _doc(run_id, version, seed):
    from harness.kernel.measure import job_trust

    rng = np.random.default_rng(seed)
    samples = rng.normal(1.0, 0.01, 1500).tolist()
    timing, _, _ = job_trust.describe(samples, [{"n": 300}] * 5)  # five sessions, as a run measures them
    row = {
        "job": "host-cpu/m/onnxruntime@any/cpu", "candidate": "m", "technique": "baseline",
        "target": "onnxruntime@any/cpu",
        "device": {"id": "host:a", "profile": "host-cpu", "platform": "linux",
                   "facts": {"model": "EPYC", "abi": "x86_64", "os_version": "Debian 12"}},
        "runtime": {"name": "onnxruntime", "version": version, "ep": "cpu", "options": {}},
        "timing": {**timing, "samples_ms": samples}, "memory": None, "placement": None,
        "error": None, "validity": {"warnings": []}, "details": {},
    }
    return {"run": {"id": run_id, "cohort": "c", "harness_version": "0.1.0"}, "results": [row]}


def test_compare_refuses_different_runtime_versions_unless_forced(tmp_path):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(_doc("r1", "1.20.1", 1)))
    new.write_text(json.dumps(_doc("r2", "1.22.0", 2)))
    p = harness_cli("compare", old, new, cwd=tmp_path)
    assert p.returncode == 2
    assert "runtime_version" in p.stderr and "--force" in p.stderr and "1.20.1" in p.stderr
    assert "not comparable" in p.stdout
    p = harness_cli("compare", old, new, "--force", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "forced across differing runtime_version" in p.stdout
    same = tmp_path / "same.json"
    same.write_text(json.dumps(_doc("r3", "1.20.1", 3)))
    assert harness_cli("compare", old, same, cwd=tmp_path).returncode == 0
