# Two entry points for a fresh clone: `make demo` and `make test`. Each creates (or reuses) the
# virtual environment in .venv and installs the package with the CPU build of PyTorch pinned.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

.PHONY: demo test lint bench
# PGD-AT on digits, then clean / PGD-10 / AutoAttack of the best checkpoint and the Table 1
# layout. Re-running it reuses the finished run (--resume).
demo: $(STAMP)
	$(BIN)/ssmprobe train --model s4 --dataset digits --method pgd --epochs 8 --out runs/demo --resume
	$(BIN)/ssmprobe eval --ckpt runs/demo/s4_digits_pgd/best.pt --attack pgd10,aa --n 360
	$(BIN)/ssmprobe table runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/layers.py
