"""Pooling segment values over a field of view (anomalousnet.segments.pooling)."""
import dataclasses

import numpy as np
import pytest

from anomalousnet.core.names import FREE, IMMOBILE
from anomalousnet.segments.pooling import k_clusters, pool_values, shrink
from anomalousnet.segments.segmentation import SegmentOptions


def test_shrinkage_removes_noise_from_a_shared_value_and_keeps_a_true_spread():
    rng = np.random.default_rng(0)
    n = rng.integers(20, 200, 60)
    s2 = 0.001 + 0.96 / n
    shared = 0.7 + rng.normal(0, np.sqrt(s2))  # every particle has alpha 0.7: the spread is noise
    assert np.mean(np.abs(shrink(shared, s2) - 0.7)) < 0.4 * np.mean(np.abs(shared - 0.7))
    truth = rng.uniform(0.2, 1.8, 60)  # particles that truly differ, measured well
    measured = truth + rng.normal(0, 0.02, 60)
    pooled = shrink(measured, np.full(60, 0.02 ** 2))
    assert np.max(np.abs(pooled - measured)) < 0.01
    assert np.mean(np.abs(pooled - truth)) <= np.mean(np.abs(measured - truth)) + 1e-3


def test_a_short_segment_far_below_its_group_keeps_its_log_k_and_one_far_above_is_pooled():
    rng = np.random.default_rng(2)
    n = np.r_[np.full(40, 150), 10, 10]
    s2 = 0.002 + 1.0 / n
    logk = np.r_[rng.normal(0, 0.1, 40), -1.3, 1.3]  # monomers, a 10-frame dimer, a failed estimate
    normal = shrink(logk, s2)
    assert normal[40] > -0.65  # a normal prior draws the dimer more than halfway to the monomers
    robust = shrink(logk, s2, low_outlier_z=2.5)
    assert robust[40] == pytest.approx(-1.3)
    assert robust[41] < 0.6  # an outlier above is still pooled (from 1.3)
    assert np.allclose(robust[:40], normal[:40], atol=0.05)
    assert SegmentOptions().slow_outlier_z == 2.5


def test_k_clusters_split_two_diffusive_states_and_not_one():
    rng = np.random.default_rng(1)
    two = np.r_[rng.normal(0, 0.1, 30), rng.normal(-1.5, 0.1, 20)]
    parts = k_clusters(two, np.ones(50), 0.5)
    assert sorted(len(p) for p in parts) == [20, 30]
    assert set(parts[0].tolist()) == set(range(30, 50))  # the slow cluster first
    assert len(k_clusters(rng.normal(0, 0.15, 50), np.ones(50), 0.5)) == 1


def _segments(alpha, K, state, n):
    k = len(alpha)
    return {"particle": np.arange(k), "start": np.zeros(k, np.int64), "end": np.asarray(n, np.int64),
            "alpha": np.asarray(alpha, np.float32), "K": np.asarray(K, np.float32),
            "state": np.asarray(state, np.int8)}


def test_pool_values_keeps_groups_states_and_excluded_segments_apart():
    rng = np.random.default_rng(2)
    k = 40
    n = rng.integers(30, 150, k)
    group = np.repeat([0, 1], k // 2)
    true_alpha = np.where(group == 0, 0.5, 1.2)
    alpha = true_alpha + rng.normal(0, np.sqrt(0.001 + 0.96 / n))
    K = np.where(group == 0, 0.2, 2.0) * 10 ** rng.normal(0, np.sqrt(0.002 + 1.0 / n))
    state = np.full(k, FREE)
    state[:3] = IMMOBILE
    exclude = np.zeros(k, bool)
    exclude[3] = True
    segments = _segments(alpha, K, state, n)
    pooled = pool_values(segments, SegmentOptions(), group, exclude)
    # immobile and excluded segments, and the other columns, are untouched
    for c in ("particle", "start", "end", "state"):
        assert np.array_equal(pooled[c], segments[c])
    for c in ("alpha", "K"):
        assert np.array_equal(pooled[c][:4], segments[c][:4])
        assert np.array_equal(pooled[f"{c}_single"], segments[c])  # each segment's own values are kept
    mobile = slice(4, None)
    err_before = np.mean(np.abs(segments["alpha"][mobile] - true_alpha[mobile]))
    err_after = np.mean(np.abs(pooled["alpha"][mobile] - true_alpha[mobile]))
    assert err_after < 0.6 * err_before
    # the two groups are pooled apart: each keeps its own level
    assert abs(np.mean(pooled["alpha"][4:k // 2]) - 0.5) < 0.05
    assert abs(np.mean(pooled["alpha"][k // 2:]) - 1.2) < 0.05
    true_logk = np.log10(np.where(group == 0, 0.2, 2.0))[mobile]
    assert np.mean(np.abs(np.log10(pooled["K"][mobile]) - true_logk)) < \
        0.6 * np.mean(np.abs(np.log10(segments["K"][mobile]) - true_logk))
    # one group of two K clusters (a dimer and a free monomer, both called free) is split, not mixed
    mixed = pool_values(segments, SegmentOptions())
    assert abs(np.mean(mixed["alpha"][4:k // 2]) - 0.5) < 0.06


def test_too_few_segments_are_left_alone_and_options_are_checked():
    segments = _segments([0.5, 0.9], [1.0, 1.0], [FREE, FREE], [50, 50])
    assert np.array_equal(pool_values(segments, SegmentOptions())["alpha"], segments["alpha"])
    with pytest.raises(ValueError, match="alpha_error"):
        dataclasses.replace(SegmentOptions(), alpha_error=(0.0, 0.0))
