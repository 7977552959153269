"""The 1000 ImageNet (ILSVRC-2012) classes in pretrained classifiers' order, and top-k decoding.

Class id `i` is the `i`-th WordNet id in sorted order, from 0 = n01440764 "tench" to
999 = n15075141 "toilet tissue": the order of Caffe's `synset_words.txt` and of Keras's
`imagenet_class_index.json`. The list ships as package data, `lib/nets/data/imagenet_classes.txt`,
one `<wnid> <synonyms, comma-separated>` line per class, so nothing is downloaded.

Usage:
    decode_predictions(model(images), top=3)  # [[(281, 'tabby', 12.1), (285, ...), ...]]
"""

from functools import cache
from importlib import resources

import numpy as np
from numpy.typing import ArrayLike

from lib.errors import InputError

NUM_CLASSES = 1000
CLASSES_FILE = resources.files("lib.nets") / "data" / "imagenet_classes.txt"  # an importlib Traversable


@cache
def _read_classes() -> tuple[tuple[str, str], ...]:
    """Reads `CLASSES_FILE` once.

    Returns:
        One `(wnid, label)` pair per class, in class-id order; `label` keeps every synonym.

    Raises:
        RuntimeError: If the file does not hold exactly 1000 `<wnid> <label>` lines.
    """
    lines = [line for line in CLASSES_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = tuple(tuple(line.split(" ", 1)) for line in lines)
    if len(rows) != NUM_CLASSES or any(len(row) != 2 for row in rows):
        raise RuntimeError(
            f"{CLASSES_FILE} should hold {NUM_CLASSES} '<wnid> <label>' lines but holds "
            f"{len(rows)}, or some lack a label; reinstall the package, or restore the file with "
            "`git checkout -- lib/nets/data/imagenet_classes.txt`"
        )
    return rows


def wnids() -> tuple[str, ...]:
    """The WordNet ids of the 1000 classes, in class-id order (sorted, `n01440764` first)."""
    return tuple(wnid for wnid, _ in _read_classes())


def class_names(short: bool = True) -> tuple[str, ...]:
    """The human-readable names of the 1000 classes, in class-id order.

    Two pairs of classes share a first synonym ("crane" the bird and the machine, and "maillot");
    use `short=False` or `wnids()` where names must be unique.

    Args:
        short: If True, only the first synonym (`"tench"`); otherwise the full label
            (`"tench, Tinca tinca"`).

    Returns:
        1000 names; the same tuple object on every call with the same `short`.
    """
    return _names(bool(short))


@cache
def _names(short: bool) -> tuple[str, ...]:
    labels = (label for _, label in _read_classes())
    return tuple(label.split(",", 1)[0] for label in labels) if short else tuple(labels)


def decode_predictions(logits_or_probs: ArrayLike, top: int = 5) -> list[list[tuple[int, str, float]]]:
    """The `top` highest-scoring classes of each image, best first.

    Args:
        logits_or_probs: Classifier output of shape `(batch, 1000)`, as a NumPy array, a tensor or
            nested lists; logits and probabilities rank the same, so either works.
        top: How many classes to keep per image, 1 to 1000.

    Returns:
        One list per image of `top` tuples `(class id, short name, score)`, in decreasing score;
        ties go to the lower class id. Scores are returned as given (not softmaxed).

    Raises:
        InputError: If the scores are not numeric or not of shape `(batch, 1000)`, or if
            `top` is out of range.
    """
    scores = _as_score_matrix(logits_or_probs)  # (batch, 1000)
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or not 1 <= top <= NUM_CLASSES:
        raise InputError(f"top must be an integer from 1 to {NUM_CLASSES}, got {top!r}")
    order = np.argsort(-scores, axis=1, kind="stable")[:, :top]  # (batch, top)
    names = class_names()
    return [[(int(c), names[c], float(row[c])) for c in ids] for row, ids in zip(scores, order, strict=True)]


def _as_score_matrix(logits_or_probs: ArrayLike) -> np.ndarray:
    """Checks and converts classifier output to a float64 `(batch, 1000)` array."""
    try:
        scores = np.asarray(logits_or_probs, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"scores must be numeric, of shape (batch, {NUM_CLASSES}): {err}") from err
    if scores.ndim != 2 or scores.shape[1] != NUM_CLASSES:
        hint = "; for one image, add a batch axis with scores[None]" if scores.shape == (NUM_CLASSES,) else ""
        raise InputError(
            f"decode_predictions expects scores of shape (batch, {NUM_CLASSES}), one row of "
            f"ImageNet logits or probabilities per image, got shape {scores.shape}{hint}"
        )
    return scores
