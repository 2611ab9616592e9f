"""Official scoring of AnDi-2 submissions (``andi_datasets.utils_challenge``), per experiment and overall.

Every metric comes from the official functions (change-point RMSE and Jaccard, alpha MAE,
K MSLE, state F1, ensemble Wasserstein distances), weighted over experiments as the
official scorer does. Unlike the official scorer, which silently gives maximum error for a
missing file and misaligns trajectories after a missing line, a missing or malformed
submission file or line is reported as a :class:`Problem` and left out of the scores; the
report says how many trajectories were scored out of how many expected.
"""
from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from anomalousnet.core.names import STATE_NAMES
from anomalousnet.io.andi_files import (ENSEMBLE_NAME, STATES, TRACKS, AndiFormatError, EnsembleLabel,
                                        TrajectoryLabel, experiments, numbered, read_ensemble, read_labels,
                                        read_vip_idx, submission_path, write_ensemble, write_labels)

SINGLE_METRICS = ("cp_rmse", "cp_jaccard", "alpha_mae", "K_msle", "state_f1")
ENSEMBLE_METRICS = ("ens_alpha_w1", "ens_K_w1")


@dataclasses.dataclass(frozen=True)
class Problem:
    """Something wrong with a submission: ``kind`` is one of missing_track, missing_file,
    malformed_file, malformed_line, missing_trajectory, unexpected_trajectory,
    duplicate_trajectory, wrong_length, out_of_range."""

    kind: str
    path: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}: {self.detail}"


@dataclasses.dataclass
class ExperimentScore:
    track: int
    exp: int
    model: str
    n_expected: int
    n_scored: int
    metrics: dict[str, float | None]
    state_frames: dict[int, list[int]]  # true state -> [frames, frames predicted as that state]


@dataclasses.dataclass
class ScoreReport:
    """Official metrics per experiment and per track, with the problems found."""

    experiments: list[ExperimentScore]
    problems: list[Problem]

    @property
    def complete(self) -> bool:
        return not self.problems

    def tracks(self) -> list[int]:
        return sorted({e.track for e in self.experiments})

    def overall(self, track: int) -> dict[str, float | None]:
        """As the official scorer: single-trajectory metrics averaged over experiments weighted
        by their number of (scored) trajectories, ensemble metrics plainly averaged."""
        exps = [e for e in self.experiments if e.track == track]
        out: dict[str, float | None] = {}
        for name in SINGLE_METRICS:
            pairs = [(e.metrics.get(name), e.n_scored) for e in exps if e.metrics.get(name) is not None]
            out[name] = float(np.average([p[0] for p in pairs], weights=[p[1] for p in pairs])) \
                if pairs and sum(p[1] for p in pairs) else None
        for name in ENSEMBLE_METRICS:
            vals = [e.metrics[name] for e in exps if e.metrics.get(name) is not None]
            out[name] = float(np.mean(vals)) if vals else None
        out["n_expected"] = sum(e.n_expected for e in exps)
        out["n_scored"] = sum(e.n_scored for e in exps)
        return out

    def state_recall(self, track: int) -> dict[str, dict[str, float | int | None]]:
        """Frame-level recall of each true diffusive state (frames of true state s predicted as s)."""
        totals = {s: [0, 0] for s in STATES}
        for e in self.experiments:
            if e.track == track:
                for s, (n, hit) in e.state_frames.items():
                    totals[int(s)][0] += n
                    totals[int(s)][1] += hit
        return {STATE_NAMES[s]: {"frames": n, "recall": (hit / n if n else None)} for s, (n, hit) in totals.items()}

    def to_dict(self) -> dict:
        return {
            "complete": self.complete,
            "problems": [dataclasses.asdict(p) for p in self.problems],
            "tracks": {str(t): {"overall": self.overall(t), "state_recall": self.state_recall(t),
                                "experiments": [{"exp": e.exp, "model": e.model, "n_expected": e.n_expected,
                                                 "n_scored": e.n_scored, **e.metrics}
                                                for e in self.experiments if e.track == t]}
                       for t in self.tracks()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_json_default)


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    raise TypeError(type(value))


HEADERS = {"cp_rmse": "CP RMSE", "cp_jaccard": "CP JSC", "alpha_mae": "alpha MAE", "K_msle": "K MSLE",
           "state_f1": "state F1", "ens_alpha_w1": "W1 alpha", "ens_K_w1": "W1 K"}


def format_table(report: ScoreReport) -> str:
    """Plain-text table: per track the overall row and one row per experiment, then per-state
    recall and the problems."""
    names = SINGLE_METRICS + ENSEMBLE_METRICS
    head = f"{'track':>5} {'exp':>4} {'model':<15} {'scored':>9} " + " ".join(f"{HEADERS[n]:>9}" for n in names)
    lines = [head, "-" * len(head)]

    def row(track, exp, model, n_scored, n_expected, metrics):
        cells = " ".join(f"{format_value(metrics.get(n)):>9}" for n in names)
        return f"{track:>5} {exp:>4} {model:<15.15} {f'{n_scored}/{n_expected}':>9} {cells}"

    for t in report.tracks():
        for e in (e for e in report.experiments if e.track == t):
            lines.append(row(t, e.exp, e.model, e.n_scored, e.n_expected, e.metrics))
        ov = report.overall(t)
        lines.append(row(t, "all", "", ov["n_scored"], ov["n_expected"], ov))
        recall = report.state_recall(t)
        lines.append("      state recall (frames): " + ", ".join(
            f"{name} {format_value(v['recall'])} ({v['frames']})" for name, v in recall.items() if v["frames"]))
    if report.problems:
        lines.append(f"{len(report.problems)} problem(s); scores above leave these out:")
        lines += [f"  {p}" for p in report.problems]
    return "\n".join(lines)


def format_value(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _check_against_reference(sub: TrajectoryLabel, ref: TrajectoryLabel, check_length: bool = True) -> str | None:
    """Why a submitted line cannot be scored against its reference line, or None. Track 1
    does not check the length: a tracked VIP need not span the reference's frames."""
    if check_length and sub.T != ref.T:
        return f"trajectory {sub.idx}: T = {sub.T} but the trajectory has {ref.T} frames"
    return value_problem(sub)


def value_problem(sub: TrajectoryLabel) -> str | None:
    """Why a line's values are out of the official ranges, or None."""
    if any(not (0 <= a <= 2) for a in sub.alpha):
        return f"trajectory {sub.idx}: alpha outside [0, 2]: {list(sub.alpha)}"
    if any(k < 0 for k in sub.K):
        return f"trajectory {sub.idx}: negative K: {list(sub.K)}"
    if any(s not in STATES for s in sub.state):
        return f"trajectory {sub.idx}: state not in {STATES}: {list(sub.state)}"
    return None


def _labels_frame(labels: Sequence[TrajectoryLabel], offset: int):
    """Labels as the DataFrame ``utils_challenge.load_file_to_df`` builds (changepoints end with T),
    renumbered ``offset, offset+1, ...`` so several FOVs form one experiment."""
    import pandas as pd

    return pd.DataFrame({
        "traj_idx": [float(offset + i) for i in range(len(labels))],
        "Ds": [list(l.K) for l in labels],
        "alphas": [list(l.alpha) for l in labels],
        "states": [[float(s) for s in l.state] for l in labels],
        "changepoints": [[float(c) for c in (*l.cps, l.T)] for l in labels],
    })


def score_single(pairs: Sequence[tuple[TrajectoryLabel, TrajectoryLabel]]) -> dict[str, float | None]:
    """Official single-trajectory metrics of (reference, submission) pairs of one experiment."""
    from andi_datasets import utils_challenge as uc

    if not pairs:
        return {name: None for name in SINGLE_METRICS}
    df_true = _labels_frame([p[0] for p in pairs], 0)
    df_pred = _labels_frame([p[1] for p in pairs], 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = uc.error_SingleTraj_dataset(df_pred, df_true, prints=False, disable_tqdm=True)
    return {name: float(v) for name, v in zip(SINGLE_METRICS, values)}


def score_ensemble(ref: EnsembleLabel, sub: EnsembleLabel) -> dict[str, float]:
    """Official ensemble metrics (Wasserstein distances of the alpha and K mixtures)."""
    from andi_datasets import utils_challenge as uc

    true, pred = ref.matrix.copy(), sub.matrix.copy()
    # utils_challenge treats a 1-D array as a single state and normalises weights in place.
    true = true[:, 0] if true.shape[1] == 1 else true
    pred = pred[:, 0] if pred.shape[1] == 1 else pred
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w_alpha, w_K = uc.error_Ensemble_dataset(true, pred)
    return {"ens_alpha_w1": float(w_alpha), "ens_K_w1": float(w_K)}


def score(sub_dir: os.PathLike | str, ref_dir: os.PathLike | str, tracks: Sequence[int] | None = None,
          ensemble: bool = True) -> ScoreReport:
    """Score a submission folder against a reference folder with the official metrics.

    ``tracks``: which tracks to score (default: every ``track_T`` of the reference).
    ``ensemble``: also the ensemble task (each call of the official W1 takes about a second).
    Raises AndiFormatError for a bad reference; submission problems go into the report.
    """
    sub_dir, ref_dir = Path(sub_dir), Path(ref_dir)
    if not ref_dir.is_dir():
        raise AndiFormatError(ref_dir, "reference folder not found")
    if tracks is None:
        tracks = [t for t in TRACKS if (ref_dir / f"track_{t}").is_dir()]
        if not tracks:
            raise AndiFormatError(ref_dir, "no track_1 or track_2 folder")
    problems: list[Problem] = []
    results: list[ExperimentScore] = []
    for track in tracks:
        exps = experiments(ref_dir / f"track_{track}")
        if not exps:
            raise AndiFormatError(ref_dir / f"track_{track}", "no exp_E folders in the reference")
        if not (sub_dir / f"track_{track}").is_dir():
            problems.append(Problem("missing_track", str(sub_dir / f"track_{track}"), "no such folder"))
        for exp, exp_dir in exps:
            results.append(_score_experiment(sub_dir, track, exp, exp_dir, problems, ensemble))
    return ScoreReport(results, problems)


def _score_experiment(sub_dir: Path, track: int, exp: int, ref_exp: Path, problems: list[Problem],
                      ensemble: bool) -> ExperimentScore:
    pairs: list[tuple[TrajectoryLabel, TrajectoryLabel]] = []
    n_expected = 0
    fovs = numbered(ref_exp, r"traj_labs_fov_(\d+)\.txt")
    if not fovs:
        raise AndiFormatError(ref_exp, "no traj_labs_fov_F.txt files in the reference")
    for fov, ref_path in fovs:
        ref_labels, _ = read_labels(ref_path, strict=True)
        if track == 1:
            vip = set(read_vip_idx(ref_exp / f"vip_idx_fov_{fov}.txt").tolist())
            ref_labels = [l for l in ref_labels if l.idx in vip]
            if len(ref_labels) != len(vip):
                raise AndiFormatError(ref_path, f"labels missing for VIPs {sorted(vip - {l.idx for l in ref_labels})}")
        n_expected += len(ref_labels)
        sub_path = submission_path(sub_dir, track, exp, fov)
        if not sub_path.is_file():
            if (sub_dir / f"track_{track}").is_dir():
                problems.append(Problem("missing_file", str(sub_path),
                                        f"no predictions for {len(ref_labels)} trajectories"))
            continue
        try:
            sub_labels, bad_lines = read_labels(sub_path, strict=False)
        except AndiFormatError as exc:
            problems.append(Problem("malformed_file", str(sub_path), exc.problem))
            continue
        problems += [Problem("malformed_line", str(sub_path), f"line {line}: {why}") for line, why in bad_lines]
        pairs += _match(sub_path, track, ref_labels, sub_labels, problems)
    metrics = score_single(pairs)
    model = ""
    ref_ens_path = ref_exp / ENSEMBLE_NAME
    if ref_ens_path.exists():
        ref_ens = read_ensemble(ref_ens_path)
        model = ref_ens.model
    metrics.update({name: None for name in ENSEMBLE_METRICS})
    if ensemble and ref_ens_path.exists():
        sub_ens_path = submission_path(sub_dir, track, exp) / ENSEMBLE_NAME
        if not sub_ens_path.is_file():
            if (sub_dir / f"track_{track}").is_dir():
                problems.append(Problem("missing_file", str(sub_ens_path), "no ensemble predictions"))
        else:
            try:
                metrics.update(score_ensemble(ref_ens, read_ensemble(sub_ens_path)))
            except AndiFormatError as exc:
                problems.append(Problem("malformed_file", str(sub_ens_path), exc.problem))
    return ExperimentScore(track, exp, model, n_expected, len(pairs), metrics, _state_frames(pairs))


def _match(sub_path: Path, track: int, ref_labels: list[TrajectoryLabel], sub_labels: list[TrajectoryLabel],
           problems: list[Problem]) -> list[tuple[TrajectoryLabel, TrajectoryLabel]]:
    ref_by_idx = {l.idx: l for l in ref_labels}
    seen: dict[int, TrajectoryLabel] = {}
    for label in sub_labels:
        if label.idx not in ref_by_idx:
            problems.append(Problem("unexpected_trajectory", str(sub_path),
                                    f"index {label.idx} is not a trajectory of the reference"
                                    + (" (track 1 takes exactly the VIP indices)" if track == 1 else "")))
        elif label.idx in seen:
            problems.append(Problem("duplicate_trajectory", str(sub_path), f"index {label.idx} appears twice"))
        else:
            why = _check_against_reference(label, ref_by_idx[label.idx], check_length=track != 1)
            if why:
                problems.append(Problem("wrong_length" if "T =" in why else "out_of_range", str(sub_path), why))
            else:
                seen[label.idx] = label
    missing = [i for i in ref_by_idx if i not in seen and i not in {l.idx for l in sub_labels}]
    if missing:
        problems.append(Problem("missing_trajectory", str(sub_path),
                                f"{len(missing)} trajectories without a line: {missing[:10]}"
                                + (" ..." if len(missing) > 10 else "")))
    return [(ref_by_idx[i], seen[i]) for i in sorted(seen)]


def _state_frames(pairs) -> dict[int, list[int]]:
    counts = {s: [0, 0] for s in STATES}
    for ref, sub in pairs:
        true, pred = ref.per_frame()["state"], sub.per_frame()["state"]
        n = min(len(true), len(pred))  # a tracked VIP (track 1) may be shorter or longer
        true, pred = true[:n], pred[:n]
        for s in STATES:
            m = true == s
            counts[s][0] += int(m.sum())
            counts[s][1] += int((pred[m] == s).sum())
    return counts


def reference_as_submission(ref_dir: os.PathLike | str, sub_dir: os.PathLike | str,
                            tracks: Sequence[int] | None = None) -> list[Path]:
    """Copy a reference's labels into submission layout (track 1: only the VIP lines) - the
    perfect submission, for checking a scorer or a pipeline end to end."""
    ref_dir, sub_dir = Path(ref_dir), Path(sub_dir)
    written = []
    for track in tracks or [t for t in TRACKS if (ref_dir / f"track_{t}").is_dir()]:
        for exp, exp_dir in experiments(ref_dir / f"track_{track}"):
            for fov, path in numbered(exp_dir, r"traj_labs_fov_(\d+)\.txt"):
                labels, _ = read_labels(path)
                if track == 1:
                    vip = set(read_vip_idx(exp_dir / f"vip_idx_fov_{fov}.txt").tolist())
                    labels = [l for l in labels if l.idx in vip]
                written.append(write_labels(submission_path(sub_dir, track, exp, fov), labels))
            if (exp_dir / ENSEMBLE_NAME).exists():
                written.append(write_ensemble(submission_path(sub_dir, track, exp) / ENSEMBLE_NAME,
                                              read_ensemble(exp_dir / ENSEMBLE_NAME)))
    return written
