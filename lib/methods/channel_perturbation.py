"""The base of the class-map methods that weigh channels by forward passes, not gradients.

Score-CAM masks the input with each channel of a layer, Ablation-CAM zeroes each channel in the
layer; both then score the class on the C perturbed copies of every image and turn those scores into
the channel weights (N, K, C). Everything else (targets, ReLU, resize, scaling, `explain()`) is
`ClassMap`'s. A subclass overrides two hooks:

    _perturbation(x, activations, values) -> run(images, channels) -> logits (m * s, classes)
    _weights(perturbed, clean) -> (N, K, C)     from scores (N, K, C) and the clean scores (N, K)

and may override `_class_scores` (Score-CAM scores a class by its softmax probability). The N * C
perturbed copies run in blocks of m images x s channels, at most `batch_size` copies, inside one
`tf.map_fn` of the compiled pass, so memory is bounded by a block, not by C.
"""

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from lib.errors import InputError
from lib.methods.base import Explanation
from lib.methods.class_map import ClassMap
from lib.methods.targets import ClassIds, scores


class ChannelPerturbation(ClassMap):
    """A class-map method whose channel weights are scores of perturbed forward passes.

    Args:
        model: a functional or Sequential Keras model; a final softmax is skipped.
        layer: name or object of a layer with (N, h, w, C) output; None picks the last such layer.
        batch_size: perturbed copies per forward pass; bounds the memory of the pass.

    Raises:
        InputError: if `batch_size` is not a positive int.
        LayerError: for an unknown or non-spatial layer.
    """

    def __init__(
        self, model: keras.Model, layer: str | keras.layers.Layer | None = None, batch_size: int = 32
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise InputError(
                f"batch_size={batch_size!r}; pass a positive int, the perturbed copies per forward pass"
            )
        super().__init__(model, layer)
        self.batch_size = int(batch_size)

    def explain(self, images: npt.ArrayLike, class_ids: ClassIds = None) -> Explanation:
        """See `ClassExplainer.explain`; the channel weights are left to `weights_of`."""
        found = self._call(images, class_ids)
        del found["weights"]
        return Explanation(layer=self.layer, **found)

    def weights_of(self, images: npt.ArrayLike, class_ids: ClassIds = None) -> np.ndarray:
        """The channel weights the maps are made of, float32 (N, K, C), from the same compiled pass."""
        return self._call(images, class_ids)["weights"]

    def channel_weights(self, activations, gradients):
        """The weights `_activations_and_gradients` put in place of the gradients, (N, K, C)."""
        return gradients[:, :, 0, 0, :]

    def _perturbation(self, x, activations, values):
        """`run(images, channels) -> logits (m * s, classes)`: each of m images (int32 (m,)) perturbed
        by each of s channels (int32 (s,)), image-major.

        Called once per pass, so that work shared by every block is done once; `run` is called per
        block. It may run the graph `unchecked()`: the clean pass checked every layer for NaN and
        Inf (or the weights' bounds showed none can overflow), and the perturbed logits are checked
        when scored.
        """
        raise NotImplementedError

    def _weights(self, perturbed, clean):
        """Channel weights (N, K, C) from the perturbed scores (N, K, C) and the clean ones (N, K)."""
        raise NotImplementedError

    def _class_scores(self, logits):
        """What a class scores on a perturbed copy, (B, classes): its logit by default."""
        return logits

    def _activations_and_gradients(self, x, targets):
        """A, the channel weights (N, K, 1, 1, C) in place of gradients, and the fields (weights too)."""
        activations, values, fields = self._forward(x, targets)
        ids = fields.get("class_ids")  # the clean pass's classes, kept for every copy; None for a callable
        run = self._perturbation(x, activations, values)

        def block(images, channels):  # (m,) images x (s,) channels -> scores (m * s, K), image-major
            logits = run(images, channels)
            if ids is None:  # the callable scores the perturbed logits itself
                return tf.cast(scores(logits, targets)[0], tf.float32)
            block_ids = tf.repeat(tf.gather(ids, images), channels.shape[0], axis=0)  # (m * s, K)
            return tf.cast(scores(self._class_scores(logits), block_ids)[0], tf.float32)

        perturbed = in_blocks(block, x.shape[0], activations.shape[-1], self.batch_size)  # (N, C, K)
        clean = tf.cast(fields["scores"], tf.float32)  # (N, K)
        weights = tf.cast(self._weights(tf.transpose(perturbed, [0, 2, 1]), clean), activations.dtype)
        return activations, weights[:, :, None, None, :], {**fields, "weights": weights}


def in_blocks(fn, num_images, channels, batch_size):
    """`fn(images, channels) -> (m * s, K)` over all N x C (image, channel) pairs, one block at a time.

    A block is m images x s channels with m * s <= batch_size: whole images (s = C) when a chunk holds
    at least one, otherwise s channels of one image (m = 1). So a method can broadcast one image
    against its s perturbations instead of copying it per copy. Blocks are balanced: 100 channels in
    chunks of at most 32 run as 4 of 25, not 3 of 32 and one of 4. The last block of an image (or the
    last block of images) is padded by repeating the last index, and those results are dropped.
    `tf.map_fn` with one iteration at a time keeps the memory of one block.

    Returns:
        (N, C, K).
    """
    whole = batch_size >= channels
    if whole:  # blocks of whole images
        blocks = -(-num_images // (batch_size // channels))
        m, s = -(-num_images // blocks), channels
        images = tf.minimum(tf.reshape(tf.range(blocks * m), (blocks, m)), num_images - 1)
        channel_ids = tf.tile(tf.range(channels)[None], (blocks, 1))
    else:  # blocks of one image's channels
        per_image = -(-channels // batch_size)
        blocks, m, s = num_images * per_image, 1, -(-channels // per_image)
        images = tf.range(blocks)[:, None] // per_image
        channel_ids = tf.minimum(
            tf.reshape(tf.tile(tf.range(per_image * s), (num_images,)), (blocks, s)), channels - 1
        )
    if blocks == 1:
        out = fn(images[0], channel_ids[0])[None]
    else:
        out = tf.map_fn(
            lambda block: fn(*block),
            (images, channel_ids),
            parallel_iterations=1,
            fn_output_signature=tf.float32,
        )  # (blocks, m * s, K)
    if whole:
        return tf.reshape(out, (blocks * m, channels, -1))[:num_images]
    return tf.reshape(out, (num_images, blocks // num_images * s, -1))[:, :channels]
