"""Grad-CAM and Guided Grad-CAM (Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391).

Grad-CAM weighs each channel of a layer by the spatial mean of the gradient of a class score
(logits, before softmax) and keeps the positive part of the weighted sum. Guided Grad-CAM multiplies
the guided-backpropagation gradient by the upsampled Grad-CAM map.

    maps = GradCAM(model, layer="conv5_4")(images, class_ids=[281, 243])   # (N, 2, H, W)
    result = GuidedGradCAM(model).explain(images)      # .maps (N, 1, H, W, 3), .grad_cam, .class_ids
"""

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from lib.methods.base import Scores, activations_and_gradients, cached
from lib.methods.class_map import ClassMap
from lib.methods.rules import Rules
from lib.methods.targets import ClassIds, outcome, scores


class GradCAM(ClassMap):
    """Grad-CAM class maps; the K classes of an image share one forward pass.

    Args:
        model: a functional or Sequential Keras model (nested models are fine); a final softmax is
            skipped, so scores are logits.
        layer: name or object of a layer with (N, h, w, C) output; None picks the last such layer.

    Raises:
        LayerError: for an unknown or non-spatial layer.
    """

    def channel_weights(self, activations, gradients):
        """The spatial mean of the gradient of each score, per channel (N, K, C)."""
        return tf.reduce_mean(gradients, axis=(2, 3))


class GuidedGradCAM(GradCAM):
    """Guided Grad-CAM: guided-backpropagation gradients times the upsampled Grad-CAM map.

    One forward pass runs through the guided graph (its forward values are exact); the Grad-CAM
    gradients take the normal rules in the part above the layer, which is run a second time only if
    it contains ReLUs (e.g. VGG's fc6, fc7). Then one backward pass per class reaches the input.
    `explain()` also returns the Grad-CAM maps (`Explanation.grad_cam`).

    Args:
        model: as for `GradCAM`; it must contain ReLUs.
        layer: as for `GradCAM`.

    Raises:
        LayerError: for an unknown or non-spatial layer, or a model without ReLUs.
    """

    def __init__(self, model: keras.Model, layer: str | keras.layers.Layer | None = None):
        super().__init__(model, layer)
        self._rules = Rules("guided", self._base + self._head)
        self._guided_head = any(s.name in self._rules.relus for s in self._head)

    def __call__(self, images: npt.ArrayLike, class_ids: ClassIds = None) -> np.ndarray:
        """Guided Grad-CAM maps.

        Args:
            images: as for `GradCAM.__call__`.
            class_ids: as for `GradCAM.__call__`.

        Returns:
            float32 (N, K, H, W, 3): raw values in input space (gradient times a [0, 1] map);
            normalise them for display with the plotting helpers.
        """
        return self.explain(images, class_ids).maps

    def _compute(self, x, targets):
        guided, fields = self._rules.call, {}

        def head(activations, values):
            normal, found = outcome(self._logits(values), targets)
            fields.update(found)
            if not self._guided_head:
                return Scores(for_layer=normal, for_input=normal)
            ids = found.get("class_ids", targets)
            return Scores(for_layer=normal, for_input=scores(self._logits(values, guided), ids)[0])

        def base(x):
            return self._run_base(x, guided)

        activations, layer_grads, input_grads = activations_and_gradients(x, base, head)
        grad_cam = self._class_maps(activations, layer_grads, x.shape[1:3])
        return {"maps": input_grads * grad_cam[..., None], "grad_cam": grad_cam, **fields}  # (N, K, H, W, 3)


def grad_cam(
    model: keras.Model, images: npt.ArrayLike, class_ids: ClassIds = None, layer: str | None = None
) -> np.ndarray:
    """One-off form of `GradCAM(model, layer)(images, class_ids)`.

    The `GradCAM` object is kept with the model (`base.cached`), so calling this in a loop does not
    rebuild or retrace, and a deleted model frees it; still, prefer one `GradCAM` object for many calls.

    Returns:
        float32 (N, K, H, W) in [0, 1].
    """
    key = ("grad_cam", layer if isinstance(layer, str) or layer is None else id(layer))
    return cached(model, key, lambda: GradCAM(model, layer))(images, class_ids)
