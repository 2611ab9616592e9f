"""Brief episodes of a field of view's other state: short slow visits inside fast segments are
split out with the right bounds and values, a single outlying step makes none, and a FOV of
one state is left as it is."""
import numpy as np
import pytest

from anomalousnet.core.names import FREE
from anomalousnet.core.trajectories import Trajectories
from anomalousnet.segments.episodes import add_episodes, best_run
from anomalousnet.segments.segmentation import SegmentOptions

FAST, SLOW, T = 1.0, 0.03, 200


def brownian(K: np.ndarray, rng) -> np.ndarray:
    """2D positions whose step from frame t to t + 1 has per-axis variance 2 K[t] (the
    andi-datasets convention), with 0.12 px localisation noise."""
    steps = rng.normal(size=(len(K) - 1, 2)) * np.sqrt(2 * K[:-1])[:, None]
    return np.cumsum(np.r_[np.zeros((1, 2)), steps], axis=0) + rng.normal(0, 0.12, (len(K), 2))


def fov(k_per_track: list[np.ndarray], seed: int = 0):
    """Trajectories of the given per-frame K and one whole-track segment per track, with the
    values the segment stage would give (K the track's majority K, state free)."""
    rng = np.random.default_rng(seed)
    tracks = []
    for K in k_per_track:
        pos = brownian(K, rng)
        tracks.append({"x": pos[:, 0], "y": pos[:, 1]})
    traj = Trajectories.from_arrays(tracks)
    n = len(k_per_track)
    segments = {"particle": np.asarray(traj.tracks["particle"]), "start": np.zeros(n, np.int64),
                "end": np.full(n, T, np.int64), "alpha": np.ones(n, np.float32),
                "K": np.array([np.median(K) for K in k_per_track], np.float32), "state": np.full(n, FREE, np.int8)}
    return traj, segments


def test_best_run_finds_the_highest_sum_of_at_least_the_least_length():
    d = np.array([-1.0, -1, 3, 4, -1, 5, -9, 2])
    assert best_run(d, 1) == (11.0, 2, 6)
    assert best_run(d, 5) == (10.0, 1, 6)
    assert best_run(d, 8)[0] == pytest.approx(2.0)
    assert best_run(d, 9)[0] == -np.inf


def test_short_slow_visits_in_fast_tracks_are_split_out_with_their_bounds_and_level():
    episode = (100, 107)  # frames [100, 107) slow: 7 slow steps inside a fast track
    with_visit = np.full(T, FAST)
    with_visit[episode[0]:episode[1]] = SLOW
    tracks = [with_visit.copy() for _ in range(10)] + [np.full(T, FAST)] * 10 + [np.full(T, SLOW)] * 6
    traj, segments = fov(tracks)
    out = add_episodes(traj, segments, SegmentOptions(episode_llr=12.0))
    found = 0
    for i, p in enumerate(segments["particle"]):
        rows = np.flatnonzero(out["particle"] == p)
        if i >= 10:
            assert len(rows) == 1, f"track {i} of one state got an episode"
            continue
        slow = [r for r in rows if out["K"][r] < 0.1]
        if len(slow) == 1:
            found += 1
            r = slow[0]
            assert abs(out["start"][r] - episode[0]) <= 1 and abs(out["end"][r] - episode[1]) <= 1
            assert out["K"][r] == pytest.approx(SLOW, rel=0.3) and out["state"][r] == FREE
            # the fast rest of the track: K from its own MSD, no longer inflated or lowered
            assert all(0.7 < out["K"][q] < 1.4 for q in rows if q != r)
        assert out["start"][rows[0]] == 0 and out["end"][rows[-1]] == T
        assert np.all(out["start"][rows[1:]] == out["end"][rows[:-1]])
    assert found >= 8  # 7 slow steps: at this threshold most visits, not every one


def test_one_outlying_step_in_a_slow_track_is_no_episode():
    tracks = [np.full(T, FAST)] * 10 + [np.full(T, SLOW)] * 10
    traj, segments = fov(tracks)
    x = np.asarray(traj.points["x"]).copy()
    for i in range(10, 20):  # a dimer letting go for one frame: the particle is 1.8 px off from frame 90 on
        x[traj.offsets[i] + 90:traj.offsets[i + 1]] += 1.8
    traj = Trajectories.from_arrays([{"x": x[a:b], "y": np.asarray(traj.points["y"])[a:b]}
                                     for a, b in zip(traj.offsets[:-1], traj.offsets[1:])])
    out = add_episodes(traj, segments, SegmentOptions(episode_llr=12.0))
    assert len(out["particle"]) == len(segments["particle"])


def test_a_fov_of_one_state_is_left_as_it_is():
    traj, segments = fov([np.full(T, FAST)] * 20)
    out = add_episodes(traj, segments, SegmentOptions(episode_llr=4.0))
    for c in segments:
        np.testing.assert_array_equal(out[c], segments[c])


def test_off_and_options_checked():
    traj, segments = fov([np.full(T, FAST)] * 5 + [np.full(T, SLOW)] * 5)
    out = add_episodes(traj, segments, SegmentOptions(episode_llr=None))
    assert len(out["particle"]) == 10 and "episode" not in out
    with pytest.raises(ValueError, match="episode_llr"):
        SegmentOptions(episode_llr=0)


def test_visits_at_a_track_end_are_found_and_the_search_ends():
    starts_slow = np.full(T, FAST)
    starts_slow[:6] = SLOW  # an episode from the first frame: no change point of the detector beside it
    traj, segments = fov([starts_slow.copy() for _ in range(6)] + [np.full(T, SLOW)] * 6)
    out = add_episodes(traj, segments, SegmentOptions(episode_llr=8.0))
    first = [np.flatnonzero(out["particle"] == p)[0] for p in segments["particle"][:6]]
    assert sum(out["start"][r] == 0 and abs(out["end"][r] - 6) <= 1 and out["K"][r] < 0.1 for r in first) >= 5


def test_episodes_stay_out_of_pooling_and_of_the_ensembles_moments():
    from anomalousnet.ensemble import fov_ensemble
    from anomalousnet.segments.pooling import pool_values

    with_visit = np.full(T, FAST)
    with_visit[100:110] = SLOW
    traj, segments = fov([with_visit.copy() for _ in range(10)] + [np.full(T, SLOW)] * 6)
    options = SegmentOptions(episode_llr=12.0)
    out = pool_values(add_episodes(traj, segments, options), options)
    episode = out["episode"]
    assert episode.sum() >= 8
    assert np.all(np.isnan(out["alpha_single"][episode])) and np.all(np.isnan(out["K_single"][episode]))
    assert np.all(np.isfinite(out["K_single"][~episode]))
    # K stays the level's (pooling left them out), the others' K is pooled
    np.testing.assert_allclose(out["K"][episode], out["K"][episode][0])
    table = fov_ensemble({**out, "group": (out["K"] < 0.1).astype(np.int64)})
    frames = out["end"] - out["start"]
    slow = out["K"] < 0.1
    assert table["n_frames"][1] == frames[slow].sum()  # episodes' frames count in the slow state's weight
    measured = slow & ~episode
    np.testing.assert_allclose(table["K_mean"][1], np.average(out["K_single"][measured], weights=frames[measured]),
                               rtol=1e-6)  # its moments come from the measured segments only
