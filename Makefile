# Environment from nothing: `make test` (the test command) and `make demo` (the main job).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# Horovod 0.28.1 builds from source against the installed TensorFlow: gloo only, no MPI.
HOROVOD_ENV := HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
	HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1

.PHONY: env system test clean demo

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

# The main job on a small AnDi-style video set (issue 6): simulate videos, then `infer` with
# the built-in model. DEMO_DIR, DEMO_MODEL and DEMO_EXPERIMENTS can be overridden.
DEMO_DIR ?= demo
DEMO_MODEL ?= default
DEMO_EXPERIMENTS ?= 2

$(VENV)/.video: $(VENV)/.installed
	$(PIP) install -e '.[video]'
	touch $@

demo: $(VENV)/.video
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -c "from anomalousnet.simulate import simulate_andi; \
	simulate_andi('$(DEMO_DIR)/data', seed=2024, experiments=$(DEMO_EXPERIMENTS), fovs=1, videos=True)"
	TF_CPP_MIN_LOG_LEVEL=2 $(VENV)/bin/anomalousnet-batch infer \
	  --input '$(DEMO_DIR)/data/public/track_1/exp_*/videos_fov_*.tiff' --out $(DEMO_DIR)/results \
	  --model $(DEMO_MODEL) --pixel-size 0.1 --frame-interval 0.1 --report
	@echo "demo videos:  $(DEMO_DIR)/data/public/track_1/"
	@echo "results:      $(DEMO_DIR)/results/store (HDF5), $(DEMO_DIR)/results/segments.csv, $(DEMO_DIR)/results/ensemble.csv"
	@echo "figures:      $(DEMO_DIR)/results/figures/*.png"

clean:
	rm -rf $(VENV) build *.egg-info
