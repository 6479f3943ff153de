"""A bare ONNX Runtime timing loop, the baseline the host driver is held to.

`python -m bench._bare MODEL FEED.npz THREADS WARMUP N` prints the N
per-run latencies (ms) as JSON. It runs in a fresh process, as the host
driver's runner does, so both start from the same conditions.
"""

import json
import sys
import time


def main(model: str, feed_path: str, threads: int, warmup: int, n: int) -> None:
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    with np.load(feed_path) as data:
        feed = {k: data[k] for k in data.files}
    run = sess.run
    for _ in range(warmup):
        run(None, feed)
    perf = time.perf_counter
    samples = []
    for _ in range(n):
        t = perf()
        run(None, feed)
        samples.append((perf() - t) * 1e3)
    json.dump(samples, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
