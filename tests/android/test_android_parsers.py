"""The android driver's pure parts: onnxruntime_perf_test's output in the
spellings its versions print, its command line, failures, phone facts and
run conditions, and the batch planning that applies the measurement policy."""

import math

import pytest

from agents.android import batches, config, facts, perftest, releases
from harness.kernel.measure.policy import MeasurePolicy

# Summary blocks as performance_runner.cc prints them (numbers are this
# test's own): 1.12-1.14 without `First inference time cost` (from 1.15),
# 1.15-1.23 with it, 1.24 with `Average inference time cost total`.
V1_12 = """\
Session creation time cost: 0.0613 s
Total inference time cost: 2.4681 s
Total inference requests: 200
Average inference time cost: 12.3405 ms
Total inference run time: 2.47112 s
Number of inferences per second: 80.9349 
Avg CPU usage: 98 %
Peak working set size: 101711872 bytes
"""

V1_WITH_STATS = """\
Session creation time cost: 0.412331 s
First inference time cost: 57 ms
Total inference time cost: 3.09912 s
Total inference requests: 250
Average inference time cost: 12.3965 ms
Total inference run time: 3.10544 s
Number of inferences per second: 80.5039 
Avg CPU usage: 96 %
Peak working set size: 188153856 bytes
Avg CPU usage:96
Peak working set size:188153856
Runs:250
Min Latency: 0.0110301 s
Max Latency: 0.0190004 s
P50 Latency: 0.0121183 s
P90 Latency: 0.0135512 s
P95 Latency: 0.0142297 s
P99 Latency: 0.0171088 s
P999 Latency: 0.0190004 s
"""

V1_24_TOTAL = """\
Setting intra_op_num_threads to 2
Disabling intra-op thread spinning between runs
Session creation time cost: 0.0973152 s
First inference time cost: 31 ms
Total inference time cost: 0.731218 s
Total inference requests: 40
Average inference time cost total: 18.280450 ms
Total inference run time: 0.731591 s
Number of inferences per second: 54.6754 
Avg CPU usage: 23 %
Peak working set size: 97603584 bytes
Min Latency: 0.0171125 s
Max Latency: 0.0213344 s
P50 Latency: 0.0181722 s
P90 Latency: 0.0193038 s
P95 Latency: 0.0201117 s
P99 Latency: 0.0213344 s
P999 Latency: 0.0213344 s
"""


def test_summary_before_1_15_has_no_first_inference_line():
    s = perftest.parse_summary(V1_12)
    assert (s.total_s, s.requests, s.average_ms) == (2.4681, 200, 12.3405)
    assert s.complete and s.session_s == 0.0613 and s.first_run_ms is None and s.peak_bytes == 101711872


def test_v1_summary_with_statistics():
    s = perftest.parse_summary(V1_WITH_STATS)
    assert s.session_s == pytest.approx(0.412331) and s.first_run_ms == 57
    assert s.requests == 250 and s.average_ms == pytest.approx(12.3965)
    assert s.run_time_s == pytest.approx(3.10544) and s.throughput == pytest.approx(80.5039)
    assert s.cpu_pct == 96 and s.peak_bytes == 188153856
    assert s.latency_s == {"min": 0.0110301, "max": 0.0190004, "p50": 0.0121183, "p90": 0.0135512,
                           "p95": 0.0142297, "p99": 0.0171088, "p999": 0.0190004}


def test_1_24_average_total_spelling():
    s = perftest.parse_summary(V1_24_TOTAL)
    assert s.average_ms == pytest.approx(18.28045) and s.requests == 40 and s.first_run_ms == 31
    assert s.peak_bytes == 97603584 and s.latency_s["p90"] == pytest.approx(0.0193038) and s.cpu_pct == 23


@pytest.mark.parametrize("garbage", ["", "Segmentation fault\n", "hello\nworld 12 ms\n",
                                     "Total inference requests: 0\nAverage inference time cost: 0 ms\n"])
def test_garbage_is_not_a_summary(garbage):
    assert not perftest.parse_summary(garbage).complete


def test_result_file_in_seconds_with_statistics_block():
    text = ("measure,0.0121,188153856,96,0\nmeasure,0.0119,188153856,96,1\nmeasure,1.5e-05,188153856,96,2\n"
            "\nMin Latency: 1.5e-05 s\nP50 Latency: 0.0119 s\n")
    assert perftest.parse_result_file(text, average_ms=8.0) == pytest.approx([12.1, 11.9, 0.015])


@pytest.mark.parametrize("code,stdout,stderr,kind", [
    (255, "", "/src/ort_test_session.cc:476 ... NNAPI is not supported in this build", "unsupported_ep"),
    (134, "", 'CANNOT LINK EXECUTABLE "./onnxruntime_perf_test": library "libonnxruntime.so" not found',
     "runner_broken"),
    (127, "", "/system/bin/sh: /data/local/tmp/x/onnxruntime_perf_test: inaccessible or not found", "runner_broken"),
    (255, "", "Load model from /d/model.onnx failed:Protobuf parsing failed.", "model_invalid"),
    (255, "there is no test data for model measure\nRun failed:failed to initialize.\n", "", "bad_input"),
    (255, "", "This session contains graph nodes that are assigned to the default CPU EP, but fallback to CPU EP "
              "has been explicitly disabled by the user.", "fallback_disabled"),
    (255, "Run failed:Could not find an implementation for Foo(1) node with name 'f'", "", "unsupported_op"),
    (1, "", "ERROR: Unknown command line flag 'k'", "bad_option"),
    (139, "", "", "crash"),
    (3, "", "something else", "runner_failed"),
])
def test_failure_kinds(code, stdout, stderr, kind):
    assert perftest.classify_failure(code, stdout, stderr) == kind


def test_option_flags_map_target_options():
    plan = releases.plan_options("qnn", {"intra_op_threads": "2", "graph_optimization_level": "extended",
                                         "session.intra_op.allow_spinning": "0", "ep.backend_type": "htp"}, "1.20")
    flags = plan.flags
    assert flags == ["-o", "2", "-x", "2", "-C", "session.intra_op.allow_spinning|0", "-i", "backend_type|htp"]
    nnapi = releases.plan_options("nnapi", {"ep.NNAPI_FLAG_USE_FP16": "1", "ep.NNAPI_FLAG_CPU_DISABLED": "0"},
                                  "1.20")
    assert nnapi.flags == ["-i", "NNAPI_FLAG_USE_FP16"]
    strict = releases.with_session_entry(flags, "session.disable_cpu_ep_fallback|1")
    assert strict[strict.index("-C") + 1] == "session.intra_op.allow_spinning|0 session.disable_cpu_ep_fallback|1"
    assert releases.with_session_entry([], "a|1") == ["-C", "a|1"]
    with pytest.raises(releases.BadOption, match="graph_optimization_level='fast'"):
        releases.plan_options("cpu", {"graph_optimization_level": "fast"}, "1.20")
    with pytest.raises(releases.BadOption, match="'threads'"):
        releases.plan_options("cpu", {"threads": "4"}, "1.20")
    assert releases.plan_options("cpu", {"cpu_affinity": "4-7"}, "1.20").flags == []
    assert perftest.cores_mask("4-7") == "f0" and perftest.cores_mask("0,2") == "5"
    with pytest.raises(releases.BadOption, match="cpu_affinity='big'"):
        perftest.cores_mask("big")


def test_sample_resolution_follows_six_significant_digits():
    assert perftest.sample_resolution_ms([12.1, 12.3, 11.9]) == pytest.approx(1e-4)
    assert perftest.sample_resolution_ms([0.015, 0.02]) == pytest.approx(1e-7)
    assert perftest.sample_resolution_ms([]) is None


def test_launch_line_records_pid_and_finds_libraries():
    argv = perftest.run_argv("nnapi", times=5, model="/d/j/m/model.onnx", result_file="/d/j/m/r.csv",
                             extra=["-C", "a|1 b|2"])
    assert argv == ["-e", "nnapi", "-m", "times", "-r", "5", "-C", "a|1 b|2", "/d/j/m/model.onnx", "/d/j/m/r.csv"]
    line = perftest.launch_command("/d/j/m", "/d/r/abc", argv, affinity="f0", env={"X": "a b"})
    assert line.startswith("cd /d/j/m && echo $$ > .pid && export LD_LIBRARY_PATH=/d/r/abc && "
                           "export ADSP_LIBRARY_PATH='/d/r/abc;/system/lib/rfsa/adsp;/system/vendor/lib/rfsa/adsp;/dsp'"
                           " && export X='a b' && ")
    assert line.endswith("exec taskset f0 /d/r/abc/onnxruntime_perf_test -e nnapi -m times -r 5 -C 'a|1 b|2' "
                         "/d/j/m/model.onnx /d/j/m/r.csv")
    assert perftest.run_argv("cpu", seconds=3, model="m", profile="p", verbose=True) == \
        ["-e", "cpu", "-m", "duration", "-t", "3", "-p", "p", "-v", "m"]


# -- phone facts and conditions --------------------------------------------------------
GETPROP = """[ro.build.version.release]: [13]
[ro.build.version.sdk]: [33]
[ro.board.platform]: [mt6769]
[ro.hardware]: [mt6769t]
[ro.product.cpu.abi]: [arm64-v8a]
[ro.product.cpu.abilist]: [arm64-v8a,armeabi-v7a,armeabi]
[ro.product.manufacturer]: [samsung]
[ro.product.model]: [SM-A145F]
[persist.sys.timezone]: [Europe/Berlin]
"""


def test_facts_from_getprop_and_meminfo():
    f = facts.device_facts(facts.parse_getprop(GETPROP), "MemTotal:        3813204 kB\nMemFree: 1 kB\n", "R58W30")
    assert f["model"] == "SM-A145F" and f["manufacturer"] == "samsung"
    assert f["soc"] == "mt6769"  # no ro.soc.model before Android 12: the board platform
    assert f["os_version"] == "Android 13" and f["sdk"] == "33" and f["abi"] == "arm64-v8a"
    assert f["ram_mb"] == str(3813204 // 1024) and f["serial"] == "R58W30"
    with_soc = facts.device_facts({"ro.soc.model": "SM8550", "ro.board.platform": "kalama"}, "", "s")
    assert with_soc["soc"] == "SM8550" and with_soc["board_platform"] == "kalama" and "ram_mb" not in with_soc


BATTERY = """Current Battery Service state:
  AC powered: false
  USB powered: true
  Wireless powered: false
  Max charging current: 500000
  status: 5
  health: 2
  present: true
  level: 100
  scale: 100
  voltage: 4351
  temperature: 287
  technology: Li-ion
"""

THERMAL = """IsStatusOverride: false
ThermalEventListeners:
\tcallbacks: 1
Thermal Status: 2
Cached temperatures:
\tTemperature{mValue=48.0, mType=0, mName=stale, mStatus=0}
HAL Ready: true
Current temperatures from HAL:
\tTemperature{mValue=41.25, mType=0, mName=AP, mStatus=2}
\tTemperature{mValue=29.1, mType=2, mName=BAT, mStatus=0}
\tTemperature{mValue=36.7, mType=3, mName=skin, mStatus=1}
\tTemperature{mValue=NaN, mType=4, mName=USB, mStatus=0}
Current cooling devices from HAL:
"""


def test_battery_and_thermal_dumps():
    b = facts.parse_battery(BATTERY)
    assert b == {"level_pct": 100.0, "temperature_c": 28.7, "status": "full", "powered": "usb"}
    t = facts.parse_thermalservice(THERMAL)
    assert t["status"] == 2 and t["status_name"] == "moderate"
    assert t["temperatures_c"] == {"AP": 41.25, "BAT": 29.1, "skin": 36.7}
    assert t["types"] == {"AP": "cpu", "BAT": "battery", "skin": "skin"}
    zones = facts.parse_thermal_zones("/sys/class/thermal/thermal_zone0 cpu-0-0 45200\n"
                                      "/sys/class/thermal/thermal_zone1 battery 31\n/sys/x broken\n")
    assert zones == {"thermal_zone0:cpu-0-0": 45.2, "thermal_zone1:battery": 31.0}
    cond = facts.conditions(b, t, zones)
    assert cond["thermal_c"] == t["temperatures_c"]  # the HAL's readings win over raw zones
    assert facts.conditions(b, {}, zones)["thermal_c"] == zones
    assert facts.gate_temperature(cond, "battery") == 28.7
    assert facts.gate_temperature(cond, "max") == 41.25
    assert facts.gate_temperature(cond, "skin") == 36.7 and facts.gate_temperature(cond, "cpu") == 41.25
    assert facts.gate_temperature(cond, "gpu") is None


def test_big_cores_from_cpufreq():
    text = "0 1800000\n1 1800000\n2 1800000\n3 1800000\n4 2400000\n5 2400000\n6 2400000\n7 3000000\n"
    assert facts.big_core_mask(text) == ("80", [7])
    assert facts.big_core_mask("0 2000000\n1 2000000\n") == ("3", [0, 1])
    assert facts.big_core_mask("0 \n") == ("", [])


# -- batches -----------------------------------------------------------------------------
def test_first_batch_is_bounded_by_seconds():
    assert batches.first_batch_seconds(MeasurePolicy(warmup_s=1, min_s=5, max_s=120)) == 6
    assert batches.first_batch_seconds(MeasurePolicy(warmup_s=0, min_s=0.2, max_s=3)) == 1
    assert batches.first_batch_seconds(MeasurePolicy(warmup_s=10, min_s=50, max_s=30)) == 40
    # Sustained mode (min_s = max_s): warm-up, then the whole duration.
    assert batches.first_batch_seconds(MeasurePolicy(warmup_s=1, min_s=1).sustained(60)) == 61


def test_measured_time_is_the_wall_time_of_the_kept_runs():
    assert batches.kept_wall_s([10.0] * 10, 2, run_time_s=0.125) == pytest.approx(0.105)
    assert batches.kept_wall_s([10.0] * 10, 2, run_time_s=None) == pytest.approx(0.08)


def test_warmup_cut_counts_perf_tests_own_first_run():
    policy = MeasurePolicy(warmup_runs=3, warmup_s=0.0)
    assert batches.warmup_cut([5.0] * 10, 9.0, policy) == (2, True)
    timed = MeasurePolicy(warmup_runs=1, warmup_s=0.02)
    assert batches.warmup_cut([5.0] * 10, 1.0, timed) == (4, True)  # 1 + 4 x 5 ms >= 20 ms
    assert batches.warmup_cut([5.0, 5.0], 1.0, timed) == (2, False)


def test_next_batch_fills_what_the_policy_still_needs_within_the_time_left():
    policy = MeasurePolicy(warmup_runs=5, warmup_s=0.0, min_runs=100, min_s=0.0, max_s=60)
    assert batches.next_batch_runs(policy, 40, 0.4, 10.0, 30.0) == 4 + 60
    # Held enough: grow by half to give the p90's CI a chance.
    assert batches.next_batch_runs(policy, 400, 4.0, 10.0, 30.0) == 4 + 200
    # Little time left: only what fits (1 s at 10 ms, minus warm-up and the first run).
    assert batches.next_batch_runs(policy, 400, 4.0, 10.0, 1.0) == 4 + 95
    assert batches.next_batch_runs(policy, 400, 4.0, 10.0, 0.02) == 0
    capped = MeasurePolicy(warmup_runs=1, warmup_s=0.0, min_runs=10, min_s=0.0, max_runs=50)
    assert batches.next_batch_runs(capped, 45, 1.0, 1.0, 100.0) == 5
    timed = MeasurePolicy(warmup_runs=1, warmup_s=0.0, min_runs=1, min_s=2.0, max_s=60)
    assert batches.next_batch_runs(timed, 100, 0.5, 10.0, 60.0) == math.ceil(1.5 / 0.01)


# -- configuration -----------------------------------------------------------------------
def test_config_errors_name_the_key(tmp_path):
    perf = tmp_path / "onnxruntime_perf_test"
    perf.write_bytes(b"\x7fELF")
    ok = config.parse({"runners": {"1.20": {"perf_test": str(perf)}}, "pin": "F0"})
    runner = ok.runners["1.20"]
    assert runner.eps == config.DEFAULT_EPS and runner.abi == "arm64-v8a" and len(runner.digest) == 64
    assert ok.pin == "f0" and ok.device_dir == "/data/local/tmp/harness"
    cases = [
        ({"runner": {}}, "android.runner: unknown key"),
        ({"runners": {"1.20": {"perf_test": str(tmp_path / "missing")}}},
         "android.runners.1.20.perf_test: file not found"),
        ({"runners": {"latest": {"perf_test": str(perf)}}},
         "android.runners.latest: the key is an ONNX Runtime version"),
        ({"runners": {"1.20": {"perf_test": str(perf), "eps": ["npu"]}}}, "android.runners.1.20.eps: 'npu'"),
        ({"runners": {"1.20": {"perf_test": str(perf), "abi": "arm64"}}}, "android.runners.1.20.abi: 'arm64'"),
        ({"runners": {"1.20": {"perf_test": str(perf), "lib": []}}}, "android.runners.1.20.lib: unknown key"),
        ({"connect": ["phone"]}, "android.connect: expected a list of HOST:PORT"),
        ({"adb_port": "x"}, "android.adb_port: 'x'"),
        ({"device_dir": "/data/local/tmp"}, "android.device_dir: '/data/local/tmp'"),
        ({"cooldown": {"max_c": 40, "wait": 3}}, "android.cooldown.wait: unknown key"),
        ({"pin": "little"}, "android.pin: 'little'"),
        ({"placement_runs": 0}, "android.placement_runs: 0"),
    ]
    for raw, message in cases:
        with pytest.raises(config.ConfigError) as exc:
            config.parse(raw)
        assert str(exc.value).startswith(message), (raw, str(exc.value))
        assert "\n" not in str(exc.value)


def test_shipped_android_profiles_match_the_phones_they_name():
    from pathlib import Path

    import phone as phone_mod
    from harness.config.resolve import PROJECT_PROFILES, load_profile_file
    from harness.controller.planner import AgentDevice, device_matches

    def dev(props):
        return AgentDevice("lab", "android:x", "android", "android", facts.device_facts(props, "", "x"), ())

    pixel, a14 = dev(phone_mod.PIXEL_7), dev(phone_mod.GALAXY_A14)
    p7 = load_profile_file(Path(PROJECT_PROFILES) / "devices" / "pixel-7.yaml")
    ga = load_profile_file(Path(PROJECT_PROFILES) / "devices" / "galaxy-a14.yaml")
    assert device_matches(p7, pixel) and not device_matches(p7, a14)
    assert device_matches(ga, a14) and not device_matches(ga, pixel)
    assert p7.tier == "mid" and ga.tier == "low" and {t.ep for t in p7.targets} == {"nnapi", "xnnpack"}
