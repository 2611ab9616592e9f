"""Throughput of `simulate trajectories` against andi-datasets' challenge_phenom_dataset.

Both make labelled trajectories of the same model mix (the default weights of
SimulationConfig), measured in one run on this machine:

* ours: anomalousnet.simulation.training_store.simulate_training (models_phenom called directly, Dask
  shards): in one process (``workers=0``) for the per-core figure; with ``--workers``
  processes, wall time including starting the cluster (each worker spends a few CPU
  seconds starting and importing the simulator); and on an already running cluster
  (steady state, as with ``--scheduler-file``);
* baseline: challenge_phenom_dataset with the challenge's default parameters, one
  experiment per call (one process: the function has no parallelism), experiments
  drawn in proportion to the same model weights.

Usage: .venv/bin/python benchmarks/bench_simulate.py [--n 4000] [--workers 2] [--rounds 1]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the Dask worker processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def ours(n: int, workers: int, seed: int, shard_size: int) -> tuple[float, float, int, int]:
    from anomalousnet.simulation import training_store as sim

    with tempfile.TemporaryDirectory() as tmp:
        start, cpu = time.perf_counter(), cpu_seconds()
        summary = sim.simulate_training(tmp, n, seed, sim.SimulationConfig(), shard_size=shard_size, workers=workers,
                                        progress=False)
        wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    assert not summary.failed, summary.failed
    return wall, cpu, summary.counts["tracks"], summary.counts["points"]


def _warm_up() -> None:
    import andi_datasets.models_phenom  # noqa: F401 - what a worker imports on its first shard
    import anomalousnet.simulation.training_store  # noqa: F401


def _process_cpu() -> float:
    return time.process_time()


def ours_warm(n: int, workers: int, seed: int, shard_size: int) -> tuple[float, float, int, int]:
    """Steady state: the same call on a running cluster whose workers have imported the simulator
    (as with --scheduler-file on a long-lived cluster); CPU time summed over the workers."""
    from pathlib import Path

    from anomalousnet.batch import cluster
    from anomalousnet.simulation import training_store as sim

    with cluster.dask_client(workers) as client, tempfile.TemporaryDirectory() as tmp:
        client.run(_warm_up)
        scheduler_file = str(Path(tmp) / "scheduler.json")
        client.write_scheduler_file(scheduler_file)
        start, cpu = time.perf_counter(), sum(client.run(_process_cpu).values())
        summary = sim.simulate_training(Path(tmp) / "store", n, seed, sim.SimulationConfig(), shard_size=shard_size,
                                        scheduler_file=scheduler_file, progress=False)
        wall, cpu = time.perf_counter() - start, sum(client.run(_process_cpu).values()) - cpu
    assert not summary.failed, summary.failed
    return wall, cpu, summary.counts["tracks"], summary.counts["points"]


def baseline(rounds: int, seed: int) -> tuple[float, float, int, int, dict]:
    """challenge_phenom_dataset on the default model mix; returns (wall s, CPU s, trajectories, points,
    per model)."""
    import numpy as np
    from andi_datasets.datasets_challenge import challenge_phenom_dataset

    from anomalousnet.simulation import training_store as sim
    from anomalousnet.simulation.andi_dataset import ANDI_MODEL_NUMBERS
    from anomalousnet.simulation.seeding import seed_all

    weights = sim.SimulationConfig().weights
    experiments = [ANDI_MODEL_NUMBERS[m] for m in sim.MODELS for _ in range(int(weights[m]))] * rounds
    seed_all(seed)
    wall, n, points, per_model = 0.0, 0, 0, {}
    cpu = cpu_seconds()
    for model in experiments:
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trajs, labels, _ = challenge_phenom_dataset(experiments=[model], num_fovs=1)
        took = time.perf_counter() - start
        wall += took
        k = len(labels[0])
        n += k
        points += len(trajs[0])
        name = sim.MODELS[model - 1]
        t0, k0 = per_model.get(name, (0.0, 0))
        per_model[name] = (t0 + took, k0 + k)
    return wall, cpu_seconds() - cpu, n, points, per_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4000, help="trajectories for our simulator")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shard-size", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=1, help="baseline: rounds over the model mix (7 experiments each)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    print(f"CPUs available: {len(os.sched_getaffinity(0))}; load average before: {os.getloadavg()[0]:.2f} "
          "(other processes share the cores: compare rates measured in this run, and the per-CPU-second ones)")
    b_wall, b_cpu, b_n, b_points, per_model = baseline(args.rounds, args.seed)
    b_rate = b_n / b_wall
    print(f"baseline challenge_phenom_dataset (1 process): {b_n} trajectories, {b_points} points in {b_wall:.1f} s "
          f"-> {b_rate:.1f} trajectories/s, {b_points / b_wall:.0f} points/s; {b_n / b_cpu:.1f} trajectories/CPU-s")
    for name, (t, k) in per_model.items():
        print(f"    {name:<15} {k:>5} trajectories in {t:6.1f} s -> {k / t:6.1f}/s")
    one_n = max(args.n // 4, 200)
    s_wall, s_cpu, s_n, s_points = ours(one_n, 0, args.seed, args.shard_size)
    print(f"simulate trajectories, 1 process (workers=0): {s_n} trajectories, {s_points} points in {s_wall:.1f} s "
          f"-> {s_n / s_wall:.1f} trajectories/s ({s_n / s_wall / b_rate:.1f}x baseline); {s_n / s_cpu:.1f} "
          f"trajectories/CPU-s ({s_n / s_cpu / (b_n / b_cpu):.1f}x baseline)")
    p_wall, p_cpu, p_n, p_points = ours(args.n, args.workers, args.seed + 1, args.shard_size)
    print(f"simulate trajectories, {args.workers} Dask workers: {p_n} trajectories, {p_points} points in "
          f"{p_wall:.1f} s (incl. cluster start) -> {p_n / p_wall:.1f} trajectories/s, {p_points / p_wall:.0f} "
          f"points/s ({p_n / p_wall / b_rate:.1f}x baseline); {p_n / p_cpu:.1f} trajectories/CPU-s incl. Dask")
    w_wall, w_cpu, w_n, w_points = ours_warm(args.n, args.workers, args.seed + 2, args.shard_size)
    print(f"simulate trajectories, {args.workers} running Dask workers (steady state): {w_n} trajectories in "
          f"{w_wall:.1f} s -> {w_n / w_wall:.1f} trajectories/s ({w_n / w_wall / b_rate:.1f}x baseline); "
          f"{w_n / w_cpu:.1f} trajectories/CPU-s of the workers")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
