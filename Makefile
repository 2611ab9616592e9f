# Environment from nothing: `make test` (the test command) and `make demo` (the main job).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# Horovod 0.28.1 builds from source against the installed TensorFlow: gloo only, no MPI.
HOROVOD_ENV := HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
	HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1

.PHONY: env system test clean

env: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade "pip>=24" "setuptools>=68" wheel
	$(PIP) install -e '.[test]'
	touch $@

$(VENV)/.horovod: $(VENV)/.installed
	$(HOROVOD_ENV) $(PIP) install --no-build-isolation 'horovod==0.28.1'
	touch $@

# SLURM (single node), munge and shellcheck for the template and container tests (root only).
system:
	tests/setup-system.sh

test: $(VENV)/.installed system
	$(PY) -m pytest tests

clean:
	rm -rf $(VENV) build *.egg-info
