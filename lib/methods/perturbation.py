"""The base of the perturbation methods (occlusion, RISE): class scores of many masked copies of each
image, in chunks inside one compiled pass, summed into maps weighted by those scores.

A method makes M masks (H, W) in the graph, says how much of each pixel a mask keeps and what
weight the logits of the perturbed image give the mask; `Perturbation` does the rest:

    perturbed = value + (x - value) * kept(mask_m)                            (H, W, C)
    maps[n, k] = normalise(1 / M * sum_m weight(n, m, k) * mask_m)            (N, K, H, W)

One forward pass on the clean images fixes the targets (each image's top class for `class_ids=None`)
and gives `explain()` its classes, logits and probabilities (`sampling.clean_targets`). The N * M
perturbed images then run `batch_size` at a time in the `tf.while_loop` of `sampling.sample_moments`,
which keeps only the running mean (N, K, H, W): memory is bounded by one chunk whatever M is, and a
mask exists only in the chunk that uses it. The hooks, all in TensorFlow ops:

    mask_count(size) -> M                              a Python int, for images of size (H, W)
    make_masks(index, size) -> (B, H, W)               the masks of int32 mask indices (B,)
    kept(masks) -> (B, H, W)                           the fraction of each pixel a mask keeps
    mask_weights(logits, targets, clean) -> (B, K)     from the perturbed logits (B, classes)
    normalise(mean, size) -> (N, K, H, W)              the mean of weight x mask into maps
"""

import numbers

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from lib.errors import InputError
from lib.methods.base import ClassExplainer
from lib.methods.sampling import clean_targets, sample_moments
from lib.methods.targets import ClassIds


def positive_int(value, name: str) -> int:
    """`value` as an int >= 1, or a one-line `InputError` naming the argument."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"{name}={value!r}; pass a whole number of at least 1")
    return int(value)


def fill_value(value, name: str = "value") -> np.ndarray:
    """`value` as float32, a scalar or one value per channel, finite; else a one-line `InputError`."""
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        array = None
    if array is None or array.ndim > 1 or isinstance(value, (bool, np.bool_)) or not np.isfinite(array).all():
        raise InputError(f"{name}={value!r}; pass a finite pixel value, or one per channel (e.g. 127.5)")
    return array


class Perturbation(ClassExplainer):
    """Base of the methods that explain class scores by masking the images; see the module docstring.

    Args:
        model: a functional or Sequential Keras model; a final softmax is skipped, so logits come out.
        batch_size: perturbed images per forward pass inside the compiled pass.
        value: the pixel value (or one per channel) that masked pixels take.

    Attributes:
        layer: None; these methods work on the whole network.
    """

    def __init__(self, model: keras.Model, batch_size: int = 32, value: float | npt.ArrayLike = 0.0):
        super().__init__(model, needs_layer=False)
        self.batch_size = positive_int(batch_size, "batch_size")
        self.value = fill_value(value)
        self._steps = self.graph.ancestors(self.graph.steps, self.graph.logits_key)
        channels = self.graph.input_shape[-1]
        if self.value.ndim and channels is not None and self.value.shape[0] != channels:
            raise InputError(
                f"value has {self.value.shape[0]} entries for images with {channels} channels; pass one "
                "value, or one per channel"
            )
        size = self.graph.input_shape[1:3]
        if None not in size:
            self.check_size(tuple(size))

    def __call__(self, images: npt.ArrayLike, class_ids: ClassIds = None) -> np.ndarray:
        """The maps of the images: `explain(images, class_ids).maps`, float32 (N, K, H, W), raw values.

        Raises:
            InputError: for bad images or class ids.
        """
        return self.explain(images, class_ids).maps

    def check_size(self, size: tuple[int, int]) -> None:
        """Raise `InputError` if the method cannot work on images of `size` (H, W); all sizes by default."""

    def masks(self, size: tuple[int, int], indices: npt.ArrayLike) -> np.ndarray:
        """The masks the method applies to images of `size` (H, W): float32 (len(indices), H, W)."""
        self.check_size(tuple(size))
        count, indices = self.mask_count(size), np.asarray(indices, dtype=np.int32)
        if indices.ndim != 1 or ((indices < 0) | (indices >= count)).any():
            raise InputError(f"mask indices {indices.tolist()}; pass a list of ints in 0..{count - 1}")
        return self.make_masks(tf.constant(indices), tuple(size)).numpy()

    def _images(self, images):
        x = super()._images(images)
        self.check_size(tuple(x.shape[1:3]))
        return x

    def _logits(self, x):
        """Logits of perturbed images; unchecked (8% of a SqueezeNet pass): the clean pass checked
        every layer for NaN and Inf (or was bounded, `bounds`), and a NaN that reaches a score
        reaches the maps, which are checked."""
        with self.graph.unchecked():
            return self.graph.run(self._steps, {self.graph.input_key: x})[self.graph.logits_key]

    def _compute(self, x, targets):
        targets_of, fields = clean_targets(self.graph, self._steps, x, targets)  # fixed on the clean images
        clean, size = fields["scores"], tuple(x.shape[1:3])  # clean scores (N, K), (H, W)
        value = tf.constant(self.value, x.dtype)
        faded = x - value  # (N, H, W, C), made once outside the loop

        def evaluate(image, mask):  # int32 (B,) each -> weighted masks (B, K, H, W)
            masks = self.make_masks(mask, size)  # (B, H, W)
            logits = self._logits(_fade(faded, image, self.kept(masks), value))
            weights = self.mask_weights(logits, targets_of(image), tf.gather(clean, image))  # (B, K)
            return weights[:, :, None, None] * masks[:, None]

        count, shape = self.mask_count(size), (clean.shape[1], *size)
        mean, _ = sample_moments(x.shape[0], count, self.batch_size, evaluate, shape)
        return {"maps": self.normalise(mean, size), **fields}

    def mask_count(self, size: tuple[int, int]) -> int:
        """Hook: the number M of masks for images of `size` (H, W)."""
        raise NotImplementedError

    def make_masks(self, index: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
        """Hook: float32 masks (B, H, W) for int32 mask indices (B,), made in the graph."""
        raise NotImplementedError

    def kept(self, masks: tf.Tensor) -> tf.Tensor:
        """Hook: the fraction (B, H, W) of each pixel that masks (B, H, W) keep; the rest fades to `value`."""
        raise NotImplementedError

    def mask_weights(self, logits: tf.Tensor, targets, clean: tf.Tensor) -> tf.Tensor:
        """Hook: weights (B, K) of the masks, from the perturbed logits (B, classes).

        `targets` is int32 class ids (B, K) of each perturbed image, or the `class_ids` callable;
        `clean` holds the scores (B, K) of the clean image each perturbed image comes from.
        """
        raise NotImplementedError

    def normalise(self, mean: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
        """Hook: maps (N, K, H, W) from the mean over the M masks of weight x mask, (N, K, H, W)."""
        raise NotImplementedError


@tf.function(jit_compile=True, autograph=False)
def _fade(faded, image, kept, value):
    """value + (x - value) * kept, (B, H, W, C), from x - value (N, H, W, C) gathered by `image` (B,).

    Compiled by XLA into one pass over the chunk: TensorFlow's own broadcast product over the channels
    costs three times as much, 5% of a SqueezeNet forward pass on the same images.
    """
    return tf.gather(faded, image) * kept[..., None] + value
