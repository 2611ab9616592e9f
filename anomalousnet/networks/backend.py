"""Keras imported without the backend's start-up noise.

A TensorFlow wheel built for CUDA registers its cuDNN/cuFFT/cuBLAS plugins from C++ at import
and, on a machine without those libraries or a GPU, writes lines such as "Unable to register
cuDNN factory" to stderr before ``TF_CPP_MIN_LOG_LEVEL`` is read, on every run. Those known
lines, and the failed CUDA start of device discovery (done during the import for that
reason), are dropped; anything else written meanwhile reaches stderr unchanged.
``TF_CPP_MIN_LOG_LEVEL=0`` (asking for everything) keeps them all.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile

# Lines TensorFlow writes at import that say nothing about this run.
START_UP_NOISE = (
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "All log messages before absl::InitializeLog() is called",
    "computation placer already registered",
    "Could not find cuda drivers on your machine",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions",
    "oneDNN custom operations are on",
    "TF-TRT Warning",
    "failed call to cuInit",  # no GPU here: the run's log says where the networks run
    # XLA's first use (the fused layer normalisation): it announces itself and its device
    "XLA service",
    "StreamExecutor device",
    "Compiled cluster using XLA",
)


@contextlib.contextmanager
def _known_noise_dropped():
    """stderr (the file descriptor, where C++ writes) captured for the block, then written out
    without the lines of :data:`START_UP_NOISE`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if line.strip() and not any(noise in line for noise in START_UP_NOISE):
                    sys.stderr.write(line)
            sys.stderr.flush()


def import_keras():
    """``import keras`` with TensorFlow's known start-up lines filtered out of stderr."""
    if "keras" in sys.modules:
        return sys.modules["keras"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0":
        import keras

        return keras
    with _known_noise_dropped():
        import keras

        if keras.backend.backend() == "tensorflow":  # device discovery writes its lines now, not mid-run
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")
            logging.getLogger("tensorflow").addFilter(_RetracingWarningDropped())
    return keras


class _RetracingWarningDropped(logging.Filter):
    """Prediction traces Keras' predict function once per power-of-two batch shape, by design
    (``predict._chunk_size``); TensorFlow's warning after five traces ("... triggered
    tf.function retracing ...") would reach every run's log saying nothing about it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def fused(function):
    """``function`` (of tensors, built from ``keras.ops``) compiled into one fused kernel where
    the backend compiles per op otherwise: under TensorFlow an XLA-compiled ``tf.function``
    (traced once per input shape), under other backends ``function`` itself (JAX compiles
    the whole model anyway)."""
    keras = import_keras()
    if keras.backend.backend() != "tensorflow":
        return function
    import tensorflow as tf

    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "0":
        # XLA writes its start lines at its first compile, mid-run: have it now, quietly (eagerly,
        # also when called while a graph is traced)
        with _known_noise_dropped(), tf.init_scope():
            tf.function(lambda v: v + 1, jit_compile=True)(tf.zeros(1))
    return tf.function(function, jit_compile=True, autograph=False)  # plain ops: nothing to convert
