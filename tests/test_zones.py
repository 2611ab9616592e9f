"""The field-of-view stage (anomalousnet.segments.zones) on FOVs simulated by andi-datasets.

Segments are built from the simulator's own labels, with the states a network gets wrong
(slow free called confined, confined called free), so each test checks what the stage makes
of them."""
import numpy as np
import pytest

from anomalousnet.core.names import CONFINED, FREE, IMMOBILE
from anomalousnet.core.trajectories import Trajectories
from anomalousnet.segments.zones import ZoneOptions, zone_stage, zone_stage_by
from anomalousnet.simulation.seeding import seed_all

SLOW_D, R = 0.05, 4.0


def _fov(groups, seed=0, noise=0.05):
    """groups: [(trajs (T, N, 2), labels (T, N, 3), call(true_state, slow) -> called state, name)].
    Returns Trajectories (points x, y, frame, pred_alpha; tracks particle, group) and segments
    (runs of slow / fast motion, K and alpha from the labels) and per segment (group, true state, slow)."""
    rng = np.random.default_rng(seed)
    arrays, group_of, segs, truth = [], [], {c: [] for c in ("particle", "start", "end", "alpha", "K", "state")}, []
    for trajs, labels, call, name in groups:
        for n in range(trajs.shape[1]):
            p = len(arrays)
            xy = trajs[:, n] + rng.normal(0, noise, trajs[:, n].shape)
            alpha, D, state = labels[:, n, 0], labels[:, n, 1], labels[:, n, 2].astype(int)
            slow = D < 0.5
            arrays.append({"x": xy[:, 0], "y": xy[:, 1], "frame": np.arange(len(xy)), "pred_alpha": alpha})
            group_of.append(name)
            bounds = np.r_[0, np.flatnonzero(np.diff(slow.astype(int))) + 1, len(slow)]
            for a, b in zip(bounds[:-1], bounds[1:]):
                true_state = int(np.bincount(state[a:b]).argmax())
                segs["particle"].append(p), segs["start"].append(a), segs["end"].append(b)
                segs["alpha"].append(float(np.median(alpha[a:b]))), segs["K"].append(float(np.median(D[a:b])))
                segs["state"].append(call(true_state, bool(slow[a])))
                truth.append((name, true_state, bool(slow[a])))
    traj = Trajectories.from_arrays(arrays, {"group": np.array(group_of)})
    segments = {c: np.array(v) for c, v in segs.items()}
    segments["state"] = segments["state"].astype(np.int8)
    return traj, segments, truth


def _confinement(N, L, centres, seed):
    from andi_datasets.models_phenom import models_phenom

    seed_all(seed)
    return models_phenom().confinement(N=N, T=200, L=L, Ds=[[1, 0], [SLOW_D, 0]], alphas=[[1, 0], [0.8, 0]], r=R,
                                       comp_center=centres, Nc=len(centres) if centres is not None else 30,
                                       trans=0.1)


def _multi_state(N, L, seed):
    from andi_datasets.models_phenom import models_phenom

    seed_all(seed)
    return models_phenom().multi_state(N=N, T=200, L=L, Ds=np.array([[1, 0], [SLOW_D, 0]]),
                                       alphas=np.array([[1, 0], [0.8, 0]]), M=np.array([[0.98, 0.02], [0.02, 0.98]]))


def _frames(segments, mask):
    return int((segments["end"] - segments["start"])[mask].sum())


def test_shared_compartments_are_found_at_their_centres_and_slow_free_motion_outside_them_is_free():
    centres = np.array([[12.0, 12.0], [36.0, 12.0], [24.0, 36.0]])
    conf = _confinement(30, 48, centres, seed=1)
    multi_xy, multi_labels = _multi_state(20, 48, seed=2)
    multi_xy = multi_xy + [60.0, 0.0]  # beside the compartments, in the same field of view
    # the networks' mistakes: confined particles called free, slow free motion called confined
    traj, segments, truth = _fov([(*conf, lambda s, slow: FREE, "conf"),
                                  (multi_xy, multi_labels, lambda s, slow: CONFINED if slow else FREE, "multi")])
    result = zone_stage(traj, segments)
    assert result.verdict == "zoned"
    found = result.zones["kind"] == "confinement"
    assert found.any()
    xy = np.column_stack([result.zones["x"][found], result.zones["y"][found]])
    nearest = np.min(np.hypot(*(xy[:, None, :] - centres[None]).transpose(2, 0, 1)), axis=1)
    assert np.all(nearest <= R), nearest  # every zone lies in a compartment: within its radius of the centre
    visited = {int(np.argmin(np.hypot(*(centres - xy_).T))) for xy_ in xy}
    assert visited == {0, 1, 2}

    state = result.segments["state"]
    group = np.array([t[0] for t in truth])
    true_state = np.array([t[1] for t in truth])
    slow = np.array([t[2] for t in truth])
    confined = (group == "conf") & (true_state == CONFINED)
    assert _frames(segments, confined & (state == CONFINED)) >= 0.9 * _frames(segments, confined)
    # slow free segments well outside every compartment go back to free
    x, y = np.asarray(traj.points["x"]), np.asarray(traj.points["y"])
    outside = []
    for i in np.flatnonzero((group == "multi") & slow):
        a = traj.offsets[segments["particle"][i]] + segments["start"][i]
        b = traj.offsets[segments["particle"][i]] + segments["end"][i]
        d = np.hypot(x[a:b, None] - centres[:, 0], y[a:b, None] - centres[:, 1])
        if d.min() > R + 1:
            outside.append(i)
    assert len(outside) >= 5
    assert np.all(state[outside] == FREE)
    assert np.all(state[(group == "conf") & ~slow] == FREE)  # fast motion is never confined


@pytest.mark.parametrize("model", ["multi_state", "single_state"])
def test_a_fov_without_zones_gets_none_and_its_confined_calls_are_freed(model):
    if model == "multi_state":
        fov = _multi_state(40, 128, seed=3)
    else:
        from andi_datasets.models_phenom import models_phenom

        seed_all(4)
        fov = models_phenom().single_state(N=40, T=200, L=128, Ds=[0.5, 0], alphas=[0.9, 0])
    calls = iter(range(10 ** 6))
    # slow segments called confined, every fifth of them immobile (alpha 0, as segmentation writes it)
    traj, segments, truth = _fov([(*fov, lambda s, slow: (IMMOBILE if next(calls) % 5 == 0 else CONFINED)
                                   if slow else FREE, model)])
    segments["alpha"][segments["state"] == IMMOBILE] = 0.0
    result = zone_stage(traj, segments)
    assert not np.any(result.zones["kind"] == "confinement")
    assert not np.any(result.segments["state"] == CONFINED)
    if model == "multi_state":
        assert result.verdict == "free"
        released = segments["state"] == IMMOBILE
        assert released.any() and np.all(result.segments["state"][released] == FREE)
        assert np.allclose(result.segments["alpha"][released], 0.8)  # the networks' alpha, not immobile's 0
    else:
        assert result.verdict == "undecided"  # nothing slow: nothing to decide, nothing changed
        assert np.array_equal(result.segments["state"], segments["state"])


def test_compartments_of_each_particle_its_own_are_decided_by_capture_and_dimers_stay_free():
    """andi-datasets draws compartments per particle: fast particles cross others' compartments,
    so only the capture statistics (entered often, rarely left) tell confinement apart."""
    conf = _confinement(60, 128, None, seed=5)
    rng = np.random.default_rng(6)
    walk = np.cumsum(rng.normal(0, np.sqrt(2 * SLOW_D), (200, 2)), axis=0) + 64.0
    pair = np.stack([walk, walk + 0.8], axis=1)  # two particles bound together, moving slowly
    pair_labels = np.tile([0.8, SLOW_D, FREE], (200, 2, 1))
    traj, segments, truth = _fov([(*conf, lambda s, slow: FREE, "conf"),
                                  (pair, pair_labels, lambda s, slow: CONFINED, "dimer")])
    result = zone_stage(traj, segments)
    assert result.verdict == "zoned"
    group = np.array([t[0] for t in truth])
    true_state = np.array([t[1] for t in truth])
    state = result.segments["state"]
    confined = (group == "conf") & (true_state == CONFINED)
    assert _frames(segments, confined & (state == CONFINED)) >= 0.9 * _frames(segments, confined)
    assert np.all(state[(group == "conf") & (true_state == FREE)] == FREE)
    assert np.all(state[group == "dimer"] == FREE)
    # a FOV too sparse to decide alone is decided with the evidence of its condition's other FOVs
    few = np.flatnonzero(traj.tracks["group"] == "conf")[:6]
    small = traj.select(few)
    keep = np.isin(segments["particle"], traj.tracks["particle"][few])
    small_segments = {c: v[keep] for c, v in segments.items()}
    assert zone_stage(small, small_segments).verdict == "undecided"
    both = Trajectories(np.r_[small.offsets, traj.offsets[1:] + small.offsets[-1]],
                        {c: np.r_[small.points[c], traj.points[c]] for c in ("x", "y", "frame", "pred_alpha")},
                        {"particle": np.r_[small.tracks["particle"], traj.tracks["particle"] + 10 ** 6],
                         "fov": np.r_[np.zeros(small.n_tracks, int), np.ones(traj.n_tracks, int)],
                         "experiment": np.zeros(small.n_tracks + traj.n_tracks, int)})
    both_segments = {c: np.r_[small_segments[c], v] for c, v in segments.items()}
    both_segments["particle"] = np.r_[small_segments["particle"], segments["particle"] + 10 ** 6]
    _, _, verdicts = zone_stage_by(both, both_segments, "fov", pool="experiment")
    assert verdicts == {0: "zoned", 1: "zoned"}


def test_zone_options_are_checked():
    with pytest.raises(ValueError):
        ZoneOptions(slow_ratio=1.5)
    with pytest.raises(ValueError):
        ZoneOptions(min_frames=1)
