"""Class activation maps (Zhou et al. 2016, https://arxiv.org/abs/1512.04150).

Two heads make the logits a spatial mean, and CAM covers both:
- global average pooling into a dense layer (possibly with a softmax after it): the map of class c
  is the dense weights of c applied to the features, sum_k w[k, c] * A[:, :, k];
- a 1x1 convolution to the classes (with or without a ReLU) and then global average pooling, the
  Network-in-Network head of SqueezeNet: the map of class c is channel c of that convolution.
In both, the gradient of a class score w.r.t. the features is the same at every position (the dense
weight over h*w), so CAM is Grad-CAM with that gradient read off the weights instead of
back-propagated: it subclasses `ClassMap` with that one change, and after scaling the maps are
identical.

    maps = CAM(model)(images, class_ids=None)     # (N, 1, H, W), each image's top class
"""

import keras
import numpy.typing as npt
import tensorflow as tf

from lib.errors import InputError, LayerError
from lib.methods.base import Explanation
from lib.methods.class_map import ClassMap
from lib.methods.graph import activation_name
from lib.methods.rules import relu_kind
from lib.methods.targets import ClassIds

# Layers that may sit between pooling and the dense layer without changing the CAM weights.
PASS_THROUGH = (keras.layers.Dropout, keras.layers.Flatten)


class CAM(ClassMap):
    """Class activation maps of a global-average-pooling network, from one forward pass.

    Args:
        model: a Keras model ending in GlobalAveragePooling2D -> Dense (-> softmax), or in a 1x1
            convolution to the classes (-> ReLU) -> GlobalAveragePooling2D (-> softmax).
        layer: the layer feeding the pooling (the dense head) or the class convolution (its output,
            with the ReLU, for the convolutional head); None finds it.

    Raises:
        LayerError: if the model lacks that structure (use `GradCAM`), or `layer` is another layer.
    """

    def explain(self, images: npt.ArrayLike, class_ids: ClassIds = None) -> Explanation:
        """See `Explainer.explain`; `class_ids` may not be a callable, since CAM needs classes.

        Raises:
            InputError: for bad images or class ids, or a callable class_ids.
        """
        if callable(class_ids):
            raise InputError("CAM explains classes, not a callable score; use GradCAM for that")
        return super().explain(images, class_ids)

    def channel_weights(self, activations, gradients):
        """The class's dense weights (or one-hot for a class convolution), per channel (N, K, C)."""
        return gradients[:, :, 0, 0, :]

    def _resolve(self, layer):
        """(key, name) of the layer CAM works at; also keeps the class weights (classes, C) or None."""
        graph = self.graph
        top = graph.producer(graph.logits_key)
        pool = graph.producer(top.in_keys[0]) if isinstance(top.op, keras.layers.Dense) else top
        while pool is not None and isinstance(pool.op, PASS_THROUGH):
            pool = graph.producer(pool.in_keys[0])
        if pool is None or not isinstance(pool.op, keras.layers.GlobalAveragePooling2D):
            raise LayerError(
                f"CAM needs global average pooling -> dense, or a 1x1 convolution -> global average "
                f"pooling, at the top; {self.model.name!r} ends in {top.name!r} ({type(top.op).__name__}); "
                "use GradCAM instead"
            )
        key = pool.in_keys[0]
        if pool is top and not _is_class_convolution(graph, key, graph.logits_shape[-1]):
            raise LayerError(
                f"{self.model.name!r} pools {graph.producer(key).name!r} straight into its scores, which "
                "is no 1x1 convolution to the classes; use GradCAM instead"
            )
        name = graph.producer(key).name
        if layer is not None and graph.resolve(layer)[0] != key:
            raise LayerError(
                f"CAM works at {name!r}, the layer feeding {pool.name!r}; use GradCAM for {layer!r}"
            )
        self._class_weights = None if pool is top else top.op.kernel
        return key, name

    def _activations_and_gradients(self, x, targets):
        """A, its "gradients" (N, K, 1, 1, C): the class weights, the same at every position, and fields."""
        activations, _, fields = self._forward(x, targets)
        ids = fields["class_ids"]  # (N, K)
        if self._class_weights is None:  # channel c is the map of class c
            weights = tf.one_hot(ids, activations.shape[-1], dtype=activations.dtype)  # (N, K, C)
        else:
            weights = tf.gather(tf.transpose(tf.convert_to_tensor(self._class_weights)), ids)  # (N, K, C)
        return activations, weights[:, :, None, None, :], fields


def _is_class_convolution(graph, key, num_classes):
    """Whether `key` is a 1x1 convolution to `num_classes` channels, possibly followed by a ReLU."""
    step = graph.producer(key)
    if step is not None and relu_kind(step.op) and not isinstance(step.op, keras.layers.Conv2D):
        step = graph.producer(step.in_keys[0])
    return (
        step is not None
        and isinstance(step.op, keras.layers.Conv2D)
        and tuple(step.op.kernel_size) == (1, 1)
        and step.op.filters == num_classes
        and activation_name(step.op) in ("relu", "linear", "")
    )
