import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hostkit  # noqa: E402


@pytest.fixture(scope="session")
def openvino_env():
    """onnxruntime-openvino in its own environment (made once, then cached)."""
    return hostkit.environment(hostkit.OPENVINO)


@pytest.fixture(scope="session")
def older_env():
    """An older CPU release of ONNX Runtime in its own environment."""
    return hostkit.environment(hostkit.OLDER)
