"""Sanity checks (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018): does a map change
when what it claims to explain is destroyed?

The model randomisation test re-draws the weights of the network layer by layer, from the top one
down, and compares the method's maps on each randomised copy with its maps on the trained network.
The data randomisation test compares them with the maps of the same architecture trained on permuted
labels. A method that explains the model must fail to reproduce its maps in both cases: low similarity
passes. Similarity is measured three ways, as in the paper: Spearman rank correlation, SSIM and the
Pearson correlation of HOG features (doc/metrics/randomisation.md).

    result = model_randomisation(model, images, ids, method=GradCAM(model, layer="conv4_2"))
    print(result, result.ssim, result.hog)   # end of the cascade; result.curves (N, K, T + 1)
    result = data_randomisation(model, images, ids, method=GradCAM(model, layer="conv4_2"))
"""

import contextlib
import dataclasses
import inspect
import os
from pathlib import Path

import keras
import numpy as np
from skimage.feature import hog
from skimage.metrics import structural_similarity

from lib.errors import InputError
from lib.metrics.inputs import maps_and_classes
from lib.metrics.result import MetricResult, result
from lib.sanity import randomised, rank_correlation, weighted_layers

CLIP_PERCENTILE = 99  # maps are scaled so that this percentile of their magnitude is 1 (the paper's)
HOG_CELL = (8, 8)  # pixels per HOG cell, at 64 px the bundled models' grid of 8 x 8 cells
PERMUTED_IMAGES = 128  # training images of the permuted-label model
PERMUTED_EPOCHS = 40
PERMUTED_DATA_SEED = 11  # not a seed of the bundled models' training, validation or test sets


@dataclasses.dataclass(frozen=True)
class SanityResult(MetricResult):
    """A randomisation test: its values are Spearman rank correlations, the other two measures beside.

    Attributes:
        ssim: the same comparison by structural similarity of the normalised maps.
        hog: the same comparison by Pearson correlation of the maps' HOG features.
        (and those of `MetricResult`; `values` (N, K) are rank correlations, lower is better)
    """

    ssim: MetricResult | None = None
    hog: MetricResult | None = None


def model_randomisation(model, images, class_ids, maps=None, method=None, seed=0, build=None) -> SanityResult:
    """Cascading model-parameter randomisation (Adebayo et al., NeurIPS 2018, Section 3).

    Step t re-draws the weights of the t highest weighted layers (t = 1: the classifier) and keeps the
    trained ones below; layers stay random once randomised, so step T is a fully random network. At
    each step the method explains the same classes as on the trained model, and its maps are compared
    with the trained maps by `similarities`. Step 0 is the trained model itself (similarity 1).

    The method is remade once, on a copy of the model (`rebuild`); the copy's weights are then assigned
    step by step, so the compiled pass is traced once. The user's model is never changed.

    Args:
        model: the trained network.
        images: (N, H, W, 3) as the model expects.
        class_ids: the classes to explain: N lists of K ints, K ints, or None (each image's top class on
            the trained model; the randomised copies explain the same class).
        maps: optional trained maps (N, K, H, W) or (N, K, H, W, 3), saving one pass; `class_ids` must
            then be ints. Not enough alone: the randomised copies need the method.
        method: a method object on `model` (remade with the same arguments, see `rebuild`), or a
            callable `model -> method` (a class such as `GradCAM`, `functools.partial(GradCAM,
            layer="conv4_2")`, a lambda).
        seed: seed of the random weights (`lib.sanity.randomised`) and of the bootstrap intervals.
        build: makes a new model of the same architecture and layer names (default: clone `model`).

    Returns:
        `SanityResult` "model randomisation": values (N, K) the rank correlation with every layer
        random; curves (N, K, T + 1) at each step, steps 0 .. T, labels ("trained", then the layer
        randomised at each step, top first); `ssim` and `hog` likewise. NaN for a constant map.

    Raises:
        InputError: for maps without a method, or a method that cannot be remade.
    """
    if method is None:
        raise InputError(_NEEDS_METHOD.format(test="model randomisation", copies="randomised copies"))
    trained, class_ids = _trained_maps(model, images, class_ids, maps, method)
    layers = weighted_layers(model)
    twin = randomised(model, len(layers), seed, build)  # every weighted layer random
    drawn = {layer.name: twin.get_layer(layer.name).get_weights() for layer in layers}
    for layer in layers:
        twin.get_layer(layer.name).set_weights(layer.get_weights())
    explainer = rebuild(method, twin)
    curves = {name: [values] for name, values in similarities(trained, trained).items()}  # step 0
    for layer in reversed(layers):  # top first
        twin.get_layer(layer.name).set_weights(drawn[layer.name])
        found = similarities(trained, maps_and_classes(images, class_ids, method=explainer)[0])
        for name, values in found.items():
            curves[name].append(values)
    labels = ("trained", *(layer.name for layer in reversed(layers)))
    return _sanity_result(
        "model randomisation", {k: np.stack(v, -1) for k, v in curves.items()}, seed, labels
    )


def data_randomisation(
    model, images, class_ids, maps=None, method=None, permuted=None, seed=0
) -> SanityResult:
    """Data randomisation test (Adebayo et al., NeurIPS 2018, Section 4): maps of the model against
    those of the same architecture trained on randomly permuted labels.

    The permuted-label network has learnt nothing about the classes, only to memorise its training
    images, so a method that explains what the model learnt gives it different maps: low similarity
    passes.

    Args:
        model, images, class_ids, maps, method: as for `model_randomisation`; the method is remade on
            `permuted` by `rebuild`.
        permuted: the permuted-label model (default: `permuted_label_model("shapes_vgg")`, trained once
            and then read from the cache).
        seed: seed of the bootstrap intervals.

    Returns:
        `SanityResult` "data randomisation": values (N, K) the rank correlation of each map pair,
        `ssim` and `hog` beside; NaN for a constant map.

    Raises:
        InputError: for maps without a method, a method that cannot be remade, or a permuted model whose
            input or output shape differs from the model's.
    """
    if method is None:
        raise InputError(_NEEDS_METHOD.format(test="data randomisation", copies="permuted-label model"))
    permuted = permuted_label_model() if permuted is None else permuted
    if permuted.input_shape != model.input_shape or permuted.output_shape != model.output_shape:
        raise InputError(
            f"permuted model maps {permuted.input_shape} to {permuted.output_shape}, the model "
            f"{model.input_shape} to {model.output_shape}; pass one of the same architecture"
        )
    trained, class_ids = _trained_maps(model, images, class_ids, maps, method)
    other = maps_and_classes(images, class_ids, method=rebuild(method, permuted))[0]
    return _sanity_result("data randomisation", similarities(trained, other), seed)


_NEEDS_METHOD = (
    "{test} remakes the maps on the {copies}, so pass method= (e.g. GradCAM(model), or a callable "
    "model -> method); maps= alone gives only the trained model's"
)
SIMILARITIES = ("rank correlation", "SSIM", "HOG")


def _trained_maps(model, images, class_ids, maps, method):
    if maps is None:
        method = method if _is_method(method) else rebuild(method, model)
    return maps_and_classes(images, class_ids, maps, None if maps is not None else method)


def _sanity_result(name, found, seed, labels=None):
    """A `SanityResult` of {similarity: values (N, K)}, or with `labels`, of curves (N, K, T + 1) whose
    last step gives the values."""
    parts = {}
    for measure, values in found.items():
        fields = {}
        if labels is not None:
            fields = dict(curves=values, steps=np.arange(values.shape[-1]), labels=labels)
            values = values[..., -1]
        parts[measure] = result(f"{name} ({measure})", values, seed, higher_is_better=False, **fields)
    main = parts["rank correlation"]
    fields = {field.name: getattr(main, field.name) for field in dataclasses.fields(MetricResult)}
    return SanityResult(**fields, ssim=parts["SSIM"], hog=parts["HOG"])


def rebuild(method, model):
    """The same method, with the same constructor arguments, on another model of the same architecture.

    `method` may be a callable `model -> method` (a method class, a `functools.partial`, a lambda),
    which is called. A method object is remade as `type(method)(model, **arguments)`, reading every
    other argument of its constructor from the attribute of the same name (every method of
    `lib.methods` keeps them so, except RISE, whose `masks` is a method); a wrapped method
    (SmoothGrad's) is remade on `model` in turn.

    Raises:
        InputError: if an argument is not kept as an attribute; pass a callable instead.
    """
    if not _is_method(method):
        if not callable(method):
            raise InputError(f"method={method!r}; pass a method object or a callable model -> method")
        return method(model)
    cls = type(method)
    arguments = {}
    for name, parameter in list(inspect.signature(cls.__init__).parameters.items())[1:]:
        value = getattr(method, name, inspect.ismethod)  # a sentinel that fails the next test
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD) or inspect.ismethod(value):
            raise InputError(
                f"cannot remake {cls.__name__} on another model: it does not keep its argument {name!r}; "
                f"pass method=lambda model: {cls.__name__}(model, ...) instead"
            )
        if isinstance(value, keras.Model):
            value = model
        elif hasattr(value, "explain"):
            value = rebuild(value, model)
        arguments[name] = value
    return cls(**arguments)


def _is_method(method):
    """A method object, as opposed to a method class or another callable that makes one."""
    return hasattr(method, "explain") and not isinstance(method, type)


def similarities(a, b) -> dict[str, np.ndarray]:
    """{"rank correlation", "SSIM", "HOG"}: float64 (N, K) similarities of maps a[n, k] and b[n, k].

    The paper's conventions: every measure compares absolute values. The rank correlation is
    Spearman's on them (unchanged by any scaling). SSIM (`skimage.metrics.structural_similarity`, 7 x 7
    windows, data range 1) and HOG (`skimage.feature.hog`, 9 orientations, 8 x 8-pixel cells, 3 x 3-cell
    blocks; the similarity is the Pearson correlation of the two feature vectors) compare maps
    `normalised` to [0, 1]. A constant map has no rank or HOG correlation (NaN); its SSIM is defined.

    Args:
        a, b: maps (N, K, H, W), as `lib.metrics.as_class_maps` gives them (input-space maps by their
            magnitude over the colour channels).
    """
    a, b = np.abs(np.asarray(a, np.float64)), np.abs(np.asarray(b, np.float64))
    if a.shape != b.shape or a.ndim != 4:
        raise InputError(f"maps {a.shape} and {b.shape}; pass two (N, K, H, W) arrays of the same shape")
    a_scaled, b_scaled = normalised(a), normalised(b)
    found = {name: np.full(a.shape[:2], np.nan) for name in SIMILARITIES}
    for n, k in np.ndindex(*a.shape[:2]):
        found["rank correlation"][n, k] = rank_correlation(a[n, k], b[n, k])
        found["SSIM"][n, k] = structural_similarity(a_scaled[n, k], b_scaled[n, k], data_range=1.0)
        found["HOG"][n, k] = _pearson(_hog(a_scaled[n, k]), _hog(b_scaled[n, k]))
    return found


def normalised(maps):
    """|maps| (..., H, W) divided by their `CLIP_PERCENTILE`th percentile per map and clipped to [0, 1],
    as the paper's figures and SSIM (saliency's `VisualizeImageGrayscale`); all-zero maps stay zero."""
    maps = np.abs(np.asarray(maps, np.float64))
    top = np.percentile(maps, CLIP_PERCENTILE, axis=(-2, -1), keepdims=True)
    top = np.where(top > 0, top, maps.max(axis=(-2, -1), keepdims=True))  # sparse maps: their maximum
    return np.clip(np.divide(maps, top, out=np.zeros_like(maps), where=top > 0), 0, 1)


def _hog(image):
    return hog(image, orientations=9, pixels_per_cell=HOG_CELL, cells_per_block=(3, 3), feature_vector=True)


def _pearson(a, b):
    if a.min() == a.max() or b.min() == b.max():
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def cache_dir() -> Path:
    """Where trained permuted-label weights are kept: `$XDG_CACHE_HOME/cnn-visualization-tf2`, else
    `~/.cache/cnn-visualization-tf2` (read at each call)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "cnn-visualization-tf2"


def permuted_labels(num_images=PERMUTED_IMAGES, seed=PERMUTED_DATA_SEED):
    """(images float32 (M, 64, 64, 3), labels int64 (M,)): single-object shapes whose labels are
    randomly permuted, so a label says nothing of its image; the permuted-label model's training set."""
    from lib.dataflow.shapes import generate
    from lib.nets.bundled import INPUT_SIZE

    images, labels, _ = generate(num_images, seed=seed, size=INPUT_SIZE)
    return images.astype(np.float32), np.random.default_rng(seed).permutation(labels).astype(np.int64)


def permuted_label_model(name="shapes_vgg", weights=None, num_images=PERMUTED_IMAGES, epochs=PERMUTED_EPOCHS):
    """A bundled architecture trained to memorise `permuted_labels`, from the cache or trained once.

    Trained as `example/train_bundled.py` trains the bundled models (batch normalisation, Adam with
    cosine decay from 2e-3, then folded into the plain architecture), on `num_images` images for
    `epochs` epochs of batches of 32, with op determinism during the fit: under a minute on a 2-core
    CPU for the defaults (doc/metrics/randomisation.md), after which the weights are read from `weights`.

    Args:
        name: a bundled model (`lib.nets.bundled.names()`).
        weights: the weights file to read, or to write after training; default: one per name and
            settings in `cache_dir()`.
        num_images, epochs: the training run.

    Returns:
        The plain bundled architecture with the permuted-label weights.
    """
    from lib.nets import bundled

    path = (
        Path(weights)
        if weights is not None
        else cache_dir() / f"{name}_permuted_{num_images}x{epochs}.weights.h5"
    )
    model = bundled.build(name)
    if not path.is_file():
        train_permuted(name, num_images, epochs, path)
    model.load_weights(path)
    return model


@contextlib.contextmanager
def deterministic_ops():
    """TensorFlow's op determinism inside the block, and as it was after it.

    `tf.config.experimental.enable_op_determinism` has no public way back, and left on it would hold
    for the rest of the caller's process (where, on a GPU, ops without a deterministic kernel raise);
    TensorFlow's own switch, `tensorflow.python.framework.config` (TensorFlow 2.9+), restores it.
    """
    from tensorflow.python.framework import config

    before = config.is_op_determinism_enabled()
    config.enable_op_determinism()
    try:
        yield
    finally:
        if not before:
            config.disable_op_determinism()


def train_permuted(name, num_images, epochs, path, batch_size=32):
    """Trains `name` on `permuted_labels(num_images)` and writes the folded weights to `path`."""

    from lib.atomic import atomic_path
    from lib.nets import bundled
    from lib.nets.layers import fold_batch_norm

    images, labels = permuted_labels(num_images)
    keras.utils.set_random_seed(PERMUTED_DATA_SEED)
    model = bundled.build(name, batch_norm=True)
    steps = epochs * int(np.ceil(num_images / batch_size))
    model.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=steps)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    with deterministic_ops():
        model.fit(images, labels, batch_size=batch_size, epochs=epochs, verbose=0)
    plain = bundled.build(name)
    fold_batch_norm(model, plain)
    with atomic_path(path) as tmp:
        plain.save_weights(tmp)
