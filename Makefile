# Two entry points for a fresh clone: `make demo` and `make test`. Each creates (or reuses) the
# virtual environment in .venv and installs the package with the CPU build of PyTorch pinned:
# the demo only what the package needs (44 s on a fresh clone), the tests and linters its
# [dev] extra on top (the test tools, the independent references, the docs; 26 s more).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(DEV_STAMP)

.PHONY: demo test lint bench
# One pair of S5 on digits (ST, then PGD-AT with the ε warm-up over its first 5 of 15 epochs),
# then `ssmprobe report` on it and the bundled zoo: clean, PGD-10 and AutoAttack of both
# checkpoints of each run on the first DEMO_N test digits, the feature discrepancy and the
# bounds of the pair (the zoo's are shipped), every table and figure, report.html, and the
# findings printed from the run's own numbers. Re-running it reuses what is done. CI runs this
# same target at smoke size (DEMO_EPOCHS=1 DEMO_N=10 DEMO_PROBE=10, see .ci/run).
DEMO_N ?= 100
DEMO_PROBE ?= 200
DEMO_EPOCHS ?= 15
DEMO_RUNS ?= runs/demo
# --resume only where the run exists (train refuses it otherwise): a first run starts fresh, a
# second continues an interrupted one or, finished, reuses it. The run is s5_st_digits, or
# s5_digits_st where 0.2 began it (train keeps that folder).
resume = $(if $(wildcard $(addprefix $(DEMO_RUNS)/,$(addsuffix /last.pt,$(1)))),--resume)
demo: $(STAMP)
	$(MAKE) --no-print-directory -j2 demo-st demo-pgd
	$(BIN)/ssmprobe report --runs $(DEMO_RUNS) --zoo --out $(DEMO_RUNS)/report \
		--n $(DEMO_N) --n-probe $(DEMO_PROBE) --quiet

# The two runs train side by side, one thread each: at batch 32 a second thread buys a run only
# 1.3x, so together they finish sooner (90 s against 99 s one after the other, 2 cores).
.PHONY: demo-st demo-pgd
demo-st demo-pgd: demo-%: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/ssmprobe train --model s5 --method $* --epochs $(DEMO_EPOCHS) \
		--out $(DEMO_RUNS) $(call resume,s5_$*_digits s5_digits_$*) --quiet

test: $(DEV_STAMP)
	$(BIN)/python -m pytest -q -n auto

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

bench: $(DEV_STAMP)
	$(BIN)/python benchmarks/layers.py
