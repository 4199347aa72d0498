# Every target installs what it needs into .venv on first use (a fresh machine has only Python and pip).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-all

.PHONY: install test demo lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch first, pinned to the local CPU build: a bare `torch` requirement would pull CUDA wheels.
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[torch,export,data,dev,ctranslate2]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile

demo: $(STAMP)
	$(PY) -m s2s_jax.demo

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	$(PY) bench/train_throughput.py --presets bentrevett-gru --steps 5 --rounds 1 --no-compile

clean:
	rm -rf $(VENV) *.egg-info
