"""The deconvnet of Zeiler & Fergus 2014 (https://arxiv.org/abs/1311.2901).

Choose one activation of a layer, zero all the others, and map it back to pixel space: at every ReLU
the backward signal is rectified (whatever the forward input was), max pooling is undone through
its switches (the positions of the maxima), and convolutions use their transposed filters. That is
backpropagation with the ReLU rule replaced (see `lib.methods.rules`): the pooling and convolution
gradients are exactly unpooling with switches and transposed convolution. Biases play no part.

    deconv = Deconvnet(model, "conv5_1")
    rec = deconv(images, k=9)                    # per image, the 9 strongest channels at their peaks
    top = deconv.top_activations(batches, channel=7, k=9)  # strongest over many images, cropped
"""

import dataclasses
import functools

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from lib.errors import InputError
from lib.methods.base import Explainer, Scores, activations_and_gradients
from lib.methods.receptive_field import receptive_field
from lib.methods.rules import Rules


@dataclasses.dataclass
class Reconstructions:
    """What `Deconvnet.__call__` returns: K reconstructions per image and their sources.

    Attributes:
        maps: float32 (N, K, H, W, 3), each chosen activation mapped back to pixel space, seeded
            with the activation's own value (raw values; normalise them for display).
        channels: int32 (N, K), channel of each chosen activation.
        positions: int32 (N, K, 2), its (row, col) in the layer's (h, w) grid.
        values: float32 (N, K), the activation.
        boxes: int32 (N, K, 4), its receptive field (top, left, bottom, right) in the image,
            clipped to the image, bottom and right exclusive.
    """

    maps: np.ndarray
    channels: np.ndarray
    positions: np.ndarray
    values: np.ndarray
    boxes: np.ndarray


@dataclasses.dataclass
class TopActivations:
    """What `Deconvnet.top_activations` returns: the k strongest activations over many images.

    Patches and reconstructions are cut to the full receptive field (Rh, Rw) of the layer; parts of
    the field outside the image are zero. Sorted from the strongest.

    Attributes:
        reconstructions: float32 (k, Rh, Rw, 3), deconvnet reconstructions, raw values.
        patches: float32 (k, Rh, Rw, 3), the image pixels under the receptive field.
        image_index: int64 (k,), index of the source image in the order the images were given.
        channels: int32 (k,), positions: int32 (k, 2), values: float32 (k,) as in `Reconstructions`.
        boxes: int32 (k, 4), receptive fields in the source images, clipped as in `Reconstructions`.
    """

    reconstructions: np.ndarray
    patches: np.ndarray
    image_index: np.ndarray
    channels: np.ndarray
    positions: np.ndarray
    values: np.ndarray
    boxes: np.ndarray


class Deconvnet(Explainer):
    """Zeiler-Fergus deconvnet reconstructions of a layer's activations.

    Args:
        model: a functional or Sequential Keras model.
        layer: name or object of a layer with (N, h, w, C) output; None picks the last such layer.

    Raises:
        LayerError: for an unknown or non-spatial layer, or no ReLU below it.
    """

    def __init__(self, model: keras.Model, layer: str | keras.layers.Layer | None = None):
        super().__init__(model, layer)
        self._base = self.graph.ancestors(self.graph.steps, self.layer_key)
        self._rules = Rules("deconv", self._base)
        self._fields = {}

    def __call__(self, images: npt.ArrayLike, channel: int | None = None, k: int = 9) -> Reconstructions:
        """Reconstruct, for each image, its k strongest activations of the layer.

        Args:
            images: float32 (N, H, W, 3), as the model expects.
            channel: None for the k channels with the strongest peak, each at its peak position; or
                a channel index for the k strongest positions of that channel.
            k: number of activations per image.

        Returns:
            `Reconstructions` with maps (N, k, H, W, 3) and where each activation comes from.

        Raises:
            InputError: for bad images, channel or k.
        """
        x = self._images(images)
        field = self.field(x.shape[1:3])
        channel = self._check(channel, k, field)
        mode = "any" if channel is None else "channel"
        out = self._run((mode, k), x, tf.constant(channel or 0, tf.int32))
        boxes = self._boxes(out["positions"], field, x.shape[1:3])
        return Reconstructions(boxes=boxes, **out)

    def top_activations(
        self, images, channel: int | None = None, k: int = 9, batch_size: int = 32
    ) -> TopActivations:
        """The k strongest activations of the layer across many images, with patches.

        Each (image, channel) pair contributes its peak; with `channel` given, each image contributes
        that channel's peak. The images are read once, in batches; only the k current winners are
        kept in memory.

        Args:
            images: float32 (N, H, W, 3), or an iterable of such batches (e.g. a folder reader);
                all of one size.
            channel: None for any channel, or a channel index.
            k: number of activations to return (fewer if fewer candidates exist).
            batch_size: batch size when `images` is one array, and for the reconstructions.

        Returns:
            `TopActivations`, sorted from the strongest.

        Raises:
            InputError: for bad images, channel or k, or no images.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InputError(f"k={k!r}; pass a positive int")
        best = _Best(k)
        for batch in _batches(images, batch_size):
            x = self._images(batch)
            channel = self._check(channel, 1, self.field(x.shape[1:3]))
            peaks = self._run(("peaks", channel is None), x, tf.constant(channel or 0, tf.int32))
            best.add(peaks, x.numpy())
        if not best.values.size:
            raise InputError("top_activations got no images; pass an array (N, H, W, 3) or batches")
        return self._reconstruct_best(best, batch_size)

    def field(self, image_size):
        """Receptive-field geometry (`receptive_field.Field`) of the layer for images of this size."""
        size = tuple(int(v) for v in image_size)
        if size not in self._fields:
            self._fields[size] = receptive_field(self.graph, self.layer_key, size)
        return self._fields[size]

    @property
    def num_channels(self):
        """Channels C of the layer's (N, h, w, C) output."""
        return self.graph.shape_of(self.layer_key)[-1]

    def _check(self, channel, k, field):
        channels = self.num_channels
        if channel is not None and (isinstance(channel, bool) or not 0 <= channel < channels):
            raise InputError(f"channel={channel!r}; layer {self.layer!r} has channels 0..{channels - 1}")
        most = channels if channel is None else field.length[0] * field.length[1]
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= most:
            raise InputError(f"k={k!r}; pass an int from 1 to {most} for layer {self.layer!r}")
        return None if channel is None else int(channel)

    def _boxes(self, positions, field, size):
        """Clipped receptive-field boxes (..., 4) for positions (..., 2)."""
        boxes = np.array([field.box(r, c) for r, c in positions.reshape(-1, 2)], np.int64)
        boxes = boxes.reshape(*positions.shape[:-1], 4)
        return np.clip(boxes, 0, [size[0], size[1], size[0], size[1]]).astype(np.int32)

    def _reconstruct_best(self, best, batch_size):
        images = np.stack([best.images[i] for i in best.index])  # (k, H, W, 3)
        units = np.stack([best.rows, best.cols, best.channels], axis=-1)[:, None]  # (k, 1, 3)
        chunks = [
            self._run(
                "units", tf.constant(images[i : i + batch_size]), tf.constant(units[i : i + batch_size])
            )
            for i in range(0, len(images), batch_size)
        ]
        out = {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}
        field = self.field(images.shape[1:3])
        positions = out["positions"][:, 0]
        boxes = [field.box(r, c) for r, c in positions]
        return TopActivations(
            reconstructions=np.stack([_crop(m, b) for m, b in zip(out["maps"][:, 0], boxes, strict=True)]),
            patches=np.stack([_crop(im, b) for im, b in zip(images, boxes, strict=True)]),
            image_index=best.index,
            channels=out["channels"][:, 0],
            positions=positions,
            values=out["values"][:, 0],
            boxes=self._boxes(positions[:, None], field, images.shape[1:3])[:, 0],
        )

    def _traced(self, kind):
        # Partials, not lambdas: TensorFlow counts traces per code object across all objects.
        if kind[0] == "peaks":
            return functools.partial(_peaks_of, self, kind[1])
        return functools.partial(_reconstruction_of, self, kind)

    def _peaks(self, x, channel, any_channel):
        """Each image's peak per channel (or of one channel): values and flat positions (N, C')."""
        acts = self.graph.run(self._base, {self.graph.input_key: x})[self.layer_key]  # (N, h, w, C)
        if not any_channel:
            acts = tf.gather(acts, channel[None], axis=3)  # (N, h, w, 1)
        planes = tf.reshape(tf.transpose(acts, [0, 3, 1, 2]), [tf.shape(acts)[0], acts.shape[3], -1])
        where = tf.argmax(planes, axis=-1, output_type=tf.int32)  # (N, C'), row * w + col
        return {
            "values": tf.reduce_max(planes, axis=-1),  # (N, C')
            "rows": where // acts.shape[2],
            "cols": where % acts.shape[2],
            "channels": tf.range(acts.shape[3]) if any_channel else channel[None],
        }

    def _reconstruct(self, x, kind, arg):
        chosen = {}

        def base(x):
            values = self.graph.run(self._base, {self.graph.input_key: x}, self._rules.call)
            return values[self.layer_key], values

        def head(acts, values):
            rows, cols, channels = _select(acts, kind, arg)  # each (N, K)
            width, depth = acts.shape[2], acts.shape[3]
            flat = tf.reshape(acts, [tf.shape(acts)[0], -1])  # (N, h * w * C)
            picked = tf.gather(flat, (rows * width + cols) * depth + channels, batch_dims=1)  # (N, K)
            chosen.update(channels=channels, positions=tf.stack([rows, cols], -1), values=picked)
            # the seed is the activation itself, all others zero: score = a * stop_gradient(a)
            return Scores(for_input=picked * tf.stop_gradient(picked))

        maps = activations_and_gradients(x, base, head)[2]
        return {"maps": maps, **chosen}


def _select(acts, kind, arg):
    """Rows, cols, channels (N, K) of the activations to reconstruct."""
    if kind == "units":
        return arg[..., 0], arg[..., 1], arg[..., 2]
    mode, k = kind
    width, depth = acts.shape[2], acts.shape[3]
    planes = tf.reshape(tf.transpose(acts, [0, 3, 1, 2]), [tf.shape(acts)[0], depth, -1])  # (N, C, h*w)
    if mode == "any":
        channels = tf.math.top_k(tf.reduce_max(planes, axis=-1), k).indices  # (N, K)
        where = tf.gather(tf.argmax(planes, axis=-1, output_type=tf.int32), channels, batch_dims=1)
    else:
        where = tf.math.top_k(tf.gather(planes, arg, axis=1), k).indices  # (N, K)
        channels = tf.fill(tf.shape(where), arg)
    return where // width, where % width, channels


def _batches(images, batch_size):
    if isinstance(images, np.ndarray) or tf.is_tensor(images):
        for start in range(0, len(images), batch_size):
            yield images[start : start + batch_size]
    else:
        yield from images


def _crop(image, box):
    """The (bottom - top, right - left) window `box` of an (H, W, C) image, zero outside it."""
    top, left, bottom, right = box
    out = np.zeros((bottom - top, right - left, image.shape[-1]), np.float32)
    t, le = max(top, 0), max(left, 0)
    b, r = min(bottom, image.shape[0]), min(right, image.shape[1])
    if b > t and r > le:
        out[t - top : b - top, le - left : r - left] = image[t:b, le:r]
    return out


class _Best:
    """The k strongest (image, channel) peaks seen so far, and the images they come from."""

    def __init__(self, k):
        self.k = k
        self.values = np.zeros(0, np.float32)
        self.index = np.zeros(0, np.int64)
        self.channels = self.rows = self.cols = np.zeros(0, np.int32)
        self.images = {}
        self.seen = 0

    def add(self, peaks, images):
        """Merge a batch's peaks (values, rows, cols: (n, C'); channels: (C',)) and its images."""
        n, count = peaks["values"].shape
        merged = {
            "values": (self.values, peaks["values"].ravel()),
            "index": (self.index, np.repeat(np.arange(n) + self.seen, count)),
            "channels": (self.channels, np.tile(peaks["channels"], n)),
            "rows": (self.rows, peaks["rows"].ravel()),
            "cols": (self.cols, peaks["cols"].ravel()),
        }
        merged = {name: np.concatenate(pair) for name, pair in merged.items()}
        keep = np.argsort(-merged["values"], kind="stable")[: self.k]
        for name, array in merged.items():
            setattr(self, name, array[keep])
        self.images = {
            i: self.images[i] if i in self.images else images[i - self.seen].copy() for i in self.index
        }
        self.seen += n


def _peaks_of(deconvnet, any_channel, x, channel):
    return deconvnet._peaks(x, channel, any_channel=any_channel)


def _reconstruction_of(deconvnet, kind, x, arg):
    return deconvnet._reconstruct(x, kind, arg)
