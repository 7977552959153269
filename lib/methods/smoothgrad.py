"""SmoothGrad (Smilkov et al. 2017, https://arxiv.org/abs/1706.03825) and VarGrad (Adebayo et al.
2018, https://arxiv.org/abs/1810.03307): an input-space method averaged over noisy copies of the image.

With M(x) the wrapped method's map, S samples and sigma = noise * (max(x) - min(x)) for each image
(the paper's noise level, relative to the image's range):

    SmoothGrad(x)          = 1/S sum_s M(x + sigma z_s)
    SmoothGrad-squared(x)  = 1/S sum_s M(x + sigma z_s)^2        (squared=True)
    VarGrad(x)             = 1/S sum_s (M(x + sigma z_s) - SmoothGrad(x))^2

where z_s is `tf.random.stateless_normal((H, W, 3), seed=[seed, s])`, the same noise pattern for
every image (scaled by its sigma), so a batch gives the maps of one image at a time. The class of
`class_ids=None` is the clean image's top class, kept for every noisy copy.

    maps = SmoothGrad(GuidedBackprop(model), samples=50, noise=0.15)(images)     # (N, 1, H, W, 3)
    spread = VarGrad(IntegratedGradients(model, steps=16), samples=16).explain(images, TopK(2))
"""

import numbers

import numpy as np
import numpy.typing as npt
import tensorflow as tf

from lib.errors import InputError
from lib.methods.base import ClassExplainer
from lib.methods.grad_cam import GuidedGradCAM
from lib.methods.input_gradient import InputGradient
from lib.methods.sampling import clean_targets, sample_moments
from lib.methods.targets import ClassIds

PATTERN_BYTES = 256 * 2**20  # the most memory SmoothGrad keeps its noise patterns in, per image shape


class SmoothGrad(ClassExplainer):
    """SmoothGrad of an input-space method: its maps averaged over noisy copies of each image.

    The noisy copies run in one compiled pass, `batch_size` at a time, through the wrapped method's
    own pass (`_compute`), so memory is bounded by one chunk whatever the number of samples.

    Args:
        method: an input-space method, e.g. `GuidedBackprop(model)` or `IntegratedGradients(model)`.
        samples: S >= 1, the noisy copies of each image.
        noise: sigma as a fraction of each image's range (max - min); 0 gives the wrapped method's
            maps, the paper finds 0.1 - 0.2 best.
        batch_size: the most noisy images the wrapped method explains at once.
        seed: the noise is `stateless_normal(seed=[seed, s])` for sample s: the same seed, the same maps.
        squared: average the squares of the maps (SmoothGrad-squared) instead of the maps.

    Raises:
        InputError: for a method that is not input-space, samples or batch_size below 1, a negative
            or non-finite noise, or a seed that is not an int.
    """

    def __init__(
        self,
        method: ClassExplainer,
        samples: int = 50,
        noise: float = 0.15,
        batch_size: int = 32,
        seed: int = 0,
        squared: bool = False,
    ):
        from lib.dataflow.images import _positive_int  # imported on use: keeps lib.methods light

        name = type(self).__name__
        if not is_input_space(method):
            raise InputError(
                f"{name} wraps an input-space method with (N, K, H, W, 3) maps (GuidedBackprop, "
                f"Saliency, IntegratedGradients, GuidedGradCAM, ...), not a {type(method).__name__}"
            )
        if isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not 0 <= noise < np.inf:
            raise InputError(f"noise={noise!r}; pass a fraction of the image range >= 0, e.g. 0.15")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise InputError(f"seed={seed!r}; pass an int")
        self.method, self.samples = method, _positive_int("samples", samples)
        self.noise, self.batch_size, self.seed = (
            float(noise),
            _positive_int("batch_size", batch_size),
            int(seed),
        )
        self.squared = bool(squared)
        # The wrapped method has checked the weights and flattened the model: share its graph and layer.
        self.model, self.graph = method.model, method.graph
        self.layer_key, self.layer = method.layer_key, method.layer
        self._functions = {}
        self._steps = self.graph.ancestors(self.graph.steps, self.graph.logits_key)

    def __call__(self, images: npt.ArrayLike, class_ids: ClassIds = None) -> np.ndarray:
        """The smoothed maps of the images.

        Args:
            images: float32 (N, H, W, 3), as the model expects.
            class_ids: None, `TopK`, int, K ints, N lists of K ints, or a callable; see `lib.methods.targets`.

        Returns:
            float32 (N, K, H, W, 3), raw values in the wrapped method's units (squared for
            SmoothGrad-squared and VarGrad). `explain()` gives them with the clean images' classes,
            logits and probabilities.
        """
        return self.explain(images, class_ids).maps

    def _noisy(self, x, sigma, n, s, patterns):
        """Noisy copies x[n] + sigma[n] z_s, (B, H, W, 3), of images x (N, H, W, 3); n and s int32 (B,).

        `patterns` holds every z_s when they fit `PATTERN_BYTES` (`_patterns`). Otherwise the chunk
        draws its own: its samples s are consecutive (`sample_moments` runs sample by sample), so it
        draws only their few patterns, each once for all images.
        """
        if patterns is None:
            first = s[0]
            patterns = self._draw(tf.range(first, s[-1] + 1), x.shape[1:])  # P <= (B - 1) // N + 2
            s = s - first
        return tf.gather(x, n) + tf.gather(sigma, n)[:, None, None, None] * tf.gather(patterns, s)

    def _draw(self, samples, shape):
        """The noise patterns z_s (P, H, W, 3) of `samples` (P,): 1.8 ms of CPU each at 227x227."""
        seeds = tf.stack(
            [tf.fill(tf.shape(samples), tf.constant(self.seed, tf.int64)), tf.cast(samples, tf.int64)], 1
        )
        return tf.map_fn(
            lambda seed: tf.random.stateless_normal(shape, seed), seeds, fn_output_signature=tf.float32
        )

    def _patterns(self, shape):
        """All S patterns (S, H, W, 3), drawn once when the pass is traced and kept with it, or None.

        Drawing them costs about 10% of a SmoothGrad of Saliency on SqueezeNet, in every call; kept,
        they cost S * H * W * 3 floats (31 MB for the default 50 samples at 227x227). Above
        `PATTERN_BYTES` they are drawn in each chunk instead, so memory stays bounded by the chunk.
        """
        if self.samples * np.prod(shape) * 4 > PATTERN_BYTES:
            return None
        with tf.init_scope():  # computed eagerly, captured by the compiled pass as a constant input
            return self._draw(tf.range(self.samples), shape)

    def _compute(self, x, targets):
        targets_of, fields = clean_targets(self.graph, self._steps, x, targets)
        sigma = self.noise * (tf.reduce_max(x, axis=(1, 2, 3)) - tf.reduce_min(x, axis=(1, 2, 3)))  # (N,)

        patterns = self._patterns(x.shape[1:])

        def evaluate(n, s):
            with self.graph.unchecked():  # the clean pass was checked, or bounded (`bounds`)
                maps = self.method._compute(self._noisy(x, sigma, n, s, patterns), targets_of(n))["maps"]
            return tf.square(maps) if self.squared else maps

        shape = (fields["scores"].shape[1], *x.shape[1:])
        return {"maps": self._reduce(x.shape[0], evaluate, shape), **fields}

    def _reduce(self, num_images, evaluate, shape):
        """The mean over samples of `evaluate`, (N, K, H, W, 3)."""
        return sample_moments(num_images, self.samples, self.batch_size, evaluate, shape)[0]


def is_input_space(method) -> bool:
    """True for the methods whose maps are (N, K, H, W, 3) values in input space, which noise can
    smooth: the `InputGradient` methods (guided backpropagation, saliency, Gradient x Input,
    Integrated Gradients), Guided Grad-CAM, and SmoothGrad itself."""
    return isinstance(method, (InputGradient, GuidedGradCAM, SmoothGrad))


class VarGrad(SmoothGrad):
    """VarGrad: the variance over noisy copies of an input-space method's maps (1/S, not 1/(S - 1)).

    Args:
        method, samples, noise, batch_size, seed: as for `SmoothGrad`.

    Raises:
        InputError: as for `SmoothGrad`.
    """

    def __init__(
        self,
        method: ClassExplainer,
        samples: int = 50,
        noise: float = 0.15,
        batch_size: int = 32,
        seed: int = 0,
    ):
        super().__init__(method, samples, noise, batch_size, seed)

    def _reduce(self, num_images, evaluate, shape):
        _, m2 = sample_moments(num_images, self.samples, self.batch_size, evaluate, shape, variance=True)
        return m2 / self.samples
