"""Change points and segments from per-frame predictions: known change points are found
within 2 frames, smoothing removes short excursions, segments cover tracks exactly."""
import numpy as np
import pytest
import ruptures as rpt

from anomalousnet.segments import detector as det
from anomalousnet.segments import segmentation as cp
from anomalousnet.core.trajectories import Trajectories


def piecewise(n, cps, alphas, ks, states, rng, noise=0.1, flip=0.05):
    """Per-frame predictions with known change points: constant values per segment plus
    noise on alpha and log K and a share ``flip`` of single-frame state errors."""
    bounds = np.r_[0, np.asarray(cps, dtype=np.int64), n].astype(np.int64)
    lens = np.diff(bounds)
    alpha = np.repeat(alphas, lens) + rng.normal(0, noise, n)
    K = np.repeat(ks, lens) * np.exp(rng.normal(0, noise, n))
    state = np.repeat(states, lens).astype(np.int8)
    wrong = rng.random(n) < flip
    state[wrong] = rng.integers(0, 4, wrong.sum())
    return alpha.astype(np.float32), K.astype(np.float32), state


CASES = [  # (length, change points, alphas, Ks, states)
    (200, [80], [0.5, 1.4], [0.5, 0.5], [2, 2]),  # alpha only
    (200, [60, 140], [1.0, 1.0, 1.0], [0.1, 1.0, 0.1], [2, 2, 2]),  # K only
    (150, [50, 100], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [2, 1, 2]),  # state only
    (200, [30, 90, 150], [0.3, 1.2, 0.7, 1.8], [1.0, 0.3, 3.0, 1.0], [1, 2, 1, 3]),
    # near the ends (5-6 frame segments): found when alpha, K and state all change
    (100, [5], [1.5, 0.5], [1.0, 0.1], [2, 1]),
    (100, [94], [0.5, 1.5], [0.1, 1.0], [1, 2]),
    (60, [20, 40], [0.2, 1.0, 0.2], [0.05, 1.0, 0.05], [1, 2, 1]),
]


# A penalty for these signals' noise (0.1): the default (cp.SegmentOptions().penalty) is
# tuned for the default model's noisier predictions and the AnDi-2 Jaccard index (see
# benchmarks/TUNING.md), which rewards predicting no change point where there is none.
SENSITIVE = cp.SegmentOptions(penalty=8.0)


@pytest.mark.parametrize("n,cps,alphas,ks,states", CASES)
def test_known_change_points_found_within_two_frames(n, cps, alphas, ks, states):
    rng = np.random.default_rng(n + len(cps))
    for repeat in range(5):
        found = cp.change_points(*piecewise(n, cps, alphas, ks, states, rng), SENSITIVE)
        assert len(found) == len(cps), (repeat, found.tolist(), cps)
        assert np.max(np.abs(found - np.array(cps))) <= 2, (repeat, found.tolist(), cps)


@pytest.mark.parametrize("n,cps,alphas,ks,states", [CASES[0], CASES[3]])
def test_default_options_find_strong_change_points_within_two_frames(n, cps, alphas, ks, states):
    rng = np.random.default_rng(n + len(cps))
    for repeat in range(5):
        found = cp.change_points(*piecewise(n, cps, alphas, ks, states, rng))
        assert len(found) == len(cps) and np.max(np.abs(found - np.array(cps))) <= 2, (found.tolist(), cps)


def test_many_random_tracks_recall_and_precision():
    rng = np.random.default_rng(7)
    hits = total = spurious = 0
    for _ in range(150):
        n = int(rng.integers(50, 201))
        k = int(rng.integers(0, 4))
        cps = np.sort(rng.choice(np.arange(12, n - 12, 12), min(k, (n - 24) // 12), replace=False))
        alphas = 0.2 + 1.6 * (np.arange(len(cps) + 1) % 2) + rng.uniform(-0.1, 0.1, len(cps) + 1)
        found = cp.change_points(*piecewise(n, cps, alphas, np.ones(len(cps) + 1), np.full(len(cps) + 1, 2), rng),
                                 SENSITIVE)
        total += len(cps)
        hits += sum(np.any(np.abs(found - c) <= 2) for c in cps)
        spurious += sum(not np.any(np.abs(cps - f) <= 2) for f in found)
    assert hits / total >= 0.97 and spurious <= 0.03 * total, (hits, total, spurious)


def test_constant_noisy_predictions_have_no_change_point():
    rng = np.random.default_rng(3)
    for n in (20, 200, 1000):
        a, K, s = piecewise(n, [], [1.0], [0.5], [2], rng, noise=0.15)
        assert cp.change_points(a, K, s).size == 0


def test_smoothing_removes_excursions_shorter_than_min_dwell():
    state = np.array([2] * 10 + [1] + [2] * 10 + [3, 3] + [2] * 10 + [0, 0, 0] + [2] * 10, dtype=np.int8)
    out = cp.smooth_state(state, 3)
    expected = np.array([2] * 33 + [0, 0, 0] + [2] * 10, dtype=np.int8)  # 1- and 2-frame runs gone, 3 kept
    assert out.tolist() == expected.tolist()
    alpha = np.ones(40)
    alpha[10] = 5.0
    alpha[20:22] = -3.0
    a, logk, _ = cp.smooth(alpha, np.ones(40), np.full(40, 2), cp.SegmentOptions())
    assert np.allclose(a, 1.0) and np.allclose(logk, 0.0)
    # a step (a real change) survives smoothing where it is
    step = np.r_[np.zeros(20), np.ones(20)]
    assert np.array_equal(cp.smooth(step, np.ones(40), np.full(40, 2))[0], step)


def test_short_state_run_merges_into_longer_neighbour():
    assert cp.smooth_state(np.array([1, 1, 1, 1, 0, 2, 2, 2, 2, 2, 2]), 3).tolist() == [1] * 4 + [2] * 7
    assert cp.smooth_state(np.array([3, 3]), 3).tolist() == [3, 3]  # one run is left alone
    assert cp.smooth_state(np.array([1, 2, 1, 1, 1, 2, 2, 2, 1, 2, 2, 2]), 3).tolist() == [1] * 5 + [2] * 7


def test_segments_cover_the_track_with_median_values_and_majority_state():
    rng = np.random.default_rng(0)
    a, K, s = piecewise(200, [80], [0.5, 1.4], [0.2, 2.0], [1, 2], rng, noise=0.05, flip=0.0)
    seg = cp.segment_track(a, K, s)
    assert seg["start"].tolist() == [0, 80] and seg["end"].tolist() == [80, 200]
    assert seg["alpha"] == pytest.approx([np.median(a[:80]), np.median(a[80:])])
    assert seg["K"] == pytest.approx([np.median(K[:80]), np.median(K[80:])], rel=1e-6)
    assert seg["state"].tolist() == [1, 2]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6, 7, 13])
def test_short_tracks_are_one_segment_or_covered_exactly(n):
    rng = np.random.default_rng(n)
    seg = cp.segment_track(rng.uniform(0, 2, n), rng.uniform(0.1, 1, n), rng.integers(0, 4, n))
    assert seg["start"][0] == 0 and seg["end"][-1] == n
    assert np.array_equal(seg["start"][1:], seg["end"][:-1])
    assert np.all(seg["end"] - seg["start"] >= min(3, n))


def test_unequal_lengths_are_rejected():
    with pytest.raises(ValueError, match="equal length"):
        cp.segment_track(np.ones(5), np.ones(4), np.ones(5))


def test_cumsum_cost_equals_ruptures_l2_and_gives_the_same_breakpoints():
    rng = np.random.default_rng(5)
    signal = np.concatenate([rng.normal(0, 1, (70, 3)), rng.normal(2, 1, (60, 3)), rng.normal(-1, 1, (70, 3))])
    fast, ref = det.CostL2Cumsum().fit(signal), rpt.costs.CostL2().fit(signal)
    for a, b in [(0, 200), (3, 17), (50, 51), (69, 140)]:
        assert fast.error(a, b) == pytest.approx(ref.error(a, b), rel=1e-9, abs=1e-9)
    ours = rpt.Window(width=20, custom_cost=det.CostL2Cumsum(), min_size=3, jump=1).fit_predict(signal, pen=20)
    theirs = rpt.Window(width=20, model="l2", min_size=3, jump=1).fit_predict(signal, pen=20)
    assert ours == theirs and ours[:-1] == pytest.approx([70, 130], abs=2)
    # Our estimator scores the signal edge-padded by half a window: ruptures' scores of that signal.
    fast = det.WindowL2(width=20, min_size=3).fit(signal)
    slow = rpt.Window(width=20, model="l2", min_size=3, jump=1).fit(np.pad(signal, ((10, 10), (0, 0)), mode="edge"))
    assert np.array_equal(fast.inds, slow.inds) and np.allclose(fast.score, slow.score, rtol=1e-9, atol=1e-9)
    assert fast.predict(pen=20) == theirs


def _shard(rng, n_tracks=40):
    arrays = []
    for i in range(n_tracks):
        n = int(rng.integers(1, 150))
        c = [n // 2] if n >= 30 else []
        a, K, s = piecewise(n, c, [0.4, 1.5][:len(c) + 1], [1.0, 1.0][:len(c) + 1], [2, 2][:len(c) + 1], rng)
        arrays.append({"x": np.zeros(n), "y": np.zeros(n), "pred_alpha": a, "pred_K": K, "pred_state": s})
    return Trajectories.from_arrays(arrays, {"particle": np.arange(n_tracks) * 7})


def test_segment_trajectories_covers_every_track_and_dask_matches_serial():
    from anomalousnet.batch.cluster import dask_client

    traj = _shard(np.random.default_rng(11))
    serial = cp.segment_trajectories(traj, tracks_per_block=7)
    cp.check_coverage(serial, traj)
    assert set(serial["particle"].tolist()) == set(traj.tracks["particle"].tolist())
    with dask_client(workers=2) as client:
        parallel = cp.segment_trajectories(traj, client=client, tracks_per_block=7)
    for col in cp.SEGMENT_COLUMNS:
        assert np.array_equal(serial[col], parallel[col]), col


def test_check_coverage_rejects_gaps_and_overlaps():
    traj = Trajectories.from_arrays([{"x": np.zeros(10), "y": np.zeros(10)}])
    good = {"particle": np.array([0, 0]), "start": np.array([0, 4]), "end": np.array([4, 10])}
    cp.check_coverage(good, traj)
    for start, end in [([0, 5], [4, 10]), ([0, 3], [4, 10]), ([0, 4], [4, 9])]:
        with pytest.raises(ValueError):
            cp.check_coverage({"particle": np.array([0, 0]), "start": np.array(start), "end": np.array(end)}, traj)


def test_missing_predictions_are_a_clear_error():
    traj = Trajectories.from_arrays([{"x": np.zeros(10), "y": np.zeros(10)}])
    with pytest.raises(KeyError, match="pred_alpha"):
        cp.segment_trajectories(traj)


def brownian(n, K, rng, noise=0.12):
    """2D positions with per-frame K (array or scalar; alpha 1, AnDi-2 convention: each
    coordinate's increment has variance 2 K) plus localisation noise."""
    K = np.broadcast_to(np.asarray(K, np.float64), (n,))
    steps = rng.normal(0, 1, (n, 2)) * np.sqrt(2 * K)[:, None]
    steps[0] = 0
    pos = np.cumsum(steps, axis=0) + rng.normal(0, noise, (n, 2))
    return pos[:, 0], pos[:, 1]


def blurred_predictions(n, change, k_before, k_after, blur=8):
    """Network-like predictions of a K change: log K ramps over ``blur`` frames each side,
    state probabilities free throughout."""
    t = np.clip((np.arange(n) - change + blur) / (2 * blur), 0, 1)
    K = np.exp((1 - t) * np.log(k_before) + t * np.log(k_after)).astype(np.float32)
    probs = np.tile(np.array([0.05, 0.1, 0.8, 0.05], np.float32), (n, 1))
    return np.ones(n, np.float32), K, np.full(n, 2, np.int8), probs


def test_positions_place_a_blurred_change_of_K_and_refine_its_values():
    rng = np.random.default_rng(3)
    errors_net, errors_pos = [], []
    for _ in range(20):
        change = int(rng.integers(60, 140))
        x, y = brownian(200, np.where(np.arange(200) < change, 1.0, 0.02), rng)
        alpha, K, state, probs = blurred_predictions(200, change, 1.0, 0.02)
        K = K * 1.5  # the network's K is 50 % too high; the MSD fit is not
        # penalty 24: one change of K, and no room for a spurious one from the steps' noise
        net = cp.segment_track(alpha, K, state, cp.SegmentOptions(penalty=24, step_weight=0, refine_radius=0),
                               probs)
        both = cp.segment_track(alpha, K, state, cp.SegmentOptions(penalty=24), probs, x, y)
        assert len(net["start"]) == 2 and len(both["start"]) == 2
        errors_net.append(abs(net["start"][1] - change))
        errors_pos.append(abs(both["start"][1] - change))
        assert net["K"][0] == pytest.approx(1.5, rel=0.01)  # without positions: the network's median
        assert both["K"][0] == pytest.approx(1.0, rel=0.3) and both["K"][1] == pytest.approx(0.02, rel=0.5)
    # the network alone locates the middle of the ramp; the steps place the change itself
    assert np.mean(errors_pos) <= 1.5 and np.mean(errors_pos) < np.mean(errors_net), (errors_net, errors_pos)


def test_msd_fit_recovers_K_and_alpha_of_a_long_brownian_segment():
    from anomalousnet.segments.msd import msd_fit

    rng = np.random.default_rng(5)
    fits = np.array([msd_fit(*brownian(200, 0.5, rng)) for _ in range(30)])
    assert np.median(fits[:, 0]) == pytest.approx(1.0, abs=0.05)
    assert np.median(fits[:, 1]) == pytest.approx(0.5, rel=0.05)
    assert msd_fit(np.zeros(50), np.zeros(50))[1] < 1e-9  # motionless: K 0, not NaN


def test_msd_fit_of_a_slow_segment_ignores_a_one_frame_jump_and_stays_unbiased_without_one():
    from anomalousnet.segments.msd import msd_fit, trimmed_msd

    rng = np.random.default_rng(8)
    plain, trimmed, clean = [], [], []
    for _ in range(40):
        x, y = brownian(80, 0.02, rng)
        clean.append(msd_fit(x, y, 4, outlier_ratio=8)[1])
        x[40] += 1.6  # one frame 1.6 px off, as a dimer that lets go and rebinds within a frame
        plain.append(msd_fit(x, y, 4)[1])
        trimmed.append(msd_fit(x, y, 4, outlier_ratio=8)[1])
    assert np.median(plain) > 1.5 * 0.02  # the plain MSD is dominated by the jump
    assert np.median(trimmed) == pytest.approx(0.02, rel=0.15)
    assert np.median(clean) == pytest.approx(0.02, rel=0.15)
    # on Gaussian steps the trimmed mean is unbiased to within 1 %
    sq = rng.exponential(2.0, (2000, 50))
    assert np.mean([trimmed_msd(row, 8) for row in sq]) == pytest.approx(2.0, rel=0.01)


def test_state_is_the_segment_mean_probability_times_the_prior():
    n = 60
    probs = np.tile(np.array([0.05, 0.5, 0.4, 0.05], np.float32), (n, 1))
    args = (np.full(n, 0.5, np.float32), np.full(n, 0.1, np.float32), np.full(n, 1, np.int8))
    assert cp.segment_track(*args, cp.SegmentOptions(state_prior=(1, 1, 1, 1)), probs)["state"].tolist() == [1]
    assert cp.segment_track(*args, cp.SegmentOptions(state_prior=(1, 1, 2, 1)), probs)["state"].tolist() == [2]
    # without probabilities: the most frequent smoothed state, as before
    assert cp.segment_track(*args, cp.SegmentOptions(state_prior=(1, 1, 2, 1)))["state"].tolist() == [1]
    with pytest.raises(ValueError, match="state_prior"):
        cp.SegmentOptions(state_prior=(1, 1, 0, 1))


def test_directed_or_free_is_decided_by_alpha_as_andi_defines_it():
    n = 60
    directed = np.tile(np.array([0.0, 0.0, 0.2, 0.8], np.float32), (n, 1))
    free = directed[:, [0, 1, 3, 2]]
    K, state = np.full(n, 0.1, np.float32), np.full(n, 3, np.int8)
    for probs in (directed, free):
        for alpha, expected in ((1.5, 2), (1.84, 2), (1.86, 3), (1.95, 3)):
            seg = cp.segment_track(np.full(n, alpha, np.float32), K, state, cp.SegmentOptions(), probs)
            assert seg["state"].tolist() == [expected]
    # None keeps the networks' call; immobile and confined calls are never changed
    keep = cp.SegmentOptions(directed_alpha=None)
    assert cp.segment_track(np.full(n, 1.5, np.float32), K, state, keep, directed)["state"].tolist() == [3]
    confined = directed[:, [0, 3, 2, 1]]
    seg = cp.segment_track(np.full(n, 1.95, np.float32), K, state, cp.SegmentOptions(), confined)
    assert seg["state"].tolist() == [1]
    with pytest.raises(ValueError, match="directed_alpha"):
        cp.SegmentOptions(directed_alpha=2.5)


def test_filled_frames_are_missing_steps_not_a_slow_segment():
    """A tracking gap filled by interpolation is a run of equal small steps; unflagged it looks
    like a slow segment and draws change points, flagged (``observed`` False) it does not."""
    rng = np.random.default_rng(8)
    spurious = {"flagged": 0, "unflagged": 0}
    for _ in range(20):
        x, y = brownian(200, np.ones(200), rng)
        gap = int(rng.integers(40, 150))
        filled = np.zeros(200, bool)
        filled[gap:gap + 8] = True
        for p in (x, y):
            p[filled] = np.interp(np.flatnonzero(filled), np.flatnonzero(~filled), p[~filled])
        alpha, K, state, probs = blurred_predictions(200, 100, 1.0, 1.0)
        for kind, observed in (("flagged", ~filled), ("unflagged", None)):
            seg = cp.segment_track(alpha, K, state, cp.SegmentOptions(), probs, x, y, observed)
            spurious[kind] += len(seg["start"]) - 1
    assert spurious["flagged"] <= 1 and spurious["unflagged"] >= 8, spurious


def test_turn_cosines_of_straight_reversing_and_square_paths():
    from anomalousnet.segments.msd import turn_cosines

    t = np.arange(6.0)
    assert turn_cosines(t, 0 * t) == pytest.approx(np.ones(4))
    assert turn_cosines(np.array([0.0, 1, 0, 1, 0]), np.zeros(5)) == pytest.approx(-np.ones(3))
    assert turn_cosines(np.array([0.0, 1, 1, 0]), np.array([0.0, 0, 1, 1])) == pytest.approx(np.zeros(2))
    assert turn_cosines(np.array([0.0, 0, 1]), np.zeros(3)) == pytest.approx([0.0])  # no step: no heading


def _two_state_directed(n_tracks, seed, switching=True):
    """andi-datasets' two-state model between directed motion (alpha 1.95, K 0.1) and
    subdiffusion (alpha 0.6, K 0.05), as the benchmark's directed set draws it, with AnDi-2's
    localisation noise; ``switching`` False: directed motion only."""
    from andi_datasets.models_phenom import models_phenom
    from anomalousnet.simulation.seeding import seed_all

    seed_all(seed)
    switch = 0.02 if switching else 0.0
    xy, labels = models_phenom().multi_state(N=n_tracks, T=200, L=1000, Ds=np.array([[0.1, 0], [0.05, 0]]),
                                             alphas=np.array([[1.95, 0], [0.6, 0]]),
                                             M=np.array([[1 - switch, switch], [switch, 1 - switch]]))
    xy = xy + np.random.default_rng(seed).normal(0, 0.12, xy.shape)
    return xy, labels


FLAT = (np.ones(200, np.float32), np.full(200, 0.075, np.float32), np.full(200, 2, np.int8),
        np.tile(np.array([0.0, 0.0, 0.9, 0.1], np.float32), (200, 1)))  # predictions that see nothing


def _scored(xy, labels, options):
    hits = false = total = 0
    for n in range(xy.shape[1]):
        truth = np.flatnonzero(np.diff(labels[:, n, 0]) != 0) + 1
        truth = truth[(truth >= 3) & (truth <= 197)]
        got = cp.change_points(*FLAT[:3], options, FLAT[3], xy[:, n, 0], xy[:, n, 1])
        near = np.abs(got[:, None] - truth[None, :]) <= 3
        hits += int(near.any(axis=0).sum())
        false += int((~near.any(axis=1)).sum())
        total += len(truth)
    return hits, false, total


def test_turning_column_finds_switches_between_directed_and_subdiffusive_motion():
    """The step size barely changes at these switches, the heading does: with flat predictions
    the turning column finds twice as many; in tracks of directed motion alone it adds few
    false change points (the column is off where the heading never turns back)."""
    on, off = cp.SegmentOptions(), cp.SegmentOptions(turn_weight=0.0)
    assert on.turn_weight > 0
    xy, labels = _two_state_directed(30, 5)
    hits_on, false_on, total = _scored(xy, labels, on)
    hits_off, _, _ = _scored(xy, labels, off)
    # the detector's default penalty is set for AnDi-2's Jaccard index: it finds few of
    # these switches (many dwells are under 20 frames), but twice as many with the column
    assert hits_on >= 2 * hits_off and hits_on >= hits_off + 0.1 * total and false_on <= 0.2 * hits_on, \
        (hits_on, hits_off, false_on, total)
    xy, labels = _two_state_directed(30, 6, switching=False)
    _, false_on, _ = _scored(xy, labels, on)
    _, false_off, _ = _scored(xy, labels, off)
    assert false_on <= false_off + 6, (false_on, false_off)  # at most one more per five tracks
