"""The android driver against runners of every supported release range, on a
test phone behind a real adb server: the stand-in behaves as the
onnxruntime_perf_test of the release it is built as (its parser, its output,
its placement lines, its Android thread pool), so the driver must pass only
what that release takes and read what it prints."""

import threading

import pytest

import androidkit
import modelkit
from agents.android import create
from androidkit import QUICK, job

# One release per range the driver supports, with what that release prints.
RELEASES = ["1.12", "1.17", "1.20", "1.23", "1.24"]


def vt(version):
    return tuple(int(x) for x in version.split("."))


@pytest.fixture
def model(tmp_path):
    return modelkit.mlp(tmp_path / "m.onnx", batch=1)


def lab_for(tmp_path, version, **traits):
    folder = tmp_path / "lab" / version / "arm64-v8a"
    folder.mkdir(parents=True)
    perf = androidkit.install_perf_test(folder, version=version, **traits)
    lib = folder / "libonnxruntime.so"
    lib.write_bytes(b"\x7fELF stand-in for the runner's shared library\n")
    return {"perf_test": str(perf), "libs": [str(lib)], "eps": ["cpu", "xnnpack", "nnapi", "qnn"]}


def make_driver(tmp_path, adb_port, versions, **extra):
    cfg = {"runners": {v: lab_for(tmp_path, v) for v in versions}, "adb_port": adb_port}
    cfg.update(extra)
    return create(cfg)


def perf_runs(p):
    return [s.command for s in p.sessions_matching("onnxruntime_perf_test")]


@pytest.mark.parametrize("version", RELEASES)
def test_each_release_range_measures_and_places(phones, tmp_path, adb_port, model, version):
    p = phones.make()
    d = make_driver(tmp_path, adb_port, [version])
    d.devices()
    res = d.run(job(f"rel-{version}", p.serial, model, version=version), lambda *a: None, threading.Event())
    assert res.error is None, res.error
    assert res.runtime_version == version and len(res.samples_ms) >= QUICK.min_runs
    # `First inference time cost` exists from 1.15 (performance_runner.cc).
    assert (res.first_run_ms is None) == (vt(version) < (1, 15))
    # Placement from the verbose log in every release's wording (the old
    # `All nodes have been placed on [X].` before 1.13).
    assert res.placement is not None and "verbose log" in res.placement.source
    assert res.placement.nodes_by_ep == {"cpu": 3}
    assert res.memory.peak_bytes > 0
    for line in perf_runs(p):
        assert " -C " not in line or vt(version) >= (1, 18)


def test_options_a_runner_is_too_old_for_are_a_clear_result_and_nothing_runs(phones, tmp_path, adb_port, model):
    p = phones.make()
    d = make_driver(tmp_path, adb_port, ["1.17", "1.22"])
    d.devices()
    old = d.run(job("old-c", p.serial, model, version="1.17", options={"session.intra_op.allow_spinning": "0"}),
                lambda *a: None, threading.Event())
    assert old.error is not None and old.error.kind == "runner_too_old" and old.error.stage == "job"
    assert "too old" in old.error.message and "1.18" in old.error.message and "-C" in old.error.message
    layout = d.run(job("old-o", p.serial, model, version="1.22", options={"graph_optimization_level": "layout"}),
                   lambda *a: None, threading.Event())
    assert layout.error is not None and layout.error.kind == "runner_too_old" and "1.23" in layout.error.message
    assert perf_runs(p) == []  # refused before the phone was touched


def test_provider_options_the_cpu_ep_ignores_are_not_recorded_as_applied(phones, tmp_path, adb_port, model):
    p = phones.make()
    d = make_driver(tmp_path, adb_port, ["1.20"])
    d.devices()
    res = d.run(job("ignored-i", p.serial, model, options={"ep.some_key": "v"}), lambda *a: None, threading.Event())
    assert res.error is None, res.error
    assert "ep.some_key" not in res.options
    assert "ignores -i" in res.details["options_not_applied"]["ep.some_key"]
    assert all(" -i " not in line for line in perf_runs(p))
    assert any("ep.some_key" in w for w in res.validity.warnings)


def test_pinning_passes_the_thread_count_of_the_pinned_cores(phones, tmp_path, adb_port, model):
    # Four CPUs, one big one (cpu 1: the test phone's taskset is this host's,
    # so the big core must exist here too). ONNX Runtime on Android would
    # size its pool hardware_concurrency()/2 = 2 and set no affinity
    # (posix/env.cc), so without -x two threads would share the one pinned core.
    p = phones.make(cpu_max_khz=(1800000, 2850000, 1800000, 1800000))
    d = make_driver(tmp_path, adb_port, ["1.20"], pin="big")
    d.devices()
    res = d.run(job("pinned", p.serial, model), lambda *a: None, threading.Event())
    assert res.error is None, res.error
    assert res.details["affinity"]["mask"] == "2" and res.details["affinity"]["cpus"] == [1]
    assert res.details["threads"]["intra_op"] == 1 and "pinned" in res.details["threads"]["source"]
    runs = perf_runs(p)
    assert runs and all("exec taskset 2 " in line and " -x 1 " in line for line in runs)
    batch = res.details["batches"][0]
    assert batch["cpu_pct"] is not None and batch["cpu_pct_of_cores"] == 2  # perf_test's own denominator
    assert batch["cpu_cores_busy"] == pytest.approx(batch["cpu_pct"] / 100 * 2)


def test_without_pinning_the_android_default_pool_is_recorded(phones, tmp_path, adb_port, model):
    p = phones.make(cpu_max_khz=(1800000,) * 6 + (2850000,) * 2)
    d = make_driver(tmp_path, adb_port, ["1.20"])
    d.devices()
    res = d.run(job("unpinned", p.serial, model), lambda *a: None, threading.Event())
    assert res.error is None, res.error
    assert res.details["threads"]["intra_op"] == 4 and "hardware_concurrency" in res.details["threads"]["source"]
    assert all(" -x " not in line for line in perf_runs(p))
    explicit = d.run(job("explicit", p.serial, model, options={"intra_op_threads": "1"}), lambda *a: None,
                     threading.Event())
    assert explicit.error is None and explicit.details["threads"] == {"intra_op": 1, "source": "intra_op_threads"}


def test_phones_say_what_each_runner_can_and_cannot_measure(phones, tmp_path, adb_port):
    p = phones.make()
    d = make_driver(tmp_path, adb_port, ["1.14", "1.20", "1.23"])
    [dev] = [x for x in d.devices() if x.local_id == p.serial]
    assert dev.state == "ready"
    limits = dev.facts["limits"]
    # 1.14: no strict probe (-C from 1.18), no QNN (-e qnn from 1.15), no layout level (1.23).
    assert "1.14" in limits and "strict probe" in limits and "qnn" in limits
    runtimes = {r.version: r.eps for r in dev.runtimes}
    assert "qnn" not in runtimes["1.14"] and "qnn" in runtimes["1.20"]
    assert "1.23:" not in limits or "strict probe" not in limits.split("1.23:")[1]
