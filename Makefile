# The README's two commands are `make demo` and `make test`.
# Every target installs what it needs into .venv (Python >= 3.12) on first use.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PEER := .peer

.PHONY: demo test test-slow venv peer clean

# Find Python 3.12+ on PATH or in pyenv; say what to install when there is none.
PYTHON312 := $(shell for p in python3.12 python3.13 $$HOME/.pyenv/versions/3.12*/bin/python3.12 $$HOME/.pyenv/versions/3.13*/bin/python3.13 python3; do \
  command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null && { command -v $$p; break; }; done)

$(VENV)/.installed: pyproject.toml
	@if [ -z "$(PYTHON312)" ]; then \
	  echo "jaxlic needs Python >= 3.12 (jax 0.12). Install it, e.g. 'pyenv install 3.12' or 'apt-get install python3.12-venv', then re-run make." >&2; exit 1; fi
	$(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,compile]'
	touch $@

venv: $(VENV)/.installed

# The CompressAI peer lives in its own Python 3.11 environment (numpy < 2, torch CPU).
peer:
	bash scripts/make_peer_env.sh $(PEER)

demo: venv
	$(VENV)/bin/jaxlic demo

test: venv peer
	$(PY) -m pytest -q

test-slow: venv peer
	$(PY) -m pytest -q -m slow

clean:
	rm -rf $(VENV) $(PEER) runs out
