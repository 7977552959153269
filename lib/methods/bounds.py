"""Bounds on every value in a network, from its weights: proof that a batch cannot overflow inside it.

An overflow inside a network can end in a finite, meaningless map (a fused convolution and ReLU turns
NaN into 0, a tanh turns Inf into 1), so `ModelGraph.run` checks a sum of every layer's output, which
costs about 5% of a SqueezeNet forward pass. On most networks that check cannot fire for ordinary
pixels, and interval arithmetic on the weights shows it: with m the largest |pixel| of a batch, every
channel of every layer is bounded by a * m + c, with a and c propagated layer by layer (a convolution's
bound is the sum of its kernel's absolute values times its inputs' bounds, plus |bias|; a ReLU keeps
the bound, a tanh makes it 1; ...):

    bound = PixelBound.of(graph)     # reads the weights once
    bound.covers(images)             # True: no value can come near float32's limit for these pixels

On SqueezeNet with ImageNet weights the largest value for pixels in [0, 255] is bounded by about 4e25,
so pixels up to about 1e8 are covered. A step without a rule here (a Lambda or unknown custom layer, an
exponential activation, float16 compute, a product of two unbounded tensors) makes the bound 0, and
every batch is checked as before. The bound is that of the weights when it is made: like the
finite-weights check of `Explainer`, it assumes they do not change under a method object.
"""

import dataclasses
import functools

import keras
import numpy as np
import tensorflow as tf

from lib.methods import keras_internals as internals
from lib.methods.graph import activation_name

# float32's largest value, with room for rounding and for fast convolution algorithms (Winograd's
# transforms), whose intermediate values can exceed the plain sums by a small factor.
LIMIT = float(np.finfo(np.float32).max) / 2**24
# Activations |f(x)| <= |x|, and those bounded by a constant whatever x is.
NOT_GROWING = frozenset({"linear", "relu", "gelu", "silu", "swish", "mish", "hard_silu", "hard_swish"})
SATURATING = {"sigmoid": 1.0, "hard_sigmoid": 1.0, "tanh": 1.0, "softsign": 1.0, "softmax": 1.0, "relu6": 6.0}
# Layers whose outputs are bounded by their inputs' bounds, channel by channel (channels last).
PER_CHANNEL = (
    *(
        getattr(keras.layers, f"{kind}{dims}D")
        for kind in (
            "MaxPooling",
            "AveragePooling",
            "GlobalMaxPooling",
            "GlobalAveragePooling",
            "ZeroPadding",
            "Cropping",
            "UpSampling",
            "SpatialDropout",
        )  # fmt: skip
        for dims in (1, 2, 3)
    ),
    keras.layers.Dropout,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
)
# Layers that move values between axes: their outputs are bounded by their inputs' largest bound.
RESHAPING = (keras.layers.Flatten, keras.layers.Reshape, keras.layers.Permute)
WEIGHTED = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D, keras.layers.Dense)
ROWS_PER_CHUNK = 4096  # of a large kernel, so that its absolute values never take a second copy of it


@dataclasses.dataclass(frozen=True)
class Bound:
    """|value| <= a * m + c for pixels with |pixel| <= m; a and c per channel (last axis) or scalar."""

    a: np.ndarray
    c: np.ndarray

    def largest(self):
        return Bound(np.max(self.a), np.max(self.c))

    def scaled(self, factor, plus=0.0):
        return Bound(self.a * factor, self.c * factor + plus)

    def safe_pixels(self, limit=LIMIT):
        """The largest m for which every channel stays at or under `limit` (0 if none does)."""
        a, c = np.broadcast_arrays(np.asarray(self.a, float), np.asarray(self.c, float))
        if not (np.isfinite(a).all() and np.isfinite(c).all()) or (c >= limit).any():
            return 0.0
        room = np.where(a > 0, (limit - c) / np.where(a > 0, a, 1.0), np.inf)
        return float(room.min())


@dataclasses.dataclass(frozen=True)
class PixelBound:
    """The largest |pixel| for which no value of a network can come near float32's limit.

    Attributes:
        max_pixel: that magnitude; 0.0 when some step has no known bound.
    """

    max_pixel: float

    @classmethod
    def of(cls, graph):
        """The bound of a `ModelGraph`, from its weights; see the module docstring."""
        found = value_bounds(graph)
        if found is None:
            return cls(0.0)
        bounds, limited = found
        limited += [(bound, LIMIT) for bound in bounds.values()]
        return cls(min(bound.safe_pixels(limit) for bound, limit in limited))

    def covers(self, images):
        """True if every pixel of `images` (array or tensor) is within `max_pixel` in magnitude."""
        if self.max_pixel == 0.0:
            return False
        pixels = np.asarray(images)
        return bool(max(-pixels.min(), pixels.max()) <= self.max_pixel)


def value_bounds(graph):
    """Bounds of every value a `ModelGraph` computes, for |pixel| <= m, or None if a step has no rule.

    Returns:
        ({key: Bound}, [(Bound, limit)]): the values' bounds, and those of intermediate values inside
        steps (a batch normalisation's x - mean, a local response normalisation's squares) with the
        limit each must stay under.
    """
    bounds, limited = {graph.input_key: Bound(np.array(1.0), np.array(0.0))}, []
    for step in graph.steps:
        found = _step_bound(step, [bounds[key] for key in step.in_keys], graph) if step.in_keys else None
        if found is None:
            return None
        out, inner = found
        bounds[step.out_keys[0]] = out
        limited += inner
    return bounds, limited


def _step_bound(step, ins, graph):
    """(output Bound, [(Bound of an intermediate value, its limit)]) of one step, or None if unknown."""
    op = step.op
    if len(step.out_keys) != 1 or not _float32(op):
        return None
    if isinstance(op, keras.layers.InputLayer):
        return ins[0], []
    if getattr(op, "data_format", "channels_last") != "channels_last":
        ins = [bound.largest() for bound in ins]  # the bounds are per channel of the last axis
    if _is_plain(op, WEIGHTED):
        return _activated(op, _weighted(op, ins[0]), op.bias)
    if _is_plain(op, (keras.layers.DepthwiseConv2D,)):
        return _activated(op, _depthwise(op, ins[0]), op.bias)
    if type(op) is keras.layers.BatchNormalization:
        return _batch_norm(op, ins[0], graph.shape_of(step.in_keys[0]))
    if isinstance(op, keras.layers.Multiply):
        product = _product(ins)
        return None if product is None else (product, [])
    merged = _merged(op, ins, [graph.shape_of(k) for k in step.in_keys])
    if merged is not None:
        return merged, []
    return _elementwise(op, ins[0])


def _float32(op):
    return getattr(op, "compute_dtype", "float32") == "float32"


def _is_plain(op, types):
    return type(op) in types and internals.is_plain_float(op) and getattr(op, "groups", 1) == 1


def _activated(op, bound, bias):
    """The bound after the bias and the layer's activation (None for an activation without a rule)."""
    if bias is not None:
        bound = Bound(bound.a, bound.c + np.abs(np.asarray(bias)))
    act = _activation(activation_name(op), bound)
    return None if act is None else (act, [(bound, LIMIT)])


def _activation(name, bound):
    if name in NOT_GROWING:
        return bound
    if name in SATURATING:
        return Bound(np.zeros_like(bound.a), np.full_like(bound.c, SATURATING[name]))
    if name == "leaky_relu":
        return bound  # Keras's default slope, 0.2; the ReLU and LeakyReLU layers give theirs
    if name in ("elu", "softplus"):
        return bound.scaled(1.0, plus=1.0)  # |elu(x)| <= max(|x|, 1), softplus(x) <= |x| + log 2
    if name == "selu":
        return bound.scaled(1.0507009873554805, plus=1.0507009873554805 * 1.6732632423543772)
    return None


def _weighted(op, bound):
    """A convolution's or Dense layer's bound before bias: sum over its kernel of |w| times |input|."""
    kernel = tf.convert_to_tensor(op.kernel)
    if kernel.shape.rank > 2:  # (..., C_in, C_out): sum the taps first
        kernel = tf.reduce_sum(tf.abs(kernel), axis=tuple(range(kernel.shape.rank - 2)))
    a, c = (np.broadcast_to(v, (kernel.shape[0],)) for v in (bound.a, bound.c))
    ac = np.stack([a, c], axis=1).astype(np.float32)
    total = np.zeros((kernel.shape[1], 2), np.float64)
    for start in range(0, kernel.shape[0], ROWS_PER_CHUNK):
        rows = tf.abs(kernel[start : start + ROWS_PER_CHUNK])
        total += tf.matmul(rows, ac[start : start + ROWS_PER_CHUNK], transpose_a=True).numpy()
    return Bound(total[:, 0], total[:, 1])


def _depthwise(op, bound):
    """A depthwise convolution's bound before bias: output channel c * multiplier + j reads channel c."""
    taps = np.abs(np.asarray(op.kernel)).sum(axis=(0, 1))  # (C_in, multiplier)
    a, c = (np.broadcast_to(v, (taps.shape[0],))[:, None] for v in (bound.a, bound.c))
    return Bound((taps * a).reshape(-1), (taps * c).reshape(-1))


def _batch_norm(op, bound, shape):
    """Inference: |gamma (x - mean) / sqrt(var + eps) + beta| <= |s| |x| + |beta - s mean|."""
    if op.axis not in (-1, len(shape) - 1):
        return None
    scale = 1.0 / np.sqrt(np.asarray(op.moving_variance) + op.epsilon)
    if op.scale:
        scale = scale * np.asarray(op.gamma)
    shift = -scale * np.asarray(op.moving_mean) + (np.asarray(op.beta) if op.center else 0.0)
    centered = Bound(bound.a, bound.c + np.abs(np.asarray(op.moving_mean)))
    return bound.scaled(np.abs(scale), plus=np.abs(shift)), [(centered, LIMIT)]


def _product(ins):
    """(a1 m + c1)(a2 m + c2) is affine in m only if one factor is a constant (a = 0): else None."""
    result = Bound(np.array(0.0), np.array(1.0))
    for bound in ins:
        if np.any(bound.a > 0) and np.any(result.a > 0):
            return None
        result = Bound(result.a * bound.c + bound.a * result.c, result.c * bound.c)
    return result


def _merged(op, ins, shapes):
    """The bound of a layer that combines or moves values without weights, or None if not one."""
    if isinstance(op, PER_CHANNEL):
        return ins[0]
    if isinstance(op, RESHAPING):
        return ins[0].largest()
    if isinstance(op, keras.layers.Concatenate):
        if op.axis in (-1, len(shapes[0]) - 1) and all(s[-1] is not None for s in shapes):
            return Bound(*(_joined([getattr(b, f) for b in ins], [s[-1] for s in shapes]) for f in "ac"))
        return Bound(*(functools.reduce(np.maximum, [getattr(b, f).max() for b in ins]) for f in "ac"))
    if isinstance(op, keras.layers.Add | keras.layers.Subtract):
        return Bound(sum(b.a for b in ins), sum(b.c for b in ins))
    if isinstance(op, keras.layers.Average | keras.layers.Maximum | keras.layers.Minimum):
        return Bound(*(functools.reduce(np.maximum, [getattr(b, f) for b in ins]) for f in "ac"))
    return None


def _joined(vectors, channels):
    """Per-channel bounds of inputs concatenated on the channel axis."""
    return np.concatenate([np.broadcast_to(v, (n,)) for v, n in zip(vectors, channels, strict=True)])


def _elementwise(op, bound):
    """The bound of a single-input layer acting value by value, or None if it has no rule."""
    from lib.nets.layers import CaffePreprocess, LocalResponseNorm  # our builders' own layers

    if type(op) is CaffePreprocess:  # channels reversed, then the means subtracted
        flipped = (np.flip(np.broadcast_to(v, (len(op.mean),))) for v in (bound.a, bound.c))
        return Bound(next(flipped), next(flipped) + np.abs(np.asarray(op.mean))), []
    if type(op) is LocalResponseNorm and op.k >= 1.0 and op.beta >= 0.0 and op.alpha >= 0.0:
        # x / (k + alpha / size * (sum of `size` squares)) ** beta: |y| <= |x|, if the squares stay finite
        return bound, [(bound, np.sqrt(LIMIT / max(op.alpha, 1e-30)))]
    if type(op) is keras.layers.Rescaling:
        return bound.scaled(np.abs(np.asarray(op.scale)), plus=np.abs(np.asarray(op.offset))), []
    if type(op) is keras.layers.Activation:
        act = _activation(activation_name(op), bound)
    elif type(op) is keras.layers.ReLU:  # x, max_value above it, negative_slope * (x - threshold) below
        slope, threshold = abs(float(op.negative_slope)), abs(float(op.threshold))
        if op.max_value is not None and slope == 0:
            act = Bound(np.zeros_like(bound.a), np.full_like(bound.c, max(float(op.max_value), threshold)))
        else:
            act = bound.scaled(max(1.0, slope), plus=slope * threshold)
    elif type(op) is keras.layers.LeakyReLU:
        act = bound.scaled(max(1.0, abs(op.negative_slope)))
    elif type(op) is keras.layers.Softmax:
        act = Bound(np.zeros_like(bound.a), np.ones_like(bound.c))
    else:
        act = None
    return None if act is None else (act, [])
