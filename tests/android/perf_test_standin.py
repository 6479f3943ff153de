"""A stand-in for ONNX Runtime's `onnxruntime_perf_test`, built for a test phone.

The tests copy this file into a lab folder as `onnxruntime_perf_test` (with a
shebang and a BUILD line in front) and the Android driver pushes it to the
test phone like the real binary. It runs the model with the real ONNX
Runtime (Python) and behaves as the real program of BUILD["version"] does,
as read in onnxruntime/test/perftest at that release (command_args_parser.cc,
main.cc, performance_runner.cc, ort_test_session.cc, posix/utils.cc) and in
core/platform/posix/env.cc and core/framework/session_state.cc. The release
trees and the commit that introduced each behaviour are listed in the
project's notes on the mobile sources; in short:

* the parser: getopt up to 1.22 (its option string grows per release: `S`
  1.13, `T` 1.14, `D Z` 1.15, `C n` and no `b` 1.18, `l` 1.19, `R` 1.20);
  any failure prints the usage block to stdout and exits 255. From 1.23 the
  abseil parser: unknown flags and untyped values are abseil's own `ERROR:`
  lines (exit 1); a value the code rejects prints only
  `See 'onnxruntime_perf_test --help'.` to stderr (exit 255);
* `-o 3` (layout) exists from 1.23; `-e qnn|vitisai` from 1.15, `vsinpu`
  1.19, `webgpu` 1.20; `-C` from 1.18, a token without `|` is silent before
  1.21 and names the problem from 1.21;
* the summary: `First inference time cost` from 1.15; from 1.24
  `Average inference time cost total: %f ms` and the `-v` run lines with
  submission/total times; the result file is 5 columns of seconds in every
  release;
* on Android the intra-op pool is `hardware_concurrency()/2` threads unless
  `-x` says otherwise, ORT sets no thread affinity, and the CPU figure is
  divided by that same count (posix/env.cc DefaultNumCores, posix/utils.cc);
  the online CPUs are read from the test phone's
  /sys/devices/system/cpu/online;
* node placement lines go to logcat (AndroidLogSink: tag = category, text
  " [V:onnxruntime:<logger>, <file:line func>] <message>"), in the wording of
  the release: before 1.13 `All nodes have been placed on [X].` or
  ` Provider: [X]: [Op (name), ]`, from 1.13 the `Number of nodes:` lines;
* `-i` is read only by the EPs that read it at that release; this build has
  only the CPU EP, which never reads it;
* errors: exceptions go to stderr and the exit status is 255 (main returns -1);
  EPs this build lacks fail with "... is not supported in this build";
* a build with onnxruntime_DEBUG_NODE_INPUTS_OUTPUTS=1 (BUILD["debug_node_io"])
  honours the ORT_DEBUG_NODE_IO_* variables and writes `<name>.tensorproto`
  files (debug_node_inputs_outputs_utils.cc); only graph outputs are written
  here, since the Python runtime exposes no intermediate values;
* the dynamic linker refuses to start it unless LD_LIBRARY_PATH holds the
  shared libraries it needs (bionic's "CANNOT LINK EXECUTABLE").

This file is the second half of the script: the build and the command line
(BUILD, VERSION, parse, Reject, ...) come from perf_test_cli.py, which
androidkit.install_perf_test writes in front of it.
"""

import json
import os
import random
import re
import resource
import sys
import time

# -- the phone -------------------------------------------------------------------------
def phone_path(path):
    root = os.environ.get("PHONE_ROOT", "")
    return os.path.join(root, path.lstrip("/")) if root else path


def online_cpus():
    """What hardware_concurrency() counts: the online CPUs, not the taskset mask."""
    try:
        text = open(phone_path("/sys/devices/system/cpu/online")).read().strip()
    except OSError:
        return os.cpu_count() or 1
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


class Liblog:
    """__android_log_print into the test phone's log buffer."""

    def __init__(self):
        root = os.environ.get("PHONE_ROOT", "")
        self.path = os.path.join(root, "dev", "log", "main") if root else None

    def write(self, prio: str, tag: str, msg: str) -> None:
        if not self.path:
            return
        entry = {"pid": os.getpid(), "prio": prio, "tag": tag, "msg": msg,
                 "time": time.strftime("%m-%d %H:%M:%S.000")}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")


_CLOG = re.compile(r"^\S+ \S+ \[([VIWEF]):([^:\]]*):([^,\]]*), ([^\]]*)\] (.*)$")
_PLACED = re.compile(r"^ (All nodes|Node\(s\)) placed on \[(\w+)\]\. Number of nodes: \d+$")


def legacy_placement(entries):
    """The placement block as session_state.cc printed it before 1.13."""
    out, i = [], 0
    while i < len(entries):
        sev, cat, logger, where, msg = entries[i]
        m = _PLACED.match(msg)
        if not m:
            out.append(entries[i])
            i += 1
            continue
        nodes = []
        i += 1
        while i < len(entries) and entries[i][4].startswith("  ") and not _PLACED.match(entries[i][4]):
            nodes.append(entries[i][4].strip())
            i += 1
        if m.group(1) == "All nodes":
            out.append((sev, cat, logger, where, f"All nodes have been placed on [{m.group(2)}]."))
        else:
            out.append((sev, cat, logger, where, f" Provider: [{m.group(2)}]: [" + "".join(n + ", " for n in nodes)
                        + "]"))
    return out


class Fd2ToLogcat:
    """ONNX Runtime's C++ logger writes to fd 2; on Android it writes to
    logcat instead, so fd 2 is captured and replayed as log entries."""

    def __init__(self, log: Liblog, tmpdir: str):
        self.log, self.tmp = log, os.path.join(tmpdir, f".ortlog-{os.getpid()}")

    def __enter__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 2)
        os.close(fd)
        return self

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        entries, plain = [], []
        with open(self.tmp, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                m = _CLOG.match(line.rstrip("\n"))
                if m:
                    entries.append(m.groups())
                elif line.strip():
                    plain.append(line)
        os.unlink(self.tmp)
        if VERSION < (1, 13):
            entries = legacy_placement(entries)
        for sev, cat, logger, where, msg in entries:
            self.log.write(sev, cat or "onnxruntime", f" [{sev}:{cat}:{logger}, {where}] {msg}\n")
        for line in plain:
            self.log.write("I", "onnxruntime", line)
        return False


def fail(message: str) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(255)  # main() returns -1; skip destructors that would log to stderr here


def strip_prefix(exc: BaseException) -> str:
    """what() of the C++ exception: the message without Python's prefix."""
    return re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", str(exc))


def check_linker() -> None:
    for lib in BUILD.get("needs", []):
        dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
        if not any(os.path.isfile(os.path.join(d, lib)) for d in dirs):
            sys.stderr.write(f'CANNOT LINK EXECUTABLE "{sys.argv[0]}": library "{lib}" not found: '
                             f"needed by main executable\n")
            sys.stderr.flush()
            os.abort()


def load_test_data(model_path: str, input_names):
    import onnx
    from onnx import numpy_helper

    case_dir = os.path.dirname(os.path.abspath(model_path))
    sets = sorted(d for d in os.listdir(case_dir) if d.startswith("test_data_set_")
                  and os.path.isdir(os.path.join(case_dir, d)))
    data = []
    for d in sets:
        files = sorted((f for f in os.listdir(os.path.join(case_dir, d)) if re.match(r"input_\d+\.pb$", f)),
                       key=lambda f: int(f[6:-3]))
        feed = {}
        for idx, f in enumerate(files):
            t = onnx.TensorProto()
            with open(os.path.join(case_dir, d, f), "rb") as fh:
                t.ParseFromString(fh.read())
            feed[t.name or input_names[idx]] = numpy_helper.to_array(t)
        data.append(feed)
    return data, os.path.basename(case_dir)


def generated_inputs(sess, seed: int):
    import numpy as np

    types = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
             "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
             "tensor(bool)": np.bool_, "tensor(float16)": np.float16}
    feed = {}
    rng = random.Random(seed)
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
        dt = types[i.type]
        if seed >= 0 and dt == np.float32:
            arr = np.array([rng.uniform(0, 5) for _ in range(int(np.prod(shape)))], dtype=dt).reshape(shape)
        else:
            arr = np.zeros(shape, dtype=dt)
        feed[i.name] = arr
    return feed


class NodeIoDump:
    """The dumping a DEBUG_NODE_INPUTS_OUTPUTS build does after each node."""

    def __init__(self, model_path: str):
        env = os.environ.get
        self.on = bool(BUILD.get("debug_node_io")) and env("ORT_DEBUG_NODE_IO_DUMP_OUTPUT_DATA", "0") not in ("", "0")
        if not self.on:
            return
        if env("ORT_DEBUG_NODE_IO_DUMP_DATA_DESTINATION", "stdout") != "files":
            raise RuntimeError("this test build dumps to files only")
        self.names = [p for p in env("ORT_DEBUG_NODE_IO_NAME_FILTER", "").split(";") if p]
        self.ops = [p for p in env("ORT_DEBUG_NODE_IO_OP_TYPE_FILTER", "").split(";") if p]
        if not self.names and not self.ops and env("ORT_DEBUG_NODE_IO_DUMPING_DATA_TO_FILES_FOR_ALL_NODES_IS_OK",
                                                   "0") in ("", "0"):
            raise RuntimeError(
                "The current environment variable configuration will dump node input or output data to files for "
                "every node. This may cause a lot of files to be generated. Set the environment variable "
                "ORT_DEBUG_NODE_IO_DUMPING_DATA_TO_FILES_FOR_ALL_NODES_IS_OK to confirm this is what you want.")
        self.out_dir = env("ORT_DEBUG_NODE_IO_OUTPUT_DIR", "")
        import onnx

        model = onnx.load(model_path, load_external_data=False)
        self.producer = {o: n for n in model.graph.node for o in n.output}

    def after_run(self, output_names, values) -> None:
        if not self.on:
            return
        from onnx import numpy_helper

        for name, value in zip(output_names, values):
            node = self.producer.get(name)
            if node is None or (self.names and node.name not in self.names) \
                    or (self.ops and node.op_type not in self.ops):
                continue
            sys.stdout.write(f"-----------\nOutput 0 Name: {name}\n\n")
            fname = re.sub(r"[^A-Za-z0-9]", "_", name) + ".tensorproto"
            with open(os.path.join(self.out_dir, fname), "wb") as fh:
                fh.write(numpy_helper.from_array(value, name).SerializeToString())


def g(x):
    return format(x, "g")  # C++ ostream's default formatting of a double


def main(argv) -> int:
    check_linker()
    cfg = parse(argv)
    ep = cfg["ep"]

    import onnxruntime as ort

    log = Liblog()
    verbose = cfg["verbose"]
    ort.set_default_logger_severity(0 if verbose else 2)
    so = ort.SessionOptions()
    so.log_severity_level = 0 if verbose else 2
    if verbose:
        so.log_verbosity_level = 0
    # posix/env.cc: on Android the default pool is hardware_concurrency()/2.
    pool = max(1, online_cpus() // 2)
    if cfg["x"] > 0:
        print(f"Setting intra_op_num_threads to {cfg['x']}")
        so.intra_op_num_threads = cfg["x"]
    else:
        so.intra_op_num_threads = pool
    so.graph_optimization_level = {0: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                                   1: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                   2: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                   3: ort.GraphOptimizationLevel.ORT_ENABLE_LAYOUT}.get(
        cfg["o"], ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    for key, value in cfg["session"].items():
        so.add_session_config_entry(key, value)
    if cfg["profile"]:
        so.enable_profiling = True
        so.profile_file_prefix = cfg["profile"]
    model_path = cfg["model"]
    tmpdir = os.path.dirname(os.path.abspath(model_path))

    if ep in NOT_IN_BUILD:
        fail(f"{SESSION_CC}:{400 + len(ep)} onnxruntime::perftest::OnnxRuntimeTestSession::OnnxRuntimeTestSession"
             f"(Ort::Env&, std::random_device&, const onnxruntime::perftest::PerformanceTestConfig&, "
             f"const TestModelInfo&) {NOT_IN_BUILD[ep]} is not supported in this build\n")
    providers = [SUPPORTED[ep]]
    if ep == "cpu" and cfg["session"].get("session.disable_cpu_ep_fallback") == "1" \
            and "AzureExecutionProvider" in ort.get_available_providers():
        # perf_test appends no EP for `-e cpu`, so the CPU EP is only ONNX
        # Runtime's default one; the Python API cannot leave the list empty,
        # and an EP that claims no node gives the same session.
        providers = ["AzureExecutionProvider"]
    t0 = time.perf_counter()
    try:
        with Fd2ToLogcat(log, tmpdir):
            sess = ort.InferenceSession(model_path, so, providers=providers)
    except Exception as exc:
        fail(strip_prefix(exc))
    created = time.perf_counter() - t0
    input_names = [i.name for i in sess.get_inputs()]
    output_names = [o.name for o in sess.get_outputs()]

    if cfg["I"]:
        data = [generated_inputs(sess, cfg["S"])]
        case_name = os.path.basename(os.path.dirname(os.path.abspath(model_path)))
    else:
        data, case_name = load_test_data(model_path, input_names)
        if not data:
            print(f"there is no test data for model {case_name}")
            print("Run failed:failed to initialize.")
            return 255
        for feed in data:
            for n in input_names:
                if n not in feed:
                    print(f"there is no test input data for input {n} and model {case_name}")
                    print("Run failed:failed to initialize.")
                    return 255
    try:
        dump = NodeIoDump(model_path)
    except RuntimeError as exc:
        fail(str(exc))
    rng = random.Random()

    def one_run(warmup=False):
        feed = data[rng.randrange(len(data))]
        start = time.perf_counter()
        values = sess.run(None, feed)
        cost = time.perf_counter() - start
        dump.after_run(output_names, values)
        if verbose and not warmup:
            n = len(costs) + 1
            if VERSION >= (1, 24):
                print(f"iteration:{n},time_cost_submission:{g(cost)},time_cost_total:{g(cost)}")
            else:
                print(f"iteration:{n},time_cost:{g(cost)}")
        return cost

    costs = []
    try:
        with Fd2ToLogcat(log, tmpdir):
            w0 = time.perf_counter()
            one_run(warmup=True)
            first_ms = int((time.perf_counter() - w0) * 1000)
            cpu0, start = time.process_time(), time.perf_counter()
            if cfg["mode"] == "times":
                for _ in range(cfg["repeated"]):
                    costs.append(one_run())
            else:
                while time.perf_counter() - start < cfg["duration"]:
                    costs.append(one_run())
            run_time = time.perf_counter() - start
            # posix/utils.cc: divided by GetNumPhysicalCpuCores(), ncpus/2 on Android.
            cpu_pct = int((time.process_time() - cpu0) / max(run_time, 1e-9) / pool * 100)
            if cfg["profile"]:
                sess.end_profiling()
            sess = None  # destroyed here so its last log lines go to logcat too
    except Exception as exc:
        print("Run failed:" + strip_prefix(exc))
        return 255
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    total = sum(costs)
    lines = [f"Session creation time cost: {g(created)} s"]
    if VERSION >= (1, 15):
        lines.append(f"First inference time cost: {first_ms} ms")
    lines += [f"Total inference time cost: {g(total)} s", f"Total inference requests: {len(costs)}"]
    if VERSION >= (1, 24):
        lines.append(f"Average inference time cost total: {total / len(costs) * 1000:f} ms")
    else:
        lines.append(f"Average inference time cost: {g(total / len(costs) * 1000)} ms")
    lines += [f"Total inference run time: {g(run_time)} s",
              f"Number of inferences per second: {g(len(costs) / run_time)} ",
              f"Avg CPU usage: {cpu_pct} %", f"Peak working set size: {peak} bytes"]
    print("\n".join(lines))
    result_file = cfg["result_file"]
    if result_file is not None:
        with open(result_file, "a") as fh:
            for i, c in enumerate(costs):
                fh.write(f"{case_name},{g(c)},{peak},{cpu_pct},{i}\n")
    else:
        print(f"Avg CPU usage:{cpu_pct}\nPeak working set size:{peak}\nRuns:{len(costs)}")
    if costs and cfg["stats"]:
        s = sorted(costs)
        n = len(s)
        stats = [f"Min Latency: {g(s[0])} s", f"Max Latency: {g(s[-1])} s"]
        for label, q in (("P50", 0.5), ("P90", 0.9), ("P95", 0.95), ("P99", 0.99), ("P999", 0.999)):
            stats.append(f"{label} Latency: {g(s[int(n * q)])} s")
        if result_file is not None:
            with open(result_file, "a") as fh:
                fh.write("\n" + "\n".join(stats) + "\n")
        print("\n".join(stats))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
