"""RISE: randomized input sampling for explanation (Petsiuk, Das & Saenko, BMVC 2018,
https://arxiv.org/abs/1806.07421).

The image is shown to the model through M random soft masks; a pixel matters for class c as much as
the class probability is high when the pixel is kept. The map is the Monte Carlo estimate of
E[P_c(x * m) | m(i, j) = 1] of the paper:

    map[c] = 1 / (M * p) * sum_m P_c(x * m + value * (1 - m)) * m

Each mask is a binary `grid` x `grid` array whose cells are kept with probability p, upsampled
bilinearly to (grid + 1) * cell pixels (cell = ceil(H / grid)) and cropped to the image at a random
shift in [0, cell) on each axis, so the kept regions do not align with a fixed grid. The grids and
shifts come from stateless random ops seeded by `seed`; the (H, W) masks are made in the graph chunk
by chunk, never all at once. The values are raw (probabilities, about P_c(x) where nothing matters),
not rescaled to [0, 1].

    maps = RISE(model, masks=4000)(images, class_ids=None)   # (N, 1, H, W)
"""

import math
import numbers

import keras
import numpy.typing as npt
import tensorflow as tf

from lib.errors import InputError
from lib.methods.perturbation import Perturbation, positive_int
from lib.methods.score_cam import interpolation
from lib.methods.targets import scores


class RISE(Perturbation):
    """RISE saliency: the probability-weighted mean of random upsampled binary masks.

    The same M masks (from `seed`) serve every image and class; they run `batch_size` masked images
    at a time inside one compiled pass, with the classes fixed on the clean image (its top class
    for `class_ids=None`). With a callable `class_ids`, the callable's value on the masked image's
    logits replaces the probability; it is applied to chunks of masked images, so it must treat
    rows independently.

    Args:
        model: a functional or Sequential Keras model; a final softmax is skipped and applied here.
        masks: the number M of random masks (the paper uses 4000 for ResNet-50).
        grid: cells per side of the binary grid, s in the paper (7).
        p: probability that a grid cell is kept (0.5 in the paper).
        seed: seed of the grids and shifts; the same seed gives the same masks.
        value: what masked pixels fade to, one value or one per channel in the model's input space
            (0, black for the `lib.nets` builders, is the paper's x * m).
        batch_size: masked images per forward pass.

    Raises:
        InputError: for a number of masks, grid, p, seed, value or batch size that is not usable.
    """

    def __init__(
        self,
        model: keras.Model,
        masks: int = 4000,
        grid: int = 7,
        p: float = 0.5,
        seed: int = 0,
        value: float | npt.ArrayLike = 0.0,
        batch_size: int = 32,
    ):
        self.num_masks, self.grid = positive_int(masks, "masks"), positive_int(grid, "grid")
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 < p <= 1:
            raise InputError(f"p={p!r}; pass the probability of keeping a grid cell, in (0, 1]")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**63:
            raise InputError(f"seed={seed!r}; pass a whole number from 0 to 2**63 - 1")
        self.p, self.seed = float(p), int(seed)
        super().__init__(model, batch_size, value)

    def mask_count(self, size):
        return self.num_masks

    def _cells(self, size):
        return tuple(math.ceil(n / self.grid) for n in size)

    def make_masks(self, index, size):
        """Masks (B, H, W): the upsampling's rows at each mask's shift @ its grid @ the columns' transpose.

        Bilinear resizing is separable, so a crop of the upsampled grid is two small matrix products
        of the crop's rows of the one-axis interpolation matrices with the s x s grid.
        """
        seed = tf.constant([self.seed, 0], tf.int64)
        grids = tf.random.stateless_uniform((self.num_masks, self.grid, self.grid), seed) < self.p
        grids = tf.cast(tf.gather(grids, index), tf.float32)  # (B, s, s)
        axes = []
        for axis, (n, cell) in enumerate(zip(size, self._cells(size), strict=True)):
            shifts = tf.random.stateless_uniform(
                (self.num_masks,), seed + [0, axis + 1], 0, cell, dtype=tf.int32
            )  # (M,) random crop offsets in [0, cell)
            upsample = interpolation(self.grid, (self.grid + 1) * cell)  # ((s + 1) * cell, s), bilinear
            axes.append(tf.gather(upsample, tf.gather(shifts, index)[:, None] + tf.range(n)))  # (B, n, s)
        return tf.matmul(tf.matmul(axes[0], grids), axes[1], transpose_b=True)

    def kept(self, masks):
        """The mask itself: x * m for `value=0`, as in the paper."""
        return masks

    def mask_weights(self, logits, targets, clean):
        """The class probabilities of the masked images (B, K), or the callable's values."""
        if callable(targets):
            return scores(logits, targets)[0]
        return tf.gather(tf.nn.softmax(logits, axis=-1), targets, axis=1, batch_dims=1)

    def normalise(self, mean, size):
        """The paper's 1 / (M * E[m]) of the sum, with E[m] = p."""
        return mean / self.p
