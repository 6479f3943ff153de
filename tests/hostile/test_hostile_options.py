"""Options are data, never code or paths: a client that names a shared
library, a file to write or a key the runtime does not document is refused
with INVALID_ARGUMENT naming the key, before any driver sees the job.
Libraries with custom operators come only from the agent's own
configuration, by name."""

import grpc
import pytest

from hostilekit import assert_refused, cancel_quietly, next_id, onnx_model, refusal, run, upload
from hostilekit import job as make_job
from labkit import AgentProcess

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _host_device(agent) -> str:
    return next(d.id for d in agent.assert_alive().devices if d.driver == "host")


@pytest.fixture(scope="module")
def model(host_agent, tmp_path_factory):
    data = onnx_model(tmp_path_factory.mktemp("m") / "m.onnx")
    return upload(host_agent.stub, data).digest


@pytest.mark.parametrize("where", ["cache", "elsewhere"])
def test_a_library_path_from_the_wire_is_never_loaded(host_agent, model, marker_library, tmp_path, where):
    marker = tmp_path / "loaded.txt"
    lib = marker_library(marker, name=f"lib{where}.so")
    if where == "cache":
        # The attack of record: upload the library as a "model" (its sha256
        # names it in the cache, whose path is predictable) and point the
        # option at it.
        digest = upload(host_agent.stub, lib.read_bytes()).digest
        path = host_agent.cache_dir / "models" / digest
        assert path.is_file()
    else:
        path = lib
    j = make_job(f"lib.{where}", _host_device(host_agent), model, options={"custom_ops_library": str(path)})
    try:
        err = refusal(lambda: run(host_agent.stub, j, timeout=60))
    finally:
        cancel_quietly(host_agent.stub, j.job_id)
    assert_refused(err, INVALID, "custom_ops_library")
    assert not marker.exists(), "the library named on the wire was loaded"
    host_agent.assert_alive()
    assert host_agent.leftovers() == []


@pytest.mark.parametrize("device,ep,key,value", [
    ("host", "cpu", "session.no_such_key", "1"),
    # Keys ONNX Runtime documents that write files where the value says.
    ("host", "cpu", "session.collect_node_memory_stats_to_file", "/tmp/stats.txt"),
    ("host", "cpu", "session.optimized_model_external_initializers_file_name", "weights.bin"),
    ("host", "cpu", "session.debug_layout_transformation", "1"),
    ("host", "cpu", "ep.no_such_option", "1"),
    ("host", "cpu", "no_such_option", "1"),
    # QNN's backend_path is a shared library the EP loads.
    ("sim:phone", "qnn", "ep.backend_path", "/data/local/tmp/libQnnHtp.so"),
    ("sim:phone", "cpu", "session.node_partition_config_file", "/etc/passwd"),
    ("sim:web", "webgpu", "ep.device", "0"),
    ("sim:web", "wasm", "session.use_ort_model_bytes_directly", "1"),
    # Core ML targets take no options: the compute units are the target's ep.
    ("sim:iphone", "all", "intra_op_threads", "2"),
])
def test_keys_off_the_allow_list_are_refused_by_name(host_agent, model, device, ep, key, value):
    dev = _host_device(host_agent) if device == "host" else device
    runtime = {"sim:web": "onnxruntime-web", "sim:iphone": "coreml"}.get(device, "onnxruntime")
    j = make_job(next_id("opt"), dev, model, runtime=runtime, ep=ep,
                 fmt="onnx", options={key: value})
    try:
        err = refusal(lambda: run(host_agent.stub, j, timeout=60))
    finally:
        cancel_quietly(host_agent.stub, j.job_id)
    assert_refused(err, INVALID, key)
    host_agent.assert_alive()


def test_a_key_newer_than_the_device_runtime_is_refused(host_agent, model):
    # session.graph_optimizations_loop_level first appears in ONNX Runtime
    # 1.23's onnxruntime_session_options_config_keys.h; the phone has 1.20.0.
    j = make_job("opt.new", "sim:phone", model, options={"session.graph_optimizations_loop_level": "1"})
    err = refusal(lambda: run(host_agent.stub, j))
    assert_refused(err, INVALID, "session.graph_optimizations_loop_level", "1.23", "1.20.0")


@pytest.mark.parametrize("device,ep,key,value", [
    ("host", "cpu", "intra_op_threads", "nan"),
    ("host", "cpu", "intra_op_threads", "-1"),
    ("host", "cpu", "intra_op_threads", "1e9"),
    ("host", "cpu", "intra_op_threads", "99999999999999999999"),
    ("host", "cpu", "graph_optimization_level", "all\n"),
    # A core range the runner would expand into a set of a hundred million ints.
    ("host", "cpu", "cpu_affinity", "0-99999999"),
    ("host", "cpu", "session.intra_op.allow_spinning", "maybe"),
    ("sim:web", "wasm", "bundle", "../../../etc/passwd.js"),
    ("sim:web", "wasm", "num_threads", "1000"),
    # perf_test splits -C and -i on spaces: a value with a space smuggles in
    # another key (here QNN's backend library path).
    ("sim:phone", "qnn", "ep.htp_performance_mode", "burst backend_path|/data/local/tmp/evil.so"),
    ("sim:phone", "cpu", "session.intra_op.allow_spinning", "1 session.node_partition_config_file|/etc/passwd"),
])
def test_option_values_are_checked(host_agent, model, device, ep, key, value):
    dev = _host_device(host_agent) if device == "host" else device
    runtime = "onnxruntime-web" if device == "sim:web" else "onnxruntime"
    j = make_job(next_id("val"), dev, model, runtime=runtime, ep=ep, options={key: value})
    try:
        err = refusal(lambda: run(host_agent.stub, j, timeout=60))
    finally:
        cancel_quietly(host_agent.stub, j.job_id)
    assert_refused(err, INVALID, key)
    host_agent.assert_alive()


@pytest.mark.parametrize("options,words", [
    ({f"session.k{i}": "1" for i in range(10_000)}, ["target.options", "10000"]),
    ({"session." + "k" * 10_000: "1"}, ["target.options"]),
    ({"intra_op_threads": "1" * 10_000}, ["intra_op_threads"]),
])
def test_oversized_option_maps_are_refused(host_agent, model, options, words):
    j = make_job(next_id("opt.big"), "sim:phone", model, options=options)
    try:
        err = refusal(lambda: run(host_agent.stub, j))
    finally:
        cancel_quietly(host_agent.stub, j.job_id)
    assert_refused(err, INVALID, *words)
    host_agent.assert_alive()


@pytest.mark.parametrize("key,value", [
    ("session.disable_cpu_ep_fallb\u0430ck", "1"),          # Cyrillic a
    ("\uff49ntra_op_threads", "1"),                         # fullwidth i
    ("session.intra_op.allow_spinning", "\uff11"),          # fullwidth 1 (int() accepts it)
    ("intra_op_threads", "\u0663"),                         # Arabic-Indic 3 (int() accepts it)
])
def test_lookalike_keys_and_values_are_refused(host_agent, model, key, value):
    j = make_job(next_id("opt.uni"), "sim:phone", model, options={key: value})
    try:
        err = refusal(lambda: run(host_agent.stub, j))
    finally:
        cancel_quietly(host_agent.stub, j.job_id)
    assert err.code() == INVALID
    host_agent.assert_alive()


@pytest.mark.parametrize("device,runtime,ep,options", [
    ("host", "onnxruntime", "cpu", {"session.intra_op.allow_spinning": "0", "intra_op_threads": "1",
                                    "graph_optimization_level": "all"}),
    ("sim:phone", "onnxruntime", "nnapi", {"ep.NNAPI_FLAG_USE_FP16": "1", "session.disable_prepacking": "1"}),
    ("sim:phone", "onnxruntime", "qnn", {"ep.htp_performance_mode": "burst"}),
    ("sim:web", "onnxruntime-web", "webgpu", {"ep.preferredLayout": "NHWC", "num_threads": "2"}),
])
def test_allow_listed_options_run(host_agent, model, device, runtime, ep, options):
    dev = _host_device(host_agent) if device == "host" else device
    j = make_job(next_id("ok"), dev, model, runtime=runtime, ep=ep, options=options)
    _, res = run(host_agent.stub, j, timeout=120)
    assert not res.HasField("error"), res.error.message
    assert dict(res.runtime.options).items() >= options.items()


def _agent_with_custom_ops(tmp_path, libs: dict):
    cfg = tmp_path / "agent.yaml"
    cfg.write_text("custom_ops:\n" + "".join(f"  {name}: {path}\n" for name, path in libs.items()))
    return AgentProcess(tmp_path, "ops", drivers="host", config=cfg)


def test_custom_ops_come_from_the_agent_configuration_by_name(tmp_path, marker_library):
    import modelkit
    from harness._proto.v1 import agent_pb2 as pb
    from harness._proto.v1 import agent_pb2_grpc as pb_grpc

    marker = tmp_path / "loaded.txt"
    lib = marker_library(marker, name="libconfigured.so")
    proc = _agent_with_custom_ops(tmp_path, {"markerops": lib})
    ch = grpc.insecure_channel(proc.address)
    try:
        stub = pb_grpc.AgentStub(ch)
        dev = next(d.id for d in stub.Describe(pb.DescribeRequest(), timeout=60).devices if d.driver == "host")
        digest = upload(stub, (modelkit.mlp(tmp_path / "m.onnx", batch=1)).read_bytes()).digest
        _, res = run(stub, make_job("ops.1", dev, digest, options={"custom_ops": "markerops"}), timeout=120)
        assert not res.HasField("error"), res.error.message
        assert marker.read_text().count("loaded") >= 1, "the configured library was not loaded"
        for value, words in (("nope", ["custom_ops", "markerops"]), (str(lib), ["custom_ops"]),
                             ("markerops,../x", ["custom_ops"])):
            err = refusal(lambda: run(stub, make_job(next_id("ops"), dev, digest,
                                                      options={"custom_ops": value})))
            assert_refused(err, INVALID, *words)
        assert stub.Describe(pb.DescribeRequest(), timeout=30).devices
    finally:
        ch.close()
        proc.stop()


def test_custom_ops_configuration_is_checked_at_start(tmp_path):
    from labkit import harness_cli

    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"custom_ops:\n  missing: {tmp_path / 'no-such-lib.so'}\n")
    p = harness_cli("agent", "serve", "--listen", "127.0.0.1:0", "--config", cfg, cwd=tmp_path, timeout=60)
    assert p.returncode == 2
    assert "custom_ops.missing" in p.stderr and "no-such-lib.so" in p.stderr
    assert p.stderr.strip().count("\n") == 0, p.stderr


def test_the_probe_tensor_type_is_not_a_way_in(host_agent, model):
    # dtypes are a closed list on the wire: numpy would accept 'object' or a
    # structured spec and build something that is not a plain number array.
    for dtype in ("object", "O", "V8", "<f4,<i4", "float32\n"):
        probes = [pb_set("x", dtype, [1], b"\0" * 8)]
        j = make_job(next_id("dt"), "sim:phone", model, probes=probes)
        err = refusal(lambda: run(host_agent.stub, j))
        assert_refused(err, INVALID, "dtype")
    host_agent.assert_alive()


def pb_set(name, dtype, shape, data):
    from harness._proto.v1 import agent_pb2 as pb

    return pb.TensorSet(tensors=[pb.Tensor(name=name, dtype=dtype, shape=shape, data=data)])

