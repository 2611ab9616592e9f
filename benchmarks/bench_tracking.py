"""Tracking throughput and memory: frames/s with 1 and 2 Dask workers on the same videos
(parallel efficiency), and peak memory while tracking one ~2 GB stack.

    .venv/bin/python benchmarks/bench_tracking.py                 # both parts
    .venv/bin/python benchmarks/bench_tracking.py --skip-big      # throughput only
    .venv/bin/python benchmarks/bench_tracking.py --big-gb 0.5    # smaller big stack
    .venv/bin/python benchmarks/bench_tracking.py --skip-throughput --skip-big --andi D1 D2
        # error budget on AnDi-2 datasets made by `anomalousnet-batch simulate andi --videos`,
        # per diffusion model: localisation RMSE against the noise-free positions (by spot
        # brightness), VIPs followed, identity switches, fragments, filled frames, frames/s,
        # and the official scores of the default model from true trajectories, tracked ones,
        # tracked positions with true identities, true positions with tracked identities
        # (--no-score: budget only; --option NAME=VALUE: a TrackOptions field to compare)

Videos are synthetic (anomalousnet.simulation.synthetic_video.SyntheticVideo) and written under --tmp (default
/tmp), deleted at the end. Wall times include starting the local Dask cluster. The big
stack is tracked in a child process whose peak resident set size (ru_maxrss) is reported
beside the stack's size on disk.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

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


# ----------------------------------------------------------------------------- AnDi-2 error budget

def _truth(ref: str, fov: str):
    """Ground truth of one FOV in video pixels (x = column, y = row): noise-free ``x``, ``y`` and
    the track-2 positions with localisation noise ``xn``, ``yn`` (what "true trajectories" are scored from)."""
    import pandas as pd

    true = pd.read_csv(f"{ref}/trajs_fov_{fov}.csv")
    return pd.DataFrame({"traj_idx": true["traj_idx"].astype(int), "frame": true["frame"].astype(int),
                         "x": true["col"], "y": true["row"], "xn": true["col"] + true["y"] - true["y_true"],
                         "yn": true["row"] + true["x"] - true["x_true"]})


def match_identities(tracked, truth, tol: float = 1.5):
    """True identity of every tracked point: per frame, an optimal one-to-one assignment
    (scipy ``linear_sum_assignment``) of tracked points to true positions within ``tol`` px.
    Returns ``tracked`` with ``true_id`` (-1: nothing within ``tol``) and ``error`` (px)."""
    from scipy.optimize import linear_sum_assignment

    true_id = np.full(len(tracked), -1, np.int64)
    error = np.full(len(tracked), np.nan)
    t_by_frame = {f: g for f, g in truth.groupby("frame")}
    positions = tracked[["x", "y"]].to_numpy()
    for frame, rows in tracked.groupby("frame").indices.items():
        t = t_by_frame.get(frame)
        if t is None:
            continue
        d = np.hypot(positions[rows, None, 0] - t["x"].to_numpy()[None], positions[rows, None, 1] - t["y"].to_numpy()[None])
        cost = np.where(d <= tol, d, 1e6)
        r, c = linear_sum_assignment(cost)
        ok = cost[r, c] <= tol
        true_id[rows[r[ok]]] = t["traj_idx"].to_numpy()[c[ok]]
        error[rows[r[ok]]] = d[r[ok], c[ok]]
    return tracked.assign(true_id=true_id, error=error)


def vip_budget(tracked, truth, vip: int, particle: int | None) -> dict:
    """How tracked ``particle`` (tagged with ``vip``) follows the VIP over its true frames:
    ``followed`` (share of frames where it is the VIP), ``absent`` (the tagged track does not
    cover the frame: it started late or ended early), ``wrong`` (present but on another particle
    or nowhere), ``switches`` (changes of the true identity along the tagged track), ``pieces``
    (tracked particles that carry the VIP somewhere), ``interpolated`` (share of the followed
    frames that were filled, not observed)."""
    frames = truth.loc[truth["traj_idx"] == vip, "frame"].to_numpy()
    n = max(len(frames), 1)
    carriers = tracked.loc[tracked["true_id"] == vip, "particle"].unique()
    if particle is None:
        return dict(followed=0.0, absent=1.0, wrong=0.0, switches=0, pieces=len(carriers), interpolated=0.0)
    mine = tracked[tracked["particle"] == particle]
    on = mine[mine["frame"].isin(frames)]
    right = on["true_id"].to_numpy() == vip
    ids = mine["true_id"].to_numpy()
    ids = ids[ids >= 0]
    return dict(followed=right.sum() / n, absent=1 - len(on) / n, wrong=(~right).sum() / n,
                switches=int(np.count_nonzero(np.diff(ids))), pieces=len(carriers),
                interpolated=float(on["interpolated"].to_numpy()[right].mean()) if right.any() else 0.0)


def encounter_free(truth, vip: int, within: float = 1.0, share: float = 0.9) -> bool:
    """Whether no other particle comes within ``within`` px (noise-free positions) of the VIP
    during the first ``share`` of its frames. Two particles that close are one spot and, moving
    alike, cannot be told apart afterwards by any tracker: the share of such VIPs bounds what
    "VIPs followed" can reach."""
    mine = truth.loc[truth["traj_idx"] == vip, ["frame", "x", "y"]]
    mine = mine[mine["frame"] < mine["frame"].min() + share * len(mine)]
    others = truth[truth["traj_idx"] != vip].merge(mine, on="frame", suffixes=("", "_vip"))
    return bool((np.hypot(others["x"] - others["x_vip"], others["y"] - others["y_vip"]) >= within).all())


ISOLATED = 4.0  # px: a spot with no other particle this close is fitted alone (5 PSF sigmas in AnDi-2 videos)


def nearest_other(truth, ids: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Distance (px, noise-free positions) from particle ``ids[k]`` to the nearest other particle
    in frame ``frames[k]``; inf when it is alone in the frame."""
    from scipy.spatial import cKDTree

    out = np.full(len(ids), np.inf)
    by_frame = {f: g for f, g in truth.groupby("frame")}
    for frame in np.unique(frames):
        g = by_frame.get(frame)
        if g is None or len(g) < 2:
            continue
        xy = g[["x", "y"]].to_numpy()
        d, _ = cKDTree(xy).query(xy, k=2)
        nearest = dict(zip(g["traj_idx"].to_numpy(), d[:, 1]))
        sel = np.flatnonzero(frames == frame)
        out[sel] = [nearest.get(i, np.inf) for i in ids[sel]]
    return out


def link_true_detections(truth, search_range: float, options, noise: float):
    """The linker of ``options`` run on perfect detections: the noisy true position of every
    particle inside the 128 px field in every frame, none missed, none merged (``true_id`` is
    each point's particle). What it gets wrong is linking's own share of the identity errors."""
    from anomalousnet.tracking.video_tracking import link_features

    inside = truth["xn"].between(-0.5, 127.5) & truth["yn"].between(-0.5, 127.5)
    dets = truth.loc[inside, ["frame", "xn", "yn", "traj_idx"]].rename(columns={"xn": "x", "yn": "y",
                                                                              "traj_idx": "true_id"})
    return link_features(dets.reset_index(drop=True), search_range, options, precision=noise)


def _gaps_interpolated(points) -> dict:
    """``points`` (frame-sorted, one per frame) as a track with one position per frame from
    the first to the last, skipped frames linearly interpolated and flagged."""
    f = np.arange(points["frame"].iloc[0], points["frame"].iloc[-1] + 1)
    return {"frame": f, "x": np.interp(f, points["frame"], points["x"]), "y": np.interp(f, points["frame"], points["y"]),
            "interpolated": ~np.isin(f, points["frame"].to_numpy())}


def true_detection_track(linked, truth, vip: int) -> tuple[dict | None, float]:
    """The VIP's track when linking perfect detections (:func:`link_true_detections`): the
    particle holding it in its first frame, gaps interpolated; and the share of the VIP's
    frames on which that particle is the VIP."""
    frames = truth.loc[truth["traj_idx"] == vip, "frame"]
    start = linked[(linked["true_id"] == vip) & (linked["frame"] == frames.min())]
    if start.empty:
        return None, 0.0
    mine = linked[linked["particle"] == start["particle"].iloc[0]].sort_values("frame")
    track = _gaps_interpolated(mine)
    right = mine.loc[mine["frame"].isin(frames.to_numpy()) & (mine["true_id"] == vip), "frame"].nunique()
    return track, right / max(len(frames), 1)


def variant_tracks(tracked, truth, vip: int, particle: int | None) -> dict[str, dict | None]:
    """One VIP's trajectory four ways (frame, x, y): ``true`` (noisy true positions, the
    from-trajectories score), ``tracked`` (its tagged track, as ``andi run`` scores it),
    ``true_ids`` (tracked positions, perfect linking: the detections matched to the VIP in each
    frame, gaps interpolated), ``true_pos`` (tracked identities, perfect localisation: each
    point of the tagged track moved to the noisy true position of the particle it is on)."""
    t = truth[truth["traj_idx"] == vip].sort_values("frame")
    out = {"true": {"frame": t["frame"].to_numpy(), "x": t["xn"].to_numpy(), "y": t["yn"].to_numpy()}}
    hits = tracked[(tracked["true_id"] == vip) & ~tracked["interpolated"]].sort_values("frame")
    hits = hits.drop_duplicates("frame")
    if len(hits):
        out["true_ids"] = _gaps_interpolated(hits)
        if "precision" in hits:
            out["true_ids"]["precision"] = hits.set_index("frame")["precision"].reindex(
                out["true_ids"]["frame"]).to_numpy(float)
    else:
        out["true_ids"] = None
    if particle is None:
        out["tracked"] = out["true_pos"] = None
        return out
    mine = tracked[tracked["particle"] == particle].sort_values("frame")
    out["tracked"] = {"frame": mine["frame"].to_numpy(), "x": mine["x"].to_numpy(), "y": mine["y"].to_numpy(),
                      "interpolated": mine["interpolated"].to_numpy(bool),
                      "merged": mine["merged"].to_numpy(bool) if "merged" in mine else np.zeros(len(mine), bool)}
    if "precision" in mine:
        out["tracked"]["precision"] = mine["precision"].to_numpy(float)
    noisy = truth.set_index(["traj_idx", "frame"])[["xn", "yn"]]
    key = list(zip(mine["true_id"], mine["frame"]))
    found = mine["true_id"].to_numpy() >= 0
    xy = mine[["x", "y"]].to_numpy().copy()
    if found.any():
        xy[found] = noisy.loc[[k for k, ok in zip(key, found) if ok]].to_numpy()
    out["true_pos"] = {"frame": mine["frame"].to_numpy(), "x": xy[:, 0], "y": xy[:, 1]}
    return out


def score_variants(per_model: dict, method) -> dict[str, dict[str, dict]]:
    """Official single-trajectory metrics per model and variant. ``per_model``: model ->
    list of (ref label, {variant: track or None}). A track that starts at frame f > 0 has its
    change points shifted by f as ``andi run`` does; a missing track gets the fallback line."""
    from anomalousnet.andi.scoring import score_single
    from anomalousnet.andi.submission import fallback_label

    scores: dict[str, dict[str, dict]] = {}
    for model, items in per_model.items():
        scores[model] = {}
        for variant in VARIANTS:
            arrays, ids = [], []
            for i, (_, tracks) in enumerate(items):
                tr_ = tracks.get(variant)
                if tr_ is not None and len(tr_["frame"]) >= 2:
                    arrays.append({"frame": np.arange(len(tr_["frame"]), dtype=np.int64), "x": tr_["x"], "y": tr_["y"],
                                   "precision": tr_.get("precision", np.full(len(tr_["x"]), np.nan)),
                                   "interpolated": tr_.get("interpolated", np.zeros(len(tr_["x"]), bool)),
                                   "merged": tr_.get("merged", np.zeros(len(tr_["x"]), bool))})
                    ids.append(i)
            labels = {}
            if arrays:
                traj = st.Trajectories.from_arrays(arrays, {"particle": np.array(ids, dtype=np.int64)})
                labels = {l.idx: l for l in method(traj)}
            pairs = []
            for i, (ref, tracks) in enumerate(items):
                tr_ = tracks.get(variant)
                label = labels.get(i)
                if label is None:
                    pairs.append((ref, fallback_label(ref.idx, ref.T)))
                    continue
                first = int(tr_["frame"][0])
                pairs.append((ref, dataclasses.replace(label, idx=ref.idx, cps=tuple(c + first for c in label.cps),
                                                       T=label.T + first)))
            scores[model][variant] = score_single(pairs)
    return scores


VARIANTS = ("true", "tracked", "true_ids", "true_pos", "true_dets")


def andi_accuracy(datasets: list[str], options=None, score: bool = True, store: str | None = None,
                  bundle: str = "default") -> dict:
    """Error budget of tracking on AnDi-2 track-1 videos, per diffusion model (the experiment's):
    localisation (RMSE against the noise-free positions, by spot brightness; recall), identity
    (VIPs followed over >= 90 % of their frames, switches, pieces, absent/wrong frames),
    interpolated share, speed, and (``score``) the official metrics of the model pipeline on the
    VIPs from true trajectories, tracked ones, tracked positions with true identities and true
    positions with tracked identities."""
    import glob

    import pandas as pd

    from anomalousnet.batch.inputs import shard_name
    from anomalousnet.io.andi_files import read_labels
    from anomalousnet.tracking.metrics import localisation_rmse
    from anomalousnet.tracking.video_tracking import track_video

    options = options or TrackOptions()
    rows, vip_rows, per_model = [], [], {}
    for root in datasets:
        parameters = json.loads(Path(root, "dataset.json").read_text())["parameters"]
        models, noise = parameters["models"], parameters.get("noise", 0.12)
        for video in sorted(glob.glob(f"{root}/public/track_1/exp_*/videos_fov_*.tiff")):
            ref = Path(video).parent.as_posix().replace("/public/", "/ref/")
            fov = Path(video).stem.rsplit("_", 1)[1]
            model = models[int(Path(video).parent.name.split("_")[1])]
            truth = _truth(ref, fov)
            vips = np.loadtxt(f"{ref}/vip_idx_fov_{fov}.txt", ndmin=1).astype(int)
            ref_labels = {l.idx: l for l in read_labels(f"{ref}/traj_labs_fov_{fov}.txt")[0]}
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(store) / shard_name(video) if store else Path(tmp) / "v.h5"
                if not store or st.needs_writing(out):
                    out.parent.mkdir(parents=True, exist_ok=True)
                    track_video(video, out, options)
                shard = st.read_shard(out)
            df = shard.trajectories.to_dataframe()
            linked_true = link_true_detections(truth, float(shard.attrs["track_search_range"]), options, noise)
            tagged = dict(zip(shard.trajectories.tracks["vip"].tolist(), shard.trajectories.tracks["particle"].tolist()))
            df = match_identities(df, truth)
            rmse, recall = localisation_rmse(df, truth)
            obs = df[~df["interpolated"] & (df["true_id"] >= 0)]
            dxy = obs[["x", "y"]].to_numpy() - truth.set_index(["traj_idx", "frame"]).loc[
                list(zip(obs["true_id"], obs["frame"]))][["x", "y"]].to_numpy()
            row = dict(model=model, video=video, frames=int(shard.attrs["n_frames"]), rmse=rmse, recall=recall,
                       bias_x=float(dxy[:, 0].mean()), bias_y=float(dxy[:, 1].mean()),
                       interpolated=float(df["interpolated"].mean()),
                       fps=shard.attrs["n_frames"] / shard.attrs["track_cpu_seconds"],
                       precision=float(shard.attrs.get("localisation_precision_px", np.nan)))
            alone = nearest_other(truth, obs["true_id"].to_numpy(), obs["frame"].to_numpy()) > ISOLATED
            row["rmse_alone"] = float(np.sqrt(np.mean(obs.loc[alone, "error"] ** 2))) if alone.any() else np.nan
            if len(obs) >= 30:
                edges = np.percentile(obs["mass"], [0, 33.3, 66.7, 100])
                for k, name in enumerate(("dim", "mid", "bright")):
                    sel = (obs["mass"] >= edges[k]) & (obs["mass"] <= edges[k + 1])
                    row[f"rmse_{name}"] = float(np.sqrt(np.mean(obs.loc[sel, "error"] ** 2)))
            rows.append(row)
            for vip in vips:
                particle = tagged.get(int(vip))
                budget = vip_budget(df, truth, int(vip), particle)
                variants = variant_tracks(df, truth, int(vip), particle)
                variants["true_dets"], budget["followed_true_dets"] = true_detection_track(linked_true, truth, int(vip))
                budget["encounter_free"] = encounter_free(truth, int(vip))
                vip_rows.append(dict(model=model, video=video, vip=int(vip), **budget))
                per_model.setdefault(model, []).append((ref_labels[int(vip)], variants))
            print(f"{video} ({model}): RMSE {rmse:.3f} px, found {recall:.3f}, VIPs followed "
                  f"{np.mean([r['followed'] >= 0.9 for r in vip_rows if r['video'] == video]):.2f}, "
                  f"{row['fps']:.0f} frames/s", flush=True)
    fovs, vipdf = pd.DataFrame(rows), pd.DataFrame(vip_rows)
    vipdf["ok"] = vipdf["followed"] >= 0.9
    vipdf["ok_true_dets"] = vipdf["followed_true_dets"] >= 0.9
    table = fovs.groupby("model", sort=False).agg(
        fovs=("video", "size"), rmse=("rmse", "mean"), rmse_dim=("rmse_dim", "mean"),
        rmse_bright=("rmse_bright", "mean"), rmse_alone=("rmse_alone", "mean"), recall=("recall", "mean"), interp=("interpolated", "mean"),
        fps=("fps", "mean")).join(vipdf.groupby("model", sort=False).agg(
            vips=("vip", "size"), followed90=("ok", "mean"), f90_true_dets=("ok_true_dets", "mean"),
            no_meeting=("encounter_free", "mean"),
            followed=("followed", "mean"), absent=("absent", "mean"),
            wrong=("wrong", "mean"), switches=("switches", "mean"), pieces=("pieces", "mean"),
            vip_interp=("interpolated", "mean")))
    total = table.assign(w=table["fovs"]).apply(lambda c: np.average(c, weights=table["fovs"]) if c.name in (
        "rmse", "rmse_dim", "rmse_bright", "rmse_alone", "recall", "interp", "fps") else np.average(c, weights=table["vips"]))
    total["fovs"], total["vips"] = table["fovs"].sum(), table["vips"].sum()
    table.loc["all"] = total.drop("w")
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.precision", 3):
        print("\nTracking error budget per model (rmse px vs noise-free; rmse_alone: of spots with no other particle "
              f"within {ISOLATED:g} px (the precision limit; closer pairs are biased by each other); followed90: share of VIPs whose tagged "
              "track is them on >= 90 % of their frames; f90_true_dets: the same when the linker is given perfect detections, "
              "its own ceiling; no_meeting: share of VIPs no other particle comes within 1 px of in their first 90 % of "
              "frames (beyond that identities are a coin toss for any tracker); absent/wrong: share of VIP frames where the tagged track is "
              "missing / on another particle; switches: identity changes along the tagged track; pieces: tracks "
              "carrying the VIP; vip_interp: filled share of followed frames; fps: frames per CPU second)")
        print(table.to_string())
        print(f"bias (px): x {fovs['bias_x'].mean():+.3f}, y {fovs['bias_y'].mean():+.3f}")
    result = {"fovs": rows, "vips": vip_rows, "budget": table.reset_index().to_dict("records")}
    if score:
        from anomalousnet.andi.methods import model_method

        scores = score_variants(per_model, model_method(bundle))
        lines = []
        for model, by_variant in list(scores.items()) + [("all", None)]:
            for variant in VARIANTS:
                if by_variant is None:
                    vals = {m: np.mean([scores[k][variant][m] for k in scores]) for m in scores[next(iter(scores))][variant]}
                else:
                    vals = by_variant[variant]
                lines.append(dict(model=model, variant=variant, **vals))
        sc = pd.DataFrame(lines).set_index(["model", "variant"])
        with pd.option_context("display.width", 200, "display.precision", 3):
            print(f"\nOfficial metrics of the model ({bundle}) on the VIPs (true: noisy true trajectories; tracked: the tagged "
                  "tracks; true_ids: tracked positions, perfect linking; true_pos: tracked identities, perfect "
                  "localisation; true_dets: perfect detections (noisy true positions of every particle) linked by the "
                  "same linker; 'all': mean over models)")
            print(sc.to_string())
        result["scores"] = sc.reset_index().to_dict("records")
    return result


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
    parser.add_argument("--no-score", action="store_true", help="--andi: budget only, no model scores")
    parser.add_argument("--model", default="default", help="--andi: the model bundle that scores [default]")
    parser.add_argument("--tracks-store", default=None, metavar="DIR", help="--andi: keep (and reuse) the shards here")
    parser.add_argument("--json", default=None, metavar="FILE", help="--andi: write the budget and scores here")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="--andi: a TrackOptions field (JSON value), e.g. --option memory=5")
    args = parser.parse_args()
    print(f"CPUs available: {len(os.sched_getaffinity(0))}, load average {os.getloadavg()[0]:.1f}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_tracking_", dir=args.tmp))
    try:
        if not args.skip_throughput:
            throughput(tmp, args.videos, args.frames, args.size, args.particles)
        if not args.skip_big:
            peak_memory(tmp, args.big_gb)
        if args.andi:

            fields = {k: json.loads(v) if v[:1] in "0123456789-[{tfn" else v
                      for k, v in (o.split("=", 1) for o in args.option)}
            result = andi_accuracy(args.andi, TrackOptions(**fields), score=not args.no_score, store=args.tracks_store,
                                   bundle=args.model)
            if args.json:
                Path(args.json).write_text(json.dumps({"options": fields, **result}, indent=1, default=float))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
