"""Guided backpropagation (Springenberg et al. 2014, https://arxiv.org/abs/1412.6806).

The gradient of a class score (logits) w.r.t. the input pixels, where every ReLU passes back only
positive gradients and only where its forward input was positive. The rule is applied while running
the graph (see `lib.methods.rules`), never to the user's model.

    grads = GuidedBackprop(model)(images, class_ids=[281])    # (N, 1, H, W, 3)
"""

import keras
import numpy as np
import numpy.typing as npt

from lib.methods.base import ClassExplainer, Scores, activations_and_gradients
from lib.methods.rules import Rules
from lib.methods.targets import ClassIds, outcome


class GuidedBackprop(ClassExplainer):
    """Guided-backpropagation gradients; the K classes of an image share one forward pass.

    Args:
        model: a functional or Sequential Keras model with ReLUs (fused, layers or nested).

    Raises:
        LayerError: if the model contains no ReLU (the result would silently be plain gradients).
    """

    def __init__(self, model: keras.Model):
        super().__init__(model, needs_layer=False)
        self._steps = self.graph.ancestors(self.graph.steps, self.graph.logits_key)
        self._rules = Rules("guided", self._steps)

    def __call__(self, images: npt.ArrayLike, class_ids: ClassIds = None) -> np.ndarray:
        """Guided gradients of the class scores w.r.t. the images.

        Args:
            images: float32 (N, H, W, 3), as the model expects.
            class_ids: None, int, K ints, N lists of K ints, or a callable; see `lib.methods.targets`.

        Returns:
            float32 (N, K, H, W, 3), raw gradients in the images' pixel space; `explain()` gives
            them with the classes, logits and probabilities explained.
        """
        return self.explain(images, class_ids).maps

    def _compute(self, x, targets):
        fields = {}

        def base(x):
            values = self.graph.run(self._steps, {self.graph.input_key: x}, self._rules.call)
            return values[self.graph.logits_key], values

        def head(logits, values):
            scores, found = outcome(logits, targets)
            fields.update(found)
            return Scores(for_input=scores)

        return {"maps": activations_and_gradients(x, base, head)[2], **fields}
