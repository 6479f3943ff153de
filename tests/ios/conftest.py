"""Fixtures for the ios tests. Tests marked `mac` need a Mac with Core ML;
elsewhere they are skipped and pytest prints the reason."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def pytest_collection_modifyitems(config, items):
    if sys.platform == "darwin":
        return
    skip = pytest.mark.skip(reason=f"needs macOS with Core ML and the Xcode command line tools (this host runs "
                                   f"{platform.system()}); see docs/platforms/ios-mac.md for running them on a lab Mac")
    for item in items:
        if "mac" in item.keywords and HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """TinyNet, its Core ML package (fp16, fp32 I/O) and its ONNX export."""
    import ioskit

    folder = tmp_path_factory.mktemp("tiny")
    model = ioskit.tiny_net()
    return {"model": model, "mlpackage": ioskit.to_mlpackage(model, folder / "tiny.mlpackage"),
            "onnx": ioskit.save_onnx(model, folder / "tiny.onnx"), "folder": folder}


@pytest.fixture
def artefact_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
