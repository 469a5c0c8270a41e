# The two commands: `make demo` runs the whole retraining DAG locally; `make test` runs the tests.
# Both create .venv on first use. torch is pinned so pip takes the CPU wheel on a machine without CUDA.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0
DEMO_DIR ?= runs/demo

.PHONY: demo test install clean bench golden

$(BIN)/.installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet '$(TORCH_PIN)'
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/genrec demo --workdir $(DEMO_DIR)

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

# The SASRec peer (rectools) pins older numpy/pandas: it gets its own venv so `make test` never sees them.
BENCH_VENV ?= .venv-bench
bench:
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet '$(TORCH_PIN)'
	$(BENCH_VENV)/bin/python -m pip install --quiet -e '.[bench]' '$(TORCH_PIN)'
	@echo "benchmarks: $(BENCH_VENV)/bin/python benchmarks/quality.py --data MOVIELENS_OR_SEQUENCES_DIR"

clean:
	rm -rf $(VENV) runs build *.egg-info

golden: install
	$(BIN)/genrec compile --out pipelines/genrec_retraining.yaml
