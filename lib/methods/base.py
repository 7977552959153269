"""What every method shares: the flattened graph, the target layer, compiled passes built once, the
one `GradientTape` of the project, and the `Explanation` a method returns.

A method subclasses `Explainer`, or `ClassExplainer` if it explains class scores (class-map methods
subclass `class_map.ClassMap`), runs parts of its `ModelGraph` under some `Rules`, and implements
`_compute(x, targets)` with TensorFlow ops. `ClassExplainer.explain` checks the images and class ids,
then runs `_compute` inside a `tf.function` made once per kind of target (top class, top k, explicit
ids, or a given callable) and returns an `Explanation`. Calling again with the same shapes reuses
the trace, so a loop over a thousand single images builds nothing new.
"""

import dataclasses
import functools
from collections.abc import Callable, Hashable

import keras
import numpy as np
import numpy.typing as npt
import tensorflow as tf

from lib.errors import InputError, LayerError
from lib.methods import keras_internals as internals
from lib.methods.bounds import PixelBound
from lib.methods.finite import NOT_FINITE, checked
from lib.methods.graph import ModelGraph
from lib.methods.targets import ClassIds, outcome, parse_class_ids


@dataclasses.dataclass(frozen=True)
class Explanation:
    """What `explain()` returns: the maps, and what they explain, from the same forward pass.

    Attributes:
        maps: the method's maps, exactly what calling the method returns: float32 (N, K, H, W) in
            [0, 1] for class-map methods, (N, K, H, W, 3) raw input-space values for the others.
        class_ids: int32 (N, K), the classes explained (each image's top class for `class_ids=None`);
            None when `class_ids` was a callable.
        scores: float32 (N, K), the scores explained: the logits of those classes (before any
            softmax), or the callable's values.
        probabilities: float32 (N, K), the softmax of the logits at those classes; None for a callable.
        layer: qualified name of the layer the maps are made at; None for methods without one.
        grad_cam: float32 (N, K, H, W), the Grad-CAM maps Guided Grad-CAM multiplies by; None otherwise.
    """

    maps: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    layer: str | None = None
    grad_cam: np.ndarray | None = None


@dataclasses.dataclass
class Scores:
    """Scores (N, K) whose gradients a method wants, from the same forward pass.

    Attributes:
        for_layer: scores to differentiate w.r.t. the layer's activations, or None.
        for_input: scores to differentiate w.r.t. the input images, or None. May be the same tensor
            as `for_layer`; then one backward pass per target gives both gradients.
    """

    for_layer: tf.Tensor = None
    for_input: tf.Tensor = None


def activations_and_gradients(x, base, head, to_input=True):
    """Activations of a layer and gradients of K scores, from one forward pass.

    This is the only place in the project that opens a `GradientTape`. Images are independent in
    inference mode, so the gradient of a score summed over the batch gives every image's own
    gradient; nothing is reduced over the batch axis.

    Args:
        x: float32 images (N, H, W, 3).
        base: `base(x) -> (activations, values)`, the layer's output and anything `head` needs.
        head: `head(activations, values) -> Scores`.
        to_input: False when no gradient w.r.t. the input is wanted; the tape then records only the
            part above the layer, which makes tracing much faster on deep models.

    Returns:
        (activations, layer_grads, input_grads): activations (N, h, w, C); gradients of each of the
        K scores stacked on axis 1, (N, K, h, w, C) and (N, K, H, W, 3), or None if not asked for.
    """
    with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
        if to_input:
            tape.watch(x)
        activations, values = base(x)
        tape.watch(activations)
        scores = head(activations, values)
        # one column per target, sliced while recording so the tape sees the slice
        for_layer, for_input = (_columns(s) for s in (scores.for_layer, scores.for_input))
    layer_grads, input_grads = [], []
    for k in range(len(for_layer or for_input)):
        if scores.for_layer is scores.for_input:
            grad_a, grad_x = tape.gradient(for_layer[k], [activations, x])
        else:
            grad_a = tape.gradient(for_layer[k], activations) if for_layer else None
            grad_x = tape.gradient(for_input[k], x) if for_input else None
        layer_grads.append(grad_a)
        input_grads.append(grad_x)
    del tape
    return activations, _stack(layer_grads, scores.for_layer), _stack(input_grads, scores.for_input)


def _columns(scores):
    return None if scores is None else [scores[:, k] for k in range(scores.shape[1])]


def _stack(grads, scores):
    if scores is None:
        return None
    if any(g is None for g in grads):
        raise LayerError("the scores do not depend on the chosen layer; pick a layer below the output")
    return tf.stack(grads, axis=1)


def _checked(traced, x, *args):
    """`traced(x, *args)` with every float result checked for NaN and Inf in the graph.

    The images were checked in NumPy (`Explainer._images`). Finite images can still overflow a model,
    or its weights can hold NaN, so the results are checked too, and the logits in `targets.scores`:
    max-pooling and the maps' rescaling can turn NaN into a finite but meaningless map.
    """
    return tf.nest.map_structure(checked, traced(x, *args))


def _without_layer_checks(graph, traced, *args):
    """`traced(*args)`, traced without `ModelGraph.run`'s per-layer NaN/Inf check."""
    with graph.unchecked():
        return traced(*args)


def _not_finite_error(x):
    """The error for a pass that met NaN or Inf with finite images (`Explainer._images` checked them)."""
    x = np.asarray(x)
    return InputError(
        f"the model gives NaN or Inf for images spanning [{x.min():.3g}, {x.max():.3g}]; pass pixels in the "
        "range it expects (RGB 0-255 for the lib.nets builders), and check that its weights are finite"
    )


def _check_weights(model):
    """Refuse NaN or Inf weights once, when a method is made.

    The compiled pass cannot see them: TensorFlow fuses convolution, bias and ReLU into one kernel
    that turns NaN into 0, so a model with NaN weights would give finite, meaningless maps.

    Raises:
        InputError: naming the first variable that is not finite.
    """
    for variable in model.weights:
        is_float = variable.dtype in ("float16", "bfloat16", "float32", "float64")
        if is_float and not np.isfinite(np.asarray(variable.numpy())).all():
            raise InputError(
                f"weights {variable.path!r} of model {model.name!r} hold NaN or Inf; load finite weights "
                "(e.g. retrain with a lower learning rate, or reload the weights file)"
            )


class Explainer:
    """Base of the methods: the graph of `model`, a resolved layer, and compiled passes.

    Args:
        model: a functional or Sequential Keras model with one image input and one output.
        layer: layer name or object for methods that need one; None picks the last spatial layer.
        needs_layer: False for methods that work on the whole network (guided backpropagation).

    Attributes:
        graph: the `ModelGraph` of `model`.
        layer: qualified name of the layer the method uses (None if `needs_layer` is False).
    """

    def __init__(self, model: keras.Model, layer: str | keras.layers.Layer | None = None, needs_layer=True):
        self.model = model
        self.graph = ModelGraph(model)
        _check_weights(model)
        self.layer_key, self.layer = self._resolve(layer) if needs_layer else (None, None)
        self._functions = {}

    def _resolve(self, layer):
        """(key, qualified name) of the layer the method works at; `ModelGraph.resolve` by default."""
        return self.graph.resolve(layer)

    @property
    def tracing_count(self):
        """How many times the compiled passes were traced (once per new input shape or target kind)."""
        return sum(fn.experimental_get_tracing_count() for fn in self._functions.values())

    def _compute(self, x, targets):
        """The method's pass on images `x` for `targets`, in TensorFlow ops; see the subclasses."""
        raise NotImplementedError

    def _run(self, kind, *args):
        """Run the compiled pass for `kind`, made on first use, and return numpy arrays.

        Args are tensors, images first; no argument may be None (a None argument costs tf.function
        a quarter of a millisecond per call on this kind of machine). Images whose pixels the
        weights' bounds cover run a pass without the per-layer NaN/Inf check (`bounds.PixelBound`):
        no layer can overflow for them, and the check costs 5% of a SqueezeNet forward pass.
        """
        key = (kind, not self._pixel_bound.covers(args[0]))
        if key not in self._functions:
            self._functions[key] = self._function(kind, layers_checked=key[1])
        try:
            out = self._functions[key](*args)
        except tf.errors.InvalidArgumentError as err:
            if NOT_FINITE not in err.message:
                raise
            out = None
        if out is None:  # raised out here, so a notebook shows our error without TensorFlow's
            raise _not_finite_error(args[0])
        return {name: t.numpy() for name, t in out.items()} if isinstance(out, dict) else out.numpy()

    def _function(self, kind, layers_checked=True, input_signature=None):
        """The compiled pass for `kind`: `_traced(kind)` with its results checked for NaN and Inf.

        `layers_checked=False` traces it without the check of every layer's output (`ModelGraph.run`).
        Without AutoGraph: the methods build their graphs with TensorFlow ops and no Python control
        flow on tensors, and converting a user's hook or class_ids callable would only cost tracing
        time and warn where its source cannot be read (a notebook's lambdas).
        """
        return tf.function(
            self._checked_pass(kind, layers_checked), input_signature=input_signature, autograph=False
        )

    def _checked_pass(self, kind, layers_checked):
        """`_traced(kind)` with its results checked; without the per-layer check unless `layers_checked`."""
        traced = functools.partial(_checked, self._traced(kind))
        return traced if layers_checked else functools.partial(_without_layer_checks, self.graph, traced)

    @functools.cached_property
    def _pixel_bound(self):
        """The largest |pixel| no layer can overflow for, from the weights at the first call."""
        return PixelBound.of(self.graph)

    def _traced(self, kind):
        """The Python function to compile for `kind`; class-map methods take targets.

        A `functools.partial`, not a closure: TensorFlow counts traces per code object, so closures
        of many method objects would add up to a false "frequent retracing" warning.
        """
        return functools.partial(_compute_for_kind, self, kind)

    def _images(self, images):
        """The images as a float32 tensor of the model's input size, NaN and Inf refused.

        The tensor is made here because `tf.function` converts a NumPy argument more slowly than
        `tf.constant` does.
        """
        from lib.dataflow.images import check_images  # imported on use: keeps lib.methods light

        x = check_images(images)
        expected = self.graph.input_shape[1:]
        if any(e is not None and e != got for e, got in zip(expected, x.shape[1:], strict=True)):
            raise InputError(
                f"images have shape {x.shape[1:]} but the model expects {expected}; resize the images"
            )
        return tf.constant(x)


class ClassExplainer(Explainer):
    """Base of the methods that explain class scores: `explain()` and the checks of `class_ids`.

    A subclass implements `_compute(x, targets)` returning a dict of tensors: "maps", and the fields
    of `targets.outcome` ("scores", and for class targets "class_ids" and "probabilities").
    """

    def explain(self, images: npt.ArrayLike, class_ids: ClassIds = None) -> Explanation:
        """The maps of the images, with the classes, scores and probabilities they explain.

        Args:
            images: float32 (N, H, W, 3), as the model expects (RGB 0-255 for the `lib.nets` builders).
            class_ids: None (each image's top class), `TopK(k)`, an int, K ints, N lists of K
                ints, or a callable; see `lib.methods.targets`.

        Returns:
            `Explanation`; its `maps` are what calling the method returns.

        Raises:
            InputError: for bad images or class ids, or a model that gives NaN or Inf.
        """
        return Explanation(layer=self.layer, **self._call(images, class_ids))

    def _call(self, images, class_ids=None):
        """Check images and class ids, run the compiled `_compute`, and return its dict as numpy arrays."""
        x = self._images(images)
        ids = parse_class_ids(class_ids, x.shape[0], self._num_classes(class_ids))
        if isinstance(ids, np.ndarray):
            return self._run("ids", x, tf.constant(ids))
        return self._run(ids, x)  # ids is None (top class), a TopK or a callable

    _columns = None  # the head's `ClassColumns`, where a subclass's gradients may go through them

    def _target_scores(self, values, targets, fields):
        """The scores (N, K) to differentiate for `targets`, from the logits in `values`.

        `outcome`'s fields go into `fields`. Class targets are scored through the classes' own columns
        of the last linear layer where `_columns` has them: the same values, a backward pass of K columns.
        """
        scores, found = outcome(values[self.graph.logits_key], targets)
        fields.update(found)
        if self._columns is not None and "class_ids" in found:
            return self._columns.scores(values, found["class_ids"])
        return scores

    def _num_classes(self, class_ids):
        shape = self.graph.logits_shape
        if len(shape) == 2:
            return shape[1]
        if class_ids is None or not callable(class_ids):
            raise LayerError(
                f"the model's output has shape {shape}, not (N, classes); pass a callable class_ids "
                "that turns it into scores (N, K)"
            )
        return None


def _compute_for_kind(explainer, kind, x, *ids):
    return explainer._compute(x, ids[0] if kind == "ids" else kind)


def cached(model: keras.Model, key: Hashable, make: Callable[[], object]):
    """`make()` once per (model, key), for the function forms (`grad_cam`, `feature_maps`).

    The objects are kept with the model (`keras_internals.cache_of`), so they are freed with it and
    no model is kept alive by the cache.
    """
    store = internals.cache_of(model)
    if key not in store:
        store[key] = make()
    return store[key]
