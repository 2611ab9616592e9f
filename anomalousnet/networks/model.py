"""1-D Attention U-Nets over the time axis (AnomalousNet), one per target: alpha, K, state.

Keras 3 functional API with Keras layers and ``keras.ops`` only (no backend calls but the
fused inference kernel of :class:`LayerNormalization`, which falls back to plain ops), so a
bundle loads and predicts under any Keras backend (TensorFlow, JAX, PyTorch). Only the
training loop (anomalousnet.networks.training) is TensorFlow-specific.

Architecture (reads top to bottom in :func:`build_unet`): for each encoder level a
conv block (two Conv1D + LayerNorm + ReLU) then max-pooling; a bottleneck conv block; for
each decoder level an up-sampling, an attention gate that weighs the encoder's skip
connection by what the coarser level found, concatenation and a conv block; a per-frame
1x1 convolution head. LayerNormalization (per frame, over channels) instead of batch
normalisation keeps each sample's output independent of the rest of its batch, so Horovod
ranks that each see part of a global batch compute exactly the single-process loss.

Heads: alpha = 2 * sigmoid (the exponent lies in [0, 2]); K = softplus (normalised K > 0,
see anomalousnet.features); state = softmax over 0 immobile, 1 confined, 2 free, 3 directed.
Losses (paper): MAE for alpha, MSLE for K, sparse categorical cross-entropy for state, all
masked: padding frames do not count.
"""
from __future__ import annotations

import functools

from anomalousnet.networks.backend import import_keras

keras = import_keras()
from keras import layers, ops  # noqa: E402 - after the quiet import

from anomalousnet.core.names import N_STATES, TARGETS  # noqa: E402

N_CHANNELS = 3

# Filters per level (the last entry is the bottleneck). `paper`: AnomalousNet's networks
# (GPU training); `cpu`: small enough to train on a laptop CPU, shipped as the default model.
# Each level doubles the frames a prediction sees: with 3 levels a frame's output comes from
# +-25 frames, with 5 from +-108 (from the middle of a 208-frame window, all of it: a whole
# AnDi-length segment), for little compute (the deep levels run on 1/8 and 1/16 of the
# frames). That context is what alpha needs (benchmarks/TUNING.md, "Deeper alpha network").
PRESETS: dict[str, dict[str, tuple[int, ...]]] = {
    "paper": {"alpha": (128, 512, 1024), "K": (128, 512, 1024), "state": (64, 96, 128)},
    "cpu": {"alpha": (24, 48, 64, 96, 128), "K": (24, 48, 96), "state": (16, 32, 64)},
    "tiny": {"alpha": (4, 8), "K": (4, 8), "state": (4, 8)},  # tests only
}


def filters_for(preset: str, target: str) -> tuple[int, ...]:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {TARGETS}")
    return PRESETS[preset][target]


def _frame_norm(x, gamma, beta, epsilon: float):
    centred = x - ops.mean(x, axis=-1, keepdims=True)
    scale = ops.rsqrt(ops.mean(ops.square(centred), axis=-1, keepdims=True) + epsilon)
    return centred * scale * gamma + beta


# Batches of fewer windows (one video's few tracks) skip the fused kernel: it is compiled once
# per batch shape (about 0.1 s per layer width), more than it saves on a small batch.
FUSED_MIN_BATCH = 256


@functools.cache
def _fused_frame_norm():
    """:func:`_frame_norm` as one fused kernel, made at first need (its first compile has a cost)."""
    from anomalousnet.networks.backend import fused

    return fused(_frame_norm)


@keras.saving.register_keras_serializable(package="anomalousnet")
class LayerNormalization(layers.LayerNormalization):
    """Keras' LayerNormalization (per frame, over the channels) with the same weights and, to
    float32 rounding (1e-6), the same output, computed in fewer passes at inference (float32):
    as one fused kernel (:func:`anomalousnet.networks.backend.fused`) for batches of at least
    :data:`FUSED_MIN_BATCH` windows, else in plain ops. Keras' own op makes about eight passes
    over the tensor, and in the ``cpu`` preset's narrow layers those passes took a third of
    the CPU prediction time (``benchmarks/bench_infer.py``). Training uses Keras' op.
    The class keeps Keras' name: weights files key a layer's variables by its class name."""

    def call(self, inputs, training=None):
        if training or ops.dtype(inputs) != "float32" or self.rms_scaling or not (self.center and self.scale) \
                or list(self.axis) not in ([-1], [len(inputs.shape) - 1]):
            return super().call(inputs)
        args = (inputs, self.gamma.value, self.beta.value, float(self.epsilon))
        batch = inputs.shape[0]
        if batch is not None:
            return _fused_frame_norm()(*args) if batch >= FUSED_MIN_BATCH else _frame_norm(*args)
        # a graph traced for any batch size (Keras relaxes the shape after a few): decide per call
        return ops.cond(ops.shape(inputs)[0] >= FUSED_MIN_BATCH, lambda: _fused_frame_norm()(*args),
                        lambda: _frame_norm(*args))


def conv_block(x, filters: int, kernel_size: int, name: str):
    for i in (1, 2):
        x = layers.Conv1D(filters, kernel_size, padding="same", name=f"{name}_conv{i}")(x)
        x = LayerNormalization(name=f"{name}_norm{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def attention_gate(skip, gating, inter: int, name: str):
    """Additive attention (Oktay et al. 2018): a per-frame weight in (0, 1) for the skip features."""
    theta = layers.Conv1D(inter, 1, name=f"{name}_theta")(skip)
    phi = layers.Conv1D(inter, 1, name=f"{name}_phi")(gating)
    act = layers.Activation("relu", name=f"{name}_relu")(layers.Add(name=f"{name}_add")([theta, phi]))
    psi = layers.Conv1D(1, 1, activation="sigmoid", name=f"{name}_psi")(act)
    return layers.Multiply(name=f"{name}_gate")([skip, psi])


def build_unet(target: str, filters: tuple[int, ...], length: int = 208, kernel_size: int = 3) -> keras.Model:
    """Attention U-Net for one target; input (batch, length, 3), output (batch, length) or (batch, length, 4)."""
    if length % 2 ** (len(filters) - 1):
        raise ValueError(f"input length {length} is not divisible by 2**{len(filters) - 1} (pooling levels)")
    inputs = keras.Input((length, N_CHANNELS), name="displacements")
    x, skips = inputs, []
    for level, f in enumerate(filters[:-1]):
        x = conv_block(x, f, kernel_size, f"enc{level}")
        skips.append(x)
        x = layers.MaxPooling1D(2, name=f"pool{level}")(x)
    x = conv_block(x, filters[-1], kernel_size, "bottleneck")
    for level in reversed(range(len(filters) - 1)):
        x = layers.UpSampling1D(2, name=f"up{level}")(x)
        x = layers.Conv1D(filters[level], kernel_size, padding="same", name=f"up{level}_conv")(x)
        gated = attention_gate(skips[level], x, max(filters[level] // 2, 1), f"att{level}")
        x = layers.Concatenate(name=f"cat{level}")([gated, x])
        x = conv_block(x, filters[level], kernel_size, f"dec{level}")
    # Heads in float32 even under mixed precision (stable losses).
    if target == "state":
        out = layers.Conv1D(N_STATES, 1, activation="softmax", dtype="float32", name="state")(x)
    else:
        raw = layers.Conv1D(1, 1, dtype="float32", name=f"{target}_raw")(x)
        act = "sigmoid" if target == "alpha" else "softplus"
        raw = layers.Activation(act, dtype="float32", name=f"{target}_act")(raw)
        raw = layers.Reshape((length,), dtype="float32", name=f"{target}_frames")(raw)
        out = layers.Rescaling(2.0, dtype="float32", name=target)(raw) if target == "alpha" else \
            layers.Identity(dtype="float32", name=target)(raw)
    return keras.Model(inputs, out, name=f"attention_unet_{target}")


def build(target: str, preset: str = "cpu", length: int = 208) -> keras.Model:
    """The network for ``target`` ("alpha", "K" or "state") in ``preset`` ("paper", "cpu")."""
    return build_unet(target, filters_for(preset, target), length)


# ----------------------------------------------------------------------------- losses

def _masked_mean(per_frame, mask):
    """Mean over each sample's real frames, then over the batch (so ranks' means average exactly)."""
    per_sample = ops.sum(per_frame * mask, axis=-1) / ops.maximum(ops.sum(mask, axis=-1), 1.0)
    return ops.mean(per_sample)


def masked_loss(target: str, y_true, y_pred, mask, class_weights=None):
    """The paper's loss for ``target``, padding frames masked out: MAE, MSLE or sparse cross-entropy.

    ``class_weights`` (state only, 4 values): each frame's cross-entropy is multiplied by the
    weight of its true state, so rare states (confined, immobile) are not ignored.
    """
    mask = ops.cast(mask, "float32")
    y_pred = ops.cast(y_pred, "float32")
    if target == "alpha":
        per_frame = ops.abs(ops.cast(y_true, "float32") - y_pred)
    elif target == "K":
        per_frame = ops.square(ops.log1p(ops.maximum(ops.cast(y_true, "float32"), 0.0)) - ops.log1p(y_pred))
    elif target == "state":
        per_frame = keras.losses.sparse_categorical_crossentropy(ops.cast(y_true, "int32"), y_pred)
        if class_weights is not None:
            per_frame = per_frame * ops.take(ops.cast(class_weights, "float32"), ops.cast(y_true, "int32"))
    else:
        raise ValueError(f"unknown target {target!r}")
    return _masked_mean(per_frame, mask)


def masked_metrics(target: str, y_true, y_pred, mask) -> dict:
    """Per-frame validation figures (sums and counts, so they can be added over batches and ranks)."""
    mask = ops.cast(mask, "float32")
    y_pred = ops.cast(y_pred, "float32")
    frames = ops.sum(mask)
    if target == "alpha":
        return {"frames": frames, "abs_err": ops.sum(ops.abs(ops.cast(y_true, "float32") - y_pred) * mask)}
    if target == "K":
        err = ops.square(ops.log1p(ops.maximum(ops.cast(y_true, "float32"), 0.0)) - ops.log1p(y_pred))
        return {"frames": frames, "sq_log_err": ops.sum(err * mask)}
    label = ops.cast(y_true, "int32")
    hit = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), label), "float32") * mask
    out = {"frames": frames, "correct": ops.sum(hit)}
    for k in range(N_STATES):
        is_k = ops.cast(ops.equal(label, k), "float32") * mask
        out[f"n_{k}"] = ops.sum(is_k)
        out[f"hit_{k}"] = ops.sum(hit * is_k)
    return out
