"""Which scores to explain: the `class_ids` argument every class-map method takes.

`class_ids` may be
    None                     each image's top class (K = 1), picked inside the compiled pass
    TopK(k)                  each image's k top classes, in decreasing order, picked likewise
    an int                   that class for every image (K = 1)
    a list of K ints         the same K classes for every image
    a list of N lists of K   K classes per image (use [[a], [b]] for one class per image)
    a callable               `logits (N, classes) -> scores (N, K)` for other targets; it runs
                             inside `tf.function`, so it must use TensorFlow/Keras ops, and each
                             distinct callable object is traced once (reuse the same function)
"""

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from lib.errors import InputError
from lib.methods.finite import checked


@dataclasses.dataclass(frozen=True)
class TopK:
    """`class_ids=TopK(k)`: each image's k highest-scoring classes, found in the method's own pass."""

    k: int


# What the methods accept as `class_ids` (see the module docstring).
ClassIds = (
    int
    | Sequence[int]
    | Sequence[Sequence[int]]
    | np.ndarray
    | TopK
    | Callable[[tf.Tensor], tf.Tensor]
    | None
)


def parse_class_ids(class_ids, num_images, num_classes):
    """Check `class_ids` and return None, a callable, or an int32 array (N, K).

    Args:
        class_ids: see the module docstring.
        num_images: N, the batch size.
        num_classes: number of logits, or None if unknown.

    Returns:
        None (top class), a `TopK`, the callable itself, or int32 ndarray (N, K).

    Raises:
        InputError: for non-integers, negative or out-of-range ids, ragged lists, a list of lists
            whose length is not N, or a `TopK` of more classes than the model has.
    """
    if class_ids is None or callable(class_ids):
        return class_ids
    if isinstance(class_ids, TopK):
        k = class_ids.k
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= (num_classes or k):
            raise InputError(
                f"TopK({k!r}); pass a number of classes from 1 to {num_classes or 'the classes'}"
            )
        return TopK(int(k))
    if isinstance(class_ids, (bool, np.bool_)):
        raise InputError(f"class_ids={class_ids!r} is a bool; pass an int class index")
    try:
        ids = np.asarray(class_ids)
    except ValueError:
        raise InputError("class_ids is ragged; give every image the same number K of classes") from None
    if ids.dtype == object:  # ragged lists, or no ints at all (a set, a dict, an int beyond int64)
        if ids.ndim and any(isinstance(v, (list, tuple, np.ndarray)) for v in ids.flat):
            raise InputError("class_ids is ragged; give every image the same number K of classes")
        raise InputError(f"class_ids={class_ids!r}; pass an int, a list of ints or N lists of ints")
    if ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
        raise InputError(f"class_ids={class_ids!r}; pass an int, a list of ints or N lists of ints")
    ids = _to_matrix(ids, num_images)
    bad = ids[(ids < 0) | (ids >= (num_classes or np.iinfo(np.int32).max))]
    if bad.size:
        raise InputError(
            f"class id {int(bad[0])} is outside 0..{(num_classes or 0) - 1}; pass ids of the model's classes"
        )
    return ids.astype(np.int32)


def _to_matrix(ids, num_images):
    if ids.ndim == 0:
        return np.full((num_images, 1), ids)
    if ids.ndim == 1:
        return np.tile(ids[None], (num_images, 1))
    if ids.ndim == 2 and len(ids) == num_images:
        return ids
    raise InputError(
        f"class_ids has shape {ids.shape} for {num_images} images; "
        f"pass K ints or {num_images} lists of K ints"
    )


def scores(logits, targets):
    """Scores (N, K) to explain, from logits (N, classes).

    Args:
        logits: float tensor (N, classes), before any softmax.
        targets: None (top class), a `TopK`, int32 tensor (N, K), or a callable.

    Returns:
        (scores, ids): float (N, K), and int32 (N, K) ids or None for a callable.
    """
    logits = checked(logits)  # NaN here can still end in a finite, meaningless map
    if callable(targets):
        values = checked(tf.convert_to_tensor(targets(logits)))
        if values.shape.rank != 2 or values.shape[1] is None:
            raise InputError(f"the class_ids callable returned shape {values.shape}; return scores (N, K)")
        return values, None
    if targets is None:
        targets = tf.argmax(logits, axis=-1, output_type=tf.int32)[:, None]  # (N, 1)
    elif isinstance(targets, TopK):
        targets = tf.math.top_k(logits, targets.k).indices  # (N, k), highest first
    # A one-hot product rather than a gather: its gradient is one small dense op, not a scatter.
    depth = logits.shape[-1] or tf.shape(logits)[-1]
    one_hot = tf.one_hot(targets, depth, dtype=logits.dtype)  # (N, K, classes)
    return tf.einsum("nc,nkc->nk", logits, one_hot), targets


def outcome(logits, targets):
    """What an explanation reports besides its maps: the targets explained and their scores.

    Args:
        logits: float tensor (N, classes), before any softmax.
        targets: as for `scores`.

    Returns:
        (scores, fields): the scores (N, K) to differentiate, and a dict of tensors for
        `Explanation`: "scores" (the same values), and for class targets "class_ids" (N, K) and
        "probabilities" (N, K), the softmax of the logits at those classes.
    """
    values, ids = scores(logits, targets)
    fields = {"scores": values}
    if ids is not None:
        probabilities = tf.nn.softmax(logits, axis=-1)
        fields["class_ids"] = ids
        fields["probabilities"] = tf.gather(probabilities, ids, axis=1, batch_dims=1)  # (N, K)
    return values, fields
