"""AnDi-2 style datasets (``public/`` + ``ref/``), made by andi-datasets' own ``challenge_phenom_dataset``.

One call per field of view (several FOVs per call are not reorganised correctly), the
experiment's parameters (one ``_get_dic_andi2`` draw) shared by its FOVs; optionally with
videos (track 1). The label lines are renumbered the way the simulator renumbers
trajectories around the VIPs, and every line is checked against its trajectory.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from anomalousnet import __version__
from anomalousnet.batch.summary import Summary
from anomalousnet.core.names import MODEL_NAMES as MODELS
from anomalousnet.io.andi_files import ENSEMBLE_NAME, EnsembleLabel, write_ensemble
from anomalousnet.io.atomic import tmp_path_for
from anomalousnet.simulation.seeding import SEED_LOCK, quiet, seed_all, seed_for

log = logging.getLogger(__name__)

# Layout (what the 2nd AnDi Challenge hands out, and what its scorer reads as reference):
#   public/track_2/exp_E/trajs_fov_F.csv            traj_idx, frame, x, y (with localisation noise)
#   public/track_1/exp_E/videos_fov_F.tiff          (videos) page 0: VIP label image, pages 1..T: frames
#   public/track_1/exp_E/vip_idx_fov_F.txt          (videos) the VIP trajectory indices
#   ref/track_T/exp_E/traj_labs_fov_F.txt           idx, K_1, alpha_1, state_1, cp_1, K_2, ..., state_n, T
#   ref/track_T/exp_E/ens_labs_fov_F.txt            ensemble labels of the FOV (as the simulator writes)
#   ref/track_T/exp_E/ensemble_labels.txt           ensemble labels of the experiment (FOVs merged)
#   ref/track_T/exp_E/trajs_fov_F.csv               ground truth: traj_idx, frame, x, y, x_true, y_true,
#                                                   alpha, D, state (x_true, y_true: noise-free, as in the video)
#   ref/track_1/exp_E/vip_idx_fov_F.txt             (videos) the VIPs, checked by the scorer
# Track 1 (videos) is written only with videos. One challenge_phenom_dataset call per FOV
# (several FOVs per call are not reorganised correctly); the experiment's parameters
# (one _get_dic_andi2 draw) are shared by its FOVs.

ANDI_MODEL_NUMBERS = {name: i + 1 for i, name in enumerate(MODELS)}  # the challenge numbers models 1..5


@dataclasses.dataclass(frozen=True)
class FovTask:
    out: Path
    exp: int
    fov: int
    dic: dict
    seed: int
    videos: bool
    num_vip: int
    noise: float


def _exp_dir(out: Path, part: str, track: int, exp: int) -> Path:
    return out / part / f"track_{track}" / f"exp_{exp}"


def fov_complete(out: os.PathLike | str, exp: int, fov: int, videos: bool) -> bool:
    """Whether FOV ``fov`` of experiment ``exp`` was written whole (its reference labels are
    renamed into place last), with its video when ``videos``."""
    out = Path(out)
    done = (_exp_dir(out, "ref", 2, exp) / f"traj_labs_fov_{fov}.txt").exists()
    if videos:
        done = done and (_exp_dir(out, "public", 1, exp) / f"videos_fov_{fov}.tiff").exists() and \
            (_exp_dir(out, "ref", 1, exp) / f"traj_labs_fov_{fov}.txt").exists()
    return done


def _model_list(experiments: int | Sequence[str | int]) -> list[str]:
    if isinstance(experiments, int):
        if experiments < 1:
            raise ValueError(f"experiments must be >= 1, got {experiments}")
        return [MODELS[i % len(MODELS)] for i in range(experiments)]
    models = []
    for m in experiments:
        if isinstance(m, str) and m.isdigit():
            m = int(m)
        if isinstance(m, int):
            if not 1 <= m <= len(MODELS):
                raise ValueError(f"model number {m} is not in 1..{len(MODELS)} ({', '.join(MODELS)})")
            m = MODELS[m - 1]
        if m not in MODELS:
            raise ValueError(f"unknown model {m!r}; choose from {', '.join(MODELS)} or 1..5")
        models.append(m)
    if not models:
        raise ValueError("no experiments given")
    return models


def _datasets_challenge():
    """Import andi_datasets.datasets_challenge without the warnings of its optional video
    stack (deeptrack's pkg_resources deprecation, or a missing deeptrack)."""
    with quiet():
        import andi_datasets.datasets_challenge as module
    return module


def experiment_dic(model: str, seed: int, exp: int, length: int = 200, particles: int | None = None) -> dict:
    """The challenge's default parameters for one experiment (``_get_dic_andi2``), drawn from
    a seed of (seed, exp); ``length`` frames, ``particles`` particles (default 50)."""
    _datasets_challenge()
    from andi_datasets.datasets_challenge import _get_dic_andi2

    with SEED_LOCK:
        seed_all(seed_for(seed, 1, exp))
        dic = _get_dic_andi2(ANDI_MODEL_NUMBERS[model])
    dic["T"] = int(length)
    if particles:
        dic["N"] = int(particles)
    return dic


def simulate_fov(task: FovTask) -> dict:
    """Simulate and write one FOV of one experiment (runs on a Dask worker); returns
    {"trajectories": n, "renumbered": label lines renumbered to follow the VIP order}.
    Raises RuntimeError when the simulator's labels do not match its trajectories."""
    import contextlib
    import io
    import shutil

    _datasets_challenge()
    from andi_datasets.datasets_challenge import challenge_phenom_dataset

    raw = task.out / ".raw" / f"exp_{task.exp}_fov_{task.fov}"
    result, errors = None, []
    with SEED_LOCK:
        for attempt in range(5):  # an unlucky draw may leave too few trajectories or VIPs in the FOV
            shutil.rmtree(raw, ignore_errors=True)
            raw.mkdir(parents=True)
            seed_all(seed_for(task.seed, attempt))
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), quiet():
                    # sigma_noise=0: positions stay exact (as rendered in the video); noise is added below.
                    result = challenge_phenom_dataset(
                        experiments=1, dics=[_copy_dic(task.dic)], num_fovs=1, sigma_noise=0,
                        return_timestep_labs=True, save_data=True, path=raw, get_video=task.videos,
                        num_vip=task.num_vip if task.videos else None)
                break
            except Exception as exc:  # noqa: BLE001 - retried with another seed, reported if all fail
                errors.append(f"{type(exc).__name__}: {exc}")
    if result is None:
        raise RuntimeError(f"exp {task.exp} fov {task.fov}: the simulator failed 5 times: {errors[-1]}")
    df = result[0][0]
    labels = result[-2][0]
    lines, truth, renumbered = _renumber_labels(df, labels, task)
    rng = np.random.default_rng(seed_for(task.seed, 99))
    truth["x"] = truth["x_true"] + rng.normal(0.0, task.noise, len(truth))
    truth["y"] = truth["y_true"] + rng.normal(0.0, task.noise, len(truth))
    truth = truth[["traj_idx", "frame", "x", "y", "x_true", "y_true", "alpha", "D", "state"]]
    if task.videos:
        vip = np.loadtxt(raw / "vip_idx_exp_0_fov_0.txt", ndmin=1).astype(int)
        origin = _fov_origin(raw / "videos_exp_0_fov_0.tiff", truth, vip)
        truth["row"] = truth["x_true"] - origin[0]  # video pixel coordinates (rows: the simulator's x)
        truth["col"] = truth["y_true"] - origin[1]

    tracks = [2, 1] if task.videos else [2]
    staged: list[tuple[Path, Path]] = []  # (temporary, final); renamed at the end, reference labels last

    def stage(final: Path, write) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_path_for(final)
        write(tmp)
        staged.append((tmp, final))

    stage(_exp_dir(task.out, "public", 2, task.exp) / f"trajs_fov_{task.fov}.csv",
          lambda p: truth[["traj_idx", "frame", "x", "y"]].to_csv(p, index=False))
    if task.videos:
        stage(_exp_dir(task.out, "public", 1, task.exp) / f"videos_fov_{task.fov}.tiff",
              lambda p: shutil.move(raw / f"videos_exp_0_fov_0.tiff", p))
        stage(_exp_dir(task.out, "public", 1, task.exp) / f"vip_idx_fov_{task.fov}.txt",
              lambda p: np.savetxt(p, vip, fmt="%d"))
    for track in tracks:
        ref = _exp_dir(task.out, "ref", track, task.exp)
        stage(ref / f"trajs_fov_{task.fov}.csv", lambda p: truth.to_csv(p, index=False))
        stage(ref / f"ens_labs_fov_{task.fov}.txt", lambda p: shutil.copyfile(raw / "ens_labs_exp_0_fov_0.txt", p))
        if track == 1:
            stage(ref / f"vip_idx_fov_{task.fov}.txt", lambda p: np.savetxt(p, vip, fmt="%d"))
            stage(ref / f"fov_origin_fov_{task.fov}.txt", lambda p: np.savetxt(p, [origin], fmt="%d"))
    for track in tracks[::-1]:  # ref/track_2 labels last: they mark the FOV complete
        stage(_exp_dir(task.out, "ref", track, task.exp) / f"traj_labs_fov_{task.fov}.txt",
              lambda p: p.write_text("".join(",".join(str(v) for v in line) + "\n" for line in lines)))
    for tmp, final in staged:
        os.replace(tmp, final)
    shutil.rmtree(raw, ignore_errors=True)
    return {"trajectories": len(lines), "renumbered": renumbered}


def _fov_origin(video: Path, truth, vip: np.ndarray) -> tuple[int, int]:
    """The FOV's integer origin in simulator coordinates (the simulator does not return it):
    page 0 of the video marks each VIP i with a small block of value i at its first
    position; the origin is the median offset between those blocks and the true positions."""
    import tifffile

    with tifffile.TiffFile(video) as tif:
        labels = tif.pages[0].asarray()
    first = truth.groupby("traj_idx").first()
    offsets = []
    for i in vip:
        rows, cols = np.nonzero(labels == i)
        if len(rows):
            offsets.append((first.loc[i, "x_true"] - rows.mean(), first.loc[i, "y_true"] - cols.mean()))
    if not offsets:
        raise RuntimeError(f"{video}: no VIP marked in the label page")
    return tuple(int(round(v)) for v in np.median(np.array(offsets), axis=0))


def _copy_dic(dic: dict) -> dict:
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in dic.items()}


def _renumber_labels(df, labels: list[list], task: FovTask):
    """Give the label lines the trajectory numbers of the CSV and check them.

    With videos the simulator renumbers trajectories so that the VIPs come first (in the
    CSV, the video and vip_idx) but leaves the label lines in the old numbering. Its rows
    stay in the old order, so the k-th distinct traj_idx in row order is the new number of
    old trajectory k. Every line is then checked against the per-frame labels of its rows.
    Returns (label lines sorted by traj_idx, ground-truth table, number of lines renumbered).
    """
    import pandas as pd

    new_of_old = pd.unique(df["traj_idx"].to_numpy()).astype(int)
    if len(new_of_old) != len(labels):
        raise RuntimeError(f"exp {task.exp} fov {task.fov}: {len(labels)} label lines for {len(new_of_old)} "
                           "trajectories")
    truth = pd.DataFrame({"traj_idx": df["traj_idx"].to_numpy().astype(np.int64),
                          "frame": df["frame"].to_numpy().astype(np.int64),
                          "x_true": df["x"].to_numpy(float), "y_true": df["y"].to_numpy(float),
                          "alpha": df["alpha"].to_numpy(float), "D": df["D"].to_numpy(float),
                          "state": df["state"].to_numpy().astype(np.int64)})
    truth = truth.sort_values(["traj_idx", "frame"], kind="stable").reset_index(drop=True)
    groups = {int(k): g for k, g in truth.groupby("traj_idx", sort=False)}
    lines = []
    for old, line in enumerate(labels):
        new = int(new_of_old[old])
        if int(line[0]) != old:
            raise RuntimeError(f"exp {task.exp} fov {task.fov}: label line {old} has index {line[0]}")
        rows = groups[new]
        body = [float(v) for v in line[1:-1]]
        length = int(line[-1])
        if length != len(rows):
            raise RuntimeError(f"exp {task.exp} fov {task.fov}: trajectory {new} has {len(rows)} points but its "
                               f"labels say {length}")
        Ks, alphas, states = body[0::4], body[1::4], body[2::4]
        cps = [0] + [int(c) for c in body[3::4]] + [length]
        for j in range(len(Ks)):
            seg = rows.iloc[cps[j]:cps[j + 1]]
            if not (np.allclose(seg["alpha"], alphas[j]) and np.allclose(seg["D"], Ks[j])
                    and np.all(seg["state"] == states[j])):
                raise RuntimeError(f"exp {task.exp} fov {task.fov}: labels of trajectory {new} (segment {j}) do "
                                   "not match its per-frame labels")
        lines.append([new] + list(line[1:-1]) + [length])
    renumbered = int(np.sum(new_of_old != np.arange(len(new_of_old))))
    lines.sort(key=lambda line: line[0])
    return lines, truth, renumbered


def write_ensemble_labels(out: os.PathLike | str, exp: int, fovs: int, tracks: Sequence[int] = (2,)) -> None:
    """Merge the FOVs' ensemble labels into ``ensemble_labels.txt`` of each track, as
    ``utils_challenge.file_nonOverlap_reOrg`` does: the last FOV's parameters, with the
    state weights summed over FOVs and normalised (a single state gets weight 1)."""
    out = Path(out)
    src = _exp_dir(out, "ref", 2, exp)
    header = (src / "ens_labs_fov_0.txt").read_text().splitlines()[0]
    info = header.split()
    model, num_states = info[1][:-1], int(info[-1])
    percentage = np.zeros((fovs, num_states))
    ensemble = None
    for fov in range(fovs):
        ensemble = np.loadtxt(src / f"ens_labs_fov_{fov}.txt", skiprows=1, delimiter=";")
        if num_states > 1:
            percentage[fov] = ensemble[-1, :].copy()
    if num_states > 1:
        total = percentage.sum(axis=0)
        ensemble[-1, :] = total / total.sum()
    else:
        ensemble[-1] = 1
    for track in tracks:
        write_ensemble(_exp_dir(out, "ref", track, exp) / ENSEMBLE_NAME, EnsembleLabel(model, ensemble))


def simulate_andi(out_dir: os.PathLike | str, seed: int, experiments: int | Sequence[str | int] = 5, fovs: int = 1,
                  videos: bool = False, num_vip: int = 10, length: int = 200, particles: int | None = None,
                  noise: float = 0.12, workers: int | None = 0, scheduler_file: str | None = None,
                  progress: bool = True) -> Summary:
    """Write an AnDi-2 style dataset (``public/`` + ``ref/``, see the layout above) to ``out_dir``.

    experiments: a number (models in the challenge's order, cycled) or a list of model
    names or numbers 1..5; fovs: FOVs per experiment; videos: also track 1 (videos and VIPs,
    needs the ``video`` extra, deeptrack 2.0.0; about 36 s per 200-frame FOV on one core);
    num_vip: VIPs per FOV; length: frames (the challenge's T = 200); particles: particles
    per experiment (default 50); noise: localisation noise sigma, px (challenge 0.12).
    One task per FOV, in this process (``workers=0``, default) or on Dask. Re-running
    keeps complete FOVs; other parameters than an earlier run's are an error (ValueError).
    Returns a :class:`Summary` of (experiment, FOV) pairs; ``info["models"]`` is the model of
    each experiment, ``info["results"]`` what :func:`simulate_fov` returned per FOV.
    """
    from anomalousnet.batch import cluster

    out = Path(out_dir)
    models = _model_list(experiments)
    if fovs < 1:
        raise ValueError(f"fovs must be >= 1, got {fovs}")
    if not 20 < length:
        raise ValueError(f"length must be > 20 frames (the challenge keeps trajectories of >= 20 frames), got {length}")
    if videos:
        try:
            import deeptrack  # noqa: F401
        except ImportError as exc:
            raise ValueError(f"videos need the 'video' extra (deeptrack==2.0.0): {exc}") from None
    params = {"seed": seed, "models": models, "fovs": fovs, "num_vip": num_vip, "length": length,
              "particles": particles, "noise": noise}
    out.mkdir(parents=True, exist_ok=True)
    meta = out / "dataset.json"
    if meta.exists():
        old = json.loads(meta.read_text())
        if old.get("parameters") != json.loads(json.dumps(params)):
            raise ValueError(f"{meta}: {out} was simulated with other parameters ({old.get('parameters')}); "
                             "use a new directory")
    dics = [experiment_dic(m, seed, e, length, particles) for e, m in enumerate(models)]
    meta.write_text(json.dumps({"parameters": params, "videos": videos, "package_version": __version__,
                                "experiments": dics}, indent=1, default=lambda o: np.asarray(o).tolist()))
    tasks, kept = [], []
    for e, dic in enumerate(dics):
        for f in range(fovs):
            if fov_complete(out, e, f, videos):
                kept.append((e, f))
            else:
                tasks.append(FovTask(out, e, f, dic, seed_for(seed, 2, e, f), videos, num_vip, noise))
    written, failed, results = [], {}, {}

    def record(task, result):
        if isinstance(result, BaseException):
            failed[f"exp_{task.exp}/fov_{task.fov}"] = f"{type(result).__name__}: {result}"
            log.error("exp %d fov %d: %s", task.exp, task.fov, result)
        else:
            written.append((task.exp, task.fov))
            results[(task.exp, task.fov)] = result

    if tasks and workers == 0:
        from tqdm import tqdm

        for task in tqdm(tasks, desc="simulate andi", unit="fov", disable=not progress):
            try:
                record(task, simulate_fov(task))
            except Exception as exc:  # noqa: BLE001 - reported per FOV
                record(task, exc)
    elif tasks:
        with cluster.dask_client(workers, scheduler_file) as client:
            for task, result in cluster.map_as_completed(client, simulate_fov, tasks, desc="simulate andi",
                                                          progress=progress):
                record(task, result)
    for e in range(len(models)):
        if all(fov_complete(out, e, f, videos) for f in range(fovs)):
            write_ensemble_labels(out, e, fovs, tracks=(2, 1) if videos else (2,))
    raw = out / ".raw"
    if raw.exists() and not any(raw.iterdir()):
        raw.rmdir()
    return Summary(out, sorted(written), kept, failed, info={"models": models, "results": results})
