"""Tracking throughput and memory: frames/s with 1 and 2 Dask workers on the same videos
(parallel efficiency), and peak memory while tracking one ~2 GB stack.

    .venv/bin/python benchmarks/bench_tracking.py                 # both parts
    .venv/bin/python benchmarks/bench_tracking.py --skip-big      # throughput only
    .venv/bin/python benchmarks/bench_tracking.py --big-gb 0.5    # smaller big stack
    .venv/bin/python benchmarks/bench_tracking.py --skip-throughput --skip-big --andi D1 D2
        # accuracy on AnDi-2 datasets made by `anomalousnet-batch simulate andi --videos`:
        # localisation RMSE against the noise-free positions, VIPs recovered per FOV

Videos are synthetic (anomalousnet.simulation.synthetic_video.SyntheticVideo) and written under --tmp (default
/tmp), deleted at the end. Wall times include starting the local Dask cluster. The big
stack is tracked in a child process whose peak resident set size (ru_maxrss) is reported
beside the stack's size on disk.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from anomalousnet.io import store as st
from anomalousnet.simulation.synthetic_video import SyntheticVideo
from anomalousnet.tracking.batch import track_videos
from anomalousnet.tracking.video_tracking import TrackOptions


def throughput(tmp: Path, n_videos: int, n_frames: int, size: int, particles: int) -> None:
    videos = tmp / "videos"
    videos.mkdir()
    t0 = time.perf_counter()
    for seed in range(n_videos):
        SyntheticVideo(n_frames=n_frames, shape=(size, size), n_particles=particles, D=0.5, seed=seed,
                       blink=0.02).write(videos / f"v{seed}.tif")
    print(f"wrote {n_videos} videos of {n_frames} frames {size}x{size}, {particles} particles "
          f"({time.perf_counter() - t0:.1f} s)")
    total = n_videos * n_frames
    rates = {}
    for workers in (1, 2):
        out = tmp / f"store_{workers}"
        t0 = time.perf_counter()
        summary = track_videos([str(videos / "*.tif")], out, TrackOptions(), workers=workers, progress=False)
        wall = time.perf_counter() - t0
        assert summary.ok and len(summary.written) == n_videos, summary
        rates[workers] = total / wall
        shards = [st.read_shard(p).attrs for p in summary.written]
        task_wall = sum(a["track_seconds"] for a in shards)
        task_cpu = sum(a["track_cpu_seconds"] for a in shards)
        print(f"workers={workers}: {total} frames in {wall:.1f} s = {rates[workers]:.1f} frames/s; inside the "
              f"tasks {task_wall:.1f} s elapsed, {task_cpu:.1f} s CPU ({task_cpu / task_wall:.0%} of a core each)")
    print(f"parallel efficiency (2 workers vs 1): {rates[2] / rates[1] / 2:.2f} (below 1 also when other jobs "
          "hold the cores: see the CPU share of the tasks)")


def peak_memory(tmp: Path, gigabytes: float) -> None:
    shape = (1024, 1024)  # uint16: 2 MiB per frame
    n_frames = int(round(gigabytes * (1 << 30) / (shape[0] * shape[1] * 2)))
    path = tmp / "big.tif"
    t0 = time.perf_counter()
    SyntheticVideo(n_frames=n_frames, shape=shape, n_particles=60, D=0.5, seed=1, margin=10).write(path)
    size = path.stat().st_size
    print(f"wrote {path.name}: {n_frames} frames {shape[0]}x{shape[1]} uint16, {size / 2**30:.2f} GiB "
          f"({time.perf_counter() - t0:.1f} s)")
    code = ("import sys; from anomalousnet.tracking.video_tracking import track_video; "
            "track_video(sys.argv[1], sys.argv[2], progress=True)")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(path), str(tmp / "big.h5")], check=True)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(f"tracked in {wall:.1f} s ({n_frames / wall:.1f} frames/s); peak RSS {peak / 2**20:.0f} MiB = "
          f"{peak / size:.1%} of the stack")


def andi_accuracy(datasets: list[str]) -> None:
    import glob

    import numpy as np
    import pandas as pd

    from anomalousnet.tracking import metrics
    from anomalousnet.tracking.video_tracking import track_video

    coverages, errors = [], []
    for root in datasets:
        for video in sorted(glob.glob(f"{root}/public/track_1/exp_*/videos_fov_*.tiff")):
            ref = Path(video).parent.as_posix().replace("/public/", "/ref/")
            fov = Path(video).stem.rsplit("_", 1)[1]
            true = pd.read_csv(f"{ref}/trajs_fov_{fov}.csv")
            truth = pd.DataFrame({"traj_idx": true["traj_idx"], "frame": true["frame"], "x": true["col"],
                                  "y": true["row"]})
            vips = np.loadtxt(f"{ref}/vip_idx_fov_{fov}.txt", ndmin=1).astype(int)
            with tempfile.TemporaryDirectory() as tmp:
                shard = st.read_shard(track_video(video, Path(tmp) / "v.h5"))
            rmse, recall = metrics.localisation_rmse(shard.trajectories.to_dataframe(), truth)
            fraction, cover = metrics.vip_recovery(shard.trajectories, truth, vips)
            coverages += list(cover.values())
            errors.append(rmse)
            print(f"{video}: RMSE {rmse:.3f} px, positions found {recall:.3f}, VIPs recovered {fraction:.2f} "
                  f"({shard.attrs['n_frames']} frames)")
    print(f"AnDi: {len(errors)} FOVs, RMSE mean {np.mean(errors):.3f} px (max {np.max(errors):.3f}); "
          f"VIPs recovered {np.mean(np.array(coverages) >= 0.9):.3f} of {len(coverages)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--particles", type=int, default=40)
    parser.add_argument("--big-gb", type=float, default=2.0)
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--tmp", default="/tmp")
    parser.add_argument("--andi", nargs="*", default=[], metavar="DIR", help="AnDi-2 datasets to score tracking on")
    args = parser.parse_args()
    print(f"CPUs available: {len(os.sched_getaffinity(0))}, load average {os.getloadavg()[0]:.1f}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_tracking_", dir=args.tmp))
    try:
        if not args.skip_throughput:
            throughput(tmp, args.videos, args.frames, args.size, args.particles)
        if not args.skip_big:
            peak_memory(tmp, args.big_gb)
        if args.andi:
            andi_accuracy(args.andi)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
