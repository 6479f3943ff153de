"""The committed generated code must match what `make protos` produces."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_current(tmp_path):
    pytest.importorskip("grpc_tools", reason="grpcio-tools (the dev extra) regenerates the protocol code")
    proc = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-Iharness/_proto=protos/harness", f"--python_out={tmp_path}",
         f"--grpc_python_out={tmp_path}", "protos/harness/v1/agent.proto"],
        cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for name in ("agent_pb2.py", "agent_pb2_grpc.py"):
        fresh = (tmp_path / "harness" / "_proto" / "v1" / name).read_text()
        committed = (ROOT / "harness" / "_proto" / "v1" / name).read_text()
        assert fresh == committed, f"harness/_proto/v1/{name} is stale: run `make protos`"
