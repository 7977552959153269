"""Faithfulness: does the model's score follow the map when the pixels it ranks high are changed?

Deletion and insertion (Petsiuk et al., RISE, BMVC 2018) remove (or insert) pixels in the map's
order and report the area under the class-score curve; average drop and increase in confidence
(Chattopadhyay et al., Grad-CAM++, WACV 2018) score the image seen through the map as a soft mask.
Each metric also scores a random map (seeded uniform values, so a uniformly random pixel order) as its
baseline: the chance level to print beside the method's number (doc/metrics/faithfulness.md).

    result = deletion(model, images, ids, method=GradCAM(model))
    print(result)                     # deletion: 0.134 [0.097, 0.175], baseline 0.153 (shapes_vgg)
    result.curves, result.steps       # (N, K, steps + 1) scores, fractions of pixels removed

The order of a map is highest value first; pixels of equal value come in a seeded random order
(`pixel_ranks`), so an all-zero map is a random map and a result does not depend on pixel positions.
"""

import dataclasses

import numpy as np
import tensorflow as tf
from scipy import ndimage

from lib.errors import InputError
from lib.methods.base import cached
from lib.methods.graph import ModelGraph
from lib.methods.perturbation import positive_int
from lib.metrics.inputs import BATCH_SIZE, maps_and_classes, scorer
from lib.metrics.result import result

BLUR_SIZE, BLUR_SIGMA = 11, 5.0  # RISE's reference code (evaluation notebook): gkern(klen=11, nsig=5)
SCORES = ("probability", "logit")


def deletion(
    model, images, class_ids, maps=None, method=None, steps=50, baseline=0.0, score="probability",
    batch_size=BATCH_SIZE, seed=0,
):  # fmt: skip
    """Area under the score curve as the map's pixels are replaced by `baseline`, highest first.

    Step s of 0 .. `steps` replaces the first floor(s * H * W / steps) pixels of the map's order; the
    value is the trapezoid area under the class score over the fraction of pixels removed, 0 .. 1
    (RISE's `auc`). A faithful map makes the score fall fast: lower is better.

    Args:
        model: the network, logits or softmax out (the probability is the same either way).
        images: (N, H, W, 3) as the model expects (RGB 0-255 for our builders).
        class_ids: the class of each map, int (N, K); with `method`, anything it takes.
        maps, method: precomputed maps (N, K, H, W), or a method that makes them.
        steps: number of removal steps; the curves have steps + 1 points.
        baseline: what removed pixels become: a number, one per channel, an image (H, W, 3) or
            (N, H, W, 3), or a callable images -> images. 0 is black for our models.
        score: "probability" (softmax of the class, RISE's) or "logit" (the class's logit, exact for
            linear models).
        batch_size: perturbed images per forward pass.
        seed: seed of the tie order, the random map and the bootstrap.

    Returns:
        `MetricResult` "deletion": values (N, K), curves (N, K, steps + 1), steps the fractions; its
        baseline is the deletion of a random map.

    Raises:
        InputError: for bad maps, classes, steps, score or baseline.
    """
    x, maps, ids = checked_inputs(images, class_ids, maps, method, batch_size)
    removed = substrate(baseline, x)
    return _causal("deletion", model, x, removed, x, maps, ids, steps, score, batch_size, seed)


def insertion(
    model, images, class_ids, maps=None, method=None, steps=50, score="probability", batch_size=BATCH_SIZE,
    seed=0,
):  # fmt: skip
    """Area under the score curve as the map's pixels are put back into a blurred image, highest first.

    The start is the image blurred by RISE's kernel (`blur`); step s inserts the first
    floor(s * H * W / steps) original pixels of the map's order. A faithful map makes the score rise
    fast: higher is better. Args, Returns and Raises as for `deletion` (name "insertion").
    """
    x, maps, ids = checked_inputs(images, class_ids, maps, method, batch_size)
    return _causal("insertion", model, x, x, blur(x), maps, ids, steps, score, batch_size, seed)


def average_drop(model, images, class_ids, maps=None, method=None, batch_size=BATCH_SIZE, seed=0):
    """Average drop % (Chattopadhyay et al., WACV 2018): 100 * max(0, Y - O) / Y per pair.

    Y is the class probability (softmax) on the image, O on the image times the map as a soft mask:
    x * m, with m the map's positive part over its maximum (an all-zero map gives a black image). The
    paper's mean over images of this quantity is our mean over pairs. Lower is better.

    Args:
        model, images, class_ids, maps, method, batch_size, seed: as for `deletion`.

    Returns:
        `MetricResult` "average drop": values in [0, 100]; its baseline is a random map's.
    """
    return _soft_mask("average drop", drops, model, images, class_ids, maps, method, batch_size, seed)


def increase_in_confidence(model, images, class_ids, maps=None, method=None, batch_size=BATCH_SIZE, seed=0):
    """Increase in confidence % (Chattopadhyay et al., WACV 2018): 100 * [O > Y] per pair (0 or 100).

    Y and O as for `average_drop`; the mean is the share of pairs whose probability rises under the
    mask, in percent. Higher is better.

    Args:
        model, images, class_ids, maps, method, batch_size, seed: as for `deletion`.

    Returns:
        `MetricResult` "increase in confidence": values 0 or 100; its baseline is a random map's.
    """
    return _soft_mask(
        "increase in confidence", increases, model, images, class_ids, maps, method, batch_size, seed, True
    )


def drops(clean, masked):
    """100 * max(0, Y - O) / Y, elementwise; 0 where Y is 0."""
    return 100 * np.maximum(clean - masked, 0) / np.where(clean > 0, clean, 1)


def increases(clean, masked):
    """100 * [O > Y], elementwise."""
    return 100.0 * (masked > clean)


def unit_maps(maps):
    """The positive part of each map (N, K, H, W) over its maximum, in [0, 1]; all-zero maps stay zero."""
    positive = np.maximum(maps, 0)
    peak = positive.max(axis=(2, 3), keepdims=True)
    return positive / np.where(peak > 0, peak, 1)


def pixel_ranks(maps, seed=0):
    """int32 (N, K, H, W): the place of each pixel in its map's order, 0 for the highest value.

    Equal values are ordered by a seeded random key, the same for every map of a seed.
    """
    n, k, h, w = maps.shape
    flat = maps.reshape(n * k, h * w)
    ties = np.random.default_rng(seed).random(h * w)
    order = np.lexsort((np.broadcast_to(ties, flat.shape), -flat), axis=-1)  # (N * K, H * W)
    ranks = np.empty(flat.shape, np.int32)
    np.put_along_axis(ranks, order, np.arange(h * w, dtype=np.int32)[None], axis=1)
    return ranks.reshape(maps.shape)


def random_maps(shape, seed=0):
    """Uniform random maps (N, K, H, W) in [0, 1), seeded: a uniformly random pixel order."""
    return np.random.default_rng([seed, 1]).random(shape)


def substrate(baseline, x):
    """float32 (N, H, W, C): `baseline` as images like x, from a number, one per channel, an image or a
    callable; else a one-line `InputError`."""
    value = baseline(x) if callable(baseline) else baseline
    try:
        array = np.broadcast_to(np.asarray(value, np.float32), x.shape)
    except (TypeError, ValueError):
        array = None
    if array is None or not np.isfinite(array).all():
        raise InputError(
            f"baseline of shape {np.shape(value)} for images {x.shape}; pass a finite number, one per "
            "channel, an image (H, W, C) or (N, H, W, C), or a callable images -> images"
        )
    return np.ascontiguousarray(array)


def blur(x):
    """float32 (N, H, W, C): RISE's blurred start for insertion, each channel convolved with its kernel.

    The kernel is RISE's `gkern(11, 5)`: a unit impulse in an 11 x 11 array smoothed by a Gaussian of
    sigma 5 (scipy's reflecting filter, so the kernel sums to 1). RISE pads with zeros of its normalised
    input (the mean colour); we reflect at the borders, so the edges keep their own colours.
    """
    impulse = np.zeros((BLUR_SIZE, BLUR_SIZE))
    impulse[BLUR_SIZE // 2, BLUR_SIZE // 2] = 1
    kernel = ndimage.gaussian_filter(impulse, BLUR_SIGMA)
    return ndimage.convolve(x, kernel[None, :, :, None].astype(np.float32), mode="reflect")


def checked_inputs(images, class_ids, maps, method, batch_size):
    """(images float32, maps (N, K, H, W), class ids (N, K)), checked: what each faithfulness metric takes."""
    from lib.dataflow.images import check_images  # imported on use, as the methods do

    batch_size = positive_int(batch_size, "batch_size")
    x = check_images(images)
    maps, ids = maps_and_classes(x, class_ids, maps, method, batch_size)
    if not np.isfinite(maps).all():
        raise InputError("maps hold NaN or Inf; pass finite maps (N, K, H, W)")
    return x, maps, ids


def _causal(name, model, x, first, rest, maps, ids, steps, score, batch_size, seed):
    """Deletion or insertion: pixels of rank < count_s come from `first`, the others from `rest`."""
    steps = positive_int(steps, "steps")
    if score not in SCORES:
        raise InputError(f"score={score!r}; pass one of {', '.join(SCORES)}")
    pixels = maps.shape[2] * maps.shape[3]
    counts = np.arange(steps + 1) * pixels // steps  # pixels changed at each step
    fractions = counts / pixels
    curves_of = causal_curves(model, batch_size)

    def measured(maps, label):
        curves = curves_of(first, rest, pixel_ranks(maps, seed), ids, counts, score == "logit")
        areas = np.trapezoid(curves, fractions, axis=-1)
        fields = dict(curves=curves, steps=fractions)
        return result(label, areas, seed, higher_is_better=name == "insertion", **fields)

    chance = measured(random_maps(maps.shape, seed), f"{name} of a random map")
    return dataclasses.replace(measured(maps, name), baseline=chance)


def _soft_mask(name, formula, model, images, class_ids, maps, method, batch_size, seed, higher=False):
    x, maps, ids = checked_inputs(images, class_ids, maps, method, batch_size)
    probabilities = scorer(model, batch_size)
    clean = probabilities(x, ids)  # (N, K)

    def measured(maps, label):
        values = formula(clean, masked_scores(probabilities, x, unit_maps(maps), ids, batch_size))
        return result(label, values, seed, higher_is_better=higher)

    chance = measured(random_maps(maps.shape, seed), f"{name} of a random map")
    return dataclasses.replace(measured(maps, name), baseline=chance)


def masked_scores(probabilities, x, masks, ids, batch_size):
    """float64 (N, K): the probability of ids[n, k] on x[n] * masks[n, k], `batch_size` images at a
    time, so only one chunk of masked images is ever in memory."""
    n, k = ids.shape
    rows = max(1, batch_size // k)  # images per chunk, each with its K masked copies
    parts = []
    for i in range(0, n, rows):
        masked = x[i : i + rows, None] * masks[i : i + rows, ..., None].astype(np.float32)  # (B, K, H, W, C)
        chunk = probabilities(masked.reshape(-1, *x.shape[1:]), ids[i : i + rows].reshape(-1, 1))
        parts.append(chunk.reshape(-1, k))
    return np.concatenate(parts)


class CausalCurves:
    """The class scores of deletion and insertion, the perturbed images made inside one compiled pass.

    Triple j of the N * K * T (image, target, step) triples is pair p = j // T, step t = j % T; its
    image takes the pixels of rank < counts[t] from `first` and the others from `rest`. The triples
    run `batch_size` at a time in a `tf.while_loop`, so memory holds one chunk of images whatever T.
    A final softmax of the model is skipped, so "logit" is the score before it. Made once per model.
    """

    def __init__(self, model, batch_size=BATCH_SIZE):
        self.graph = ModelGraph(model)
        self.batch_size = positive_int(batch_size, "batch_size")
        self._steps = self.graph.ancestors(self.graph.steps, self.graph.logits_key)
        self._run = tf.function(self._scores, autograph=False)

    def __call__(self, first, rest, ranks, class_ids, counts, logit=False):
        """float64 (N, K, T): scores of class_ids (N, K) with ranks (N, K, H, W) and counts (T,)."""
        n, k = class_ids.shape
        args = (
            tf.constant(first, tf.float32),
            tf.constant(rest, tf.float32),
            tf.constant(ranks.reshape(n * k, *ranks.shape[2:]), tf.int32),
            tf.constant(class_ids.reshape(-1), tf.int32),
            tf.constant(counts, tf.int32),
        )
        return self._run(*args, logit).numpy().reshape(n, k, len(counts)).astype(np.float64)

    def _scores(self, first, rest, ranks, ids, counts, logit):  # -> (P, T)
        pairs, times, per_image = ranks.shape[0], counts.shape[0], ranks.shape[0] // first.shape[0]
        total = pairs * times
        chunks = -(-total // min(self.batch_size, total))
        size = -(-total // chunks)  # balanced chunks, the last padded by repeating the final triple

        def body(chunk, out):
            j = tf.minimum(chunk * size + tf.range(size), total - 1)
            pair, image = j // times, j // times // per_image
            taken = tf.gather(ranks, pair) < tf.gather(counts, j % times)[:, None, None]  # (B, H, W)
            x = tf.where(taken[..., None], tf.gather(first, image), tf.gather(rest, image))
            with self.graph.unchecked():  # images of checked inputs: the check would cost 8% of a pass
                logits = self.graph.run(self._steps, {self.graph.input_key: x})[self.graph.logits_key]
            scores = logits if logit else tf.nn.softmax(logits, axis=-1)
            return chunk + 1, out.write(chunk, tf.gather(scores, tf.gather(ids, pair)[:, None], batch_dims=1))

        out = tf.TensorArray(tf.float32, size=chunks)
        _, out = tf.while_loop(lambda c, _: c < chunks, body, (tf.constant(0), out))
        return tf.reshape(out.concat()[:total], (pairs, times))


def causal_curves(model, batch_size=BATCH_SIZE) -> CausalCurves:
    """The `CausalCurves` of `model`, made once and kept with the model."""
    return cached(model, ("metrics.CausalCurves", batch_size), lambda: CausalCurves(model, batch_size))
