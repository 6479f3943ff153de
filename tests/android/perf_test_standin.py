"""A stand-in for ONNX Runtime's `onnxruntime_perf_test`, built for a test phone.

The tests copy this file into a lab folder as `onnxruntime_perf_test` (with a
shebang and a BUILD line in front) and the Android driver pushes it to the
test phone like the real binary. It runs the model with the real ONNX
Runtime (Python) and behaves as the real program does, as read in
onnxruntime/test/perftest (command_args_parser.cc, main.cc,
performance_runner.cc, ort_test_session.cc, TestCase.cc):

* flags in abseil style (`-r 5`, `--r=5`, boolean `-v`), positional
  `model_path [result_file]`; unknown flags end with abseil's error;
* test data from `test_data_set_*/input_*.pb` beside the model (or `-I`);
* one warm-up run, then `-m times -r N` or `-m duration -t S`;
* `-p PREFIX` writes ONNX Runtime's profile `PREFIX_<date>_<time>.json`;
* `-C "k|v ..."` session config entries, `-x`/`-y` threads, `-o` level;
* the summary block and per-run result file of recent versions
  ("Average inference time cost total: ... ms", "P50 Latency: ... s");
* errors: exceptions go to stderr and the exit status is 255 (main returns -1);
* EPs this build lacks fail with "... is not supported in this build";
* on Android ONNX Runtime logs to logcat (AndroidLogSink: tag = category,
  text " [V:onnxruntime:<logger>, <file:line func>] <message>"), so logs are
  written to the test phone's log buffer, not to stderr;
* a build with onnxruntime_DEBUG_NODE_INPUTS_OUTPUTS=1 (BUILD["debug_node_io"])
  honours the ORT_DEBUG_NODE_IO_* variables and writes `<name>.tensorproto`
  files (debug_node_inputs_outputs_utils.cc); only graph outputs are written
  here, since the Python runtime exposes no intermediate values;
* the dynamic linker refuses to start it unless LD_LIBRARY_PATH holds the
  shared libraries it needs (bionic's "CANNOT LINK EXECUTABLE").
"""

import json
import os
import random
import re
import resource
import sys
import time

BUILD = globals().get("BUILD") or {}
SUPPORTED = {"cpu": "CPUExecutionProvider"}
NOT_IN_BUILD = {
    "cuda": "CUDA", "dnnl": "DNNL", "tensorrt": "TensorRT", "openvino": "OpenVINO", "qnn": "QNN",
    "snpe": "SNPE", "nnapi": "NNAPI", "coreml": "COREML", "dml": "DML", "acl": "Acl", "armnn": "ArmNN",
    "rocm": "ROCM", "migraphx": "MIGraphX", "xnnpack": "Xnnpack", "vitisai": "VitisAI", "webgpu": "WebGPU",
}
VALUE_FLAGS = set("fFmerptxycdouiSTCRb") | {"plugin_ep_libs", "plugin_eps", "plugin_ep_options", "select_ep_devices"}
BOOL_FLAGS = set("AMsvIPqzDZnlgX") | {"list_ep_devices"}
SESSION_CC = "/onnxruntime_src/onnxruntime/test/perftest/ort_test_session.cc"


def usage() -> None:
    print("onnxruntime_perf_test [options...] model_path [result_file]\n\n"
          "Note: Options may be specified with either a single dash(-option) or a double dash(--option)."
          "Both forms are accepted and treated identically.\n\nOptions:")


def parse(argv):
    flags, positional = {}, []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            positional.extend(argv[i + 1:])
            break
        if a.startswith("-") and len(a) > 1:
            name, eq, value = a.lstrip("-").partition("=")
            if name in BOOL_FLAGS:
                flags[name] = value not in ("false", "0") if eq else True
            elif name in VALUE_FLAGS:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        print(f"ERROR: Missing the value for the flag '{name}'", file=sys.stderr)
                        sys.exit(1)
                    value = argv[i]
                flags[name] = value
            else:
                print(f"ERROR: Unknown command line flag '{name}'", file=sys.stderr)
                sys.exit(1)
        else:
            positional.append(a)
        i += 1
    return flags, positional


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
        with open(self.tmp, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                m = _CLOG.match(line.rstrip("\n"))
                if m:
                    sev, cat, logger, where, msg = m.groups()
                    self.log.write(sev, cat or "onnxruntime", f" [{sev}:{cat}:{logger}, {where}] {msg}\n")
                elif line.strip():
                    self.log.write("I", "onnxruntime", line)
        os.unlink(self.tmp)
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


def main(argv) -> int:
    check_linker()
    flags, positional = parse(argv)
    mode = flags.get("m", "duration")
    if mode not in ("duration", "times") or len(positional) not in (1, 2):
        usage()
        return 255
    repeated, duration = 1000, 600
    if "r" in flags:
        repeated = int(flags["r"])
        if repeated <= 0:
            usage()
            return 255
        mode = "times"
    if "t" in flags:
        duration = int(flags["t"])
        if duration <= 0:
            usage()
            return 255
        mode = "duration"
    model_path = positional[0]
    result_file = positional[1] if len(positional) == 2 else None
    dump_stats = bool(flags.get("s")) or result_file is None
    ep = flags.get("e", "cpu")
    if ep not in SUPPORTED and ep not in NOT_IN_BUILD:
        usage()
        return 255

    import onnxruntime as ort

    log = Liblog()
    verbose = bool(flags.get("v"))
    ort.set_default_logger_severity(0 if verbose else 2)
    so = ort.SessionOptions()
    so.log_severity_level = 0 if verbose else 2
    if verbose:
        so.log_verbosity_level = 0
    if int(flags.get("x", 0)) > 0:
        print(f"Setting intra_op_num_threads to {int(flags['x'])}")
        so.intra_op_num_threads = int(flags["x"])
    level = int(flags.get("o", 99))
    so.graph_optimization_level = {0: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                                   1: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                   2: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}.get(
        level, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    for pair in flags.get("C", "").split():
        key, sep, value = pair.partition("|")
        if not sep or not key or not value:
            fail("Error parsing session configuration entries: Use a '|' to separate the key and value for the "
                 "run-time option you are trying to use.")
        so.add_session_config_entry(key, value)
    if flags.get("p"):
        so.enable_profiling = True
        so.profile_file_prefix = flags["p"]
    tmpdir = os.path.dirname(os.path.abspath(model_path))

    if ep in NOT_IN_BUILD:
        fail(f"{SESSION_CC}:{400 + len(ep)} onnxruntime::perftest::OnnxRuntimeTestSession::OnnxRuntimeTestSession"
             f"(Ort::Env&, std::random_device&, const onnxruntime::perftest::PerformanceTestConfig&, "
             f"const TestModelInfo&) {NOT_IN_BUILD[ep]} is not supported in this build\n")
    providers = [SUPPORTED[ep]]
    if ep == "cpu" and "session.disable_cpu_ep_fallback|1" in flags.get("C", "").split() \
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

    if flags.get("I"):
        data = [generated_inputs(sess, int(flags.get("S", -1)))]
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

    def one_run():
        feed = data[rng.randrange(len(data))]
        start = time.perf_counter()
        values = sess.run(None, feed)
        cost = time.perf_counter() - start
        dump.after_run(output_names, values)
        return cost

    try:
        with Fd2ToLogcat(log, tmpdir):
            w0 = time.perf_counter()
            one_run()
            first_ms = int((time.perf_counter() - w0) * 1000)
            costs = []
            cpu0, start = time.process_time(), time.perf_counter()
            if mode == "times":
                for _ in range(repeated):
                    costs.append(one_run())
            else:
                while time.perf_counter() - start < duration:
                    costs.append(one_run())
            run_time = time.perf_counter() - start
            cpu_pct = int((time.process_time() - cpu0) / max(run_time, 1e-9) / (os.cpu_count() or 1) * 100)
            if flags.get("p"):
                sess.end_profiling()
            sess = None  # destroyed here so its last log lines go to logcat too
    except Exception as exc:
        print("Run failed:" + strip_prefix(exc))
        return 255
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    total = sum(costs)
    g = lambda x: format(x, "g")  # C++ ostream's default formatting of a double
    print(f"Session creation time cost: {g(created)} s")
    print(f"First inference time cost: {first_ms} ms")
    print(f"Total inference time cost: {g(total)} s")
    print(f"Total inference requests: {len(costs)}")
    print(f"Average inference time cost total: {total / len(costs) * 1000:f} ms")
    print(f"Total inference run time: {g(run_time)} s")
    print(f"Number of inferences per second: {g(len(costs) / run_time)}")
    print(f"Avg CPU usage: {cpu_pct} %")
    print(f"Peak working set size: {peak} bytes")
    have_file = result_file is not None
    if have_file:
        with open(result_file, "a") as fh:
            for i, c in enumerate(costs):
                fh.write(f"{case_name},{g(c)},{peak},{cpu_pct},{i}\n")
    else:
        print(f"Avg CPU usage:{cpu_pct}\nPeak working set size:{peak}\nRuns:{len(costs)}")
    if costs and dump_stats:
        s = sorted(costs)
        n = len(s)
        lines = [f"Min Latency: {g(s[0])} s", f"Max Latency: {g(s[-1])} s"]
        for label, q in (("P50", 0.5), ("P90", 0.9), ("P95", 0.95), ("P99", 0.99), ("P999", 0.999)):
            lines.append(f"{label} Latency: {g(s[int(n * q)])} s")
        if have_file:
            with open(result_file, "a") as fh:
                fh.write("\n" + "\n".join(lines) + "\n")
        print("\n".join(lines))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
