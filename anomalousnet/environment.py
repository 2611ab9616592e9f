"""What this installation and machine offer the suite: versions, the devices the networks can
use, how Horovod was built, and whether the built-in model predicts. `anomalousnet-batch info`
prints it; the image's %test runs it (with ``require_gpu`` when started with ``--nv``)."""
from __future__ import annotations

import os
import platform
import time
from importlib import metadata

import numpy as np

from anomalousnet import __version__


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _horovod_build() -> str:
    try:
        import horovod.tensorflow as hvd
    except ImportError as exc:
        return f"not importable ({exc})"
    built = [name for name, check in (("MPI", hvd.mpi_built), ("gloo", hvd.gloo_built), ("NCCL", hvd.nccl_built))
             if check()]
    return f"{_version('horovod')} with {', '.join(built) or 'no controller'}"


def _model_check() -> str:
    """Load the built-in bundle and predict two short random walks with every head."""
    from anomalousnet.core.names import FREE
    from anomalousnet.core.trajectories import Trajectories
    from anomalousnet.networks.bundle import load_bundle
    from anomalousnet.networks.predict import predict

    rng = np.random.default_rng(0)
    walks = [{"x": np.cumsum(rng.normal(size=80)), "y": np.cumsum(rng.normal(size=80))} for _ in range(2)]
    bundle = load_bundle("default")
    start = time.perf_counter()
    out = predict(bundle, Trajectories.from_arrays(walks))
    alpha = float(np.mean(out["pred_alpha"]))
    free = float(np.mean(out["pred_state"] == FREE))
    return (f"built-in model: heads {', '.join(bundle.targets)}; 2 Brownian walks -> mean alpha {alpha:.2f}, "
            f"{free:.0%} of frames free, "
            f"in {time.perf_counter() - start:.1f} s")


def describe(require_gpu: bool = False, check_model: bool = True) -> tuple[list[str], list[str]]:
    """(report lines, problems). A problem: no GPU visible although ``require_gpu``, or a
    built-in model that does not predict."""
    from anomalousnet.networks.backend import import_keras
    from anomalousnet.networks.predict import compute_device

    keras = import_keras()
    lines = [f"anomalousnet-batch {__version__} on Python {platform.python_version()} ({platform.machine()})",
             f"keras {keras.__version__} ({keras.backend.backend()} backend), numpy {np.__version__}, "
             f"trackpy {_version('trackpy')}, numba {_version('numba')}, dask {_version('dask')}"]
    problems = []
    gpu_seen = False
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        build = tf.sysconfig.get_build_info()
        cuda = (f"built for CUDA {build.get('cuda_version')} / cuDNN {build.get('cudnn_version')}"
                if build.get("is_cuda_build") else "built without CUDA")
        lines.append(f"tensorflow {tf.__version__}, {cuda}")
        gpu_seen = bool(tf.config.list_physical_devices("GPU"))
    lines.append(f"networks run on {compute_device()}")
    lines.append(f"horovod {_horovod_build()}")
    if require_gpu and not gpu_seen:
        problems.append(f"a GPU was required but {keras.backend.backend()} sees none "
                        f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}; "
                        "in an image: started with --nv on a GPU node?)")
    if check_model:
        try:
            lines.append(_model_check())
        except Exception as exc:  # reported, not raised: info says what is wrong
            problems.append(f"the built-in model does not predict: {exc}")
    return lines, problems
