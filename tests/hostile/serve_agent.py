"""Serve one real agent in this process, configured by a JSON file.

    python serve_agent.py CONFIG.json PORT_FILE

The hostile-client tests start their agents through this script rather than
`harness agent serve` because they set limits an operator does not (a stall
floor of a second, a quota of a few MiB) so that each case ends quickly. The
JSON holds AgentConfig's fields; it is the same `agents.server.start` the
console script calls, in its own process, on 127.0.0.1:0.
"""

import dataclasses
import json
import signal
import sys
import threading
from pathlib import Path


def main(config_path: str, port_file: str) -> int:
    from agents.server import AgentConfig, start

    raw = json.loads(Path(config_path).read_text())
    # Fields this agent does not know are left out, so the same suite runs
    # against an agent without a given limit and shows the hole it leaves.
    known = {f.name for f in dataclasses.fields(AgentConfig)}
    agent = start(AgentConfig(**{k: v for k, v in raw.items() if k in known}))
    tmp = Path(port_file + ".tmp")
    tmp.write_text(str(agent.port))
    tmp.replace(port_file)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    agent.stop(1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
