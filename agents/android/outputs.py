"""Probe outputs from a phone, where the runner can give them.

onnxruntime_perf_test discards what session.Run returns (ort_test_session.cc),
so a release build cannot report outputs. ONNX Runtime built with
`--cmake_extra_defines onnxruntime_DEBUG_NODE_INPUTS_OUTPUTS=1` dumps node
outputs when told to by environment variables (debug_node_inputs_outputs_utils.h):
one TensorProto file per tensor, named after the tensor with every
non-alphanumeric character replaced by '_', plus `.tensorproto`. A lab that
builds perf_test that way as well (`outputs_perf_test` in agent.yaml) gets
each probe's graph outputs: one run per probe, the files pulled back.
"""

from __future__ import annotations

import re
from pathlib import Path

from agents.android.adb import Phone, RemoteFileError

NOTE_UNAVAILABLE = ("not collected: onnxruntime_perf_test discards the session's outputs (ort_test_session.cc "
                    "Run()); give this runner an outputs_perf_test built with onnxruntime_DEBUG_NODE_INPUTS_OUTPUTS=1 "
                    "to collect them")

# Graph outputs to files; no per-node shape or placement lines on stdout.
# Compiled EPs (NNAPI, QNN) fuse nodes under names unknown beforehand, so
# the dump is not filtered by node name and the run must confirm that.
NODE_IO_ENV = {
    "ORT_DEBUG_NODE_IO_DUMP_OUTPUT_DATA": "1",
    "ORT_DEBUG_NODE_IO_DUMP_DATA_DESTINATION": "files",
    "ORT_DEBUG_NODE_IO_DUMPING_DATA_TO_FILES_FOR_ALL_NODES_IS_OK": "1",
    "ORT_DEBUG_NODE_IO_DUMP_SHAPE_DATA": "0",
    "ORT_DEBUG_NODE_IO_DUMP_NODE_PLACEMENT": "0",
}


def graph_outputs(model: Path) -> list[str]:
    import onnx

    return [o.name for o in onnx.load(str(model), load_external_data=False).graph.output]


def dump_name(tensor: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", tensor) + ".tensorproto"


def read_dump(phone: Phone, folder: str, names: list[str]):
    """{name: array} from folder, or the reason it cannot be had."""
    import onnx
    from onnx import numpy_helper

    got = {}
    for name in names:
        try:
            blob = phone.read(f"{folder}/{dump_name(name)}")
        except RemoteFileError:
            return f"the runner wrote no {dump_name(name)} (is it a node-IO dump build?)"
        t = onnx.TensorProto()
        t.ParseFromString(blob)
        got[name] = numpy_helper.to_array(t)
    return got
