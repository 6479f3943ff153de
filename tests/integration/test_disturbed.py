"""A run disturbed by a CPU hog mid-measurement is flagged, not hidden."""

import hashlib
import subprocess
import sys
import threading
import time

import numpy as np

import modelkit
from harness._proto.v1 import agent_pb2 as pb
from harness.config.schema import DeviceProfile
from harness.kernel import wire
from harness.kernel.measure.policy import MeasurePolicy
from harness.record.build import build_record

HOG = "import os\nos.sched_setaffinity(0, {0})\nwhile True:\n    pass\n"
# Hogs, each in a session of its own: with the scheduler's autogroups (Linux
# sched(7), on by default on desktop kernels) CPU time is shared between
# sessions first, so hogs started in the test's own session would only split
# its share, and on a shared CI box already crowded on that core the
# runner's share would hardly move.
HOGS = 4


def test_cpu_hog_mid_measurement_is_flagged(tmp_path, client):
    # Runs of a few milliseconds span several scheduler slices, so a process
    # sharing the core slows every run rather than stalling a few.
    model = modelkit.heavy_mlp(tmp_path / "h.onnx", width=1024, depth=8)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    client.ensure_models([(model, digest, "onnx")])
    dev = client.describe().devices[0]
    policy = MeasurePolicy(warmup_runs=5, warmup_s=0, min_runs=100, min_s=4.0, max_s=4.0, target_ci=0)
    job = pb.Job(job_id="hog.1", device_id=dev.id, models=[pb.ModelRef(digest=digest, format="onnx")],
                 target=pb.RuntimeTarget(runtime="onnxruntime", ep="cpu",
                                         options={"intra_op_threads": "1", "cpu_affinity": "0"}),
                 measure=wire.policy_to_pb(policy),
                 probes=[wire.tensors_to_pb({"x": np.ones((1, 1024), np.float32)})], timeout_s=120)
    hog = {}

    def on_event(ev):
        # A quarter into measurement, the hogs take the runner's core.
        if ev.HasField("progress") and ev.progress.phase == "measure" and ev.progress.elapsed_s >= 1.0 and not hog:
            hog["p"] = [subprocess.Popen([sys.executable, "-c", HOG], start_new_session=True)
                        for _ in range(HOGS)]

    try:
        res = wire.result_from_pb(client.run(job, on_event, 120))
    finally:
        for p in hog.get("p", []):
            p.kill()
            p.wait()
    assert hog, "the measurement never reached the point where the hog starts"
    assert res["error"] is None and res["details"]["cpu_affinity"] == [0]
    prof = DeviceProfile.model_validate({"id": "host", "platform": "linux",
                                         "targets": [{"runtime": "onnxruntime", "ep": "cpu"}]})
    rec = build_record(job_key="k", candidate="h", technique="baseline", profile=prof, target=prof.targets[0],
                       model=None, device=None, result=res)
    assert rec["validity"]["stable"] is False
    # The hog makes the run two regimes: drift (it lasts to the end) or a
    # disturbed stretch, named with its effect on the p90.
    assert any(w.startswith(("drift", "disturbance")) for w in rec["validity"]["instability"]), rec["validity"]
    assert all(w in rec["validity"]["warnings"] for w in rec["validity"]["instability"])
