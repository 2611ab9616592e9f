"""Simulated trajectories from ``andi-datasets`` (the 2nd AnDi Challenge simulator).

Two products:

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
* :func:`simulate_andi`: a dataset in the 2nd AnDi Challenge layout (``public/`` +
  ``ref/``), made by ``challenge_phenom_dataset`` itself, optionally with videos.

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
import random
import threading
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from anomalousnet import __version__
from anomalousnet import store as st

log = logging.getLogger(__name__)

#: The five phenomenological models of andi-datasets, in the package's own order
#: (``datasets_phenom().avail_models_name``; the challenge numbers them 1..5).
MODELS = ("single_state", "multi_state", "immobile_traps", "dimerization", "confinement")
#: Diffusive states, by their label value (``models_phenom().lab_state``: i, c, f, d).
STATES = ("immobile", "confined", "free", "directed")
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

_SEED_LOCK = threading.Lock()  # the simulator uses global generators: one shard at a time per process


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


# ----------------------------------------------------------------------------- seeding

def shard_seed(seed: int, shard: int) -> int:
    """The seed of shard ``shard``: a function of the master seed and the shard index only."""
    return int(np.random.SeedSequence(entropy=int(seed), spawn_key=(int(shard),)).generate_state(1)[0])


def seed_all(seed: int) -> None:
    """Seed every generator andi-datasets draws from: numpy's global one (also used by
    scipy.stats), ``random``, and the ``stochastic`` package's own generator (fBm noise)."""
    import stochastic.random

    np.random.seed(seed % 2 ** 32)
    random.seed(seed)
    stochastic.random.seed(seed)


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
            with _quiet():  # warns when fewer compartments fit than asked
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


class _quiet:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


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
    with _SEED_LOCK:
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


@dataclasses.dataclass(frozen=True)
class SimulationSummary:
    """What :func:`simulate_training` did: shards written, kept from an earlier run, failed
    (name -> error), and the label counts of the whole store (see :func:`count_labels`)."""

    store: Path
    written: list[Path]
    skipped: list[Path]
    failed: dict[str, str]
    counts: dict


def simulate_shard(task: ShardTask) -> dict:
    """Simulate and write one shard (runs on a Dask worker); returns its label counts."""
    traj, tables = simulate_tracks(task.n, task.seed, task.config, task.first_particle)
    counts = count_labels(traj)
    attrs = st.provenance("simulate trajectories", json.loads(task.parameters))
    attrs.update({"shard_index": task.index, "shard_seed": task.seed, "counts": json.dumps(counts)})
    st.write_shard(task.path, traj, kind="training", attrs=attrs, tables=tables)
    return counts


def shard_name(index: int) -> str:
    return f"shard-{index:05d}{st.SHARD_SUFFIX}"


def plan_shards(out_dir: os.PathLike | str, n: int, seed: int, config: SimulationConfig, shard_size: int
                ) -> list[ShardTask]:
    """The shards of a store of ``n`` tracks: shard i holds tracks i*shard_size.. and is
    simulated from :func:`shard_seed` (seed, i)."""
    if n < 1 or shard_size < 1:
        raise ValueError(f"n and shard_size must be >= 1, got n={n}, shard_size={shard_size}")
    params = json.dumps({"n": n, "seed": seed, "shard_size": shard_size, "config": config.to_json()},
                        sort_keys=True)
    out = Path(out_dir)
    return [ShardTask(out / shard_name(i), i, min(shard_size, n - start), start, shard_seed(seed, i), config, params)
            for i, start in enumerate(range(0, n, shard_size))]


def _shard_attrs(path: Path) -> dict:
    import h5py

    with h5py.File(path, "r") as f:
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}


def simulate_training(out_dir: os.PathLike | str, n: int, seed: int, config: SimulationConfig = SimulationConfig(),
                      shard_size: int = 2000, workers: int | None = None, scheduler_file: str | None = None,
                      progress: bool = True) -> SimulationSummary:
    """Write a training store of ``n`` labelled tracks to ``out_dir`` (shards + index.h5).

    Shards are simulated in parallel on Dask (a local cluster of ``workers`` processes, or
    the cluster in ``scheduler_file``); ``workers=0`` runs them in this process. Complete
    shards from an earlier run with the same parameters are kept (resume); a store made
    with other parameters is an error (ValueError), never mixed. The index is written
    when every shard is complete.
    """
    from anomalousnet import parallel

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    tasks = plan_shards(out, n, seed, config, shard_size)
    todo, skipped, counts, failed = [], [], [], {}
    for task in tasks:
        if st.needs_writing(task.path):
            todo.append(task)
            continue
        attrs = _shard_attrs(task.path)
        if attrs.get("parameters") != task.parameters:
            raise ValueError(f"{task.path}: written with other parameters ({attrs.get('parameters')}); "
                             f"simulate into a new directory or remove this store")
        skipped.append(task.path)
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
        with parallel.dask_client(workers, scheduler_file) as client:
            for task, result in parallel.map_as_completed(client, simulate_shard, todo, desc="simulate",
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
    return SimulationSummary(out, sorted(written), skipped, failed, total)


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


# ----------------------------------------------------------------------------- AnDi-2 datasets
#
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


def seed_for(seed: int, *keys: int) -> int:
    """A seed that depends only on the master seed and the integer keys (e.g. experiment, FOV)."""
    return int(np.random.SeedSequence(entropy=int(seed), spawn_key=tuple(int(k) for k in keys)).generate_state(1)[0])


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


@dataclasses.dataclass(frozen=True)
class AndiSummary:
    """What :func:`simulate_andi` did: (exp, fov) pairs written, kept from an earlier run, and
    failed ("exp_E/fov_F" -> error); ``models`` is the model of each experiment."""

    out: Path
    written: list[tuple[int, int]]
    skipped: list[tuple[int, int]]
    failed: dict[str, str]
    models: list[str]
    results: dict[tuple[int, int], dict] = dataclasses.field(default_factory=dict)  # simulate_fov's, per FOV


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
    with _quiet():
        import andi_datasets.datasets_challenge as module
    return module


def experiment_dic(model: str, seed: int, exp: int, length: int = 200, particles: int | None = None) -> dict:
    """The challenge's default parameters for one experiment (``_get_dic_andi2``), drawn from
    a seed of (seed, exp); ``length`` frames, ``particles`` particles (default 50)."""
    _datasets_challenge()
    from andi_datasets.datasets_challenge import _get_dic_andi2

    with _SEED_LOCK:
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
    with _SEED_LOCK:
        for attempt in range(5):  # an unlucky draw may leave too few trajectories or VIPs in the FOV
            shutil.rmtree(raw, ignore_errors=True)
            raw.mkdir(parents=True)
            seed_all(seed_for(task.seed, attempt))
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), _quiet():
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
        tmp = final.with_name("." + final.name + st.TMP_SUFFIX)
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
        path = _exp_dir(out, "ref", track, exp) / "ensemble_labels.txt"
        tmp = path.with_name("." + path.name + st.TMP_SUFFIX)
        with open(tmp, "w") as f:
            f.write(f"model: {model}; num_state: {num_states} \n")
            np.savetxt(f, ensemble, delimiter=";")
        os.replace(tmp, path)


def simulate_andi(out_dir: os.PathLike | str, seed: int, experiments: int | Sequence[str | int] = 5, fovs: int = 1,
                  videos: bool = False, num_vip: int = 10, length: int = 200, particles: int | None = None,
                  noise: float = 0.12, workers: int | None = 0, scheduler_file: str | None = None,
                  progress: bool = True) -> AndiSummary:
    """Write an AnDi-2 style dataset (``public/`` + ``ref/``, see the layout above) to ``out_dir``.

    experiments: a number (models in the challenge's order, cycled) or a list of model
    names or numbers 1..5; fovs: FOVs per experiment; videos: also track 1 (videos and VIPs,
    needs the ``video`` extra, deeptrack 2.0.0; about 36 s per 200-frame FOV on one core);
    num_vip: VIPs per FOV; length: frames (the challenge's T = 200); particles: particles
    per experiment (default 50); noise: localisation noise sigma, px (challenge 0.12).
    One task per FOV, in this process (``workers=0``, default) or on Dask. Re-running
    keeps complete FOVs; other parameters than an earlier run's are an error (ValueError).
    """
    from anomalousnet import parallel

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
    tasks, skipped = [], []
    for e, dic in enumerate(dics):
        for f in range(fovs):
            if fov_complete(out, e, f, videos):
                skipped.append((e, f))
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
        with parallel.dask_client(workers, scheduler_file) as client:
            for task, result in parallel.map_as_completed(client, simulate_fov, tasks, desc="simulate andi",
                                                          progress=progress):
                record(task, result)
    for e in range(len(models)):
        if all(fov_complete(out, e, f, videos) for f in range(fovs)):
            write_ensemble_labels(out, e, fovs, tracks=(2, 1) if videos else (2,))
    raw = out / ".raw"
    if raw.exists() and not any(raw.iterdir()):
        raw.rmdir()
    return AndiSummary(out, sorted(written), skipped, failed, models, results)
