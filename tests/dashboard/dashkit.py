"""A dashboard on a real uvicorn server over a store filled with real runs:
the three runs `harness run` of release 0.1.0 wrote (tests/store/data),
upgraded, and copied into the store under test."""

import shutil
import threading
import time
from pathlib import Path

from harness.store import migrate
from harness.store.engine import locate
from harness.store.opening import open_store
from harness.store.transfer import copy_runs

FIXTURE = Path(__file__).resolve().parents[1] / "store" / "data" / "store-0.1.0.sqlite"
START_TIMEOUT_S = 30


def lab_store(url: str, tmp_path: Path) -> list[str]:
    """Fill the store at `url` with the fixture's runs; returns their ids."""
    old = tmp_path / "fixture.sqlite"
    shutil.copy(FIXTURE, old)
    migrate.upgrade(locate(str(old)))
    src, dst = open_store(str(old), readonly=True), open_store(url)
    try:
        return copy_runs(src, dst)["copied"]
    finally:
        src.close()
        dst.close()


class Dashboard:
    def __init__(self, url: str, listen: str = "127.0.0.1:0", token_file=None):
        from harness.dashboard.serve import bound_port, make_server

        self.server, self.store = make_server(url, listen, token_file)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("dashboard did not start")
            time.sleep(0.05)
        self.base = f"http://127.0.0.1:{bound_port(self.server)}"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(15)
        self.store.close()
