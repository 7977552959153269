"""The inputs every metric shares: maps from a method or given, the classes they explain, and the
model's probabilities of those classes on many perturbed images, batched and compiled once."""

import numpy as np
import tensorflow as tf

from lib.errors import InputError
from lib.methods.base import cached
from lib.methods.graph import ModelGraph

BATCH_SIZE = 32  # images per forward pass of the scorer, and per call of a method


def as_class_maps(maps):
    """(N, K, H, W) maps as they are; (N, K, H, W, 3) input-space maps (guided backpropagation,
    Integrated Gradients, ...) as their magnitude over the colour channels, so every map has one value
    per pixel."""
    maps = np.asarray(maps)
    return np.linalg.norm(maps, axis=-1) if maps.ndim == 5 else maps


def maps_and_classes(images, class_ids, maps=None, method=None, batch_size=BATCH_SIZE):
    """(maps (N, K, H, W) float64, class_ids int64 (N, K)) from precomputed maps or a method.

    Args:
        images: (N, H, W, 3) as the model expects.
        class_ids: with `maps`, the class of each map: N lists of K ints, or K ints for every image.
            With `method`, anything the method takes (None: each image's top class).
        maps: (N, K, H, W), or (N, K, H, W, 3) input-space maps, used through their magnitude.
        method: a method object (`GradCAM(model)`, ...), called on `batch_size` images at a time.

    Raises:
        InputError: for both or neither of maps and method, or maps, images and classes that do not
            match.
    """
    if (maps is None) == (method is None):
        raise InputError(
            "pass either maps= (N, K, H, W) or method= (e.g. GradCAM(model)), not both or neither"
        )
    images = np.asarray(images)
    if maps is None:
        starts = range(0, len(images), batch_size)
        explained = [
            method.explain(images[i : i + batch_size], _rows(class_ids, i, batch_size)) for i in starts
        ]
        maps = np.concatenate([e.maps for e in explained])
        found = [e.class_ids for e in explained]
        if any(ids is None for ids in found):
            raise InputError("the metrics score classes; pass class ids, not a callable, to the method")
        class_ids = np.concatenate(found)
    maps = as_class_maps(maps).astype(np.float64)
    if maps.ndim != 4 or maps.shape[0] != len(images) or maps.shape[2:] != images.shape[1:3]:
        raise InputError(
            f"maps have shape {maps.shape} for images {images.shape}; pass (N, K, H, W) maps of the images"
        )
    return maps, class_matrix(class_ids, maps.shape[:2])


def _rows(class_ids, start, size):
    """The class ids of images start .. start + size, for a list of per-image lists; else as they are."""
    ids = class_ids if class_ids is None or callable(class_ids) else np.asarray(class_ids)
    if isinstance(ids, np.ndarray) and ids.ndim == 2:
        return ids[start : start + size]
    return class_ids


def class_matrix(class_ids, shape):
    """`class_ids` as int64 (N, K) = `shape`: N lists of K ints, or K ints (or one) for every image."""
    ids = np.asarray(class_ids)
    if ids.ndim < 2:
        ids = np.broadcast_to(ids.reshape(1, -1), (shape[0], ids.size))
    if ids.shape != tuple(shape) or not np.issubdtype(ids.dtype, np.integer) or (ids < 0).any():
        raise InputError(f"class_ids {np.shape(class_ids)}; pass non-negative ints (N, K) = {tuple(shape)}")
    return ids.astype(np.int64)


class Scorer:
    """The softmax probabilities of chosen classes on many images, `batch_size` per compiled pass.

    A final softmax of the model is skipped and taken again, so the probabilities are the same
    whether the model ends in logits or in a softmax. Made once per model (`scorer`).
    """

    def __init__(self, model, batch_size=BATCH_SIZE):
        self.graph = ModelGraph(model)
        self.batch_size = batch_size
        steps = self.graph.ancestors(self.graph.steps, self.graph.logits_key)

        def probabilities(x, ids):  # (B, H, W, 3), (B, K) -> (B, K)
            logits = self.graph.run(steps, {self.graph.input_key: x})[self.graph.logits_key]
            return tf.gather(tf.nn.softmax(logits, axis=-1), ids, axis=1, batch_dims=1)

        self._probabilities = tf.function(probabilities, autograph=False)

    def __call__(self, images, class_ids):
        """float64 (M, K): the probability of class_ids[m, k] for image m; images (M, H, W, 3)."""
        images, ids = np.asarray(images, np.float32), np.asarray(class_ids, np.int32)
        size = self.batch_size
        parts = [
            self._probabilities(tf.constant(images[i : i + size]), tf.constant(ids[i : i + size]))
            for i in range(0, len(images), size)
        ]
        return np.concatenate([p.numpy() for p in parts]).astype(np.float64)


def scorer(model, batch_size=BATCH_SIZE) -> Scorer:
    """The `Scorer` of `model`, made once and kept with the model."""
    return cached(model, ("metrics.Scorer", batch_size), lambda: Scorer(model, batch_size))
