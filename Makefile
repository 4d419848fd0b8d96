# spaseg: make install | demo | test | lint | clean
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.spaseg-installed
CORES ?= 2
DEMO := demo

.PHONY: help install demo test lint clean

help:
	@echo "make install  create $(VENV) and install spaseg with the workflow and dev tools"
	@echo "make demo     simulate 7 sections into $(DEMO)/, run the workflow, write the report"
	@echo "make test     run the test suite"
	@echo "make lint     ruff, snakefmt and snakemake --lint"
	@echo "make clean    remove demo output, results and caches (keeps $(VENV))"

install: $(STAMP)

# torch first, in a pip call of its own: 2.13.0 (CPU build) is the one pip finds offline on
# our machines; left to the `torch>=2.1` in pyproject.toml, pip may fetch a CUDA build of GBs.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[workflow,dev,cci]"
	touch $@

demo: install $(DEMO)/config.yaml
	$(BIN)/snakemake --cores $(CORES) --configfile $(DEMO)/config.yaml
	$(BIN)/snakemake --cores $(CORES) --configfile $(DEMO)/config.yaml --report $(DEMO)/report.html
	@echo
	@echo "Results: $(DEMO)/results/<sample>/ (qc, pca, domains, svg: .h5ad/.png/.tsv)"
	@echo "         $(DEMO)/results/groups/serial/ (joint domains, 3-D alignment, svg)"
	@echo "Report:  $(DEMO)/report.html"

$(DEMO)/config.yaml: | $(STAMP)
	$(BIN)/python -m spaseg.datasets $(DEMO)

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow
	$(BIN)/snakemake --lint --cores 1

clean:
	rm -rf $(DEMO) results .test/demo .snakemake .pytest_cache .ruff_cache
