"""Every shipped cohort and device profile loads, so a new user's first
`harness run --cohort NAME` never trips on the project's own files."""

from pathlib import Path

import pytest

from harness.config.resolve import PROJECT_PROFILES, load_cohort, load_profile_file

COHORTS = sorted((PROJECT_PROFILES / "cohorts").glob("*.yaml"))
DEVICES = sorted((PROJECT_PROFILES / "devices").glob("*.yaml"))


def test_there_are_shipped_profiles():
    assert {p.stem for p in COHORTS} >= {"local", "mobile-tts"}
    assert {p.stem for p in DEVICES} >= {"host-cpu", "chromium-wasm", "pixel-7", "iphone-13"}


@pytest.mark.parametrize("path", COHORTS, ids=lambda p: p.stem)
def test_cohort_loads(path: Path):
    c = load_cohort(str(path))
    assert c.cohort.name == path.stem and c.profiles


@pytest.mark.parametrize("path", DEVICES, ids=lambda p: p.stem)
def test_profile_loads(path: Path):
    assert load_profile_file(path).id == path.stem
