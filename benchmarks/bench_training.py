"""Training throughput (trajectories/s) of the `cpu` and `paper` presets, and a bundle's held-out figures.

Throughput: the library's own compiled training step (anomalousnet.networks.training.make_train_step,
single process, float32 unless --mixed-precision) on windows of simulated tracks
(anomalousnet.simulation.training_store.simulate_tracks), batch assembly (crops, rotations, scaling) included,
after --warmup steps (tracing). One trajectory = one 208-frame window.

Evaluation (--evaluate BUNDLE --data STORE): per-frame alpha MAE, K MSLE (px^2/frame^alpha),
state accuracy and recall per state on a labelled held-out store, overall and per model.

Usage:
  .venv/bin/python benchmarks/bench_training.py [--presets cpu paper] [--targets alpha K state]
                                                [--steps 20] [--batch-size 32]
  .venv/bin/python benchmarks/bench_training.py --evaluate default --data build/default-model/heldout
"""
from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def throughput(preset: str, target: str, steps: int, batch_size: int, warmup: int, windows, mixed: bool) -> float:
    import keras
    import numpy as np

    from anomalousnet import features as ft
    from anomalousnet.networks import model as mdl
    from anomalousnet.networks import training as tr

    keras.mixed_precision.set_dtype_policy("mixed_float16" if mixed else "float32")
    ranks = tr.Ranks()
    net = mdl.build(target, preset)
    opt = tr.make_optimizer(1e-3, ranks, mixed)
    opt.build(net.trainable_variables)
    step = tr.make_train_step(net, opt, target, ranks, mixed)
    rng = np.random.default_rng(0)

    def one():
        b = ft.training_batch(windows.subset(rng.integers(0, len(windows), batch_size)), rng)
        return float(step(b.inputs, b.target(target), b.mask))

    for _ in range(warmup):
        one()
    start = time.perf_counter()
    for _ in range(steps):
        one()
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["cpu", "paper"])
    parser.add_argument("--targets", nargs="+", default=["alpha", "K", "state"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--evaluate", metavar="BUNDLE", help="measure this bundle ('default' or a path) instead")
    parser.add_argument("--data", nargs="+", help="held-out labelled store(s) for --evaluate")
    args = parser.parse_args()

    if args.evaluate:
        from anomalousnet.networks.bundle import load_bundle
        from anomalousnet.networks.evaluation import evaluate

        result = evaluate(load_bundle(args.evaluate), args.data)
        print(json.dumps({"bundle": args.evaluate, "overall": result["overall"],
                          "per_model": result["per_model"]}, indent=1))
        return

    import tensorflow as tf

    from anomalousnet import features as ft
    from anomalousnet.simulation.training_store import simulate_tracks

    traj, _ = simulate_tracks(max(4 * args.batch_size, 256), seed=123)
    windows = ft.training_windows(traj)
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs visible, GPUs: "
          f"{len(tf.config.list_physical_devices('GPU'))}; batch {args.batch_size}, {args.steps} timed steps")
    print(f"{'preset':8} {'target':6} {'trajectories/s':>15}")
    for preset in args.presets:
        for target in args.targets:
            rate = throughput(preset, target, args.steps, args.batch_size, args.warmup, windows,
                              args.mixed_precision)
            print(f"{preset:8} {target:6} {rate:15.1f}", flush=True)


if __name__ == "__main__":
    main()
