"""Integrated Gradients (Sundararajan, Taly and Yan, ICML 2017, https://arxiv.org/abs/1703.01365).

The attribution of pixel i to the score f of a class is the gradient integrated along the straight
path from a baseline b to the image x, which we compute with m = `steps` gradients:

    IG_i(x) = (x_i - b_i) * integral_0^1 df/dx_i(b + a (x - b)) da
            ~ (x_i - b_i) * sum_j w_j df/dx_i(b + a_j (x - b))

By the fundamental theorem of calculus the attributions sum to f(x) - f(b) ("completeness"); how
close the sum comes is the quadrature's error. The rule is the midpoint rule after the substitution
a = u^3: nodes a_j = u_j^3 at the midpoints u_j = (j + 1/2)/m, weights w_j proportional to u_j^2
(the Jacobian 3u^2), normalised to sum to 1 so that a constant gradient (a linear model) is
integrated exactly. It crowds the nodes towards the baseline, where ImageNet networks change their
score fastest and least smoothly: from black, SqueezeNet and EfficientNet-Lite0 gain most of the
score in the first 5-10% of the path, through kinks of their ReLUs. On the 13 photos of
`lib.dataflow.photos` and both networks, at 64 steps, the median completeness error is 1.1% (4.7%
at worst) against 5% (41%) for the plain midpoint rule (doc/attributions/sampling.md). Where the
gradient is smooth the error is O(1/m^2), as for the midpoint rule (for a gradient linear along the
path, 0.0001 of the score difference at 64 steps). Scores are logits; the class of `class_ids=None`
is the clean image's top class, kept for every point of the path.

    maps = IntegratedGradients(model, steps=64)(images)          # (N, 1, H, W, 3)
    result = IntegratedGradients(model, baseline=blur).explain(images, class_ids=[281])
"""

from collections.abc import Callable

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from lib.errors import InputError
from lib.methods.finite import checked
from lib.methods.input_gradient import InputGradient
from lib.methods.sampling import clean_targets, sample_moments
from lib.methods.targets import ClassIds

Baseline = float | npt.ArrayLike | Callable[[tf.Tensor], tf.Tensor] | None


def path_rule(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The quadrature on the path: nodes a_j = u_j^3, u_j = (j + 1/2)/m, and weights u_j^2 / sum u^2.

    Returns:
        (nodes, weights): float32 (m,) each; nodes in (0, 1), weights summing to 1.
    """
    u = (np.arange(steps) + 0.5) / steps
    return (u**3).astype(np.float32), (u**2 / np.sum(u**2)).astype(np.float32)


class IntegratedGradients(InputGradient):
    """Integrated Gradients: (x - baseline) times the mean gradient along the straight path.

    All steps of all images run in one compiled pass, `batch_size` path points at a time, so memory
    is bounded by one chunk whatever `steps` and the number of images.

    Args:
        model: a functional or Sequential Keras model; a final softmax is skipped (scores are logits).
        steps: m >= 1, the gradients taken on the path (`path_rule`).
        baseline: None for black (all-zero pixels, black for RGB 0-255 images), a number (a uniform
            image of that value), an image (H, W, 3) used for every image, or a callable
            `x (N, H, W, 3) -> baseline (N, H, W, 3)` in TensorFlow ops (it runs inside the pass,
            e.g. a blur of each image).
        batch_size: the most path points evaluated at once.

    Raises:
        InputError: for steps or batch_size below 1, or a baseline that is not finite or not of the
            model's input size.
    """

    def __init__(self, model: keras.Model, steps: int = 64, baseline: Baseline = None, batch_size: int = 32):
        from lib.dataflow.images import _positive_int  # imported on use: keeps lib.methods light

        super().__init__(model)
        self.steps = _positive_int("steps", steps)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.baseline = baseline if callable(baseline) else self._baseline_image(baseline)

    def __call__(self, images: npt.ArrayLike, class_ids: ClassIds = None) -> np.ndarray:
        """Integrated gradients of the class scores.

        Args:
            images: float32 (N, H, W, 3), as the model expects.
            class_ids: None, `TopK`, int, K ints, N lists of K ints, or a callable; see `lib.methods.targets`.

        Returns:
            float32 (N, K, H, W, 3), raw attributions in the images' pixel space; over each map they
            sum to about score(x) - score(baseline). `explain()` gives them with the clean images'
            classes, logits and probabilities.
        """
        return self.explain(images, class_ids).maps

    def _baseline_image(self, baseline):
        """The baseline as float32 (H, W, 3) or a scalar, checked against the model's input."""
        value = np.asarray(0.0 if baseline is None else baseline, dtype=object)
        try:
            value = value.astype(np.float32)
        except (TypeError, ValueError):
            raise InputError(
                f"baseline of type {type(baseline).__name__}; pass None, a number, an (H, W, 3) image "
                "or a callable"
            ) from None
        expected = self.graph.input_shape[1:]
        fits = value.ndim == 3 and all(e in (None, v) for e, v in zip(expected, value.shape, strict=True))
        if value.ndim and not fits:
            raise InputError(
                f"baseline has shape {value.shape} but the model expects images {expected}; pass one "
                "(H, W, 3) image, a number, or a callable"
            )
        if not np.isfinite(value).all():
            raise InputError("baseline holds NaN or Inf; pass finite pixel values")
        return value

    def _baseline(self, x):
        """The baseline of each image, (N, H, W, 3)."""
        if not callable(self.baseline):
            if self.baseline.ndim and self.baseline.shape != tuple(x.shape[1:]):
                raise InputError(
                    f"baseline has shape {self.baseline.shape} but the images {tuple(x.shape[1:])}; "
                    "pass a baseline of the images' size"
                )
            return tf.broadcast_to(tf.constant(self.baseline), tf.shape(x))
        baseline = tf.convert_to_tensor(self.baseline(x), dtype=tf.float32)
        if baseline.shape != x.shape:
            raise InputError(
                f"the baseline callable returned shape {baseline.shape} for images {x.shape}; "
                "return one baseline per image, of the same shape"
            )
        return checked(baseline)

    def _compute(self, x, targets):
        targets_of, fields = clean_targets(self.graph, self._steps, x, targets)
        baseline = self._baseline(x)
        delta = x - baseline  # (N, H, W, 3)
        nodes, weights = (tf.constant(v) for v in path_rule(self.steps))

        def evaluate(n, j):  # m w_j times the gradients at the nodes j (int32 (B,)) of images n's paths
            points = tf.gather(baseline, n) + tf.gather(nodes, j)[:, None, None, None] * tf.gather(delta, n)
            weight = self.steps * tf.gather(weights, j)[:, None, None, None, None]
            with self.graph.unchecked():  # the clean pass was checked, or bounded (`bounds`)
                gradients = self._input_gradients(points, targets_of(n))[0]
            return weight * gradients  # (B, K, H, W, 3)

        shape = (fields["scores"].shape[1], *x.shape[1:])  # (K, H, W, 3)
        mean, _ = sample_moments(x.shape[0], self.steps, self.batch_size, evaluate, shape)
        return {"maps": delta[:, None] * mean, **fields}
