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

.PHONY: help install lock demo test lint clean

help:
	@echo "make install  create $(VENV) and install spaseg with the workflow and dev tools"
	@echo "make lock     re-resolve the newest allowed versions into constraints.txt"
	@echo "make demo     simulate 7 sections into $(DEMO)/, run the workflow, write the report"
	@echo "make test     run the test suite"
	@echo "make lint     ruff, snakefmt and snakemake --lint"
	@echo "make clean    remove demo output, results and caches (keeps $(VENV))"

install: $(STAMP)

# Every version comes from constraints.txt (the tested set, see its header), so a fresh machine
# installs what CI tested. torch first, in a pip call of its own: 2.13.0 (CPU build) is the one
# pip finds offline on our machines; a CUDA build would be GBs.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt torch
	$(BIN)/pip install --quiet -c constraints.txt -e ".[workflow,dev,cci]"
	touch $@

# Re-resolve the newest versions pyproject.toml allows into constraints.txt (keeps its header).
# Then run `make test` on a fresh clone and copy changed versions into envs/*.yaml.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet torch==2.13.0
	.lock-venv/bin/pip install --quiet -e ".[workflow,dev,cci]"
	{ sed -n '/^#/p' constraints.txt; .lock-venv/bin/pip freeze --exclude-editable \
	  | sed 's/+cpu$$//'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt && rm -rf .lock-venv
	@echo "constraints.txt re-resolved: review 'git diff constraints.txt'"

demo: install $(DEMO)/config.yaml
	$(BIN)/snakemake --cores $(CORES) --configfile $(DEMO)/config.yaml
	$(BIN)/snakemake --cores $(CORES) --configfile $(DEMO)/config.yaml --report $(DEMO)/report.html
	@echo
	@echo "Results: $(DEMO)/results/<sample>/ (qc, pca, domains, svg: .h5ad/.png/.tsv)"
	@echo "         $(DEMO)/results/groups/serial/ (joint domains, 3-D alignment, svg)"
	@echo "Batch:   $(DEMO)/results/batch/overview.html (every section on one page; MultiQC: multiqc_report.html)"
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
	rm -rf $(DEMO) results .test/demo .snakemake .pytest_cache .ruff_cache .hypothesis
