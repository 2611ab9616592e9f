"""Training the Attention U-Nets: a tf.GradientTape loop, distributed with Horovod when launched so.

Started by ``horovodrun -np N ...`` (or an MPI launcher) the same code runs one rank per
process / GPU. The distributed parts are the visible handful of lines of Horovod's own
TensorFlow 2 examples: ``hvd.init()``, pin one GPU per rank, scale the learning rate by
the number of ranks, broadcast the initial weights and optimizer state from rank 0,
average gradients with ``hvd.DistributedGradientTape``, average metrics, and let rank 0
alone write checkpoints, logs and the bundle. Each rank reads its own shards
(``shards[rank::size]``). Horovod is handed the underlying ``tf.Variable`` of each Keras 3
variable (``v.value``): its Keras callbacks do not work with Keras 3, its core API does.
Started plainly, it is ordinary single-process training (Horovod is not imported).

``batch_size`` is per rank: N ranks see N x batch_size windows per step, hence the
learning rate x N. Losses are per-sample means over real frames then a batch mean, and the
networks have no batch-dependent layers, so N ranks with batch_size each compute exactly
the loss of one process with the N x batch_size global batch.

Checkpoints (rank 0, after every epoch) live in ``OUT/checkpoints/TARGET/``: the weights,
the best weights so far, the optimizer's variables (Adam moments, iteration count) and a
JSON state (epoch, best validation loss, epochs without improvement, history). ``resume``
restores all of it and continues with the next epoch; per-epoch random streams are derived
from (seed, rank, epoch), so a resumed run repeats the uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from anomalousnet import features as ft
from anomalousnet.core.names import STATE_NAMES
from anomalousnet.io import atomic
from anomalousnet.networks import bundle as bdl
from anomalousnet.networks.evaluation import evaluate
from anomalousnet.networks.training_data import TrainingError, data_provenance, load_rank_data, resolve_shards

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
CLASS_WEIGHTS = ("none", "balanced", "sqrt")




@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training options.

    target: "alpha", "K" or "state" (one head; "all" is handled by :func:`train`).
    preset: network size ("cpu" or "paper", see anomalousnet.networks.model.PRESETS).
    epochs: maximum number of epochs (passes over the training windows).
    batch_size: windows per step **per rank**.
    learning_rate: Adam learning rate for one rank (multiplied by the number of ranks).
    val_fraction: share of each shard's tracks held out for validation.
    patience: stop after this many epochs without a better validation loss (0: never).
    steps_per_epoch: cap on steps per epoch (None: one pass over the data).
    max_windows: cap on training windows read per rank (None: all).
    seed: seeds the split, crops, rotations and initial weights.
    mixed_precision: float16 compute on GPUs ("auto": when a GPU is present).
    class_weights: state head only: "none" (the paper's plain cross-entropy), "balanced"
        (each state weighted by total / (4 x its frames), clipped to [0.1, 10]) or "sqrt"
        (the square root of those: rare states count more, the common free state keeps more
        of its recall).
    init: a model bundle ("default" or a path) whose head weights start training instead
        of random ones (fine-tuning, e.g. to a lab's own conditions); same preset and input.
    gap_rate: simulated tracking gaps per 100 training frames (frames whose steps are
        missing inputs, see :func:`anomalousnet.features.tracking_gaps`), so the networks
        predict through the frames video tracking fills in; 0 for none.
    """

    target: str = "alpha"
    preset: str = "cpu"
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3
    val_fraction: float = 0.1
    patience: int = 5
    steps_per_epoch: int | None = None
    max_windows: int | None = None
    seed: int = 0
    mixed_precision: str = "auto"
    class_weights: str = "none"
    init: str | None = None
    gap_rate: float = 1.0
    features: ft.FeatureConfig = ft.FeatureConfig()

    def __post_init__(self):
        if self.target not in ("alpha", "K", "state"):
            raise TrainingError(f"target {self.target!r}: choose alpha, K or state")
        if self.class_weights not in CLASS_WEIGHTS:
            raise TrainingError(f"class weights {self.class_weights!r}: choose one of {CLASS_WEIGHTS}")
        if self.epochs < 1 or self.batch_size < 1 or not 0 < self.val_fraction < 1 or not 0 <= self.gap_rate < 50:
            raise TrainingError(f"invalid epochs/batch size/validation fraction in {self}")


# ----------------------------------------------------------------------------- ranks

class Ranks:
    """Rank, size and the few collective operations; Horovod only when launched by a launcher."""

    def __init__(self, hvd=None):
        self.hvd = hvd
        self.rank = hvd.rank() if hvd else 0
        self.size = hvd.size() if hvd else 1
        self.local_rank = hvd.local_rank() if hvd else 0

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def allreduce(self, values: np.ndarray, op: str = "sum") -> np.ndarray:
        if not self.hvd:
            return np.asarray(values, np.float64)
        ops = {"sum": self.hvd.Sum, "mean": self.hvd.Average, "min": self.hvd.Min}
        return self.hvd.allreduce(np.asarray(values, np.float64), op=ops[op], name=None).numpy()

    def broadcast(self, variables) -> None:
        if self.hvd:
            self.hvd.broadcast_variables([v.value for v in variables], root_rank=0)


def launched_distributed(environ=os.environ) -> bool:
    """Whether a launcher started this process as one of several ranks (horovodrun, mpirun, srun)."""
    if "HOROVOD_RANK" in environ:  # horovodrun (gloo)
        return True
    for key in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"):
        if int(environ.get(key, "1") or 1) > 1:
            return True
    return False


def init_ranks(distributed: bool | None = None) -> Ranks:
    """Initialise Horovod when launched as one of several ranks; pin one GPU per rank."""
    from anomalousnet.networks.backend import import_keras

    import_keras()  # TensorFlow without its start-up noise
    import tensorflow as tf

    distributed = launched_distributed() if distributed is None else distributed
    hvd = None
    if distributed:
        try:
            import horovod.tensorflow as hvd
        except ImportError as exc:
            raise TrainingError(f"launched as one of several ranks but Horovod is not installed ({exc}); "
                                "install the `horovod` extra (make horovod)") from None
        hvd.init()
    ranks = Ranks(hvd)
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        tf.config.set_visible_devices(gpus[ranks.local_rank % len(gpus)], "GPU")
    return ranks


# ----------------------------------------------------------------------------- checkpoints

def checkpoint_dir(out: Path, target: str) -> Path:
    return Path(out) / CHECKPOINTS / target


def _save_weights(model, path: Path) -> None:
    """``model.save_weights`` under a temporary name of this writer's own, then renamed."""
    tmp = path.with_name(f".{path.name[:-len('.weights.h5')]}.{os.getpid()}.weights.h5")  # Keras wants the suffix
    model.save_weights(tmp)
    os.replace(tmp, path)


def save_checkpoint(ckpt: Path, model, optimizer, state: dict, best: bool) -> None:
    """Weights, optimizer variables and loop state of the finished epoch, each file written
    whole under a temporary name and renamed, the epoch's files under names of their own and
    state.json, which names them, last: a kill at any moment leaves the previous epoch's
    checkpoint complete and loadable (the next resume redoes the epoch exactly)."""
    ckpt.mkdir(parents=True, exist_ok=True)
    tag = f"{int(state['epoch']):04d}"
    files = {"weights": f"epoch-{tag}.weights.h5", "optimizer": f"optimizer-{tag}.npz"}
    _save_weights(model, ckpt / files["weights"])
    if best:
        _save_weights(model, ckpt / "best.weights.h5")
    opt = {f"v{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)}
    with atomic.atomic_path(ckpt / files["optimizer"]) as tmp, open(tmp, "wb") as f:
        np.savez(f, **opt)
    atomic.write_text(ckpt / "state.json", json.dumps({**state, "files": files}, indent=1))  # the commit
    for old in [*ckpt.glob("epoch-*.weights.h5"), *ckpt.glob("optimizer-*.npz"), *ckpt.glob(".*.weights.h5")]:
        if old.name not in files.values():  # earlier epochs, and what a killed run half-wrote
            old.unlink(missing_ok=True)


def last_weights(ckpt: Path) -> Path:
    """The weights file of the last committed epoch (``last.weights.h5`` in older checkpoints)."""
    state_path = ckpt / "state.json"
    files = json.loads(state_path.read_text()).get("files", {}) if state_path.is_file() else {}
    return ckpt / files.get("weights", "last.weights.h5")


def load_checkpoint(ckpt: Path, model, optimizer) -> dict:
    """Restore weights and optimizer variables; returns the loop state. Raises TrainingError."""
    state_path = ckpt / "state.json"
    if not state_path.is_file():
        raise TrainingError(f"{ckpt}: no checkpoint to resume from (state.json missing)")
    state = json.loads(state_path.read_text())
    files = state.pop("files", {"weights": "last.weights.h5", "optimizer": "optimizer.npz"})
    model.load_weights(ckpt / files["weights"])
    with np.load(ckpt / files["optimizer"]) as saved:
        values = [saved[k] for k in sorted(saved.files)]
    if len(values) != len(optimizer.variables):
        raise TrainingError(f"{ckpt}/{files['optimizer']}: {len(values)} variables, the optimizer has "
                            f"{len(optimizer.variables)} (checkpoint of another preset?)")
    for var, value in zip(optimizer.variables, values):
        var.assign(value)
    return state


# ----------------------------------------------------------------------------- loop

@dataclasses.dataclass
class HeadResult:
    target: str
    epochs_done: int
    best_epoch: int
    validation: dict
    history: list
    n_train_windows: int
    n_val_windows: int
    trajectories_per_s: float


def _metric_keys(target: str) -> list[str]:
    """Names of the summed validation figures (fixed, so every rank all-reduces the same vector)."""
    return {"alpha": ["frames", "abs_err"], "K": ["frames", "sq_log_err"],
            "state": ["frames", "correct"] + [f"{p}_{k}" for k in range(4) for p in ("n", "hit")]}[target]


def _validation_figures(target: str, sums: dict) -> dict:
    frames = max(sums["frames"], 1.0)
    if target == "alpha":
        return {"alpha_mae": sums["abs_err"] / frames, "frames": int(sums["frames"])}
    if target == "K":
        return {"K_norm_msle": sums["sq_log_err"] / frames, "frames": int(sums["frames"])}
    out = {"state_accuracy": sums["correct"] / frames, "frames": int(sums["frames"])}
    for k, name in enumerate(STATE_NAMES):
        n = sums[f"n_{k}"]
        out[f"recall_{name}"] = sums[f"hit_{k}"] / n if n else None
    recalls = [v for k, v in out.items() if k.startswith("recall_") and v is not None]
    out["state_balanced_accuracy"] = float(np.mean(recalls)) if recalls else None
    return out


def make_optimizer(learning_rate: float, ranks: Ranks, mixed: bool = False):
    """Adam with the learning rate scaled by the number of ranks (each step sees ranks x batch)."""
    import keras

    optimizer = keras.optimizers.Adam(learning_rate * ranks.size)
    return keras.optimizers.LossScaleOptimizer(optimizer) if mixed else optimizer


def state_class_weights(train: ft.TrainingWindows, ranks: Ranks, kind: str = "balanced") -> np.ndarray:
    """Weights of the four states from the frames of all ranks' training windows ("balanced" or "sqrt")."""
    valid = np.arange(train.state.shape[1])[None, :] < train.length[:, None]
    counts = ranks.allreduce(np.bincount(train.state[valid].astype(np.int64), minlength=4)[:4], "sum")
    weights = np.clip(counts.sum() / (4 * np.maximum(counts, 1)), 0.1, 10.0)
    return (np.sqrt(weights) if kind == "sqrt" else weights).astype(np.float32)


def make_train_step(net, optimizer, target: str, ranks: Ranks, mixed: bool = False, class_weights=None):
    """One compiled optimisation step; under Horovod the gradients are averaged over the ranks.

    Returns ``step(inputs, y, mask) -> loss`` (this rank's loss on its part of the batch).
    """
    import tensorflow as tf

    from anomalousnet.networks import model as mdl

    variables = net.trainable_variables

    @tf.function
    def train_step(x, y, mask):
        with tf.GradientTape() as tape:
            pred = net(x, training=True)
            loss = mdl.masked_loss(target, y, pred, mask, class_weights)
            scaled = optimizer.scale_loss(loss) if mixed else loss
        if ranks.hvd:
            tape = ranks.hvd.DistributedGradientTape(tape)
        # Horovod works on the underlying tf.Variables of the Keras 3 variables.
        grads = tape.gradient(scaled, [v.value for v in variables])
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    return train_step


@dataclasses.dataclass
class Head:
    """One head being trained on this rank: network, optimizer, data, compiled steps, loop state."""

    config: TrainConfig
    ranks: Ranks
    net: object
    optimizer: object
    train: ft.TrainingWindows
    val: ft.TrainingWindows
    steps: int
    ckpt: Path
    state: dict
    train_step: object
    eval_step: object


def setup_head(shards: list[Path], out: Path, config: TrainConfig, ranks: Ranks, resume: bool = False) -> Head:
    """Data, network, optimizer and compiled steps of one head; restored from its checkpoint
    (``resume``) or started from a bundle (``config.init``); rank 0's weights broadcast."""
    import keras
    import tensorflow as tf

    from anomalousnet.networks import model as mdl

    mixed = config.mixed_precision == "on" or (config.mixed_precision == "auto" and
                                                tf.config.list_physical_devices("GPU"))
    keras.mixed_precision.set_dtype_policy("mixed_float16" if mixed else "float32")
    keras.utils.set_random_seed(config.seed)  # same initial weights everywhere (broadcast makes sure)
    train, val, mine = load_rank_data(shards, ranks, config)
    log.info("rank %d: %d training / %d validation windows from %d shard(s)", ranks.rank, len(train), len(val),
             len(mine))
    B = config.batch_size
    # Every rank must run the same number of steps (collectives would wait forever otherwise).
    steps = int(ranks.allreduce([len(train) // B], "min")[0])
    if config.steps_per_epoch:
        steps = min(steps, config.steps_per_epoch)
    if steps < 1:
        raise TrainingError(f"batch size {B} is larger than a rank's {len(train)} training windows")

    net = mdl.build(config.target, config.preset, config.features.length)
    optimizer = make_optimizer(config.learning_rate, ranks, mixed)
    optimizer.build(net.trainable_variables)
    ckpt = checkpoint_dir(out, config.target)
    state = {"epoch": 0, "best_loss": None, "best_epoch": 0, "wait": 0, "history": []}
    if resume and (ckpt / "state.json").is_file():
        state = load_checkpoint(ckpt, net, optimizer)
        if ranks.is_root:
            log.warning("%s: resuming after epoch %d (optimizer step %d)", config.target, state["epoch"],
                        int(optimizer.iterations.numpy()))
    elif config.init:
        init_from_bundle(net, config)
        if ranks.is_root:
            log.warning("%s: starting from the weights of %s", config.target, config.init)
    elif resume and ranks.is_root:
        log.warning("%s: no checkpoint in %s, starting from scratch", config.target, ckpt)
    ranks.broadcast(net.variables)
    ranks.broadcast(optimizer.variables)

    weights = None
    if config.target == "state" and config.class_weights != "none":
        weights = state_class_weights(train, ranks, config.class_weights)
        log.warning("state: class weights %s (immobile, confined, free, directed)", np.round(weights, 3).tolist())
    train_step = make_train_step(net, optimizer, config.target, ranks, mixed, weights)

    @tf.function
    def eval_step(x, y, mask):
        return mdl.masked_metrics(config.target, y, net(x, training=False), mask)

    return Head(config, ranks, net, optimizer, train, val, steps, ckpt, state, train_step, eval_step)


def validate(head: Head) -> dict:
    """Validation figures of the head's current weights, summed over all ranks."""
    config, target, B = head.config, head.config.target, head.config.batch_size
    sums: dict[str, float] = {}
    for a in range(0, len(head.val), 4 * B):
        b = ft.training_batch(head.val.subset(np.arange(a, min(a + 4 * B, len(head.val)))), None, config.features)
        for k, v in head.eval_step(b.inputs, b.target(target), b.mask).items():
            sums[k] = sums.get(k, 0.0) + float(v)
    keys = _metric_keys(target)
    total = head.ranks.allreduce([sums.get(k, 0.0) for k in keys], "sum")
    return _validation_figures(target, dict(zip(keys, total)))


def _val_loss(config: TrainConfig, fig: dict) -> float | None:
    """The figure early stopping and the best epoch are judged by (lower is better)."""
    if config.target == "state":  # balanced weights aim at every state's recall, so judge by their mean
        key = "state_accuracy" if config.class_weights == "none" else "state_balanced_accuracy"
        return None if fig.get(key) is None else 1 - fig[key]
    return {"alpha": fig.get("alpha_mae"), "K": fig.get("K_norm_msle")}[config.target]


def run_epoch(head: Head, epoch: int, progress: bool = True) -> tuple[float, float]:
    """One pass over this rank's training windows in a random order of (seed, rank, epoch);
    returns (training loss averaged over ranks, seconds)."""
    config, ranks, B = head.config, head.ranks, head.config.batch_size
    rng = np.random.default_rng([config.seed, ranks.rank, epoch])
    order = rng.permutation(len(head.train))
    t0 = time.perf_counter()
    losses = []
    bar = None
    if progress and ranks.is_root:
        from tqdm import tqdm
        bar = tqdm(total=head.steps, desc=f"{config.target} epoch {epoch}/{config.epochs}", unit="step", leave=False)
    for step in range(head.steps):
        batch = ft.training_batch(head.train.subset(order[step * B:(step + 1) * B]), rng, config.features,
                                  gap_rate=config.gap_rate)
        losses.append(float(head.train_step(batch.inputs, batch.target(config.target), batch.mask)))
        if bar:
            bar.update()
            bar.set_postfix(loss=f"{np.mean(losses):.4f}")
    if bar:
        bar.close()
    return float(ranks.allreduce([np.mean(losses)], "mean")[0]), time.perf_counter() - t0


def end_epoch(head: Head, epoch: int, train_loss: float, seconds: float) -> None:
    """Validate, update the loop state (best epoch, patience) and, on rank 0, checkpoint."""
    ranks, config, state = head.ranks, head.config, head.state
    figures = validate(head) if len(head.val) or ranks.size > 1 else {}
    loss_now = _val_loss(config, figures) if figures.get("frames") else train_loss
    improved = state["best_loss"] is None or loss_now < state["best_loss"]
    if improved:
        state.update(best_loss=loss_now, best_epoch=epoch, wait=0, best_validation=figures)
    else:
        state["wait"] += 1
    state["epoch"] = epoch
    rate = head.steps * config.batch_size * ranks.size / seconds
    state["history"].append({"epoch": epoch, "train_loss": train_loss, "validation": figures,
                             "seconds": round(seconds, 2), "trajectories_per_s": rate})
    if ranks.is_root:
        save_checkpoint(head.ckpt, head.net, head.optimizer, state, improved)
        log.warning("%s epoch %d: train loss %.4f, validation %s (%.0f windows/s)", config.target, epoch, train_loss,
                    {k: round(v, 4) for k, v in figures.items() if isinstance(v, float)}, rate)


def train_head(shards: list[Path], out: Path, config: TrainConfig, ranks: Ranks, resume: bool = False,
               progress: bool = True) -> HeadResult:
    """Train one head; rank 0 writes checkpoints and ``OUT/TARGET.weights.h5`` (best epoch)."""
    head = setup_head(shards, out, config, ranks, resume)
    state = head.state
    seen, busy = 0, 0.0
    epoch = state["epoch"]
    while epoch < config.epochs and not (config.patience and state["wait"] >= config.patience):
        epoch += 1
        train_loss, seconds = run_epoch(head, epoch, progress)
        seen += head.steps * config.batch_size * ranks.size
        busy += seconds
        end_epoch(head, epoch, train_loss, seconds)
        if config.patience and state["wait"] >= config.patience:
            log.warning("%s: early stop after epoch %d (best epoch %d)", config.target, epoch, state["best_epoch"])
            break
    if ranks.is_root:
        best = head.ckpt / "best.weights.h5"
        head.net.load_weights(best if best.exists() else last_weights(head.ckpt))
        head.net.save_weights(Path(out) / f"{config.target}.weights.h5")
    n_train = int(ranks.allreduce([len(head.train)])[0])
    n_val = int(ranks.allreduce([len(head.val)])[0])
    return HeadResult(config.target, state["epoch"], state["best_epoch"], state.get("best_validation", {}),
                      state["history"], n_train, n_val, seen / busy if busy else float("nan"))


def init_from_bundle(net, config: TrainConfig) -> None:
    """Load the ``config.target`` head of bundle ``config.init`` into ``net`` (fine-tuning);
    TrainingError unless that head exists with the same preset and input windows."""
    try:
        bundle = bdl.load_bundle(config.init)
    except bdl.BundleError as exc:
        raise TrainingError(f"--init: {exc}") from None
    head = bundle.meta["heads"].get(config.target)
    if head is None or head.get("preset") != config.preset:
        raise TrainingError(f"{bundle.path}: no {config.target!r} head of preset {config.preset!r} to start from")
    from anomalousnet.networks import model as mdl

    # A preset's filters may change between versions (the `cpu` alpha network grew deeper).
    filters = list(mdl.filters_for(config.preset, config.target))
    if list(head.get("filters", filters)) != filters:
        raise TrainingError(f"{bundle.path}: its {config.target!r} head has filters {head['filters']}, preset "
                            f"{config.preset!r} now builds {filters}; train that head from scratch")
    if bundle.meta["input"]["features"] != config.features.to_json():
        raise TrainingError(f"{bundle.path}: input {bundle.meta['input']['features']} differs from "
                            f"{config.features.to_json()}")
    net.load_weights(bundle.path / head["weights"])


def train(data: list[str] | str, out: os.PathLike | str, config: TrainConfig, targets: tuple[str, ...] | None = None,
          resume: bool = False, command: str = "", ranks: Ranks | None = None, progress: bool = True,
          evaluate_on: list[str] | str | None = None) -> Path:
    """Train the heads ``targets`` (default: config.target) on training stores ``data``; write the bundle ``out``.

    Heads already in an existing bundle at ``out`` are kept (train the three heads one at
    a time, or together). With ``evaluate_on`` (held-out labelled stores), rank 0 measures the
    finished bundle's per-frame figures there (:func:`evaluate`) and records them in
    model.json under ``evaluation``. Only rank 0 writes. Returns the bundle directory.
    """
    shards = resolve_shards(data)  # bad paths fail here, before Keras, TensorFlow and Horovod start
    from anomalousnet.networks import model as mdl

    out = Path(out)
    ranks = ranks or init_ranks()
    targets = targets or (config.target,)
    meta = {}
    if (out / bdl.META_NAME).is_file():
        meta = bdl.read_meta(out)
        if meta["input"]["features"] != config.features.to_json():
            raise TrainingError(f"{out}: existing bundle has input {meta['input']['features']}, "
                                f"not {config.features.to_json()}; use another --out")
    meta.setdefault("input", {"features": config.features.to_json(), "channels": list(ft.CHANNELS),
                              "scaling": "displacements divided by the window's RMS step per axis s; "
                                         "the K head predicts K / s**2"})
    meta.setdefault("heads", {})
    if ranks.is_root:
        out.mkdir(parents=True, exist_ok=True)
    for target in targets:
        cfg = dataclasses.replace(config, target=target)
        result = train_head(shards, out, cfg, ranks, resume=resume, progress=progress)
        if ranks.is_root:
            head = {
                "preset": cfg.preset,
                "filters": list(mdl.filters_for(cfg.preset, target)),
                "weights": f"{target}.weights.h5",
                "loss": {"alpha": "mae", "K": "msle (on K / s**2)", "state": "sparse_categorical_crossentropy"}[
                    target],
                "epochs": result.epochs_done,
                "best_epoch": result.best_epoch,
                "validation": result.validation,
                "training": {
                    "command": command,
                    "data": data_provenance(shards),
                    "ranks": ranks.size,
                    "batch_size_per_rank": cfg.batch_size,
                    "learning_rate": cfg.learning_rate * ranks.size,
                    "seed": cfg.seed,
                    "class_weights": cfg.class_weights if target == "state" else None,
                    "gaps_per_100_frames": cfg.gap_rate,
                    "initialised_from": _init_provenance(cfg.init),
                    "n_train_windows": result.n_train_windows,
                    "n_val_windows": result.n_val_windows,
                    "trajectories_per_s": round(result.trajectories_per_s, 1),
                    "history": result.history,
                },
            }
            meta["heads"][target] = head
            meta.pop("evaluation", None)  # figures of other weights
            bdl.write_meta(out, meta)
    if evaluate_on and ranks.is_root:
        meta["evaluation"] = evaluate(bdl.load_bundle(out), evaluate_on, progress=progress)
        bdl.write_meta(out, meta)
    return out


def _init_provenance(init: str | None) -> dict | None:
    if not init:
        return None

    bundle = bdl.load_bundle(init)
    return {"bundle": str(init), "sha256": bundle.sha256}


