"""Occlusion (Zeiler & Fergus, *Visualizing and Understanding Convolutional Networks*, ECCV 2014,
https://arxiv.org/abs/1311.2901).

A patch of `size` pixels, filled with `value`, slides over the image by `stride`; each position gives
the drop of the class score (the logit) from the clean image, y_c(x) - y_c(x with the patch). The map
at a pixel is the mean drop over the patches that cover it, as in Captum's `Occlusion`:

    map[k](i, j) = sum_{p covers (i, j)} (y_k(x) - y_k(x_p)) / #{p covers (i, j)}

Patch positions are 0, stride, 2 * stride, ... along each axis, and one more flush with the far
border where those stop short of it, so every pixel is covered at least once. The drops are raw
(logit units, negative where hiding a patch raises the score), not rescaled to [0, 1].

    maps = Occlusion(model, size=32, stride=16)(images, class_ids=None)   # (N, 1, H, W)
"""

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from lib.errors import InputError
from lib.methods.perturbation import Perturbation, positive_int
from lib.methods.targets import scores


def pair(value, name: str) -> tuple[int, int]:
    """An int or two ints (height, width), each >= 1, as a pair; else a one-line `InputError`."""
    values = value if isinstance(value, (tuple, list)) else (value, value)
    if len(values) != 2:
        raise InputError(f"{name}={value!r}; pass an int or two ints (height, width)")
    return tuple(positive_int(v, name) for v in values)


def starts(length: int, size: int, stride: int) -> list[int]:
    """Patch offsets along an axis: 0, stride, ..., and `length - size` if they stop short of the end."""
    offsets = list(range(0, length - size + 1, stride))
    return offsets if offsets[-1] + size == length else [*offsets, length - size]


class Occlusion(Perturbation):
    """Occlusion maps: the mean drop of the class logit over the patches covering each pixel.

    Every patch position of every image is one perturbed image; they run `batch_size` at a time
    inside one compiled pass, with the classes fixed on the clean image (its top class for
    `class_ids=None`). With a callable `class_ids` the drop is that of the callable's value, which
    is applied to chunks of perturbed logits, so it must treat rows independently.

    Args:
        model: a functional or Sequential Keras model; a final softmax is skipped, so drops are of logits.
        size: patch height and width in pixels, an int or (height, width).
        stride: step between patch positions, an int or (height, width), at most `size` so that every
            pixel is covered; None for half the size (rounded up).
        value: what the patch is filled with, one value or one per channel, in the model's input
            space (0 is black for the `lib.nets` builders; 127.5 a grey square as in the paper).
        batch_size: occluded images per forward pass.

    Raises:
        InputError: for a size, stride, value or batch size that is not usable, or a patch larger
            than the model's images.
    """

    def __init__(
        self,
        model: keras.Model,
        size: int | tuple[int, int] = 32,
        stride: int | tuple[int, int] | None = None,
        value: float | npt.ArrayLike = 0.0,
        batch_size: int = 32,
    ):
        self.size = pair(size, "size")
        self.stride = tuple(-(-z // 2) for z in self.size) if stride is None else pair(stride, "stride")
        if any(s > z for s, z in zip(self.stride, self.size, strict=True)):
            raise InputError(
                f"stride {self.stride} exceeds the patch size {self.size}, so some pixels would never be "
                "occluded; pass a stride up to the size"
            )
        super().__init__(model, batch_size, value)

    def check_size(self, size):
        if any(z > s for z, s in zip(self.size, size, strict=True)):
            raise InputError(
                f"the patch size {self.size} is larger than the images ({size[0]}x{size[1]}); pass a "
                "smaller size"
            )

    def _starts(self, size):
        """(row offsets, column offsets) of the patches on images of `size`."""
        return tuple(starts(n, z, s) for n, z, s in zip(size, self.size, self.stride, strict=True))

    def mask_count(self, size):
        rows, cols = self._starts(size)
        return len(rows) * len(cols)

    def make_masks(self, index, size):
        """1 inside patch `index` (row-major over the positions), 0 elsewhere: (B, H, W)."""
        rows, cols = self._starts(size)
        top, left = tf.gather(rows, index // len(cols)), tf.gather(cols, index % len(cols))  # (B,)
        inside = [_span(start, z, n) for start, z, n in zip((top, left), self.size, size, strict=True)]
        return tf.cast(inside[0][:, :, None] & inside[1][:, None, :], tf.float32)

    def kept(self, masks):
        """Everything but the patch."""
        return 1 - masks

    def mask_weights(self, logits, targets, clean):
        """The drop of each score from the clean image, (B, K)."""
        return clean - scores(logits, targets)[0]

    def normalise(self, mean, size):
        """The sum of the drops over the patches covering a pixel (M x the mean), over how many do."""
        rows, cols = self._starts(size)
        cover = [_coverage(s, z, n) for s, z, n in zip((rows, cols), self.size, size, strict=True)]
        return mean * (len(rows) * len(cols)) / tf.constant(np.outer(*cover), mean.dtype)


def _span(start, size, length):
    """(B, length) bool: positions in [start, start + size) for each of the B starts."""
    position = tf.range(length)[None, :]
    return (position >= start[:, None]) & (position < start[:, None] + size)


def _coverage(offsets, size, length):
    """How many patches cover each position of an axis, float (length,)."""
    cover = np.zeros(length, np.float32)
    for offset in offsets:
        cover[offset : offset + size] += 1
    return cover
