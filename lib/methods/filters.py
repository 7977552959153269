"""Filters and feature maps: what a convolutional layer has learned, and what it responds to.

The oldest look inside a CNN (Zeiler & Fergus 2014, Fig. 2; Szegedy et al. 2015 for GoogLeNet's
7x7x3x64 first layer): show the kernels of a layer as small images, and the activations of a
layer for one image as a grid of gray maps. Neither needs gradients.

    weights = layer_filters(model, "conv1_1")                   # (64, 3, 3, 3)
    tiles = filter_tiles(weights)                               # (64, 3, 3, 3) RGB in [0, 1]
    maps, ids = feature_maps(model, "conv3_1", images, num_maps=16, select="strongest")

Layers are found by name or object, also inside models nested in the model.
"""

import weakref

import keras
import numpy as np
import tensorflow as tf

from lib.errors import InputError, LayerError
from lib.methods.graph import check_model, functional_graph

SELECTIONS = ("random", "strongest", "all")
SCALES = ("tile", "joint")


def _walk(model):
    """Every layer of `model`, depth first, entering nested models."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _walk(layer)


def _names(layers, limit=12):
    """'a, b, c .. y, z (40 more)': a readable list for one-line error messages."""
    names = [layer.name for layer in layers]
    if len(names) <= limit:
        return ", ".join(names) or "(none)"
    half = limit // 2
    return f"{', '.join(names[:half])} .. {', '.join(names[-half:])} ({len(names) - limit} more)"


def _output_rank(layer):
    """Rank of the layer's symbolic output, or None (never called, shared, several outputs)."""
    try:
        output = layer.output
    except (AttributeError, ValueError):
        return None
    return len(output.shape) if isinstance(output, keras.KerasTensor) else None


def conv_layers(model):
    """The `Conv2D` layers of `model` (nested models included), in graph order."""
    return [layer for layer in _walk(model) if isinstance(layer, keras.layers.Conv2D)]


def spatial_layers(model):
    """The layers of `model` with a `(N, h, w, C)` output (nested models included), inputs excepted."""
    return [
        layer
        for layer in _walk(model)
        if not isinstance(layer, keras.layers.InputLayer) and _output_rank(layer) == 4
    ]


def find_layer(model, layer, candidates):
    """Resolves `layer` (a name or a layer object) in `model`, nested models included.

    Args:
        model: a Keras model.
        layer: a layer name, or a layer object that belongs to `model`.
        candidates: the layers that would be valid, named in the error message.

    Returns:
        The layer object.

    Raises:
        LayerError: no such layer in `model`.
    """
    for found in _walk(model):
        if found is layer or found.name == layer:
            return found
    shown = layer if isinstance(layer, str) else getattr(layer, "name", layer)
    raise LayerError(f"model '{model.name}' has no layer {shown!r}; pick one of {_names(candidates)}")


def layer_filters(model, layer):
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
    check_model(model)
    convs = conv_layers(model)
    found = find_layer(model, layer, convs)
    if not isinstance(found, keras.layers.Conv2D):
        raise LayerError(
            f"layer '{found.name}' is a {type(found).__name__}, not a Conv2D; pick one of {_names(convs)}"
        )
    kernel = keras.ops.convert_to_numpy(found.kernel)  # (kh, kw, in, out)
    return np.ascontiguousarray(kernel.transpose(3, 0, 1, 2), dtype=np.float32)


def _minmax(x, axes):
    """Scales `x` to [0, 1] over `axes`; a constant block becomes 0.5 (mid-gray), never NaN."""
    low = x.min(axis=axes, keepdims=True)
    span = x.max(axis=axes, keepdims=True) - low
    safe = np.where(span > 0, span, 1.0)
    return np.where(span > 0, (x - low) / safe, 0.5).astype(np.float32)


def filter_tiles(weights, scale="tile", channels=None, input_order="rgb"):
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


def _one(tensors):
    return tensors[0] if len(tensors) == 1 else list(tensors)


def _probe_chain(graph, layer):
    """Probe models that, run one after the other, map `graph`'s input to `layer`'s output.

    A layer called directly in `graph` needs one probe, `Model(graph.inputs, its output)`. A layer
    inside a nested model needs one probe up to the nested model's input, then the chain inside it:
    Keras 3 keeps nested layers in the nested model's own graph, and calling a sub-probe on the outer
    tensors instead would add nodes to the user's layers. Building a `Model` on existing tensors adds none.
    """
    inputs = _one(_graph_inputs(graph))
    node = _node_in(graph, layer)
    if node is not None:
        return [keras.Model(inputs, node.output_tensors[0], name=f"probe_{layer.name}")]
    for sub in graph.layers:
        if isinstance(sub, keras.Model) and any(inner is layer for inner in _walk(sub)):
            call = _node_in(graph, sub)
            if call is None:
                break
            to_sub = keras.Model(inputs, _one(call.input_tensors), name=f"probe_to_{sub.name}")
            return [to_sub, *_probe_chain(sub, layer)]
    raise LayerError(f"layer '{layer.name}' is not part of model '{graph.name}'; pass a layer of that model")


def _graph_nodes(model):
    graph = model._functional if isinstance(model, keras.Sequential) else model
    if not hasattr(graph, "_nodes_by_depth"):
        raise LayerError(
            f"model '{model.name}' has no layer graph (subclassed, or a Sequential without an input shape); "
            "build it from keras.Input(...)"
        )
    return {node for nodes in graph._nodes_by_depth.values() for node in nodes}


def _graph_inputs(model):
    try:
        return model.inputs
    except AttributeError as err:
        raise LayerError(f"model '{model.name}' has no inputs yet; build it from keras.Input(...)") from err


def _node_in(graph, layer):
    """The one call of `layer` inside `graph`, or None if `layer` is not called there directly."""
    nodes = _graph_nodes(graph)
    calls = [node for node in layer._inbound_nodes if node in nodes]
    if len(calls) > 1:
        raise LayerError(
            f"layer '{layer.name}' is called {len(calls)} times in '{graph.name}', so its output is "
            "ambiguous; pick a layer that is called once"
        )
    if calls and len(calls[0].output_tensors) != 1:
        raise LayerError(f"layer '{layer.name}' has several outputs; pick a layer with one output")
    return calls[0] if calls else None


class FeatureMaps:
    """The activations of one layer, from probe models built once and a compiled forward pass.

    The user's model is not changed: the probes are `keras.Model`s over tensors of its graph
    (`Model(model.inputs, layer output)`), which adds no nodes to its layers.

    Args:
        model: a functional or Sequential Keras model with one input.
        layer: name or object of a layer with a spatial output `(N, h, w, C)`, nested models included.

    Raises:
        InputError: `model` is not a `keras.Model`.
        LayerError: the layer does not exist or has no spatial output; the message lists those that do,
            or the model has no functional graph (subclassed).
    """

    def __init__(self, model, layer):
        functional_graph(model)  # a clear error for anything but a functional or built Sequential model
        inputs = _graph_inputs(model)
        if len(inputs) != 1:
            raise LayerError(
                f"model '{model.name}' has {len(inputs)} inputs; feature maps need one image input"
            )
        spatial = spatial_layers(model)
        self.layer = find_layer(model, layer, spatial)
        if not any(self.layer is s for s in spatial):
            raise LayerError(
                f"layer '{self.layer.name}' has no spatial output; pick one of {_names(spatial)}"
            )
        self.probes = _probe_chain(model, self.layer)  # one Model, or one per level of model nesting
        self.input_shape = tuple(inputs[0].shape)  # (None, H, W, C), H and W may be None
        self.input_dtype = inputs[0].dtype
        self.num_channels = self.probes[-1].output.shape[-1]
        spec = tf.TensorSpec((None, *self.input_shape[1:]), self.input_dtype)
        self._forward = tf.function(self._run, input_signature=[spec])  # traced once, any batch size

    def _run(self, images):
        x = images
        for probe in self.probes:
            x = probe(x, training=False)
        return x

    def activations(self, images, batch_size=32):
        """Every channel: float32 `(N, h, w, C)` for images `(N, H, W, C_in)`, computed in batches."""
        images = self._check(images)
        chunks = [
            np.asarray(self._forward(tf.convert_to_tensor(images[i : i + batch_size])), dtype=np.float32)
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(chunks, axis=0)

    def __call__(self, images, num_maps=None, select="random", seed=0, batch_size=32):
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
                f"num_maps={num_maps} is outside 1..{self.num_channels}, the channels of '{self.layer.name}'"
            )
        return int(num_maps)

    def _check(self, images):
        from lib.dataflow.images import check_images  # imported on use, as in `base.Explainer`

        check_images(images)  # refuses ragged lists, non-numeric dtypes, NaN and Inf
        images = np.asarray(images, dtype=self.input_dtype)
        expected = self.input_shape[1:]
        fits = images.ndim == len(self.input_shape) and all(
            e is None or e == s for e, s in zip(expected, images.shape[1:], strict=True)
        )
        if not fits or len(images) == 0:
            wanted = ", ".join("any" if e is None else str(e) for e in expected)
            raise InputError(
                f"images have shape {images.shape}; the model expects a non-empty batch (N, {wanted}) "
                "(use images[None] for one image)"
            )
        return images


# One probe per (model, layer) for the function form; weak keys, so a deleted model frees its probes.
_PROBES = weakref.WeakKeyDictionary()


def feature_maps(model, layer, images, num_maps=None, select="random", seed=0, batch_size=32):
    """Function form of `FeatureMaps(model, layer)(images, ...)`, reusing its probe across calls.

    See `FeatureMaps.__call__` for the arguments and return value.
    """
    probes = _PROBES.setdefault(model, {})
    key = layer if isinstance(layer, str) else id(layer)
    if key not in probes:
        probes[key] = FeatureMaps(model, layer)
    return probes[key](images, num_maps=num_maps, select=select, seed=seed, batch_size=batch_size)
