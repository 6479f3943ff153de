"""A lab of simulated agents in one process of its own, for bench/fanout.py.

`python -m bench._simlab CONFIG.json ADDRESSES.json`: starts one real agent
(gRPC on 127.0.0.1:0, the `sim` driver) per entry of CONFIG.json's "agents"
(each a sim driver configuration), writes their addresses to
ADDRESSES.json, and serves until its stdin closes. Apart from the
controller's process, so the controller's CPU time and memory are its own.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(config: str, out: str) -> int:
    from agents.server import AgentConfig, start

    # What a lab's long-running agents imported long before a benchmark
    # starts: the sim driver counts a model's nodes with onnx and computes
    # probe outputs with ONNX Runtime, each imported on first use.
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401

    cfg = json.loads(Path(config).read_text())
    root = Path(config).parent
    agents = [start(AgentConfig(listen="127.0.0.1:0", drivers=("sim",), cache_dir=str(root / f"cache{i}"),
                                driver_config={"sim": sim}))
              for i, sim in enumerate(cfg["agents"])]
    tmp = Path(out + ".tmp")
    tmp.write_text(json.dumps([a.address for a in agents]))
    tmp.replace(out)
    try:
        sys.stdin.read()  # until the benchmark closes our stdin (or dies)
    finally:
        for a in agents:
            a.stop(grace=1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
