"""The android driver's reading of the real tools, release by release: each
case is what onnxruntime_perf_test, ONNX Runtime, adb or Android print at the
release named (the sources and commits are listed in the driver's comments).
Pure functions only; the phone-level behaviour is in test_android_releases."""

import json

import pytest

from agents import placement as pl
from agents.android import adb, facts, perftest, releases


# -- onnxruntime_perf_test: which flags a release takes --------------------------------
def test_session_entries_need_a_1_18_runner():
    with pytest.raises(releases.TooOld) as exc:
        releases.plan_options("cpu", {"session.intra_op.allow_spinning": "0"}, "1.17")
    assert "too old" in str(exc.value) and "-C" in str(exc.value) and "1.18" in str(exc.value)
    plan = releases.plan_options("cpu", {"session.intra_op.allow_spinning": "0"}, "1.18")
    assert plan.flags == ["-C", "session.intra_op.allow_spinning|0"]


def test_layout_optimisation_level_needs_a_1_23_runner():
    with pytest.raises(releases.TooOld, match="1.23"):
        releases.plan_options("cpu", {"graph_optimization_level": "layout"}, "1.22")
    assert releases.plan_options("cpu", {"graph_optimization_level": "layout"}, "1.23").flags == ["-o", "3"]
    assert releases.plan_options("cpu", {"graph_optimization_level": "all"}, "1.12").flags == ["-o", "99"]


def test_ep_names_by_release():
    assert releases.ep_too_old("qnn", "1.14") is not None and releases.ep_too_old("qnn", "1.15") is None
    assert "1.20" in str(releases.ep_too_old("webgpu", "1.19")) and releases.ep_too_old("webgpu", "1.20") is None
    assert releases.ep_too_old("nnapi", "1.12") is None and releases.ep_too_old("xnnpack", "1.12") is None


def test_the_strict_probe_needs_session_entries():
    assert releases.STRICT_PROBE_SINCE == (1, 18)


@pytest.mark.parametrize("ep,version", [("cpu", "1.20"), ("xnnpack", "1.23"), ("webgpu", "1.22"),
                                        ("qnn", "1.14"), ("acl", "1.19")])
def test_provider_options_an_ep_ignores_are_not_passed_or_recorded_as_applied(ep, version):
    plan = releases.plan_options(ep, {"ep.some_key": "v", "intra_op_threads": "2"}, version)
    assert "-i" not in plan.flags and plan.flags == ["-x", "2"]
    assert plan.applied == {"intra_op_threads": "2"}
    assert "ep.some_key" in plan.not_applied and "ignores -i" in plan.not_applied["ep.some_key"]


@pytest.mark.parametrize("ep,version,want", [("qnn", "1.15", ["-i", "backend_type|htp"]),
                                             ("nnapi", "1.12", ["-i", "NNAPI_FLAG_USE_FP16"]),
                                             ("acl", "1.20", ["-i", "enable_fast_math|true"])])
def test_provider_options_an_ep_reads_are_passed(ep, version, want):
    opts = {"qnn": {"ep.backend_type": "htp"}, "nnapi": {"ep.NNAPI_FLAG_USE_FP16": "1"},
            "acl": {"ep.enable_fast_math": "true"}}[ep]
    plan = releases.plan_options(ep, opts, version)
    assert plan.flags == want and plan.applied == opts and not plan.not_applied


# -- onnxruntime_perf_test: how a release says no ----------------------------------------
@pytest.mark.parametrize("code,stdout,stderr", [
    (255, "", "See 'onnxruntime_perf_test --help'."),  # 1.23+: a value the parser rejects
    (1, "", "ERROR: Illegal value 'abc' specified for flag 'x'\n"),  # abseil, untyped value
    (255, "perf_test [options...] model_path [result_file]\nOptions:\n", "onnxruntime_perf_test: unknown option -- C\n"),
    (255, "perf_test [options...] model_path [result_file]\nOptions:\n", ""),  # getopt: a rejected value
])
def test_every_parser_refusal_is_a_bad_option(code, stdout, stderr):
    assert perftest.classify_failure(code, stdout, stderr) == "bad_option"


def test_a_build_with_stripped_flag_names_is_a_broken_runner():
    err = "ERROR: Unknown command line flag 'e'\nERROR: NOTE: command line flags are disabled in this build\n"
    assert perftest.classify_failure(1, "", err) == "runner_broken"


# -- onnxruntime_perf_test: what it prints ---------------------------------------------
def test_the_result_file_is_seconds_in_every_release():
    # Whole seconds stay seconds: no release writes nanoseconds (performance_runner.cc DumpToFile).
    assert perftest.parse_result_file("m,1,1,1,0\nm,2,1,1,1\n") == [1000.0, 2000.0]
    assert perftest.parse_result_file("m,1,1,1,0\nm,2,1,1,1\n", average_ms=1500.0) == [1000.0, 2000.0]
    text = "measure,0.0121,188153856,96,0\nmeasure,1.5e-05,188153856,96,1\n\nMin Latency: 1.5e-05 s\n"
    assert perftest.parse_result_file(text) == pytest.approx([12.1, 0.015])


def test_average_line_of_1_24_and_of_earlier_releases():
    old = perftest.parse_summary("Total inference requests: 4\nAverage inference time cost: 12.5 ms\n")
    new = perftest.parse_summary("Total inference requests: 4\nAverage inference time cost total: 12.500000 ms\n")
    assert old.average_ms == new.average_ms == 12.5


def test_cpu_figure_is_read_against_android_half_core_count():
    # posix/utils.cc divides by GetNumPhysicalCpuCores(), hardware_concurrency()/2 on Android.
    assert releases.cpu_cores_busy(150, online_cpus=8) == pytest.approx(6.0)
    assert releases.cpu_cores_busy(100, online_cpus=1) == pytest.approx(1.0)
    assert releases.cpu_cores_busy(None, online_cpus=8) is None


def test_adsp_library_path_keeps_the_system_dsp_folders():
    line = perftest.launch_command("/d/j", "/d/r/abc", ["-e", "qnn", "m.onnx"])
    assert "export ADSP_LIBRARY_PATH='/d/r/abc;/system/lib/rfsa/adsp;/system/vendor/lib/rfsa/adsp;/dsp'" in line
    assert "export LD_LIBRARY_PATH=/d/r/abc" in line


# -- ONNX Runtime's placement lines before 1.13 ------------------------------------------
LEGACY_MIXED = [
    " [V:onnxruntime:, session_state.cc:1186 VerifyEachNodeIsAssignedToAnEp] Node placements",
    " [V:onnxruntime:, session_state.cc:1193 VerifyEachNodeIsAssignedToAnEp]  Provider: [NnapiExecutionProvider]: "
    "[NNAPI_9d2_0 (NnapiExecutionProvider_NNAPI_9d2_0_0), ]",
    " [V:onnxruntime:, session_state.cc:1193 VerifyEachNodeIsAssignedToAnEp]  Provider: [CPUExecutionProvider]: "
    "[Softmax (sm), TopK (top, k), ]",
]
LEGACY_ALL = [
    " [V:onnxruntime:, session_state.cc:1186 VerifyEachNodeIsAssignedToAnEp] Node placements",
    " [V:onnxruntime:, session_state.cc:1188 VerifyEachNodeIsAssignedToAnEp] All nodes have been placed on "
    "[CPUExecutionProvider].",
]


def test_placement_lines_of_releases_before_1_13():
    mixed = pl.parse_verbose_log(LEGACY_MIXED)
    assert mixed is not None
    assert mixed.counted == {"NnapiExecutionProvider": 1, "CPUExecutionProvider": 2}
    assert mixed.listed["CPUExecutionProvider"] == [("Softmax", "sm"), ("TopK", "top, k")]
    whole = pl.parse_verbose_log(LEGACY_ALL)
    assert whole is not None and list(whole.counted) == ["CPUExecutionProvider"]


# -- ONNX Runtime's profile with a quote in a node name -------------------------------------
def test_a_profile_with_an_unescaped_quote_in_a_node_name_keeps_the_other_events(tmp_path):
    # core/common/profiler.cc writes `"name" :"<name>"` unescaped, one event per line.
    good = ('{"cat" : "Node","pid" :1,"tid" :2,"dur" :30,"ts" :5,"ph" : "X","name" :"conv_kernel_time",'
            '"args" : {"op_name" : "Conv","provider" : "CPUExecutionProvider"}}')
    bad = ('{"cat" : "Node","pid" :1,"tid" :2,"dur" :10,"ts" :9,"ph" : "X","name" :"my"node_kernel_time",'
           '"args" : {"op_name" : "Relu","provider" : "CPUExecutionProvider"}}')
    path = tmp_path / "profile.json"
    path.write_text("[\n" + good + ",\n" + bad + "\n]\n")
    with pytest.raises(json.JSONDecodeError):
        json.loads(path.read_text())
    events = pl.load_profile(str(path))
    assert [e["name"] for e in events] == ["conv_kernel_time"]


# -- Android facts ----------------------------------------------------------------------
def test_soc_model_only_from_android_12_and_the_key_is_named():
    new = facts.device_facts({"ro.build.version.sdk": "33", "ro.soc.model": "SM8550", "ro.board.platform": "kalama"},
                             "", "s")
    assert (new["soc"], new["soc_source"]) == ("SM8550", "ro.soc.model")
    # A phone before API level 31 (Android 12) has no ro.soc.model: the board
    # platform, and the record says so; a vendor property on an older phone
    # is not mixed in.
    old = facts.device_facts({"ro.build.version.sdk": "30", "ro.soc.model": "X1", "ro.board.platform": "lito"}, "", "s")
    assert (old["soc"], old["soc_source"]) == ("lito", "ro.board.platform")
    bare = facts.device_facts({"ro.build.version.sdk": "29", "ro.hardware": "qcom"}, "", "s")
    assert (bare["soc"], bare["soc_source"]) == ("qcom", "ro.hardware")


def test_online_cpus_list():
    assert facts.online_cpus("0-7\n") == 8 and facts.online_cpus("0-3,6-7") == 6 and facts.online_cpus("") is None


# -- adb's device states -----------------------------------------------------------------
def test_no_permissions_state_keeps_its_reason():
    text = ("R58W30ABCDE\tno permissions (user in plugdev group; are your udev rules wrong?); see "
            "[http://developer.android.com/tools/device.html]\n127.0.0.1:5555\tdevice\n0123\tunauthorized\n")
    assert adb.parse_devices(text) == [
        ("R58W30ABCDE", "no permissions", "user in plugdev group; are your udev rules wrong?"),
        ("127.0.0.1:5555", "device", ""), ("0123", "unauthorized", "")]
