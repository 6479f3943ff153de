# harness — the two commands in the README are `make demo` and `make test`.
#
# One virtual environment, installed in two steps: `make demo` puts in only
# what the demo runs (the harness, ONNX Runtime's CPU build and the browser
# driver's Playwright; no PyTorch, no coremltools: about 410 MB); `make test` adds the test
# extra on top (the protocol generator, every driver's dependencies, and
# PyTorch for the Core ML conversion tests and the examples). Each step has
# its own stamp, so a demo after the tests reinstalls nothing. The demo's
# packages are installed without pip's byte-compiling of every module (65 MB
# of .pyc for code the demo never imports); Python compiles what it imports.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HARNESS := $(VENV)/bin/harness
DEMO_STAMP := $(VENV)/.demo-installed
TEST_STAMP := $(VENV)/.test-installed

.PHONY: demo test protos bench clean browser-setup browser-test-runtimes

$(DEMO_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -e '.[browser,cpu]'
	touch $@

$(TEST_STAMP): $(DEMO_STAMP)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# A Chromium (Playwright's download, else the OS package where this user may
# install one), npm and the default onnxruntime-web. Where none can be had it
# prints the one command to run, and the demo goes on with the host alone.
browser-setup: $(DEMO_STAMP)
	$(HARNESS) browser-runtime setup

# The browser tests also measure a second, older onnxruntime-web.
browser-test-runtimes: browser-setup
	-$(HARNESS) browser-runtime install 1.22.0

demo: browser-setup
	$(HARNESS) run --cohort local --candidates examples/digits/candidates.yaml --out out/demo --warn-only
	@echo "report: out/demo/report.html (also report.md, report.json)"

test: $(TEST_STAMP) browser-test-runtimes
	$(PY) -m pytest -q

protos: $(TEST_STAMP)
	$(PY) -m grpc_tools.protoc -Iharness/_proto=protos/harness --python_out=. --grpc_python_out=. \
		protos/harness/v1/agent.proto

bench: $(TEST_STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) out .harness .pytest_cache
