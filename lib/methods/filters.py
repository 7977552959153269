"""Filters and feature maps: what a convolutional layer has learned, and what it responds to.

The oldest look inside a CNN (Zeiler & Fergus 2014, Fig. 2; Szegedy et al. 2015 for GoogLeNet's
7x7x3x64 first layer): show the kernels of a layer as small images, and the activations of a
layer for one image as a grid of gray maps. Neither needs gradients.

    weights = layer_filters(model, "conv1_1")                   # (64, 3, 3, 3)
    tiles = filter_tiles(weights)                               # (64, 3, 3, 3) RGB in [0, 1]
    maps, ids = feature_maps(model, "conv3_1", images, num_maps=16, select="strongest")

Layers are found by name or object, also inside models nested in the model.
"""

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from lib.errors import InputError
from lib.methods.base import Explainer, cached
from lib.methods.graph import ModelGraph

SELECTIONS = ("random", "strongest", "all")
SCALES = ("tile", "joint")


def conv_layers(model: keras.Model) -> list:
    """The `Conv2D` layers of `model` (nested models included), in graph order, each once."""
    layers = [step.op for step in ModelGraph(model).steps if isinstance(step.op, keras.layers.Conv2D)]
    return list({id(layer): layer for layer in layers}.values())


def layer_filters(model: keras.Model, layer) -> np.ndarray:
    """The kernel of a `Conv2D` layer, one filter per row.

    Args:
        model: a Keras model.
        layer: name or object of a `Conv2D` layer of `model` (nested models included).

    Returns:
        float32 `(num_filters, kh, kw, in_channels)`: the kernel `(kh, kw, in, out)` transposed so
        that `weights[i]` is filter `i`. For grouped convolutions `in_channels` is per group.

    Raises:
        InputError: `model` is not a `keras.Model`.
        LayerError: the layer does not exist or is not a `Conv2D` layer; the message lists those that are.
    """
    found = ModelGraph(model).find(layer, kind=keras.layers.Conv2D).op
    kernel = keras.ops.convert_to_numpy(found.kernel)  # (kh, kw, in, out)
    return np.ascontiguousarray(kernel.transpose(3, 0, 1, 2), dtype=np.float32)


def _minmax(x, axes):
    """Scales `x` to [0, 1] over `axes`; a constant block becomes 0.5 (mid-gray), never NaN."""
    low = x.min(axis=axes, keepdims=True)
    span = x.max(axis=axes, keepdims=True) - low
    safe = np.where(span > 0, span, 1.0)
    return np.where(span > 0, (x - low) / safe, 0.5).astype(np.float32)


def filter_tiles(
    weights: npt.ArrayLike, scale: str = "tile", channels=None, input_order: str = "rgb"
) -> np.ndarray:
    """Arranges `layer_filters` output as display tiles in [0, 1].

    A first layer (3 input channels, `channels=None`) gives one colour tile per filter, as in the
    GoogLeNet paper's 7x7x3x64 figure. Any other layer, or a given list of `channels`, gives one
    gray tile per (filter, input channel), to show with a colormap.

    Args:
        weights: float `(num_filters, kh, kw, in_channels)` from `layer_filters`.
        scale: `"tile"` scales each tile to its own [min, max] (shows every filter's pattern, hides
            their relative strength); `"joint"` uses one [min, max] for all tiles (keeps the
            strengths comparable, weak filters look flat). A constant tile becomes 0.5.
        channels: input channels to show as gray tiles, or `None` (colour for 3 channels, else all).
        input_order: `"rgb"` or `"bgr"`: the channel order the first layer sees. The `lib.nets`
            builders flip RGB to BGR in their preprocessing layer, so pass `"bgr"` for their conv1.

    Returns:
        Colour: float32 `(num_filters, kh, kw, 3)`. Gray: float32 `(num_filters, len(channels), kh, kw)`;
        `tiles.reshape(-1, kh, kw)` lists them filter by filter, so use `ncols=len(channels)` in a grid.

    Raises:
        InputError: `weights` is not 4-D, `scale` or `input_order` is unknown, or a channel is out of range.
    """
    weights = np.asarray(weights, dtype=np.float32)
    if weights.ndim != 4:
        raise InputError(f"weights have shape {weights.shape}; pass layer_filters(model, layer) output")
    if scale not in SCALES:
        raise InputError(f"scale={scale!r} is not one of {', '.join(SCALES)}")
    if input_order not in ("rgb", "bgr"):
        raise InputError(f"input_order={input_order!r} is not one of 'rgb', 'bgr'")
    in_channels = weights.shape[-1]
    if channels is None and in_channels == 3:
        tiles = weights[..., ::-1] if input_order == "bgr" else weights  # (F, kh, kw, 3) RGB
        return _minmax(tiles, (1, 2, 3) if scale == "tile" else None)
    channels = range(in_channels) if channels is None else list(channels)
    bad = [c for c in channels if not 0 <= c < in_channels]
    if bad:
        raise InputError(f"channels {bad} out of range; the layer has {in_channels} input channels")
    tiles = weights[..., list(channels)].transpose(0, 3, 1, 2)  # (F, C, kh, kw)
    return _minmax(tiles, (2, 3) if scale == "tile" else None)


class FeatureMaps(Explainer):
    """The activations of one layer, from the graph runner and one compiled forward pass.

    The user's model is not changed, and layers inside nested models are found as for every method
    (`ModelGraph.resolve`).

    Args:
        model: a functional or Sequential Keras model with one input.
        layer: name or object of a layer with a spatial output `(N, h, w, C)`, nested models included.

    Attributes:
        layer: qualified name of the layer ("inner/conv1" inside a nested model).
        num_channels: C.

    Raises:
        InputError: `model` is not a `keras.Model`.
        LayerError: the layer does not exist or has no spatial output; the message lists those that do,
            or the model has no functional graph (subclassed).
    """

    def __init__(self, model: keras.Model, layer):
        super().__init__(model, layer)
        self._steps = self.graph.ancestors(self.graph.steps, self.layer_key)
        self.num_channels = self.graph.shape_of(self.layer_key)[-1]

    def activations(self, images: npt.ArrayLike, batch_size: int = 32) -> np.ndarray:
        """Every channel: float32 `(N, h, w, C)` for images `(N, H, W, C_in)`, computed in batches."""
        x = self._images(images)
        chunks = [self._run("forward", x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return np.concatenate(chunks, axis=0)

    def _function(self, kind, layers_checked=True):
        """One trace for every batch size: the last, smaller batch of a folder reuses it."""
        spec = tf.TensorSpec((None, *self.graph.input_shape[1:]), tf.float32)
        return super()._function(kind, layers_checked, input_signature=[spec])

    def _compute(self, x, targets):
        return self.graph.run(self._steps, {self.graph.input_key: x})[self.layer_key]

    def __call__(
        self,
        images: npt.ArrayLike,
        num_maps: int | None = None,
        select: str = "random",
        seed: int = 0,
        batch_size: int = 32,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Chosen feature maps of the layer, the same channels for every image.

        Args:
            images: `(N, H, W, C_in)` as the model expects (RGB 0-255 for the `lib.nets` builders).
            num_maps: how many channels; `None` for all of them (must be `None` for `select="all"`).
            select: `"random"` (a uniform draw without replacement by `seed`, in increasing channel
                order), `"strongest"` (largest mean activation over the images and positions, in
                decreasing order), or `"all"` (every channel, in order).
            seed: seed of the random draw; the same seed gives the same channels.
            batch_size: images per forward pass.

        Returns:
            `(maps, channel_ids)`: float32 `(N, h, w, M)` and int64 `(M,)`, `maps[..., j]` being
            channel `channel_ids[j]` of the layer.

        Raises:
            InputError: bad images, `num_maps` or `select`.
        """
        num = self._check_selection(num_maps, select)
        maps = self.activations(images, batch_size)  # (N, h, w, C)
        if select == "all":
            ids = np.arange(self.num_channels)
        elif select == "strongest":
            ids = np.argsort(-maps.mean(axis=(0, 1, 2)), kind="stable")[:num]
        else:
            ids = np.sort(np.random.default_rng(seed).choice(self.num_channels, size=num, replace=False))
        ids = ids.astype(np.int64)
        return np.ascontiguousarray(maps[..., ids]), ids

    def _check_selection(self, num_maps, select):
        if select not in SELECTIONS:
            raise InputError(f"select={select!r} is not one of {', '.join(SELECTIONS)}")
        if num_maps is None:
            return self.num_channels
        if select == "all":
            raise InputError(
                f"num_maps={num_maps} conflicts with select='all'; drop num_maps or pick 'random'"
            )
        if not 1 <= num_maps <= self.num_channels:
            raise InputError(
                f"num_maps={num_maps} is outside 1..{self.num_channels}, the channels of {self.layer!r}"
            )
        return int(num_maps)


def feature_maps(
    model: keras.Model, layer, images: npt.ArrayLike, **options
) -> tuple[np.ndarray, np.ndarray]:
    """Function form of `FeatureMaps(model, layer)(images, **options)`, one object per (model, layer).

    The object is kept with the model (`base.cached`), so a deleted model frees it. See
    `FeatureMaps.__call__` for the options (`num_maps`, `select`, `seed`, `batch_size`) and the result.
    """
    key = ("feature_maps", layer if isinstance(layer, str) else id(layer))
    return cached(model, key, lambda: FeatureMaps(model, layer))(images, **options)
