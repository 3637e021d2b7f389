# advfusion developer tasks. `make install` builds .venv; everything else runs inside it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed before the package so pip does not pull a multi-GB CUDA build on
# machines without a GPU. TORCH_SPEC overrides it (e.g. TORCH_SPEC=torch on a GPU box).
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
ifeq ($(HAS_GPU),1)
TORCH_SPEC ?= torch>=2.4,<3
else
TORCH_SPEC ?= torch==2.13.0
endif

.PHONY: install toolchains test test-slow lint format bench clean

install: $(BIN)/advfusion toolchains

$(BIN)/advfusion: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@

# The demo's headline metric, pass@1, runs the generated Ruby programs, and the README's
# MultiPL-E example runs Lua programs: as root with apt both are installed (quiet, best effort,
# as .ci/run does); elsewhere one line each says how. Other languages: `advfusion sandbox install`.
toolchains: $(BIN)/advfusion
	@$(BIN)/python -m advfusion_cli.sandbox.toolchain_setup ruby
	@$(BIN)/advfusion sandbox install lua >/dev/null 2>&1 || $(BIN)/advfusion sandbox install lua || true

test: install
	$(BIN)/python -m pytest -q -m "not slow and not gpu"

test-slow: install
	$(BIN)/python -m pytest -q -m "slow"

# Side-by-side step-time/memory ratios (docs/performance.md); writes bench.json.
bench: install
	$(BIN)/advfusion bench --json bench.json

lint: install
	$(BIN)/ruff check advfusion_cli tests
	$(BIN)/ruff format --check advfusion_cli tests

format: install
	$(BIN)/ruff format advfusion_cli tests
	$(BIN)/ruff check --fix advfusion_cli tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache

# The CUDA path in one run of at most 10 minutes (docs/performance.md#gpu): installs what a
# fresh GPU machine lacks, runs the -m gpu tests, the 1.3B-shape bench and the demo, and
# writes report.md/report.json under gpu-check-report/<time>/. Without a GPU it prints what it
# would run and exits 0. GPU_CHECK_ARGS passes options (--out DIR, --dry-run).
# WHEELS=DIR: install from that folder only (no network; what is missing, in one line).
.PHONY: gpu-check wheelhouse
GPU_CHECK_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))
WHEELS ?=
gpu-check:
	$(GPU_CHECK_PYTHON) scripts/gpu_check.py $(if $(WHEELS),--wheels $(WHEELS)) $(GPU_CHECK_ARGS)

# On a machine with network: the wheels `make gpu-check WHEELS=DIR` needs beyond a CUDA
# PyTorch image, for the GPU machine's Python (PY_VERSION) and platform (PLATFORM).
WHEELHOUSE_DIR := $(or $(WHEELS),wheelhouse)
PY_VERSION ?= $(shell $(GPU_CHECK_PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PLATFORM ?= manylinux_2_28_x86_64
wheelhouse:
	$(GPU_CHECK_PYTHON) scripts/gpu_check.py --download-wheels $(WHEELHOUSE_DIR) --python-version $(PY_VERSION) --platform $(PLATFORM)
