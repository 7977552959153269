"""Class activation maps (Zhou et al. 2016, https://arxiv.org/abs/1512.04150).

For a network whose last convolutional features go through global average pooling into a dense
layer (possibly with a softmax after it), the map of class c is the dense weights of c applied to
the features: sum_k w[k, c] * A[:, :, k]. Grad-CAM at that layer gives the same map up to the
factor 1/(h*w), and both use the same post-processing, so after scaling they are identical.

    maps = CAM(model)(images, class_ids=None)     # (N, 1, H, W), each image's top class
"""

import keras
import tensorflow as tf

from lib.errors import InputError, LayerError
from lib.methods.base import Explainer
from lib.methods.maps import class_maps
from lib.methods.targets import scores

# Layers that may sit between pooling and the dense layer without changing the CAM weights.
PASS_THROUGH = (keras.layers.Dropout, keras.layers.Flatten)


class CAM(Explainer):
    """Class activation maps of a global-average-pooling network, from one forward pass.

    Args:
        model: a Keras model ending in GlobalAveragePooling2D -> Dense (-> softmax).
        layer: the layer feeding the pooling; None finds it.

    Raises:
        LayerError: if the model lacks that structure (use `GradCAM`), or `layer` is another layer.
    """

    def __init__(self, model, layer=None):
        super().__init__(model, layer=None, needs_layer=False)
        self.layer_key, self.layer, self._dense = self._find_structure(layer)
        self._base, self._head = self.graph.split(self.layer_key)

    def __call__(self, images, class_ids=None):
        """Class maps for the images.

        Args:
            images: float32 (N, H, W, 3), as the model expects.
            class_ids: None, int, K ints or N lists of K ints (not a callable: CAM needs classes).

        Returns:
            float32 (N, K, H, W) in [0, 1].

        Raises:
            InputError: for bad images or class ids, or a callable class_ids.
        """
        if callable(class_ids):
            raise InputError("CAM explains classes, not a callable score; use GradCAM for that")
        return self._call(images, class_ids)

    def _find_structure(self, layer):
        graph = self.graph
        dense = graph.producer(graph.logits_key)
        pool = graph.producer(dense.in_keys[0]) if isinstance(dense.op, keras.layers.Dense) else None
        while pool is not None and isinstance(pool.op, PASS_THROUGH):
            pool = graph.producer(pool.in_keys[0])
        if pool is None or not isinstance(pool.op, keras.layers.GlobalAveragePooling2D):
            raise LayerError(
                f"CAM needs global average pooling -> dense at the top; {self.model.name!r} ends in "
                f"{dense.name!r} ({type(dense.op).__name__}); use GradCAM instead"
            )
        key, name = pool.in_keys[0], graph.producer(pool.in_keys[0]).name
        if layer is not None and graph.resolve(layer)[0] != key:
            raise LayerError(
                f"CAM works at {name!r}, the layer feeding {pool.name!r}; use GradCAM for {layer!r}"
            )
        return key, name, dense.op

    def _compute(self, x, targets):
        values = self.graph.run(self._base, {self.graph.input_key: x})
        values = self.graph.run(self._head, values)
        _, ids = scores(values[self.graph.logits_key], targets)  # (N, K) class ids
        kernel = tf.convert_to_tensor(self._dense.kernel)  # (C, classes)
        weights = tf.gather(tf.transpose(kernel), ids)  # (N, K, C)
        return class_maps(values[self.layer_key], weights, x.shape[1:3])
