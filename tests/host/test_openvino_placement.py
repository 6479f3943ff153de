"""A real compiling EP end to end: `harness run` through the embedded agent
with `ep: openvino` from a side-by-side onnxruntime-openvino environment.

The record's counts must be the model nodes that ONNX Runtime's own
graph-assignment API gives for the same model in the same build, computed
beside the harness — not the fused subgraphs the verbose log and profile show.
"""

import json
from collections import Counter

import hostkit
from labkit import harness_cli


def _expected(entries: list) -> tuple[dict, dict, dict]:
    nodes, parts, cpu_ops = Counter(), Counter(), Counter()
    for provider, members in entries:
        ep = {"OpenVINOExecutionProvider": "openvino", "CPUExecutionProvider": "cpu"}[provider]
        nodes[ep] += len(members)
        if ep == "cpu":
            cpu_ops.update(op for op, _ in members)
        else:
            parts[ep] += 1
    return dict(nodes), dict(parts), dict(cpu_ops)


def test_openvino_record_matches_the_assignment_api(tmp_path, openvino_env):
    partly = hostkit.partly_openvino(tmp_path / "partly.onnx")
    whole = hostkit.whole_openvino(tmp_path / "whole.onnx")
    version = openvino_env.version
    cohort = hostkit.cohort(tmp_path / "profiles", [
        f"{{runtime: onnxruntime, version: '{version}', ep: openvino, options: {{intra_op_threads: 1}}}}"])
    out = tmp_path / "out"
    p = harness_cli("run", "--cohort", cohort, "--model", f"partly={partly}", "--model", f"whole={whole}",
                    "--out", out, "--drivers", "host", "--warn-only", cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = {r["candidate"]: r for r in json.loads((out / "report.json").read_text())["results"]}
    for r in rows.values():
        assert r["error"] is None, r["error"]
        assert r["runtime"]["build"] == "onnxruntime-openvino" and r["runtime"]["version"] == version
        assert r["runtime"]["ep"] == "openvino"

    nodes, parts, cpu_ops = _expected(hostkit.assignment(openvino_env, partly, "OpenVINOExecutionProvider"))
    # The build's own answer for this model: 4 OpenVINO nodes in two partitions, Hardmax on the CPU.
    assert nodes == {"openvino": 4, "cpu": 1} and parts == {"openvino": 2} and cpu_ops == {"Hardmax": 1}
    pl = rows["partly"]["placement"]
    assert pl["source"].startswith("runtime API")
    assert pl["nodes_by_ep"] == nodes and pl["nodes_total"] == sum(nodes.values())
    assert pl["partitions_by_ep"] == parts
    assert pl["cpu_fallback_nodes"] == nodes["cpu"] and pl["fallback_op_types"] == cpu_ops
    assert pl["fully_accelerated"] is False  # the strict probe refuses the graph
    assert set(pl["time_share_by_ep"]) == {"cpu", "openvino"}

    nodes, parts, _ = _expected(hostkit.assignment(openvino_env, whole, "OpenVINOExecutionProvider"))
    pw = rows["whole"]["placement"]
    assert nodes == {"openvino": 4} and pw["nodes_by_ep"] == nodes and pw["partitions_by_ep"] == {"openvino": 1}
    assert pw["cpu_fallback_nodes"] == 0 and pw["fully_accelerated"] is True

    # The report says it in model nodes: fallback / model nodes and the partition count.
    md = (out / "report.md").read_text()
    assert "1 / 5 (2 partitions)" in md and "0 / 4 (1 partition)" in md
    assert "onnxruntime-openvino 1.24.1 openvino" in md
    html = (out / "report.html").read_text()
    assert "Hardmax (1 model node(s); 1 on the CPU) on onnxruntime-openvino/openvino: cpu_fallback" in html


def test_runner_in_a_bare_runtime_environment_needs_no_harness_dependency(tmp_path, openvino_env):
    """The runner child imports only this project's packages, numpy and the
    runtime: the OpenVINO environment has no pydantic, yaml, grpc or psutil."""
    import subprocess

    from agents.host import runtimes

    env = runtimes.child_env(runtimes.runner_path(tmp_path / "runner-path"))
    code = ("import importlib.util as u, agents.host.runner, agents.placement, agents.jobdir;"
            "print([m for m in ('pydantic', 'yaml', 'grpc', 'psutil') if u.find_spec(m)])")
    p = subprocess.run([str(openvino_env.python), "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "[]"


_LOG_PASS = r"""
import json, sys
from pathlib import Path
import numpy as np, onnxruntime as ort
from agents.host import runner
jd = Path(sys.argv[2])
providers = [("OpenVINOExecutionProvider", {}), "CPUExecutionProvider"]
feed = {"x": np.ones((1, 8), np.float32)}
print(json.dumps(runner._placement(ort, jd, sys.argv[1], "openvino", {}, providers, feed)))
"""


def test_openvino_log_pass_counts_partitions_never_nodes(tmp_path, openvino_env):
    """The pass a build without the API gets, run on the real OpenVINO build:
    its verbose log shows two fused nodes, its capability summary
    (`[OpenVINO-EP] Supported subgraphs on OpenVINO: 2`, logged through the
    default logger) no node count. The record says 2 partitions and leaves
    OpenVINO's model nodes unknown instead of reporting 2 nodes."""
    import subprocess

    from agents.host import runtimes

    model = hostkit.partly_openvino(tmp_path / "partly.onnx")
    env = runtimes.child_env(runtimes.runner_path(tmp_path / "runner-path"))
    p = subprocess.run([str(openvino_env.python), "-c", _LOG_PASS, str(model), str(tmp_path)], capture_output=True,
                       text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    pl = json.loads(p.stdout.strip().splitlines()[-1])
    assert pl["source"] == "capability summary + verbose log + profile"
    assert pl["partitions_by_ep"] == {"openvino": 2}
    assert pl["nodes_by_ep"] == {"cpu": 1} and pl["nodes_total"] is None
    assert pl["cpu_fallback_nodes"] == 1 and pl["fallback_op_types"] == {"Hardmax": 1}
    assert pl["fully_accelerated"] is False
    log = (tmp_path / "ort_verbose.log").read_text()
    assert "[OpenVINO-EP] Supported subgraphs on OpenVINO: 2" in log
