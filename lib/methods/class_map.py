"""The base of the class-map methods: a per-class weighting of a layer's channels, one hook to override.

Every class-map method computes, for each image and target class, a weighted sum of the channels
of a layer's activations A (N, h, w, C), keeps its positive part, resizes it to the image and scales
it to [0, 1] (`maps.class_maps`). The methods differ only in the weights, so a subclass overrides
one hook:

    channel_weights(activations, gradients) -> (N, K, C)         one weight per channel
    spatial_weights(activations, gradients) -> (N, K, h, w, C)   one weight per position and channel

where `gradients` (N, K, h, w, C) are the gradients of the K scores (logits) w.r.t. A, from one
forward and K backward passes (`base.activations_and_gradients`). `spatial_weights` defaults to the
channel weights. Grad-CAM is

    class GradCAM(ClassMap):
        def channel_weights(self, activations, gradients):
            return tf.reduce_mean(gradients, axis=(2, 3))

A method whose weights need no gradients sets `needs_gradients = False` (Eigen-CAM) and gets
`gradients=None`, or overrides `_activations_and_gradients` (CAM reads them off the dense weights).
Weights for one target, (N, 1, ...), give the same map for each of the K targets (class-agnostic).
"""

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from lib.methods.base import ClassExplainer, Scores, activations_and_gradients
from lib.methods.class_columns import ClassColumns
from lib.methods.maps import class_maps
from lib.methods.targets import ClassIds, outcome


class ClassMap(ClassExplainer):
    """A class-map method: maps (N, K, H, W) in [0, 1] from the weighted channels of one layer.

    Args:
        model: a functional or Sequential Keras model (nested models are fine); a final softmax or
            log-softmax is skipped, so scores are logits.
        layer: name or object of a layer with (N, h, w, C) output; None picks the last such layer.

    Attributes:
        layer: qualified name of the layer ("inner/conv5_4" inside a nested model).

    Raises:
        LayerError: for an unknown or non-spatial layer.
    """

    needs_gradients = True  # False: the hooks get gradients=None and no backward pass is run

    def __init__(self, model: keras.Model, layer: str | keras.layers.Layer | None = None):
        super().__init__(model, layer)
        self._base, self._head = self.graph.split(self.layer_key)
        self._columns = ClassColumns.of(self.graph, self._head)

    def __call__(self, images: npt.ArrayLike, class_ids: ClassIds = None) -> np.ndarray:
        """Class maps for the images: `explain(images, class_ids).maps`.

        Args:
            images: float32 (N, H, W, 3), as the model expects (0-255 RGB for our builders).
            class_ids: None, int, K ints, N lists of K ints, or a callable; see `lib.methods.targets`.

        Returns:
            float32 (N, K, H, W) in [0, 1]; all-zero where no part of the layer raises the score.

        Raises:
            InputError: for bad images or class ids.
        """
        return self.explain(images, class_ids).maps

    def channel_weights(self, activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
        """The hook: one weight per channel, float (N, K, C), from A (N, h, w, C) and its gradients."""
        raise NotImplementedError(f"{type(self).__name__} must override channel_weights or spatial_weights")

    def spatial_weights(self, activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
        """The other hook: weights (N, K, h, w, C), or (N, K, C) for channel weights (the default)."""
        return self.channel_weights(activations, gradients)

    def _compute(self, x, targets):
        activations, gradients, fields = self._activations_and_gradients(x, targets)
        maps = self._class_maps(activations, gradients, x.shape[1:3])  # (N, K or 1, H, W)
        targets_shape = tf.shape(fields["scores"])
        return {"maps": tf.broadcast_to(maps, tf.concat([targets_shape, tf.shape(maps)[2:]], 0)), **fields}

    def _class_maps(self, activations, gradients, size):
        return class_maps(activations, self.spatial_weights(activations, gradients), size)

    def _activations_and_gradients(self, x, targets):
        """(A, gradients of the K scores w.r.t. A, `targets.outcome` fields), normal gradient rules."""
        if not self.needs_gradients:
            activations, _, fields = self._forward(x, targets)
            return activations, None, fields
        fields = {}

        def head(activations, values):
            return Scores(for_layer=self._target_scores(self.graph.run(self._head, values), targets, fields))

        activations, gradients, _ = activations_and_gradients(x, self._run_base, head, to_input=False)
        return activations, gradients, fields

    def _forward(self, x, targets):
        """(A, every value up to the logits, `targets.outcome` fields): one forward pass, no tape."""
        activations, values = self._run_base(x)
        values = self.graph.run(self._head, values)
        return activations, values, outcome(values[self.graph.logits_key], targets)[1]

    def _run_base(self, x, call=None):
        values = self.graph.run(self._base, {self.graph.input_key: x}, call)
        return values[self.layer_key], values

    def _logits(self, values, call=None):
        return self.graph.run(self._head, values, call)[self.graph.logits_key]
