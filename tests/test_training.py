"""Training: Horovod (2 gloo ranks) agrees with one process, resume after a kill, bad input errors.

The labelled trajectories come from andi_datasets.models_phenom (the real simulator).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from anomalousnet.io import store as st

PY = sys.executable
HOROVODRUN = Path(PY).with_name("horovodrun")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0"}
MODELS = ("single_state", "multi_state", "immobile_traps", "dimerization", "confinement")


def phenom_tracks(n_per_model: int, seed: int, T: int = 200, noise: float = 0.1) -> st.Trajectories:
    """Labelled 2-D tracks of the five AnDi-2 phenomenological models (alpha, K, state per frame)."""
    import random

    import stochastic.random
    from andi_datasets.models_phenom import models_phenom

    rng = np.random.default_rng(seed)
    np.random.seed(seed)
    random.seed(seed)
    stochastic.random.seed(seed)
    m = models_phenom()
    arrays, names = [], []
    for name in MODELS:
        a1, a2 = rng.uniform(0.2, 1.0), rng.uniform(0.8, 1.99)
        D1, D2 = 10 ** rng.uniform(-1.5, -0.5), 10 ** rng.uniform(-0.3, 0.7)
        two_D = np.array([[D2, 0.1 * D2], [D1, 0.1 * D1]])
        two_a = np.array([[a2, 0.05], [a1, 0.05]])
        if name == "single_state":
            pos, lab = m.single_state(N=n_per_model, T=T, Ds=[D2, 0.1 * D2], alphas=[a2, 0.05])
        elif name == "multi_state":
            pos, lab = m.multi_state(N=n_per_model, T=T, M=np.array([[0.97, 0.03], [0.03, 0.97]]), Ds=two_D,
                                     alphas=two_a)
        elif name == "immobile_traps":
            pos, lab = m.immobile_traps(N=n_per_model, T=T, L=60, r=1.0, Pu=0.05, Pb=0.9, Ds=[D2, 0.1 * D2],
                                        alphas=[a2, 0.05], Nt=60)
        elif name == "dimerization":
            pos, lab = m.dimerization(N=n_per_model, T=T, L=40, r=1.0, Pu=0.05, Pb=0.9, Ds=two_D, alphas=two_a)
        else:
            pos, lab = m.confinement(N=n_per_model, T=T, L=60, Ds=two_D, alphas=two_a, r=4.0, Nc=20, trans=0.3)
        for i in range(pos.shape[1]):
            arrays.append({"x": pos[:, i, 0] + noise * rng.normal(size=T),
                           "y": pos[:, i, 1] + noise * rng.normal(size=T),
                           "alpha": lab[:, i, 0].astype(np.float32), "K": lab[:, i, 1].astype(np.float32),
                           "state": lab[:, i, 2].astype(np.int8)})
            names.append(name)
    return st.Trajectories.from_arrays(arrays, {"particle": np.arange(len(arrays)), "model": np.array(names)})


def write_store(path: Path, n_shards: int, n_per_model: int, seed: int = 0) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for s in range(n_shards):
        st.write_shard(path / f"shard-{s:05d}.h5", phenom_tracks(n_per_model, seed * 100 + s), kind="training",
                       attrs=st.provenance("tests.phenom_tracks", {"seed": seed, "shard": s}))
    st.write_index(path, "training")
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("train") / "store", n_shards=2, n_per_model=8)


# Runs under horovodrun (2 ranks) and plainly (1 process) on the same global batch of 2 x B windows:
# rank r takes rows r*B:(r+1)*B. Writes its losses and final weights to OUT/rank{r}.npz, then (under
# Horovod) trains one epoch through the library entry point to check rank-0-only writing.
SCRIPT = textwrap.dedent("""
    import sys, numpy as np
    from anomalousnet import features as ft
    from anomalousnet.io import store as st
    from anomalousnet.networks import model as mdl, training as tr
    out, store, distributed = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    ranks = tr.init_ranks(distributed)
    import keras
    keras.utils.set_random_seed(1)
    traj = st.read_shard(store + "/shard-00000.h5").trajectories
    windows = ft.training_windows(traj)
    B, steps = 8, 4
    net = mdl.build_unet("alpha", (8, 16), 208)
    if ranks.rank == 1:  # different initial weights on rank 1: the broadcast must fix them
        for v in net.trainable_variables:
            v.assign(v.numpy() + 0.5)
    # LR scaled by ranks: one process with the global batch needs the same effective rate.
    opt = tr.make_optimizer(1e-3 * (2 // ranks.size), ranks)
    opt.build(net.trainable_variables)
    ranks.broadcast(net.variables)
    ranks.broadcast(opt.variables)
    step = tr.make_train_step(net, opt, "alpha", ranks)
    rng = np.random.default_rng(5)
    losses = []
    for i in range(steps):
        batch = ft.training_batch(windows.subset(rng.choice(len(windows), 2 * B, replace=False)), None)
        part = slice(ranks.rank * B, (ranks.rank + 1) * B) if ranks.size == 2 else slice(None)
        loss = step(batch.inputs[part], batch.alpha[part], batch.mask[part])
        losses.append(float(ranks.allreduce([float(loss)], "mean")[0]))
    np.savez(f"{out}/rank{ranks.rank}_of{ranks.size}.npz", losses=np.array(losses),
             *[v.numpy() for v in net.trainable_variables])
    if ranks.size == 2:
        cfg = tr.TrainConfig(target="state", preset="tiny", epochs=1, batch_size=4, steps_per_epoch=3)
        tr.train([store], out + "/bundle", cfg, ranks=ranks, command="test", progress=False)
    print("RANK", ranks.rank, "OF", ranks.size, "DONE", "DETECTED", tr.launched_distributed())
""")


@pytest.mark.timeout(300)
def test_horovod_two_ranks_match_one_process(tmp_path, store):
    if not HOROVODRUN.exists():
        pytest.skip("Horovod is not installed (make horovod)")
    script = tmp_path / "step.py"
    script.write_text(SCRIPT)
    run = subprocess.run([str(HOROVODRUN), "-np", "2", "-H", "localhost:2", "--gloo", PY, str(script), str(tmp_path),
                          str(store), "1"], capture_output=True, text=True, env=ENV, timeout=280)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    # horovodrun's environment is recognised (the CLI relies on it), a plain start is not
    assert "RANK 0 OF 2 DONE DETECTED True" in run.stdout and "RANK 1 OF 2 DONE DETECTED True" in run.stdout
    single = subprocess.run([PY, str(script), str(tmp_path), str(store), "0"], capture_output=True, text=True,
                            env=ENV, timeout=200)
    assert single.returncode == 0, single.stderr[-3000:]
    assert "RANK 0 OF 1 DONE DETECTED False" in single.stdout
    r0, r1, one = (np.load(tmp_path / f) for f in ("rank0_of2.npz", "rank1_of2.npz", "rank0_of1.npz"))
    weights = sorted(k for k in r0.files if k != "losses")
    assert len(weights) > 10
    for k in weights:  # gradient averaging keeps the ranks bit-identical
        assert np.array_equal(r0[k], r1[k]), k
    # Same global batch: the mean of the ranks' losses is the single-process loss (float32 round-off).
    np.testing.assert_allclose(r0["losses"], one["losses"], rtol=1e-4)
    assert r0["losses"][-1] != r0["losses"][0]  # it did train
    for k in weights:
        np.testing.assert_allclose(r0[k], one[k], rtol=1e-3, atol=1e-5)
    # Library path: only rank 0 wrote the bundle and its checkpoint.
    meta = json.loads((tmp_path / "bundle" / "model.json").read_text())
    assert meta["heads"]["state"]["training"]["ranks"] == 2
    assert meta["heads"]["state"]["training"]["learning_rate"] == pytest.approx(2e-3)
    assert (tmp_path / "bundle" / "state.weights.h5").is_file()


def train_cli(*args):
    return [PY, "-m", "anomalousnet_cli", "train", "--preset", "cpu", "--target", "alpha", "--batch-size", "8",
            "--no-progress", "--patience", "0", "--max-windows", "48", *args]


def final_weights(bundle: Path) -> list[np.ndarray]:
    import h5py

    arrays = []
    from anomalousnet.networks.training import last_weights

    with h5py.File(last_weights(bundle / "checkpoints" / "alpha")) as f:
        f.visititems(lambda name, obj: arrays.append(obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return arrays


@pytest.mark.timeout(300)
def test_resume_after_kill_continues_from_checkpoint(tmp_path, store):
    epochs = "4"
    straight = subprocess.run(train_cli("--data", str(store), "--epochs", epochs, "--out", str(tmp_path / "a")),
                              capture_output=True, text=True, env=ENV, timeout=200)
    assert straight.returncode == 0, straight.stderr[-3000:]
    # Kill a second run as soon as its first checkpoint exists.
    proc = subprocess.Popen(train_cli("--data", str(store), "--epochs", epochs, "--out", str(tmp_path / "b")),
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "b" / "checkpoints" / "alpha" / "state.json"
    deadline = time.time() + 200
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads(state.read_text())["epoch"]
    assert 1 <= done < int(epochs), "the run was not interrupted mid-way"
    assert not (tmp_path / "b" / "model.json").exists()
    resumed = subprocess.run(train_cli("--data", str(store), "--epochs", epochs, "--out", str(tmp_path / "b"),
                                       "--resume"), capture_output=True, text=True, env=ENV, timeout=200)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming after epoch {done}" in resumed.stderr
    meta = json.loads((tmp_path / "b" / "model.json").read_text())
    history = meta["heads"]["alpha"]["training"]["history"]
    assert [h["epoch"] for h in history] == list(range(1, int(epochs) + 1))
    # Same weights as the uninterrupted run: epoch counter, Adam moments and step count were restored
    # (a fresh optimizer, or re-running the killed epoch, would give other weights).
    for a, b in zip(final_weights(tmp_path / "a"), final_weights(tmp_path / "b")):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # A kill while the next epoch's files were being written leaves them half-written: the
    # committed checkpoint (state.json names its files) still loads and training goes on.
    ckpt = tmp_path / "b" / "checkpoints" / "alpha"
    (ckpt / "epoch-0005.weights.h5").write_bytes(b"half")
    (ckpt / "optimizer-0005.npz").write_bytes(b"half")
    more = subprocess.run(train_cli("--data", str(store), "--epochs", "5", "--out", str(tmp_path / "b"), "--resume"),
                          capture_output=True, text=True, env=ENV, timeout=200)
    assert more.returncode == 0 and "resuming after epoch 4" in more.stderr, more.stderr[-3000:]
    assert sorted(p.name for p in ckpt.glob("epoch-*")) == ["epoch-0005.weights.h5"]
    assert json.loads((ckpt / "state.json").read_text())["epoch"] == 5


def test_init_fine_tunes_from_a_bundle_and_records_it(tmp_path, store):
    base = subprocess.run(train_cli("--data", str(store), "--epochs", "1", "--out", str(tmp_path / "base")),
                          capture_output=True, text=True, env=ENV, timeout=200)
    assert base.returncode == 0, base.stderr[-3000:]
    # One step at a vanishing learning rate: the fine-tuned weights are the base's, not fresh ones.
    tuned = subprocess.run(train_cli("--data", str(store), "--epochs", "1", "--steps-per-epoch", "1", "--lr", "1e-12",
                                     "--init", str(tmp_path / "base"), "--out", str(tmp_path / "tuned")),
                           capture_output=True, text=True, env=ENV, timeout=200)
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    for a, b in zip(final_weights(tmp_path / "base"), final_weights(tmp_path / "tuned")):
        np.testing.assert_allclose(a, b, atol=1e-6)
    from anomalousnet.networks.bundle import load_bundle

    meta = json.loads((tmp_path / "tuned" / "model.json").read_text())
    init = meta["heads"]["alpha"]["training"]["initialised_from"]
    assert init == {"bundle": str(tmp_path / "base"), "sha256": load_bundle(tmp_path / "base").sha256}
    # a bundle without this head is refused before training starts
    wrong = subprocess.run(train_cli("--data", str(store), "--target", "K", "--epochs", "1",
                                     "--init", str(tmp_path / "base"), "--out", str(tmp_path / "bad")),
                           capture_output=True, text=True, env=ENV, timeout=200)
    assert wrong.returncode != 0 and "no 'K' head of preset 'cpu'" in wrong.stderr
    # a head of the same preset but other filters (an older version of the preset) is refused too
    meta["heads"]["alpha"]["filters"] = [8, 16]
    (tmp_path / "tuned" / "model.json").write_text(json.dumps(meta))
    older = subprocess.run(train_cli("--data", str(store), "--epochs", "1", "--init", str(tmp_path / "tuned"),
                                     "--out", str(tmp_path / "bad2")), capture_output=True, text=True, env=ENV, timeout=200)
    assert older.returncode != 0 and "has filters [8, 16]" in older.stderr, older.stderr[-2000:]


def test_bad_data_is_a_clear_error(tmp_path, store):
    run = subprocess.run(train_cli("--data", str(tmp_path / "nothing*"), "--out", str(tmp_path / "o")),
                         capture_output=True, text=True, env=ENV, timeout=120)
    assert run.returncode != 0 and "nothing*: no training store or shard matches" in run.stderr
    other = tmp_path / "plain"
    other.mkdir()
    st.write_shard(other / "shard-00000.h5", st.Trajectories.from_arrays([{"x": np.arange(5.0), "y": np.zeros(5)}]))
    st.write_index(other, "trajectories")
    run = subprocess.run(train_cli("--data", str(other), "--out", str(tmp_path / "o")),
                         capture_output=True, text=True, env=ENV, timeout=120)
    assert run.returncode != 0 and "plain: a 'trajectories' store, not a training store" in run.stderr
    assert not (tmp_path / "o" / "model.json").exists()


def test_more_ranks_than_shards_is_refused(store):
    from anomalousnet.networks import training as tr
    from anomalousnet.networks import training_data as tdata

    class FourRanks(tr.Ranks):
        def __init__(self):
            self.hvd, self.rank, self.size, self.local_rank = None, 0, 4, 0

    with pytest.raises(tdata.TrainingError, match="2 training shard"):
        tdata.load_rank_data(tdata.resolve_shards(str(store)), FourRanks(), tr.TrainConfig())


def test_launcher_detection():
    from anomalousnet.networks.training import launched_distributed

    assert launched_distributed({"HOROVOD_RANK": "1", "HOROVOD_SIZE": "2"})
    assert launched_distributed({"OMPI_COMM_WORLD_SIZE": "4"})
    assert launched_distributed({"SLURM_STEP_NUM_TASKS": "2"})
    assert not launched_distributed({})
    assert not launched_distributed({"SLURM_STEP_NUM_TASKS": "1", "SLURM_NTASKS": "8"})  # sbatch script itself


def test_split_is_fixed_per_shard_and_seed():
    from anomalousnet.networks import training_data as tdata

    a = tdata.split_tracks(1000, 0.1, 0, "shard-00000.h5")
    assert a.sum() == 100
    assert np.array_equal(a, tdata.split_tracks(1000, 0.1, 0, "shard-00000.h5"))
    assert not np.array_equal(a, tdata.split_tracks(1000, 0.1, 0, "shard-00001.h5"))
