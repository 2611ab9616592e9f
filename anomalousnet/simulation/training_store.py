"""Training stores of simulated trajectories from ``andi-datasets`` (the 2nd AnDi Challenge simulator).

* :func:`simulate_training`: a training store (HDF5 shards, kind ``training``) of the five
  phenomenological models with per-frame labels alpha, K, state and a ``segments`` table
  (the change points). ``andi_datasets.models_phenom`` is called directly: one call per
  box of interacting particles (traps, dimers; many particles per call), its
  per-trajectory generators for independent ones, simulating only the frames kept
  (``challenge_phenom_dataset`` makes about 10 trajectories/s per core; this makes
  hundreds, see benchmarks/bench_simulate.py). Parameters are drawn over ranges that cover the challenge's
  defaults (``datasets_challenge._get_dic_andi2``) and go beyond them: alpha over
  [0, 2) with directed motion (alpha >= 1.9, state 3), D over four decades, several
  trap, dimer and compartment geometries, noise levels and track lengths around the
  challenge's. Labels go through the challenge's filter (majority window 5, minimum
  segment 3) after cropping, as ``challenge_phenom_dataset`` does, but on the label
  triple at once so that the labels of a frame stay consistent (:func:`filter_labels`).

Reproducibility: shard ``i`` is simulated from a seed derived from ``(seed, i)`` only, so
the same seed gives identical shards whatever the number of workers. The seed is applied
to every generator the simulator draws from: numpy's global one (andi-datasets, scipy),
the ``stochastic`` package's own (fractional Gaussian noise) and ``random``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from anomalousnet.batch.summary import Summary
from anomalousnet.core.names import MODEL_NAMES as MODELS
from anomalousnet.core.names import STATE_NAMES as STATES
from anomalousnet.io import store as st
from anomalousnet.simulation.seeding import SEED_LOCK, quiet, seed_all, seed_for

log = logging.getLogger(__name__)

ALPHA_DIRECTED = 1.9  # models_phenom().alpha_directed: alpha >= 1.9 is labelled directed
ALPHA_MAX = 1.999  # models_phenom().bound_alpha upper bound

# The challenge's geometry (datasets_challenge._defaults_andi2 and _get_dic_andi2): a
# 1.8 * 128 px box with 50 particles, 300 traps of radius 0.4, 30 compartments of radius 5.
_CHALLENGE_L = 1.8 * 128
_CHALLENGE_DENSITY = 50 / _CHALLENGE_L ** 2
_CHALLENGE_TRAP_DENSITY = 300 / _CHALLENGE_L ** 2

# Particles per models_phenom call: dimerization vectorises over its particles (which must
# meet to bind, so a call holds a dense box of 100); immobile_traps computes an (N + Nt)^2
# distance matrix per frame, so it is fastest with few particles (8, measured). Independent
# particles are simulated one by one anyway: the number only groups those that share a
# transition matrix or a set of compartments.
_PARTICLES_PER_CALL = {"single_state": 10, "multi_state": 10, "immobile_traps": 8, "dimerization": 100,
                       "confinement": 10}
_MIN_PARTICLES_PER_CALL = {"immobile_traps": 8, "dimerization": 20}

#: Default shares of the models: immobile_traps and confinement weigh more, since only a
#: fraction of their frames are immobile or confined; with directed_fraction 0.2 every
#: state then holds several per cent of the points (see the counts each run reports).
DEFAULT_MODEL_WEIGHTS = {"single_state": 1.0, "multi_state": 1.0, "immobile_traps": 2.0, "dimerization": 1.0,
                         "confinement": 2.0}

# Models whose particles do not interact, simulated per trajectory (immobile_traps' particles
# do not interact either, but share the traps of one call).
_INDEPENDENT = ("single_state", "multi_state", "confinement")
_TRAP_WARMUP = 100  # most frames simulated before an immobile_traps track starts (particles start free)



@dataclasses.dataclass(frozen=True)
class SimulationConfig:
    """What to simulate; the defaults cover the challenge's ranges and go beyond them.

    length: frames simulated per trajectory (the challenge's T = 200).
    min_length: each trajectory is cropped to a random window of ``min_length..length``
        frames (as the challenge's field of view cuts trajectories; its minimum is 20);
        ``min_length == length`` keeps whole trajectories.
    models: the models to draw from; model_weights: their relative shares of the tracks,
        as a mapping model -> weight (default :data:`DEFAULT_MODEL_WEIGHTS`).
    directed_fraction: probability that a mobile state moves directedly (alpha in
        [1.9, 2), state 3); the challenge's defaults never draw it, so it is raised here
        to keep state 3 well represented.
    alpha_range: anomalous exponent of non-directed mobile states.
    D_range: generalised diffusion coefficient of the fast state, px^2/frame^alpha,
        drawn log-uniformly (challenge: about 0.01..1).
    slow_ratio_range: D of slower states as a fraction of the fast state's, log-uniform.
    noise_range: localisation noise sigma in px, uniform per track (challenge: 0.12).
    """

    length: int = 200
    min_length: int = 20
    models: tuple[str, ...] = MODELS
    model_weights: Mapping[str, float] | None = None
    directed_fraction: float = 0.2
    alpha_range: tuple[float, float] = (0.02, ALPHA_DIRECTED)
    D_range: tuple[float, float] = (1e-3, 10.0)
    slow_ratio_range: tuple[float, float] = (3e-3, 0.3)
    noise_range: tuple[float, float] = (0.0, 0.25)

    def __post_init__(self):
        unknown = [m for m in self.models if m not in MODELS]
        if unknown or not self.models:
            raise ValueError(f"unknown model(s) {unknown or list(self.models)}; choose from {', '.join(MODELS)}")
        for m in (self.model_weights or {}):
            if m not in MODELS:
                raise ValueError(f"weight given for unknown model {m!r}; choose from {', '.join(MODELS)}")
        if any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise ValueError(f"model weights must be >= 0 with a positive sum, got {dict(self.weights)}")
        if not 3 <= self.min_length <= self.length:
            raise ValueError(f"need 3 <= min_length <= length, got min_length={self.min_length}, "
                             f"length={self.length}")
        if not 0 <= self.directed_fraction <= 1:
            raise ValueError(f"directed_fraction must be in [0, 1], got {self.directed_fraction}")
        lo, hi = self.alpha_range
        if not 0 < lo < hi <= ALPHA_DIRECTED:
            raise ValueError(f"alpha_range must lie in (0, {ALPHA_DIRECTED}], got {self.alpha_range}")
        if not 0 < self.D_range[0] <= self.D_range[1]:
            raise ValueError(f"D_range must be positive and increasing, got {self.D_range}")
        if not 0 < self.slow_ratio_range[0] <= self.slow_ratio_range[1] < 1:
            raise ValueError(f"slow_ratio_range must lie in (0, 1), got {self.slow_ratio_range}")
        if not 0 <= self.noise_range[0] <= self.noise_range[1]:
            raise ValueError(f"noise_range must be >= 0 and increasing, got {self.noise_range}")

    @property
    def weights(self) -> dict[str, float]:
        """Relative share of each model in ``models`` (unlisted models get 0)."""
        given = dict(self.model_weights) if self.model_weights is not None else DEFAULT_MODEL_WEIGHTS
        return {m: float(given.get(m, 0.0)) for m in self.models}

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["model_weights"] = self.weights
        return d


# ----------------------------------------------------------------------------- label filter

def label_filter(values: np.ndarray, window: int = 5, min_seg: int = 3) -> np.ndarray:
    """The challenge's label filter (``andi_datasets.utils_challenge.label_filter``), vectorised.

    A majority filter of odd ``window`` (ties go to the label that appeared first in the
    track, as ``scipy.stats.mode`` on first-appearance ranks does), then segments shorter
    than ``min_seg`` merged into the previous one (the first into the next). Gives the same
    array as the official function, about 100 times faster.
    """
    values = np.asarray(values)
    n = len(values)
    if n < 2 or np.all(values[1:] == values[:-1]):
        return values.copy()
    if window % 2 == 0:
        raise ValueError(f"window must be odd, got {window}")
    uniq, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # rank labels by first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    dummy = rank[inverse]
    onehot = dummy[None, :] == np.arange(len(uniq))[:, None]
    csum = np.concatenate([np.zeros((len(uniq), 1), np.int64), np.cumsum(onehot, axis=1)], axis=1)
    i = np.arange(n)
    half = window // 2
    counts = csum[:, np.minimum(i + half + 1, n)] - csum[:, np.maximum(i - half, 0)]
    filtered = _enforce_min_segment_length(np.argmax(counts, axis=0), min_seg)
    return uniq[order][filtered]


def filter_labels(labels: np.ndarray, window: int = 5, min_seg: int = 3) -> tuple[np.ndarray, ...]:
    """The challenge's label filter applied to the (alpha, K, state) triple of each frame at once.

    ``challenge_phenom_dataset`` filters each column on its own; when a track visits three
    or more parameter sets the columns can then change at different frames (a frame labelled
    free with a directed alpha). Filtering the triple keeps the labels consistent, and gives
    the same result as the per-column filter whenever the columns change together.
    ``labels``: (T, 3) array; returns (alpha, K, state).
    """
    uniq, inverse = np.unique(labels, axis=0, return_inverse=True)
    ids = label_filter(inverse.reshape(-1), window, min_seg)
    return tuple(uniq[ids, j] for j in range(labels.shape[1]))


def _enforce_min_segment_length(data: np.ndarray, min_seg: int) -> np.ndarray:
    """``utils_challenge.enforce_min_segment_length`` on run-length encoded segments."""
    n = len(data)
    starts = np.flatnonzero(np.r_[True, data[1:] != data[:-1]])
    ends = np.r_[starts[1:] - 1, n - 1]
    segments = [[int(data[s]), int(s), int(e)] for s, e in zip(starts, ends)]
    i = 0
    while i < len(segments):
        value, start, end = segments[i]
        if end - start + 1 < min_seg:
            if i > 0:  # prefer merging into the previous segment
                segments[i - 1][2] = end
                segments.pop(i)
                continue
            if i < len(segments) - 1:
                segments[i] = [segments[i + 1][0], start, segments[i + 1][2]]
                segments.pop(i + 1)
                continue
        i += 1
    return np.repeat([s[0] for s in segments], [s[2] - s[1] + 1 for s in segments])


def segments_of(alpha: np.ndarray, K: np.ndarray, state: np.ndarray) -> list[tuple[int, int, float, float, int]]:
    """Segments ``(start, end, alpha, K, state)`` (``end`` exclusive) of one track's labels:
    a change point wherever any label changes, as ``utils_challenge.label_continuous_to_list``."""
    n = len(alpha)
    change = (alpha[1:] != alpha[:-1]) | (K[1:] != K[:-1]) | (state[1:] != state[:-1])
    bounds = np.r_[0, np.flatnonzero(change) + 1, n]
    return [(int(a), int(b), float(alpha[a]), float(K[a]), int(state[a])) for a, b in zip(bounds[:-1], bounds[1:])]


# ----------------------------------------------------------------------------- parameters

def _loguniform(rng: np.random.RandomState, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _mobile_alpha(rng, cfg: SimulationConfig) -> float:
    """Alpha of a mobile state: directed with probability ``directed_fraction``."""
    if rng.uniform() < cfg.directed_fraction:
        return float(rng.uniform(ALPHA_DIRECTED, ALPHA_MAX))
    return float(rng.uniform(*cfg.alpha_range))


def _state_params(rng, cfg: SimulationConfig, n_states: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean alpha and D of ``n_states`` states: the first fast, the others slower.

    As in the challenge, a slower state often has a lower alpha (alpha_1 - U(0.1, 0.8));
    otherwise its alpha is drawn independently. Returns (alphas, Ds), each (n_states,).
    """
    alphas = [_mobile_alpha(rng, cfg)]
    Ds = [_loguniform(rng, *cfg.D_range)]
    for _ in range(1, n_states):
        if rng.uniform() < 0.5:
            alphas.append(max(cfg.alpha_range[0], alphas[0] - rng.uniform(0.1, 0.8)))
        else:
            alphas.append(_mobile_alpha(rng, cfg))
        Ds.append(max(1e-6, Ds[0] * _loguniform(rng, *cfg.slow_ratio_range)))
    return np.array(alphas), np.array(Ds)


def _spread(alphas: np.ndarray, Ds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, variance) pairs as models_phenom takes them: particles of one call scatter
    around the call's values (alpha sd up to 0.05, D sd 10 %). Directed states keep their
    alpha, and free ones stay 3 sd below 1.9, so that no particle crosses into the other
    state and directed_fraction holds exactly."""
    sd = np.where(alphas >= ALPHA_DIRECTED, 0.0, np.minimum(0.05, (ALPHA_DIRECTED - alphas) / 3))
    return (np.stack([alphas, sd ** 2], axis=1),
            np.stack([Ds, (0.1 * Ds) ** 2], axis=1))


def _simulate_call(model: str, n: int, cfg: SimulationConfig, rng, T: int) -> tuple[np.ndarray, np.ndarray]:
    """One models_phenom call of ``T`` frames: positions (T, n, 2), labels (T, n, 3: alpha, D, state).

    Models of independent particles go through models_phenom's per-trajectory generators
    (what single_state, multi_state and confinement loop over), with parameters drawn per
    particle here: the public functions draw them from truncated Gaussians with scipy, which
    costs more than the trajectory itself. Interacting particles (traps, dimers) share a
    box, so they come from one public call with per-call means and a small spread.
    """
    from andi_datasets.models_phenom import models_phenom

    mp = models_phenom()
    if model in _INDEPENDENT:
        pos, lab = np.zeros((T, n, 2)), np.zeros((T, n, 3))
        if model == "multi_state":
            k = 2 if rng.uniform() < 0.7 else 3  # the challenge uses 2 states; 3 goes beyond
            stay = rng.uniform(0.9, 0.995, size=k)  # challenge: 0.99
            M = np.diag(stay) + (1 - stay)[:, None] * (1 - np.eye(k)) / (k - 1)
        elif model == "confinement":
            L = _CHALLENGE_L
            r = rng.uniform(3.0, 10.0)  # challenge: 5
            coverage = rng.uniform(0.03, 0.25)  # area fraction inside compartments (challenge: 4 %)
            Nc = max(1, int(coverage * L ** 2 / (np.pi * r ** 2)))
            trans = rng.uniform(0.02, 0.3)  # challenge: 0.1
            with quiet():  # warns when fewer compartments fit than asked
                centers = mp._distribute_circular_compartments(Nc=Nc, r=r, L=L)
        for j in range(n):
            if model == "single_state":
                (alpha,), (D,) = _state_params(rng, cfg, 1)
                p, lab_j = mp._single_state_traj(T=T, D=D, alpha=alpha, L=None, dim=2)  # no walls: vectorised
            elif model == "multi_state":
                alphas, Ds = _state_params(rng, cfg, k)
                p, lab_j = mp._multiple_state_traj(T=T, M=M, Ds=Ds, alphas=alphas, L=None)
            else:
                alphas, Ds = _state_params(rng, cfg, 2)
                alphas[1] = min(alphas[1], 1.5)  # the confined state is not directed
                p, lab_j = mp._confinement_traj(T=T, L=L, Ds=Ds, alphas=alphas, r=r, comp_center=centers,
                                                trans=trans)
            pos[:, j], lab[:, j] = p, lab_j[:, :3]
        return pos, lab
    if model == "immobile_traps":
        (alpha,), (D,) = _state_params(rng, cfg, 1)
        L = _box(n, rng)
        r = rng.uniform(0.3, 1.5)  # challenge: 0.4; larger traps catch more particles
        Nt = max(1, int(round(_CHALLENGE_TRAP_DENSITY * rng.uniform(0.5, 3.0) * L ** 2)))
        a, d = _spread(np.array([alpha]), np.array([D]))
        pos, lab = mp.immobile_traps(N=n, T=T, L=L, r=r, Pu=_loguniform(rng, 0.002, 0.05), Pb=rng.uniform(0.5, 1.0),
                                     Ds=list(d[0]), alphas=list(a[0]), Nt=Nt)
    elif model == "dimerization":
        alphas, Ds = _state_params(rng, cfg, 2)
        a, d = _spread(alphas, Ds)
        # Denser than the challenge (up to 8x) so that dimers form within 200 frames.
        L = _box(n, rng, density_factor=(1.0, 8.0))
        pos, lab = mp.dimerization(N=n, T=T, L=L, r=rng.uniform(0.4, 1.5), Pu=rng.uniform(0.005, 0.05),
                                   Pb=rng.uniform(0.5, 1.0), Ds=d, alphas=a, return_state_num=True)
    else:  # pragma: no cover - checked by SimulationConfig
        raise ValueError(model)
    return pos, lab[:, :, :3]


def _box(n: int, rng, density_factor: tuple[float, float] = (0.5, 2.0)) -> float:
    """Side of the square box that holds ``n`` particles at the challenge's density times a factor."""
    return float(np.sqrt(n / (_CHALLENGE_DENSITY * rng.uniform(*density_factor))))


# ----------------------------------------------------------------------------- one shard

def _quotas(n: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Split ``n`` tracks over models by weight (largest remainder), deterministically."""
    names = [m for m in MODELS if weights.get(m, 0) > 0]
    w = np.array([weights[m] for m in names], float)
    exact = n * w / w.sum()
    base = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - base), kind="stable")[: n - base.sum()]:
        base[i] += 1
    return dict(zip(names, base.tolist()))


def simulate_tracks(n: int, seed: int, config: SimulationConfig = SimulationConfig(), first_particle: int = 0
                    ) -> tuple[st.Trajectories, dict[str, dict[str, np.ndarray]]]:
    """Simulate ``n`` labelled tracks in this process: (trajectories, {"segments": table}).

    Per point: frame, x, y (px, with localisation noise), alpha (float32), K (float32,
    px^2/frame^alpha), state (int8); per track: particle (``first_particle`` + i), model,
    noise (sigma, px). Labels are filtered as the challenge does. Deterministic in ``seed``.
    """
    with SEED_LOCK:
        seed_all(seed)
        rng = np.random.RandomState(seed % 2 ** 32)  # parameter draws, apart from the simulator's stream
        tracks: list[dict[str, np.ndarray]] = []
        models: list[str] = []
        for model, quota in _quotas(n, config.weights).items():
            made = 0
            while made < quota:
                # The box of a call is sized for its particles at a given density, so a smaller call
                # changes nothing physically; calls of interacting particles keep a minimum size
                # (the distance computations vectorise over them) and drop the extra tracks.
                k = min(_PARTICLES_PER_CALL[model], max(quota - made, _MIN_PARTICLES_PER_CALL.get(model, 1)))
                keep = None  # interacting particles (dimers): a whole box of config.length frames, cropped per track
                T = config.length
                if model in _INDEPENDENT:  # simulate just the frames kept: the cost grows with T
                    keep = T = int(rng.randint(config.min_length, config.length + 1))
                elif model == "immobile_traps":  # particles meet only static traps: likewise, after a warm-up
                    keep = int(rng.randint(config.min_length, config.length + 1))  # so tracks may start trapped
                    T = keep + int(rng.randint(0, min(_TRAP_WARMUP, config.length - keep) + 1))
                pos, lab = _simulate_call(model, k, config, rng, T)
                for j in range(min(k, quota - made)):
                    tracks.append(_crop_and_label(pos[:, j], lab[:, j], config, rng, keep))
                    models.append(model)
                made += min(k, quota - made)
    order = rng.permutation(len(tracks))  # mix models within a shard
    tracks = [tracks[i] for i in order]
    models = [models[i] for i in order]
    particle = np.arange(first_particle, first_particle + len(tracks), dtype=np.int64)
    noise = np.array([t.pop("noise") for t in tracks], np.float32)
    traj = st.Trajectories.from_arrays(tracks, {"particle": particle, "model": np.array(models, dtype=str),
                                                "noise": noise})
    return traj, {"segments": segments_table(traj)}


def _crop_and_label(pos: np.ndarray, lab: np.ndarray, cfg: SimulationConfig, rng, keep: int | None = None
                    ) -> dict[str, np.ndarray]:
    """Crop one trajectory to a random window (``keep``: its last ``keep`` frames), filter its
    labels, add localisation noise."""
    T = len(pos)
    if keep is None:
        length = int(rng.randint(cfg.min_length, T + 1))
        start = int(rng.randint(0, T - length + 1))
    else:
        length, start = keep, T - keep
    sl = slice(start, start + length)
    alpha, K, state = filter_labels(lab[sl, :3])
    sigma = float(rng.uniform(*cfg.noise_range))
    xy = pos[sl] + rng.normal(0.0, 1.0, size=(length, 2)) * sigma
    return {"frame": np.arange(start, start + length, dtype=np.int64), "x": xy[:, 0].astype(np.float64),
            "y": xy[:, 1].astype(np.float64), "alpha": alpha.astype(np.float32), "K": K.astype(np.float32),
            "state": state.astype(np.int8), "noise": sigma}


def segments_table(traj: st.Trajectories) -> dict[str, np.ndarray]:
    """The change points of every track as a table: particle, start, end (exclusive, in
    points from the track's first frame), alpha, K, state."""
    rows = []
    for i, particle in enumerate(traj.tracks["particle"]):
        t = traj.track(i)
        rows += [(int(particle),) + seg for seg in segments_of(t["alpha"], t["K"], t["state"])]
    cols = list(zip(*rows)) if rows else [[]] * 6
    return {"particle": np.array(cols[0], np.int64), "start": np.array(cols[1], np.int64),
            "end": np.array(cols[2], np.int64), "alpha": np.array(cols[3], np.float32),
            "K": np.array(cols[4], np.float32), "state": np.array(cols[5], np.int8)}


def count_labels(traj: st.Trajectories) -> dict:
    """Counts written, for the balance report: tracks per model; points and tracks per state."""
    state = traj.points["state"]
    per_track = np.repeat(np.arange(traj.n_tracks), traj.lengths)
    counts = {"tracks": int(traj.n_tracks), "points": int(traj.n_points),
              "model_tracks": {m: int(np.sum(traj.tracks["model"] == m)) for m in MODELS},
              "state_points": {s: int(np.sum(state == i)) for i, s in enumerate(STATES)},
              "state_tracks": {s: int(len(np.unique(per_track[state == i]))) for i, s in enumerate(STATES)}}
    return counts


def merge_counts(counts: Sequence[dict]) -> dict:
    total = {"tracks": 0, "points": 0, "model_tracks": dict.fromkeys(MODELS, 0),
             "state_points": dict.fromkeys(STATES, 0), "state_tracks": dict.fromkeys(STATES, 0)}
    for c in counts:
        total["tracks"] += c["tracks"]
        total["points"] += c["points"]
        for key in ("model_tracks", "state_points", "state_tracks"):
            for name, value in c[key].items():
                total[key][name] += value
    return total


# ----------------------------------------------------------------------------- training store

@dataclasses.dataclass(frozen=True)
class ShardTask:
    path: Path
    index: int
    n: int
    first_particle: int
    seed: int
    config: SimulationConfig
    parameters: str  # JSON of the store's parameters, recorded in every shard


def simulate_shard(task: ShardTask) -> dict:
    """Simulate and write one shard (runs on a Dask worker); returns its label counts."""
    traj, tables = simulate_tracks(task.n, task.seed, task.config, task.first_particle)
    counts = count_labels(traj)
    attrs = st.provenance("simulate trajectories", json.loads(task.parameters))
    attrs.update({"shard_index": task.index, "shard_seed": task.seed, "counts": json.dumps(counts)})
    st.write_shard(task.path, traj, kind="training", attrs=attrs, tables=tables)
    return counts


def shard_name(index: int) -> str:
    """Name of shard ``index`` of a training store."""
    return f"shard-{index:05d}{st.SHARD_SUFFIX}"


def plan_shards(out_dir: os.PathLike | str, n: int, seed: int, config: SimulationConfig, shard_size: int
                ) -> list[ShardTask]:
    """The shards of a store of ``n`` tracks: shard i holds tracks i*shard_size.. and is
    simulated from :func:`~anomalousnet.simulation.seeding.seed_for` (seed, i)."""
    if n < 1 or shard_size < 1:
        raise ValueError(f"n and shard_size must be >= 1, got n={n}, shard_size={shard_size}")
    params = json.dumps({"n": n, "seed": seed, "shard_size": shard_size, "config": config.to_json()},
                        sort_keys=True)
    out = Path(out_dir)
    return [ShardTask(out / shard_name(i), i, min(shard_size, n - start), start, seed_for(seed, i), config, params)
            for i, start in enumerate(range(0, n, shard_size))]


def simulate_training(out_dir: os.PathLike | str, n: int, seed: int, config: SimulationConfig = SimulationConfig(),
                      shard_size: int = 2000, workers: int | None = None, scheduler_file: str | None = None,
                      progress: bool = True) -> Summary:
    """Write a training store of ``n`` labelled tracks to ``out_dir`` (shards + index.h5).

    Shards are simulated in parallel on Dask (a local cluster of ``workers`` processes, or
    the cluster in ``scheduler_file``); ``workers=0`` runs them in this process. Complete
    shards from an earlier run with the same parameters are kept (resume); a store made
    with other parameters is an error (ValueError), never mixed. The index is written
    when every shard is complete. Returns a :class:`Summary` whose ``counts`` are the label
    counts of the whole store (:func:`count_labels`).
    """
    from anomalousnet.batch import cluster

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    tasks = plan_shards(out, n, seed, config, shard_size)
    todo, kept, counts, failed = [], [], [], {}
    for task in tasks:
        if st.needs_writing(task.path):
            todo.append(task)
            continue
        attrs = st.read_attrs(task.path)
        if attrs.get("parameters") != task.parameters:
            raise ValueError(f"{task.path}: written with other parameters ({attrs.get('parameters')}); "
                             f"simulate into a new directory or remove this store")
        kept.append(task.path)
        counts.append(json.loads(attrs["counts"]))
    stale = sorted(set(st.shard_paths(out)) - {t.path for t in tasks})
    if stale:
        raise ValueError(f"{stale[0]}: shard not part of this simulation (n or shard size changed?); "
                         "simulate into a new directory")
    written = []
    if todo and workers == 0:
        from tqdm import tqdm

        for task in tqdm(todo, desc="simulate", unit="shard", disable=not progress):
            counts.append(simulate_shard(task))
            written.append(task.path)
    elif todo:
        with cluster.dask_client(workers, scheduler_file) as client:
            for task, result in cluster.map_as_completed(client, simulate_shard, todo, desc="simulate",
                                                          progress=progress):
                if isinstance(result, BaseException):
                    failed[task.path.name] = f"{type(result).__name__}: {result}"
                    log.error("%s: %s", task.path, failed[task.path.name])
                else:
                    counts.append(result)
                    written.append(task.path)
    total = merge_counts(counts)
    if not failed:
        attrs = st.provenance("simulate trajectories", json.loads(tasks[0].parameters))
        attrs["counts"] = json.dumps(total)
        st.write_index(out, "training", attrs)
    return Summary(out, sorted(written), kept, failed, counts=total)


def format_counts(counts: dict) -> str:
    """The balance report: tracks per model, points and tracks per state, with shares."""
    lines = [f"{counts['tracks']} tracks, {counts['points']} points"]
    for name, value in counts["model_tracks"].items():
        lines.append(f"  model {name:<15} {value:>9} tracks ({100 * value / max(counts['tracks'], 1):5.1f} %)")
    for name in STATES:
        p, t = counts["state_points"][name], counts["state_tracks"][name]
        lines.append(f"  state {STATES.index(name)} {name:<9} {p:>9} points ({100 * p / max(counts['points'], 1):5.1f}"
                     f" %) in {t} tracks ({100 * t / max(counts['tracks'], 1):5.1f} %)")
    return "\n".join(lines)
