"""Child process computing one candidate's reference outputs.

Runs as ``python -m harness.analysis.refrun DIR``: reads DIR/job.json
({"model": path}) and DIR/probes.npz (keys ``<probe>/<input>``), runs every
probe through ONNX Runtime's CPU execution provider and writes
DIR/outputs.npz (keys ``<probe>/<output>``) and DIR/meta.json. A model that
crashes ONNX Runtime takes this process down, never the controller.

The session is the most literal reading of the graph ONNX Runtime offers:
graph optimisations off (no fusions that reorder floating-point sums) and
one intra-op thread (no split reductions), so the reference does not depend
on the controller's core count.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main(job_dir: str) -> int:
    import numpy as np
    import onnxruntime as ort

    from harness.kernel import arrays

    jd = Path(job_dir)
    spec = json.loads((jd / "job.json").read_text())
    probes = arrays.load(jd / "probes.npz")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    t0 = time.perf_counter()
    sess = ort.InferenceSession(spec["model"], so, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    out_names = [o.name for o in sess.get_outputs()]
    outputs = {}
    for i, probe in enumerate(probes):
        values = sess.run(None, {n: probe[n] for n in names})
        for name, value in zip(out_names, values):
            if isinstance(value, np.ndarray):
                outputs[f"{i}/{name}"] = value
    arrays.save_flat(jd / "outputs.npz", outputs)
    meta = {"runtime": {"name": "onnxruntime", "version": ort.__version__, "ep": "cpu",
                        "options": {"graph_optimization_level": "disable", "intra_op_threads": "1"}},
            "seconds": round(time.perf_counter() - t0, 3), "probes": len(probes)}
    tmp = jd / "meta.json.tmp"
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, jd / "meta.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
