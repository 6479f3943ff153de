# harness — the two commands in the README are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HARNESS := $(VENV)/bin/harness
STAMP := $(VENV)/.installed

.PHONY: demo test protos bench clean browser-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Browser measurements need a Chromium and onnxruntime-web; without them the
# demo still runs (the browser driver reports why it is unavailable).
browser-deps: $(STAMP)
	-$(HARNESS) browser-runtime install --default 1.22.0

demo: $(STAMP) browser-deps
	$(HARNESS) run --cohort local --candidates examples/digits/candidates.yaml --out out/demo --warn-only
	@echo "report: out/demo/report.html (also report.md, report.json)"

test: $(STAMP) browser-deps
	$(PY) -m pytest -q

protos: $(STAMP)
	$(PY) -m grpc_tools.protoc -Iharness/_proto=protos/harness --python_out=. --grpc_python_out=. \
		protos/harness/v1/agent.proto

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) out .harness .pytest_cache
