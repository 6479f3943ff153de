"""The public surface: the verbs of harness.api, the driver contract and the
record types. A change here is a change for every user; this test makes it
deliberate."""

from __future__ import annotations

import inspect

import agents.contract
import agents.registry
import harness.api
import harness.record

API = ["RunRequest", "RunOutcome", "run_cohort", "resume", "list_devices", "list_runs", "report", "decide",
       "compare", "plan", "quantize", "convert_coreml", "install_browser_runtimes", "browser_runtimes",
       "setup_browser", "install_runtimes", "runtimes", "remove_runtimes", "serve_agent", "migrate_store",
       "copy_store", "history", "serve_dashboard"]
CONTRACT = ["Driver", "DeviceInfo", "RuntimeSpec", "RuntimeTarget", "ModelFile", "JobSpec", "Memory",
            "Placement", "Validity", "JobError", "DriverResult", "ProgressFn", "AGENT_MACHINE"]
REGISTRY = ["DRIVERS", "SERVE_DEFAULT", "LOCAL_DEFAULT", "driver_config", "load_driver"]
RECORD = ["SCHEMA_VERSION", "Report", "Run", "Result", "Device", "ModelFile", "Runtime", "Timing", "Memory",
          "Placement", "Parity", "Validity", "Thermal", "Error", "Measure", "Ran", "Environment", "Sustained"]


def test_each_public_module_lists_exactly_its_surface():
    for module, names in ((harness.api, API), (agents.contract, CONTRACT), (agents.registry, REGISTRY),
                          (harness.record, RECORD)):
        assert list(module.__all__) == names, module.__name__
        missing = [n for n in names if not hasattr(module, n)]
        assert missing == [], f"{module.__name__} lists names it lacks: {missing}"


def test_every_api_verb_is_a_documented_function():
    for name in API[2:]:
        verb = getattr(harness.api, name)
        assert inspect.isfunction(verb) and (verb.__doc__ or "").strip(), name


def test_the_driver_contract_is_the_protocol_drivers_implement():
    methods = {n for n, v in vars(agents.contract.Driver).items() if inspect.isfunction(v) and not n.startswith("_")}
    assert methods == {"available", "devices", "run", "close"}
