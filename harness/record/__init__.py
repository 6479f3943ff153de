"""The result record: one row per device x candidate x runtime target.

The typed models (`types`) are the record's contract; `load` reads a report
of any version through them; `build` makes a row from what an agent sent;
`publish` generates schema.json and docs/record.md from the models.
"""

from harness.record.types import (
    SCHEMA_VERSION, Device, Environment, Error, Measure, Memory, ModelFile, Parity, Placement, Ran, Report,
    Result, Run, Runtime, Sustained, Thermal, Timing, Validity,
)

__all__ = [
    "SCHEMA_VERSION", "Report", "Run", "Result", "Device", "ModelFile", "Runtime", "Timing", "Memory",
    "Placement", "Parity", "Validity", "Thermal", "Error", "Measure", "Ran", "Environment", "Sustained",
]
