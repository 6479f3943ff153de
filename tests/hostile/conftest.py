import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostilekit import Agent  # noqa: E402


@pytest.fixture(scope="module")
def sim_agent(tmp_path_factory):
    """One agent with simulated devices (no runner processes) per test module."""
    a = Agent(tmp_path_factory.mktemp("hostile"), drivers=("sim",))
    yield a
    a.stop()


@pytest.fixture(scope="module")
def host_agent(tmp_path_factory):
    """An agent with the host driver (real ONNX Runtime runner) and simulated devices."""
    a = Agent(tmp_path_factory.mktemp("hostile-host"), drivers=("host", "sim"))
    yield a
    a.stop()


@pytest.fixture
def new_agent(tmp_path):
    """A fresh agent per test, with the limits the test chooses."""
    started = []

    def make(**kw):
        a = Agent(tmp_path, name=f"a{len(started)}", **kw)
        started.append(a)
        return a

    yield make
    for a in started:
        a.stop()


def _cc():
    import shutil

    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


@pytest.fixture(scope="session")
def marker_library(tmp_path_factory):
    """Build a shared library whose constructor writes a marker file, and
    which exports ONNX Runtime's custom-op entry point (RegisterCustomOps,
    returning no error and registering nothing): loading it anywhere leaves
    the marker, so a test can tell whether it was loaded.

    Returns (build(marker_path) -> library path)."""
    cc = _cc()
    if not cc:
        pytest.skip("no C compiler to build the test's custom-op library (install gcc)")
    root = tmp_path_factory.mktemp("libs")

    def build(marker: Path, name: str = "libmarker.so") -> Path:
        src = root / (name + ".c")
        src.write_text(
            "#include <stdio.h>\n"
            "__attribute__((constructor)) static void loaded(void) {\n"
            f"  FILE *f = fopen(\"{marker}\", \"a\"); if (f) {{ fputs(\"loaded\\n\", f); fclose(f); }}\n"
            "}\n"
            "void *RegisterCustomOps(void *options, const void *api) { return 0; }\n")
        lib = root / name
        subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
        return lib

    return build
