"""What an optimised image should excite: channels, units, class logits, directions, and their sums.

An objective is a weighted sum of terms, each a scalar read from one layer's activations of one
image; objectives add, subtract and scale like numbers:

    channel("fire5_concat", 3) + 0.5 * class_logit(281) - unit("conv10", 7)

`FeatureVisualization` optimises a list of objectives as one batch, image b for objective b, so
each term reads image b's activations only. Objectives are frozen values: equal objectives compile
to the same optimisation step.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from lib.errors import InputError

LOGITS = None  # the `layer` of a class-logit term: the model's scores before any softmax


@dataclasses.dataclass(frozen=True)
class Term:
    """One scalar of one image's activations, times `weight`.

    Attributes:
        kind: "channel" (mean over positions), "unit" (one position), "logit", or "direction".
        layer: the layer's name, `LOGITS` for a class logit.
        index: the channel or class id; None for a direction.
        position: (row, column) in the layer's grid for a unit; None for its centre.
        vector: the direction in channel space, a tuple of floats.
        weight: the factor of the term in its objective.
    """

    kind: str
    layer: str | None
    index: int | None = None
    position: tuple | None = None
    vector: tuple | None = None
    weight: float = 1.0

    def value(self, activations):
        """The term for one image, from its activations (..., C) at the layer (no batch axis)."""
        if self.kind in ("channel", "logit"):
            return tf.reduce_mean(activations[..., self.index])
        if self.kind == "unit":
            row, column = self.position or tuple(size // 2 for size in activations.shape[:-1])
            return activations[row, column, self.index]
        return tf.reduce_mean(tf.tensordot(activations, tf.constant(self.vector, tf.float32), 1))

    def check(self, shape):
        """Refuse a channel, position or direction that the layer's output `shape` (N, ..., C) lacks."""
        channels, name = shape[-1], "the logits" if self.layer is LOGITS else f"layer {self.layer!r}"
        if self.index is not None and not 0 <= self.index < channels:
            what = "class" if self.kind == "logit" else "channel"
            raise InputError(f"{what} {self.index} is out of range for {name}, which has {channels}")
        if self.vector is not None and len(self.vector) != channels:
            raise InputError(
                f"the direction has {len(self.vector)} values but {name} has {channels} channels"
            )
        if self.kind == "unit" and len(shape) != 4:
            raise InputError(f"{name} has output shape {shape}, no (row, column) grid for a unit")
        inside = self.position is None or all(
            0 <= p < n for p, n in zip(self.position, shape[1:3], strict=True)
        )
        if self.kind == "unit" and not inside:
            raise InputError(f"position {self.position} is outside {name}'s {shape[1]}x{shape[2]} grid")


@dataclasses.dataclass(frozen=True)
class Objective:
    """A weighted sum of `Term`s, to be maximised; made by `channel`, `unit`, `class_logit`, `direction`."""

    terms: tuple

    def __add__(self, other):
        if isinstance(other, (int, float)) and other == 0:  # sum(objectives) starts from 0
            return self
        if not isinstance(other, Objective):
            return NotImplemented
        return Objective(self.terms + other.terms)

    __radd__ = __add__

    def __mul__(self, factor):
        if not isinstance(factor, (int, float, np.floating, np.integer)):
            return NotImplemented
        return Objective(tuple(dataclasses.replace(t, weight=t.weight * float(factor)) for t in self.terms))

    __rmul__ = __mul__

    def __neg__(self):
        return self * -1.0

    def __sub__(self, other):
        return self + (-other)

    @property
    def layers(self):
        """The layers the objective reads, in order of first use (`LOGITS` for class logits)."""
        return tuple(dict.fromkeys(t.layer for t in self.terms))

    def value(self, activations_of):
        """The objective of one image; `activations_of(layer)` gives its activations there (no batch axis)."""
        return tf.add_n([t.weight * t.value(activations_of(t.layer)) for t in self.terms])


def channel(layer: str, index: int) -> Objective:
    """The mean activation of channel `index` of `layer` over all positions (the Distill "channel")."""
    return Objective((Term("channel", layer, int(index)),))


def unit(layer: str, index: int, row: int | None = None, column: int | None = None) -> Objective:
    """The activation of channel `index` at one position of `layer`'s grid (its centre by default)."""
    if (row is None) != (column is None):
        raise InputError("give both row and column of the unit, or neither for the centre of the grid")
    position = None if row is None else (int(row), int(column))
    return Objective((Term("unit", layer, int(index), position=position),))


def class_logit(class_id: int) -> Objective:
    """The score of class `class_id` before any softmax."""
    return Objective((Term("logit", LOGITS, int(class_id)),))


def direction(layer: str, vector) -> Objective:
    """The mean over positions of the dot product of `layer`'s activations with `vector` (C,)."""
    vector = np.asarray(vector, np.float64).ravel()
    if not np.isfinite(vector).all() or not vector.any():
        raise InputError("the direction must be a finite, non-zero vector with one value per channel")
    return Objective((Term("direction", layer, vector=tuple(float(v) for v in vector)),))


def as_objectives(objectives):
    """A tuple of `Objective`s from one objective or a sequence of them; refuses anything else."""
    items = (objectives,) if isinstance(objectives, Objective) else tuple(objectives)
    if not items or not all(isinstance(o, Objective) for o in items):
        raise InputError(
            "pass an objective or a list of them, made by channel(), unit(), class_logit() or direction() "
            "from lib.methods.feature_visualization"
        )
    return items
