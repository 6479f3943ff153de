"""One report in a fresh process, for bench/aggregate.py: its time and its
memory above the process's level just before (so earlier work in the
benchmark's own process does not count).

`python -m bench._report STORE RUN OUT stream|whole` prints JSON:
{wall_s, cpu_s, rss_before_mb, growth_mb, doc_mb, json_mb}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main(store_url: str, run_id: str, out: str, mode: str) -> int:
    from harness.report.document import build_report, write_reports
    from harness.report.stream import write_run_reports
    from harness.store import open_store

    store = open_store(store_url, create=False)
    before = _status_kib("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS (Linux 4.0+)
    except OSError:
        pass
    c0, t0 = time.process_time(), time.perf_counter()
    if mode == "stream":
        doc = build_report(store, run_id, samples=False)
        held = _status_kib("VmRSS")
        write_run_reports(store, run_id, Path(out), doc=doc)
    else:
        doc = build_report(store, run_id)
        held = _status_kib("VmRSS")
        write_reports(doc, Path(out))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _status_kib("VmHWM")
    store.close()
    # doc_mb: what the document the report renders from takes (the records'
    # statistics, and in "whole" mode every sample too).
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "rss_before_mb": before / 1024, "growth_mb": (peak - before) / 1024,
                      "doc_mb": (held - before) / 1024, "json_mb": (Path(out) / "report.json").stat().st_size / 1e6}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
