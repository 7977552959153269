"""The base of the input-space methods: the gradient of each class score w.r.t. the pixels.

One forward pass through the whole network under a gradient rule (`rules.Rules`: "normal" for plain
gradients, "guided" for guided backpropagation), then one backward pass per target to the input.
A subclass sets `rule`, and may override `attribution(x, gradients)` (Gradient x Input multiplies by
the input). The result is (N, K, H, W, 3) in the images' pixel space, raw values.
"""

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from lib.methods.base import ClassExplainer, Scores, activations_and_gradients
from lib.methods.class_columns import ClassColumns
from lib.methods.rules import Rules
from lib.methods.targets import ClassIds


class InputGradient(ClassExplainer):
    """Input-space attributions from the gradients of the class scores; see the module docstring.

    Args:
        model: a functional or Sequential Keras model (nested models are fine).

    Raises:
        LayerError: for a rule other than "normal" if the model contains no ReLU.
    """

    rule = "normal"

    def __init__(self, model: keras.Model):
        super().__init__(model, needs_layer=False)
        self._steps = self.graph.ancestors(self.graph.steps, self.graph.logits_key)
        self._rules = Rules(self.rule, self._steps)
        # plain gradients only: under another rule the ReLUs after the class layer follow that rule
        self._columns = ClassColumns.of(self.graph, self._steps) if self.rule == "normal" else None

    def __call__(self, images: npt.ArrayLike, class_ids: ClassIds = None) -> np.ndarray:
        """Attributions of the class scores in input space.

        Args:
            images: float32 (N, H, W, 3), as the model expects.
            class_ids: None, TopK, int, K ints, N lists of K ints, or a callable; see `lib.methods.targets`.

        Returns:
            float32 (N, K, H, W, 3), raw values in the images' pixel space; `explain()` gives them
            with the classes, logits and probabilities explained.
        """
        return self.explain(images, class_ids).maps

    def attribution(self, x: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
        """The hook: the attribution (N, K, H, W, 3) from the images (N, H, W, 3) and the gradients."""
        return gradients

    def _compute(self, x, targets):
        gradients, fields = self._input_gradients(x, targets)
        return {"maps": self.attribution(x, gradients), **fields}

    def _input_gradients(self, x, targets):
        """(gradients (N, K, H, W, 3) of the K scores w.r.t. x under the rule, `outcome` fields)."""
        fields = {}

        def base(x):
            values = self.graph.run(self._steps, {self.graph.input_key: x}, self._rules.call)
            return values[self.graph.logits_key], values

        def head(logits, values):
            return Scores(for_input=self._target_scores(values, targets, fields))

        return activations_and_gradients(x, base, head)[2], fields
