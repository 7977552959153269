"""Grad-CAM and Guided Grad-CAM (Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391).

Grad-CAM weighs each channel of a layer by the spatial mean of the gradient of a class score
(logits, before softmax) and keeps the positive part of the weighted sum. Guided Grad-CAM multiplies
the guided-backpropagation gradient by the upsampled Grad-CAM map.

    maps = GradCAM(model, layer="conv5_4")(images, class_ids=[281, 243])   # (N, 2, H, W)
"""

import collections

import tensorflow as tf

from lib.methods.base import Explainer, Scores, activations_and_gradients
from lib.methods.maps import class_maps
from lib.methods.rules import Rules
from lib.methods.targets import scores


class GradCAM(Explainer):
    """Grad-CAM class maps; the K classes of an image share one forward pass.

    Args:
        model: a functional or Sequential Keras model (nested models are fine); a final softmax is
            skipped, so scores are logits.
        layer: name or object of a layer with (N, h, w, C) output; None picks the last such layer.

    Raises:
        LayerError: for an unknown or non-spatial layer.
    """

    def __init__(self, model, layer=None):
        super().__init__(model, layer)
        self._base, self._head = self.graph.split(self.layer_key)

    def __call__(self, images, class_ids=None):
        """Class maps for the images.

        Args:
            images: float32 (N, H, W, 3), as the model expects (0-255 RGB for our builders).
            class_ids: None, int, K ints, N lists of K ints, or a callable; see `lib.methods.targets`.

        Returns:
            float32 (N, K, H, W) in [0, 1]; all-zero where no part of the layer raises the score.

        Raises:
            InputError: for bad images or class ids.
        """
        return self._call(images, class_ids)

    def _run_base(self, x, call=None):
        values = self.graph.run(self._base, {self.graph.input_key: x}, call)
        return values[self.layer_key], values

    def _logits(self, values, call=None):
        return self.graph.run(self._head, values, call)[self.graph.logits_key]

    def _compute(self, x, targets):
        def head(activations, values):
            return Scores(for_layer=scores(self._logits(values), targets)[0])

        activations, layer_grads, _ = activations_and_gradients(x, self._run_base, head, to_input=False)
        weights = tf.reduce_mean(layer_grads, axis=(2, 3))  # (N, K, C): mean over h, w
        return class_maps(activations, weights, x.shape[1:3])


class GuidedGradCAM(GradCAM):
    """Guided Grad-CAM: guided-backpropagation gradients times the upsampled Grad-CAM map.

    One forward pass runs through the guided graph (its forward values are exact); the Grad-CAM
    gradients take the normal rules in the part above the layer, which is run a second time only if
    it contains ReLUs (e.g. VGG's fc6, fc7). Then one backward pass per class reaches the input.

    Args:
        model: as for `GradCAM`; it must contain ReLUs.
        layer: as for `GradCAM`.

    Raises:
        LayerError: for an unknown or non-spatial layer, or a model without ReLUs.
    """

    def __init__(self, model, layer=None):
        super().__init__(model, layer)
        self._rules = Rules("guided", self._base + self._head)
        self._guided_head = any(s.name in self._rules.relus for s in self._head)

    def __call__(self, images, class_ids=None):
        """Guided Grad-CAM maps.

        Args:
            images: as for `GradCAM.__call__`.
            class_ids: as for `GradCAM.__call__`.

        Returns:
            float32 (N, K, H, W, 3): raw values in input space (gradient times a [0, 1] map);
            normalise them for display with the plotting helpers.
        """
        return self._call(images, class_ids)

    def _compute(self, x, targets):
        guided = self._rules.call

        def head(activations, values):
            normal, ids = scores(self._logits(values), targets)
            if not self._guided_head:
                return Scores(for_layer=normal, for_input=normal)
            logits = self._logits(values, guided)
            for_input = scores(logits, ids if ids is not None else targets)[0]
            return Scores(for_layer=normal, for_input=for_input)

        def base(x):
            return self._run_base(x, guided)

        activations, layer_grads, input_grads = activations_and_gradients(x, base, head)
        maps = class_maps(activations, tf.reduce_mean(layer_grads, axis=(2, 3)), x.shape[1:3])
        return input_grads * maps[..., None]  # (N, K, H, W, 3)


_CACHE = collections.OrderedDict()


def grad_cam(model, images, class_ids=None, layer=None):
    """One-off form of `GradCAM(model, layer)(images, class_ids)`.

    The last few `GradCAM` objects are kept, so calling this in a loop does not rebuild or retrace;
    still, prefer one `GradCAM` object for many calls.

    Returns:
        float32 (N, K, H, W) in [0, 1].
    """
    key = (id(model), layer if isinstance(layer, str) or layer is None else id(layer))
    method = _CACHE.pop(key, None) or GradCAM(model, layer)
    _CACHE[key] = method
    while len(_CACHE) > 4:
        _CACHE.popitem(last=False)
    return method(images, class_ids)
