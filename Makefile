# protkit front door: `make demo`, `make test`.  Everything installs into .venv from requirements/lock.txt.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# GPU users: make install TORCH_INDEX=https://download.pytorch.org/whl/cu128
TORCH_INDEX ?=
CORES ?= 2

.PHONY: install test test-fast test-all demo bench lock clean

install: $(STAMP)

$(STAMP): requirements/lock.txt requirements/esm.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "pip==26.3" "setuptools==84.2.1"
	$(if $(TORCH_INDEX),$(BIN)/pip install -q --no-deps --index-url $(TORCH_INDEX) "torch==2.13.0",)
	$(BIN)/pip install -q --no-deps -r requirements/lock.txt
	$(BIN)/pip install -q --no-deps -r requirements/esm.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -c "import protkit, esm, torchao, snakemake; print('protkit environment ready:', protkit.__version__)"
	touch $(STAMP)

# Default suite: everything except tests marked slow (about 30 minutes on 2 cores; --durations shows where). It includes the
# SLURM integration test, which (as root) installs and starts a single-node SLURM and tears it down.
test: install
	$(BIN)/python -m pytest -m "not slow" -q

# Everything, including the 300M-parameter parity test.
test-all: install
	$(BIN)/python -m pytest -q

# The whole pipeline on the offline demo (random teacher, real proteome from the pyhmmer wheel).
demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores 1 --configfile config/demo.yaml --report results/report.html
	@echo
	@echo "Demo finished (figures are mechanics, not biology: the teacher has random weights)."
	@echo "  report:      results/report.html   (per variant: results/eval/<variant>/report.md)"
	@echo "  summary:     results/eval/summary.tsv"
	@echo "  embeddings:  results/embeddings/<model>/PKSI.parquet"
	@echo "  search:      results/search/<model>/<name>/ (index, hits, dedup, clusters); results/search/summary.tsv"
	@ls results/embeddings/*/PKSI.parquet

bench: install
	$(BIN)/python benchmarks/run_all.py

# Re-resolve the lock from requirements/top.txt in a scratch venv.
lock:
	rm -rf /tmp/protkit-lock && $(PYTHON) -m venv /tmp/protkit-lock
	/tmp/protkit-lock/bin/pip install -q -r requirements/top.txt
	( head -3 requirements/lock.txt; /tmp/protkit-lock/bin/pip freeze | grep -v '^esm==' | sed 's/+cpu//' ) > requirements/lock.new && mv requirements/lock.new requirements/lock.txt

clean:
	rm -rf $(VENV) .snakemake results resources
