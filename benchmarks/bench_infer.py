"""Benchmark of the main job (issue 6); prints figures, asserts nothing.

    .venv/bin/python benchmarks/bench_infer.py [--model default] [--quick]

Default run, in one go on this machine:
  1. prediction throughput (trajectories of 200 frames per second) with the model at batch
     size 1 and at the default batch size, and the share of the CPU's measured float32
     matrix-multiply peak the default batch size reaches (model FLOPs per trajectory,
     counted from its Conv1D/Dense layers, x trajectories/s / peak FLOP/s);
  2. change-point detection throughput with 1 and 2 Dask workers (and in-process);
  3. end-to-end seconds of `infer` on one 200-frame 128x128 video (tracking included);
  4. a collection (--videos, 20) of such videos on all CPUs as Dask workers: videos per hour per
     core, per-stage core-seconds per video, and the projected wall time of 10^6 videos on
     --nodes x --cores (+ --gpus at --gpu-rate for prediction) from those rates;
  5. peak memory (max RSS of the driver process) of `infer` on 10 vs 40 videos: streaming
     shard by shard should keep them within 10%.

The segment stage's settings are chosen by benchmarks/tune_segments.py.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from anomalousnet.core.names import STATE_PROB_COLUMNS  # noqa: E402
from anomalousnet.core.trajectories import Trajectories  # noqa: E402
from anomalousnet.networks.predict import with_predictions  # noqa: E402
from anomalousnet.segments import segmentation as cp  # noqa: E402


def random_walks(n: int, length: int = 200, seed: int = 0) -> Trajectories:
    """n Brownian trajectories of ``length`` frames, px (content does not matter for speed)."""
    rng = np.random.default_rng(seed)
    xy = rng.normal(0, 1.0, (n, length, 2)).cumsum(axis=1) + rng.uniform(0, 100, (n, 1, 2))
    offsets = np.arange(n + 1, dtype=np.int64) * length
    frame = np.tile(np.arange(length, dtype=np.int64), n)
    return Trajectories(offsets, {"frame": frame, "x": xy[..., 0].ravel(), "y": xy[..., 1].ravel()},
                           {"particle": np.arange(n, dtype=np.int64)})


def model_flops(bundle) -> int:
    """Multiply-add FLOPs (2 per MAC) of one forward pass of one window through every head,
    from the Conv1D, Conv1DTranspose and Dense layers' output shapes and kernels."""
    import keras

    total = 0
    for target in bundle.targets:
        net = bundle.model(target)
        for layer in net.layers:
            if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv1DTranspose, keras.layers.Dense)):
                kernel = layer.kernel.shape  # Conv1D: (k, c_in, c_out); Dense: (c_in, c_out)
                out_len = layer.output.shape[1] if len(layer.output.shape) == 3 else 1
                total += 2 * out_len * int(np.prod(kernel))
    return int(total)


def matmul_peak(seconds: float = 3.0, n: int = 2048) -> float:
    """Measured float32 matrix-multiply rate of this machine, FLOP/s (all cores, TensorFlow's
    own kernels, the ones the model runs on)."""
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    mm = tf.function(lambda a, b: tf.reduce_sum(tf.linalg.matmul(a, b)))
    mm(a, b).numpy()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        mm(a, b).numpy()
        count += 1
    return 2 * n ** 3 * count / (time.perf_counter() - start)


def bench_predict(bundle, quick: bool) -> dict:
    from anomalousnet.networks import predict as prediction

    prediction.predict(bundle, random_walks(64, seed=1), batch_size=64)  # build + compile every head
    out = {}
    n1 = 20 if quick else 60
    traj = random_walks(n1, seed=2)
    prediction.predict(bundle, random_walks(2, seed=3), batch_size=1)
    t = time.perf_counter()
    prediction.predict(bundle, traj, batch_size=1)
    out["batch_1"] = n1 / (time.perf_counter() - t)
    n = 1000 if quick else 4000
    traj = random_walks(n, seed=4)
    prediction.predict(bundle, random_walks(1024, seed=5), batch_size=1024)
    t = time.perf_counter()
    preds = prediction.predict(bundle, traj, batch_size=1024)
    out["batch_1024"] = n / (time.perf_counter() - t)
    flops = model_flops(bundle)
    peak = matmul_peak()
    out.update({"flops_per_traj": flops, "peak_flops": peak, "peak_share": out["batch_1024"] * flops / peak})
    return out, traj, preds


def bench_segment(traj, preds, quick: bool) -> dict:
    from anomalousnet.batch.cluster import dask_client

    with_preds = with_predictions(traj, preds)
    out = {}
    t = time.perf_counter()
    cp.segment_trajectories(with_preds)
    out["in_process"] = traj.n_tracks / (time.perf_counter() - t)
    for workers in (1, 2):
        with dask_client(workers=workers) as client:
            cp.segment_trajectories(random_walks_with_preds(50), client=client)  # warm the workers
            t = time.perf_counter()
            cp.segment_trajectories(with_preds, client=client, tracks_per_block=250)
            out[f"dask_{workers}"] = traj.n_tracks / (time.perf_counter() - t)
    return out


def random_walks_with_preds(n: int) -> Trajectories:
    traj = random_walks(n, seed=9)
    rng = np.random.default_rng(9)
    probs = rng.dirichlet(np.ones(4), traj.n_points).astype(np.float32)
    return Trajectories(traj.offsets, {**traj.points, "pred_alpha": rng.uniform(0, 2, traj.n_points),
                                          "pred_K": rng.uniform(0.1, 1, traj.n_points),
                                          "pred_state": probs.argmax(axis=1).astype(np.int8),
                                          **{c: probs[:, k] for k, c in enumerate(STATE_PROB_COLUMNS)}},
                           traj.tracks)


def write_videos(folder: Path, n: int, n_frames: int, shape: tuple[int, int], particles: int) -> list[Path]:
    from anomalousnet.simulation.synthetic_video import SyntheticVideo

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"video_{i:03d}.tif"
        if not path.exists():
            SyntheticVideo(n_frames=n_frames, shape=shape, n_particles=particles, D=0.5, seed=i).write(path)
        paths.append(path)
    return paths


INFER_CHILD = """
import json, resource, sys, time
t = time.perf_counter()
from anomalousnet.batch import pipeline
s = pipeline.run_infer(sys.argv[1:-3], sys.argv[-3], pipeline.InferOptions(model=sys.argv[-2], workers=int(sys.argv[-1]),
                      progress=False))
cpu = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
          for f in ("ru_utime", "ru_stime"))  # this process and its Dask worker processes
print(json.dumps({"seconds": time.perf_counter() - t, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "cpu_seconds": cpu, "written": len(s.written), "failed": s.failed, "stages": s.seconds}))
"""


def run_infer_child(inputs: list[str], out: Path, model: str, workers: int = 1) -> dict:
    """`infer` in a fresh process (so its peak memory and CPU time are its own): seconds,
    max RSS of the driver, CPU seconds of the driver and its Dask workers, stage seconds."""
    proc = subprocess.run([sys.executable, "-c", INFER_CHILD, *inputs, str(out), model, str(workers)],
                          capture_output=True,
                          text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["failed"] or result["written"] != len(inputs):
        raise RuntimeError(f"infer wrote {result['written']} of {len(inputs)} FOVs; failed: {result['failed']}")
    return result


def stage_core_seconds(video: Path, bundle, tmp: Path) -> dict:
    """CPU seconds (all threads of this process) of each stage on one video: tracking,
    prediction, change points; warmed first, so start-up is not counted."""
    from anomalousnet.io import store as st
    from anomalousnet.networks import predict as prediction
    from anomalousnet.tracking.video_tracking import track_video

    track_video(video, tmp / "warm.h5")
    t = time.process_time()
    traj = st.read_shard(track_video(video, tmp / "core.h5")).trajectories
    out = {"track": time.process_time() - t}
    t = time.process_time()
    preds = prediction.predict(bundle, traj)
    out["predict"] = time.process_time() - t
    t = time.process_time()
    cp.segment_trajectories(with_predictions(traj, preds), progress=False)
    out["segment"] = time.process_time() - t
    out["trajectories"] = traj.n_tracks
    return out


def scale_report(stages: dict, collection: dict, n_videos: int, workers: int, args) -> None:
    """Videos per hour per core, per-stage core-seconds, and the projected wall time of
    10^6 videos on the cluster of the arguments, from the rates measured here."""
    per_video_wall = collection["seconds"] * workers / n_videos  # core-seconds per video as run
    rate = 3600 / per_video_wall
    cpu_per_video = collection["cpu_seconds"] / n_videos
    measured = stages["track"] + stages["predict"] + stages["segment"]
    print(f"collection: {n_videos} AnDi-size videos on {workers} workers: {collection['seconds']:.1f} s wall, "
          f"{rate:.0f} videos per hour per core (goal 1500); CPU {cpu_per_video:.2f} core-s per video")
    print("  stages (s, driver's view): " + ", ".join(f"{k} {v:.1f}" for k, v in collection["stages"].items()))
    budget = 3600 / 1500
    print(f"  core-seconds per video (one video, warmed): track {stages['track']:.2f}, predict "
          f"{stages['predict']:.2f}, change points {stages['segment']:.2f}, the rest (start-up, Dask, reading, "
          f"writing, idle cores) {per_video_wall - measured:.2f}; the 1500/h/core budget is {budget:.2f} in all")
    n, nodes, cores, gpus = 1e6, args.nodes, args.cores, args.gpus
    cpu_part = n * (per_video_wall - stages["predict"]) / (nodes * cores)
    if gpus and args.gpu_rate:
        gpu_part = n * stages["trajectories"] / (args.gpu_rate * nodes * gpus)
        wall = max(cpu_part, gpu_part)
        how = (f"prediction on {gpus} GPU(s) per node at an assumed {args.gpu_rate:.0f} trajectories/s each "
               f"({gpu_part / 3600:.2f} h, overlapping the CPU stages' {cpu_part / 3600:.2f} h)")
    else:
        wall = n * per_video_wall / (nodes * cores)
        how = "every stage on the CPU cores at this machine's measured rates"
    print(f"projection, 10^6 videos on {nodes} nodes x {cores} cores: {wall / 3600:.2f} h ({how}; goal 1 h)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a rough check, not the figures)")
    parser.add_argument("--work", default=None, help="folder for generated videos and results [temporary]")
    parser.add_argument("--skip-memory", action="store_true", help="skip the 10 vs 40 videos memory run")
    parser.add_argument("--videos", type=int, default=20, help="videos in the collection run [20]")
    parser.add_argument("--nodes", type=int, default=16, help="projection: nodes [16]")
    parser.add_argument("--cores", type=int, default=64, help="projection: cores per node [64]")
    parser.add_argument("--gpus", type=int, default=0, help="projection: GPUs per node for prediction [0]")
    parser.add_argument("--gpu-rate", type=float, default=None,
                        help="projection: trajectories/s one GPU predicts (not measured here) []")
    args = parser.parse_args()
    from anomalousnet.networks import bundle as inference

    print(f"machine: {len(os.sched_getaffinity(0))} CPUs, load average {os.getloadavg()[0]:.2f}")
    bundle = inference.load_bundle(args.model)
    print(f"model: {bundle.path} ({bundle.sha256[:12]}), heads {', '.join(bundle.targets)}")
    pred, traj, preds = bench_predict(bundle, args.quick)
    print(f"predict, 200-frame trajectories/s: batch 1 {pred['batch_1']:.1f}, batch 1024 {pred['batch_1024']:.1f}")
    print(f"  model {pred['flops_per_traj'] / 1e6:.1f} MFLOP per trajectory (3 heads, one 208-frame window); "
          f"measured float32 matmul peak {pred['peak_flops'] / 1e9:.1f} GFLOP/s; batch 1024 reaches "
          f"{100 * pred['peak_share']:.1f}% of it")
    seg = bench_segment(traj, preds, args.quick)
    print(f"change points, trajectories/s: in-process {seg['in_process']:.0f}, Dask 1 worker {seg['dask_1']:.0f}, "
          f"Dask 2 workers {seg['dask_2']:.0f}")
    if args.work:
        Path(args.work).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        tmp = Path(tmp)
        one = write_videos(tmp / "one", 1, 200, (128, 128), 20)
        r = run_infer_child([str(one[0])], tmp / "out_one", args.model)
        print(f"end to end, one 200-frame 128x128 video (20 particles; new process: imports, model load, "
              f"tracking in-process, prediction, change points, writing): {r['seconds']:.1f} s; stages (s): "
              + ", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items()))
        workers = len(os.sched_getaffinity(0))
        many = write_videos(tmp / "collection", args.videos, 200, (128, 128), 20)
        collection = run_infer_child([str(v) for v in many], tmp / "out_collection", args.model, workers)
        scale_report(stage_core_seconds(one[0], bundle, tmp), collection, len(many), workers, args)
        if not args.skip_memory:
            videos = write_videos(tmp / "many", 40, 100, (64, 64), 8)
            m10 = run_infer_child([str(v) for v in videos[:10]], tmp / "out10", args.model)
            m40 = run_infer_child([str(v) for v in videos], tmp / "out40", args.model)
            print(f"peak memory (driver max RSS), 100-frame 64x64 videos (8 particles), all written: 10 videos "
                  f"{m10['maxrss_mb']:.0f} MB ({m10['seconds']:.0f} s), 40 videos {m40['maxrss_mb']:.0f} MB "
                  f"({m40['seconds']:.0f} s): {100 * (m40['maxrss_mb'] / m10['maxrss_mb'] - 1):+.1f}% "
                  f"(target within 10%)")
            print("  stages (s), 10 videos: " + ", ".join(f"{k} {v:.1f}" for k, v in m10["stages"].items()))
            print("  stages (s), 40 videos: " + ", ".join(f"{k} {v:.1f}" for k, v in m40["stages"].items()))


if __name__ == "__main__":
    main()
