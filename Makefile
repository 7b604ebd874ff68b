# Two commands set everything up from a fresh clone (only python3 needed):
#   make run    creates .venv, installs harness, runs `python -m harness run vgg16`
#   make test   creates .venv, installs harness with its test extra, runs the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test install bench clean-venv

run: $(STAMP)
	$(PY) -m harness run vgg16

test: $(STAMP)
	$(PY) -m pytest -q

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch and torchvision first, pinned to the releases this project is tested with
	$(PY) -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install -q -e ".[test]"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

bench: $(STAMP)
	$(PY) benchmarks/run_breakdown.py

clean-venv:
	rm -rf $(VENV)
