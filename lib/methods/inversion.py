"""Inverting a layer's features (Mahendran & Vedaldi, "Understanding Deep Image Representations by
Inverting Them", CVPR 2015).

What does a layer keep of a photo? Find an image whose features at the layer match the photo's:
minimise the normalised Euclidean feature error ||phi(x) - phi(x0)||^2 / ||phi(x0)||^2 plus the
paper's two natural-image priors, the alpha-norm (alpha = 6, which stops saturated colours) and the
total variation TV^beta (beta = 2). Early layers give back the photo; deeper ones keep the objects'
parts and lose their exact layout and colours, as the paper shows for AlexNet.

    recon = Inversion(model, layer="fire3_concat")(photos, steps=300, seed=0)   # float32 (N, H, W, 3)
    errors = Inversion(model, layer="fire3_concat").feature_error(recon, photos)  # (N,)

The same machinery as feature visualization (`image_optimization`): one compiled Adam step for the
whole batch, the graph run layer by layer, the model unchanged.
"""

import numpy as np
import numpy.typing as npt
import tensorflow as tf

from lib.methods.image_optimization import ImageOptimization
from lib.methods.robustness import NO_TRANSFORMS, alpha_norm, total_variation


class Inversion(ImageOptimization):
    """Images whose features at `layer` match the given photos'; see the module docstring.

    Args:
        model: a functional or Sequential Keras model (nested models are fine); it is not changed.
        layer: the layer whose features are matched, by name (qualified or plain) or object.
        alpha, alpha_weight: the alpha-norm prior's exponent and weight (0 leaves it out).
        beta, tv_weight: the total-variation prior's exponent and weight (0 leaves it out).
        parameterization, transforms, learning_rate, size, value_range: see
            `image_optimization.ImageOptimization` (defaults here: pixels, as in the
            paper, no transforms, 0.2 annealed to 0; the Fourier images of feature visualization give
            smoother reconstructions from deep layers but converge more slowly on fine detail).
    """

    def __init__(
        self, model, layer, *, alpha=6.0, alpha_weight=1e-2, beta=2.0, tv_weight=1.0,
        parameterization="pixel", transforms=NO_TRANSFORMS, learning_rate=0.2, anneal=True, **options,
    ):  # fmt: skip
        super().__init__(
            model, parameterization=parameterization, transforms=transforms, learning_rate=learning_rate,
            anneal=anneal, **options,
        )  # fmt: skip
        self.layer = self.graph.find(layer).name
        self.alpha, self.alpha_weight = float(alpha), float(alpha_weight)
        self.beta, self.tv_weight = float(beta), float(tv_weight)

    def __call__(
        self, photos: npt.ArrayLike, steps: int = 300, seed: int = 0, progress: bool = True
    ) -> np.ndarray:
        """Reconstruct each photo from its features at the layer.

        Args:
            photos: float32 (N, H, W, 3), as the model expects (RGB 0-255 for the `lib.nets` builders).
            steps: Adam steps.
            seed: the same seed gives the same reconstructions.
            progress: show a progress bar.

        Returns:
            float32 (N, H, W, 3) in the model's input range.

        Raises:
            InputError: for images of the wrong shape, or holding NaN or Inf.
        """
        target = self._features(self._images(photos))
        return self.optimize(("invert", self.layer), target.shape[0], (target,), steps, seed, progress)

    def feature_error(self, images: npt.ArrayLike, photos: npt.ArrayLike) -> np.ndarray:
        """||phi(image) - phi(photo)|| / ||phi(photo)|| per pair at the layer: float32 (N,)."""
        found, target = self._features(self._images(images)), self._features(self._images(photos))
        return (_sum_of_squares(found - target) / _sum_of_squares(target)).numpy() ** 0.5

    def loss(self, key, images, unit, target):
        features = self._features(images)
        loss = _sum_of_squares(features - target) / _sum_of_squares(target)
        if self.alpha_weight:
            loss += self.alpha_weight * alpha_norm(unit, self.alpha)
        if self.tv_weight:
            loss += self.tv_weight * total_variation(unit, self.beta)
        return loss

    def _features(self, images):
        return self.activations(images, [self.layer])[0]


def _sum_of_squares(values):
    """Sum of squares per image, (N,); a small floor keeps an all-zero target from dividing by zero."""
    return tf.reduce_sum(tf.square(values), axis=tuple(range(1, values.shape.rank))) + 1e-12


def psnr(images: npt.ArrayLike, photos: npt.ArrayLike, peak: float = 255.0) -> np.ndarray:
    """Peak signal-to-noise ratio in dB of each image (N, H, W, 3) against its photo: float32 (N,)."""
    from skimage.metrics import peak_signal_noise_ratio  # imported on use: keeps lib.methods light

    pairs = zip(np.asarray(images, np.float64), np.asarray(photos, np.float64), strict=True)
    return np.array([peak_signal_noise_ratio(p, i, data_range=peak) for i, p in pairs], np.float32)
