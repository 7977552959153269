"""Feature visualization by activation maximisation (Olah, Mordvintsev & Schubert, Distill 2017).

The image a unit "wants to see": start from noise and climb the gradient of the unit's activation
w.r.t. the image. What makes the result readable is the Distill article's recipe, kept here:
a decorrelated Fourier parameterisation (`parameterization.FourierImage`), random jitter, scale and
rotation at every step (`robustness.Transforms`), and optionally total-variation and L2 penalties.
Several objectives are optimised at once, one image each, in one compiled Adam step.

    from lib.methods.feature_visualization import FeatureVisualization, channel, class_logit
    images = FeatureVisualization(model)([channel("fire5_concat", c) for c in range(8)], steps=512, seed=0)
    #   float32 (8, H, W, 3) in the model's input range (RGB 0-255 for the lib.nets builders)
    FeatureVisualization(model)(channel("fire5_concat", 3) + 0.5 * class_logit(281))

The model's graph is run step by step (`graph.ModelGraph`), so nested models work and the model
itself is never changed; only the layers the objectives read are computed.
"""

import numpy as np
import tensorflow as tf

from lib.methods.image_optimization import ImageOptimization
from lib.methods.objectives import Objective, as_objectives, channel, class_logit, direction, unit
from lib.methods.robustness import NO_TRANSFORMS, Transforms, alpha_norm, total_variation

__all__ = [
    "NO_TRANSFORMS",
    "FeatureVisualization",
    "Objective",
    "Transforms",
    "channel",
    "class_logit",
    "direction",
    "unit",
]


class FeatureVisualization(ImageOptimization):
    """Images that maximise objectives, one per objective, optimised as one batch.

    Args:
        model, parameterization, transforms, learning_rate, size, value_range: see
            `image_optimization.ImageOptimization` (defaults: Fourier, the Distill transforms, 0.05).
        tv: weight of the total-variation penalty (0 leaves it out).
        l2: weight of the L2 penalty that pulls colours to mid-grey (0 leaves it out).
    """

    # A channel that no pixel of the grey start turns on would get no gradient at all; the redirected
    # ReLU gradient (as in Lucid) over the first steps lets it find what turns it on. Forward values
    # are exact.
    redirect_steps = 32

    def __init__(self, model, *, tv=0.0, l2=0.0, **options):
        super().__init__(model, **options)
        self.tv, self.l2 = float(tv), float(l2)

    def __call__(self, objectives, steps: int = 512, seed: int = 0, progress: bool = True) -> np.ndarray:
        """Optimise one image per objective.

        Args:
            objectives: an `Objective` or a list of them (`channel`, `unit`, `class_logit`,
                `direction`, and sums and multiples of these).
            steps: Adam steps.
            seed: the same seed gives the same images.
            progress: show a progress bar.

        Returns:
            float32 (B, H, W, 3), one image per objective, in the model's input range.

        Raises:
            InputError: for objectives that are not `Objective`s or read a channel the layer lacks.
            LayerError: for an unknown layer.
        """
        objectives = as_objectives(objectives)
        self._check(objectives)
        return self.optimize(("visualize", objectives), len(objectives), (), steps, seed, progress)

    def objective_values(self, images, objectives):
        """The objectives' values on `images` (B, H, W, 3), one per image: float32 (B,)."""
        objectives = as_objectives(objectives)
        self._check(objectives)
        return self._values(self._images(images), objectives).numpy()

    def loss(self, key, images, unit, *extra):
        loss = -self._values(images, key[1])
        if self.tv:
            loss += self.tv * total_variation(unit)
        if self.l2:
            loss += self.l2 * alpha_norm(unit, 2.0)
        return loss

    def _values(self, images, objectives):
        layers = tuple(dict.fromkeys(layer for o in objectives for layer in o.layers))
        found = dict(zip(layers, self.activations(images, layers), strict=True))
        return tf.stack([o.value(lambda layer, b=b: found[layer][b]) for b, o in enumerate(objectives)])

    def _check(self, objectives):
        """Resolve every layer the objectives read and check their channels and positions."""
        for term in (t for o in objectives for t in o.terms):
            term.check(self.graph.shape_of(self.key_of(term.layer)))
