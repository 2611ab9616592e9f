"""Features, networks, bundles and prediction, including the shipped default model.

Scale property (DESIGN): multiplying every coordinate by c multiplies predicted K by c**2
and leaves alpha and the state unchanged; checked on the default model with simulated tracks.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from anomalousnet import features as ft
from anomalousnet.core.names import STATE_NAMES
from anomalousnet.networks import bundle as bdl
from anomalousnet.networks import predict as prd
from anomalousnet.io import store as st


def random_walks(lengths, seed=0, step=1.0):
    rng = np.random.default_rng(seed)
    return st.Trajectories.from_arrays([{"x": rng.normal(0, step, n).cumsum() + 50,
                                         "y": rng.normal(0, step, n).cumsum() - 20} for n in lengths])


def scaled(traj, c):
    return st.Trajectories(traj.offsets, {**traj.points, "x": traj.points["x"] * c, "y": traj.points["y"] * c},
                           traj.tracks)


@pytest.fixture(scope="module")
def bundle():
    return bdl.load_bundle("default")


@pytest.fixture(scope="module")
def simulated():
    from anomalousnet.simulation.training_store import simulate_tracks

    traj, _ = simulate_tracks(60, seed=11)
    return traj


def test_backend_start_up_noise_is_dropped_and_other_stderr_kept():
    code = ("import sys; sys.stderr.write('kept line\\n'); import anomalousnet.networks.model; "
            "from anomalousnet.networks.predict import compute_device; print(compute_device())")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0 and "kept line" in out.stderr
    from anomalousnet.networks.backend import START_UP_NOISE

    assert not [line for line in out.stderr.splitlines() if any(n in line for n in START_UP_NOISE)], out.stderr


def test_tensorflow_retracing_warning_is_dropped_and_other_warnings_kept():
    import logging

    from anomalousnet.networks.backend import import_keras

    if import_keras().backend.backend() != "tensorflow":
        pytest.skip("TensorFlow backend only")
    logger = logging.getLogger("tensorflow")
    record = logger.makeRecord("tensorflow", logging.WARNING, __file__, 1, "%s", (
        "5 out of the last 5 calls to <function one_step_on_data> triggered tf.function retracing.",), None)
    assert not logger.filter(record)
    other = logger.makeRecord("tensorflow", logging.WARNING, __file__, 1, "an unrelated warning", (), None)
    assert logger.filter(other)


# ----------------------------------------------------------------------------- features

def test_inputs_are_identical_for_scaled_coordinates_and_scale_is_rms_step():
    t = random_walks([150], seed=1, step=0.3)
    w1 = ft.make_windows(t.points["x"], t.points["y"], t.offsets, np.array([0]))
    w2 = ft.make_windows(t.points["x"] * 40.0, t.points["y"] * 40.0, t.offsets, np.array([0]))
    np.testing.assert_allclose(w1.inputs, w2.inputs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w2.scale / w1.scale, 40.0)
    steps = np.diff(t.points["x"]) ** 2 + np.diff(t.points["y"]) ** 2
    assert w1.scale[0] == pytest.approx(np.sqrt(steps.mean() / 2))
    assert ft.denormalise_K(np.array([2.0]), np.array([3.0]))[0] == 18.0
    # channels: dx/s, dy/s (0 at the first frame and on padding), valid
    assert w1.inputs.shape == (1, 208, 3)
    assert np.all(w1.inputs[0, 0, :2] == 0) and np.all(w1.inputs[0, 150:] == 0)
    assert w1.inputs[0, :150, 2].sum() == 150


def test_motionless_track_has_unit_scale_not_nan():
    w = ft.make_windows(np.full(10, 3.0), np.full(10, 4.0), np.array([0, 10]), np.array([0]))
    assert w.scale[0] == 1.0 and np.isfinite(w.inputs).all()


@pytest.mark.parametrize("n", [3, 208, 209, 333, 1000])
def test_windows_cover_long_tracks_and_stitching_is_exact(n):
    cfg = ft.FeatureConfig()
    t = random_walks([5, n])
    w = ft.make_windows(t.points["x"], t.points["y"], t.offsets, np.array([0, 1]), cfg)
    per_track = np.bincount(w.track, minlength=2)
    assert per_track[0] == 1
    assert per_track[1] == (1 if n <= 208 else int(np.ceil((n - 208) / cfg.stride)) + 1)
    # each window predicts its points' global index: stitching must give the index back everywhere
    idx = (t.offsets[w.track] + w.start)[:, None] + np.arange(cfg.length)[None, :]
    sums, weights = ft.stitch(idx.astype(float), w, t.offsets, cfg)
    assert np.all(weights > 0)
    np.testing.assert_allclose(sums / weights, np.arange(t.n_points))


def test_training_batch_normalises_K_like_inputs():
    t = random_walks([120, 40], seed=3)
    pts = {**t.points, "alpha": np.full(160, 0.7, np.float32), "K": np.full(160, 2.5, np.float32),
           "state": np.full(160, 1, np.int8)}
    windows = ft.training_windows(st.Trajectories(t.offsets, pts, t.tracks))
    b = ft.training_batch(windows, None)
    s = ft.step_scale(b.inputs[..., :2].astype(float) * 0 + 1, b.mask)  # shape check helper
    assert s.shape == (2,)
    w = ft.make_windows(t.points["x"], t.points["y"], t.offsets, np.array([0, 1]))
    np.testing.assert_allclose(b.K_norm[:, 0], 2.5 / w.scale ** 2, rtol=1e-5)
    assert b.mask.sum(axis=1).tolist() == [120, 40]
    assert np.all(b.state[1, 40:] == 0) and np.all(b.state[1, :40] == 1)
    crop = ft.training_batch(windows, np.random.default_rng(0))
    assert 10 <= crop.mask.sum(axis=1).min() and crop.mask.sum(axis=1).max() <= 120


def test_steps_touching_filled_points_are_missing_inputs_but_the_points_are_predicted():
    t = random_walks([150], seed=2)
    observed = np.ones(150, bool)
    observed[[40, 41, 90]] = False
    w = ft.make_windows(t.points["x"], t.points["y"], t.offsets, np.array([0]), observed=observed)
    missing = np.flatnonzero(w.inputs[0, :150, 2] == 0)
    assert missing.tolist() == [40, 41, 42, 90, 91]  # a filled point's step and the step after it
    assert np.all(w.inputs[0, missing, :2] == 0) and np.all(w.valid[0, :150] == 1)
    steps = np.diff(t.points["x"]) ** 2 + np.diff(t.points["y"]) ** 2
    measured = np.delete(np.arange(1, 150), missing - 1)
    assert w.scale[0] == pytest.approx(np.sqrt(steps[measured - 1].mean() / 2))


def test_training_gaps_hide_steps_inside_the_crop_and_keep_every_label():
    t = random_walks([200] * 64, seed=4)
    pts = {**t.points, "alpha": np.full(t.n_points, 0.7, np.float32), "K": np.ones(t.n_points, np.float32),
           "state": np.full(t.n_points, 2, np.int8)}
    windows = ft.training_windows(st.Trajectories(t.offsets, pts, t.tracks))
    b = ft.training_batch(windows, np.random.default_rng(1), gap_rate=2.0)
    hidden = (b.mask > 0) & (b.inputs[..., 2] == 0)
    per_100 = hidden.sum() / b.mask.sum() * 100
    assert 2.0 < per_100 < 8.0  # 2 gaps per 100 frames, each hiding its frames' steps and the next
    assert not hidden[:, 0].any()  # a crop starts and ends on a measured point
    assert np.all(b.alpha[b.mask > 0] == pytest.approx(0.7)) and np.all(b.state[b.mask > 0] == 2)
    plain = ft.training_batch(windows, np.random.default_rng(1))
    assert not ((plain.mask > 0) & (plain.inputs[..., 2] == 0)).any()


# ----------------------------------------------------------------------------- networks

def test_networks_heads_ranges_and_presets():
    from anomalousnet.networks import model as mdl

    x = np.random.default_rng(0).normal(size=(2, 208, 3)).astype("float32")
    alpha = np.asarray(mdl.build("alpha", "cpu")(x))
    K = np.asarray(mdl.build("K", "cpu")(x))
    state = np.asarray(mdl.build("state", "cpu")(x))
    assert alpha.shape == (2, 208) and np.all((alpha >= 0) & (alpha <= 2))
    assert K.shape == (2, 208) and np.all(K > 0)
    assert state.shape == (2, 208, 4)
    np.testing.assert_allclose(state.sum(-1), 1, rtol=1e-5)
    assert mdl.filters_for("paper", "alpha") == (128, 512, 1024)
    assert mdl.filters_for("paper", "state") == (64, 96, 128)
    with pytest.raises(ValueError, match="unknown preset 'big'"):
        mdl.build("alpha", "big")
    with pytest.raises(ValueError, match="not divisible"):
        mdl.build_unet("alpha", (8, 16, 32), length=210)


def test_cpu_alpha_network_sees_108_frames_each_way_and_three_levels_25():
    """Five levels: a frame's prediction depends on the steps about 108 frames either side (from
    the window's middle, the whole window); three levels: about 25 (24-25 by alignment)."""
    from anomalousnet.networks import model as mdl

    x = np.random.default_rng(1).normal(size=(1, 208, 3)).astype("float32")
    moved = x.copy()
    moved[0, 207, :2] += 5.0
    reach = {}
    for filters in (mdl.filters_for("cpu", "alpha"), (24, 48, 96)):
        net = mdl.build_unet("alpha", filters)
        changed = np.flatnonzero(np.abs(np.asarray(net(moved)) - np.asarray(net(x)))[0] > 1e-7)
        reach[len(filters)] = 207 - changed.min()
    assert reach[5] >= 100 and reach[3] <= 25, reach


def test_masked_losses_ignore_padding_and_match_by_hand():
    from anomalousnet.networks import model as mdl

    y = np.array([[1.0, 0.5, 9.0, 9.0]], np.float32)
    p = np.array([[0.8, 0.9, 0.0, 0.0]], np.float32)
    mask = np.array([[1, 1, 0, 0]], np.float32)
    assert float(mdl.masked_loss("alpha", y, p, mask)) == pytest.approx((0.2 + 0.4) / 2, rel=1e-6)
    msle = ((np.log1p(1.0) - np.log1p(0.8)) ** 2 + (np.log1p(0.5) - np.log1p(0.9)) ** 2) / 2
    assert float(mdl.masked_loss("K", y, p, mask)) == pytest.approx(msle, rel=1e-5)
    probs = np.array([[[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7], [1, 0, 0, 0], [1, 0, 0, 0]]], np.float32)
    labels = np.array([[0, 1, 3, 3]])
    assert float(mdl.masked_loss("state", labels, probs, mask)) == pytest.approx(-(np.log(0.7) + np.log(0.1)) / 2,
                                                                                 rel=1e-5)
    w = np.array([2.0, 3.0, 1.0, 1.0], np.float32)  # balanced class weights multiply each frame's term
    assert float(mdl.masked_loss("state", labels, probs, mask, w)) == pytest.approx(
        -(2 * np.log(0.7) + 3 * np.log(0.1)) / 2, rel=1e-5)
    m = {k: float(v) for k, v in mdl.masked_metrics("state", labels, probs, mask).items()}
    assert m["frames"] == 2 and m["correct"] == 1 and m["n_1"] == 1 and m["hit_1"] == 0 and m["n_3"] == 0


# ----------------------------------------------------------------------------- bundles and predict

def test_default_bundle_is_complete_and_small(bundle):
    assert bundle.path == bdl.DEFAULT_BUNDLE and set(bundle.targets) == {"alpha", "K", "state"}
    total = sum(p.stat().st_size for p in bundle.path.iterdir())
    assert total <= 20 * 2 ** 20
    meta = bundle.meta
    assert meta["input"]["features"]["length"] == 208 and "scaling" in meta["input"]
    from anomalousnet.networks import model as mdl

    for target, head in meta["heads"].items():
        assert head["preset"] == "cpu" and head["training"]["command"] and head["validation"]
        # the shipped heads are what the preset builds, so `train --init default` can fine-tune them
        assert tuple(head["filters"]) == mdl.filters_for("cpu", target)
    assert len(bundle.sha256) == 64 and bdl.load_bundle(None).sha256 == bundle.sha256


def test_predict_any_length_with_documented_fallbacks(bundle):
    lengths = [1, 2, 3, 20, 208, 209, 700]
    traj = random_walks(lengths, seed=4)
    pred = prd.predict(bundle, traj, batch_size=4)
    for name, dtype in (("pred_alpha", np.float32), ("pred_K", np.float32), ("pred_state", np.int8)):
        assert pred[name].dtype == dtype and pred[name].shape == (traj.n_points,)
        assert np.isfinite(pred[name].astype(float)).all()
    assert pred["fallback"].tolist() == [True, True, False, False, False, False, False]
    assert pred["pred_alpha"][0] == 1.0 and pred["pred_state"][0] == 2 and pred["pred_K"][0] == 1.0
    x, y = traj.points["x"][1:3], traj.points["y"][1:3]
    assert pred["pred_K"][1] == pytest.approx(((x[1] - x[0]) ** 2 + (y[1] - y[0]) ** 2) / 4, rel=1e-6)
    assert np.all((pred["pred_alpha"] >= 0) & (pred["pred_alpha"] <= 2)) and np.all(pred["pred_K"] > 0)
    assert set(np.unique(pred["pred_state"])) <= {0, 1, 2, 3}
    # batch size does not change the numbers (fixed-shape chunks, padding never leaks)
    again = prd.predict(bundle, traj, batch_size=1024)
    np.testing.assert_allclose(again["pred_alpha"], pred["pred_alpha"], atol=1e-5)


@pytest.mark.parametrize("c", [0.05, 30.0])
def test_default_model_K_scales_as_c_squared_alpha_and_state_do_not_change(bundle, simulated, c):
    base = prd.predict(bundle, simulated)
    big = prd.predict(bundle, scaled(simulated, c))
    net = np.repeat(~base["fallback"], simulated.lengths)
    assert net.sum() > 1000
    ratio = big["pred_K"][net] / (base["pred_K"][net] * c ** 2)
    assert np.all(np.abs(ratio - 1) < 0.10), np.abs(ratio - 1).max()
    assert np.all(np.abs(big["pred_alpha"] - base["pred_alpha"]) < 0.05)
    assert np.mean(big["pred_state"] == base["pred_state"]) > 0.999


def test_default_model_beats_constant_guesses_on_simulated_tracks(bundle, simulated):
    """The shipped model has learnt something: better than the best constant per target."""
    from anomalousnet.networks.evaluation import frame_metrics

    pred = prd.predict(bundle, simulated)
    p = simulated.points
    m = frame_metrics(p["alpha"], p["K"], p["state"], pred["pred_alpha"], pred["pred_K"], pred["pred_state"])
    assert m["alpha_mae"] < np.mean(np.abs(p["alpha"] - np.median(p["alpha"])))
    # a constant state has balanced accuracy (mean recall over the states present) 1/4
    recalls = [m[f"recall_{name}"] for name in STATE_NAMES if m[f"recall_{name}"] is not None]
    assert np.mean(recalls) > 0.4, recalls


def test_bad_bundles_are_clear_errors(tmp_path):
    with pytest.raises(bdl.BundleError, match="nowhere: not a model bundle directory"):
        bdl.load_bundle(tmp_path / "nowhere")
    (tmp_path / "b").mkdir()
    with pytest.raises(bdl.BundleError, match="no model.json"):
        bdl.load_bundle(tmp_path / "b")
    (tmp_path / "b" / "model.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(bdl.BundleError, match="format is 'other'"):
        bdl.load_bundle(tmp_path / "b")
    meta = json.loads((bdl.DEFAULT_BUNDLE / "model.json").read_text())
    (tmp_path / "b" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(bdl.BundleError, match=r"alpha.weights.h5: weights of the 'alpha' head are missing"):
        bdl.load_bundle(tmp_path / "b")


@pytest.mark.timeout(240)
def test_bundle_predicts_the_same_under_jax_without_tensorflow(tmp_path, bundle):
    pytest.importorskip("jax")
    traj = random_walks([5, 150, 400], seed=8)
    st.write_shard(tmp_path / "t.h5", traj)
    code = ("import sys, numpy as np; from anomalousnet.networks import bundle as bdl, predict as prd; "
            "from anomalousnet.io import store as st; "
            "p = prd.predict(bdl.load_bundle(), st.read_shard(sys.argv[1]).trajectories); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'; "
            "np.savez(sys.argv[2], **p)")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "t.h5"), str(tmp_path / "p.npz")],
                         env=env, capture_output=True, text=True, timeout=220)
    assert run.returncode == 0, run.stderr[-3000:]
    jax_pred = np.load(tmp_path / "p.npz")
    tf_pred = prd.predict(bundle, traj)
    np.testing.assert_allclose(jax_pred["pred_alpha"], tf_pred["pred_alpha"], atol=1e-4)
    np.testing.assert_allclose(jax_pred["pred_K"], tf_pred["pred_K"], rtol=1e-3)
    assert np.mean(jax_pred["pred_state"] == tf_pred["pred_state"]) > 0.99


def test_fused_layer_normalization_matches_keras():
    """The networks' LayerNormalization (a fused kernel for large batches at inference, plain
    ops for small ones) gives Keras' result, at inference and in training, from the same
    weights; also inside a model whose graph was traced for any batch size."""
    import keras

    from anomalousnet.networks.model import FUSED_MIN_BATCH, LayerNormalization

    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (FUSED_MIN_BATCH + 8, 16, 24)).astype(np.float32)
    ours, theirs = LayerNormalization(), keras.layers.LayerNormalization()
    ours.build(x.shape)
    theirs.build(x.shape)
    weights = [rng.normal(1, 0.3, 24).astype(np.float32), rng.normal(0, 0.3, 24).astype(np.float32)]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    expected = np.asarray(theirs(x))
    assert np.abs(expected).max() > 1  # gamma and beta were applied
    for batch in (x, x[:8]):  # fused, plain
        np.testing.assert_allclose(np.asarray(ours(batch, training=False)), expected[:len(batch)], atol=1e-5)
    np.testing.assert_allclose(np.asarray(ours(x, training=True)), expected, atol=1e-6)
    inputs = keras.Input((16, 24))
    model = keras.Model(inputs, LayerNormalization(name="norm")(inputs))
    model.get_layer("norm").set_weights(weights)
    for n in (8, 16, FUSED_MIN_BATCH + 8, 8):  # Keras relaxes the batch dimension after a few shapes
        np.testing.assert_allclose(model.predict_on_batch(x[:n]), expected[:n], atol=1e-5)
