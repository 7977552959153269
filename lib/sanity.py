"""Model-parameter randomisation test (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).

A saliency method that explains the model should change when the model's weights are replaced by random
ones, top layers first. We compare the maps of the trained network with those of copies whose top
layers are randomised, by Spearman rank correlation: guided backpropagation stays highly correlated
(it mostly shows edges of the image), Grad-CAM does not.

    steps = cascade(model)                                      # [("classifier random", 1), ...]
    twins = [randomised(model, top) for _, top in steps]
    correlations = map_correlations(gbp_maps, cam_maps)         # per image, trained map first
    print(correlation_table(steps, mean_correlations([correlations, ...])))

The metric, with every layer of the cascade, SSIM and HOG similarity and the data randomisation test,
is `lib.metrics.randomisation`; it builds its copies with `randomised`.
"""

import warnings
from collections.abc import Callable, Sequence

import keras
import numpy as np
from scipy import stats

from lib.errors import InputError

SEED = 2018  # weights of the randomised copies


def weighted_layers(model: keras.Model) -> list:
    """The layers of `model` that hold weights, input first (a nested model counts as one)."""
    return [layer for layer in model.layers if layer.weights]


def randomised(
    model: keras.Model, top: int, seed: int = SEED, build: Callable[[], keras.Model] | None = None
) -> keras.Model:
    """A copy of `model` whose `top` highest weighted layers have fresh random weights; `model` is unchanged.

    The copy's weights come from Keras's initialisers after `keras.utils.set_random_seed(seed)`, which
    also reseeds Python, NumPy and TensorFlow: the same seed gives the same copy.

    Args:
        model: a functional or Sequential Keras model.
        top: weighted layers to randomise, counted from the output (1: the classifier).
        seed: seed of the random weights.
        build: returns a new, randomly initialised model of the same architecture and layer names
            (default: `keras.models.clone_model(model)`). A builder draws its weights in its own order,
            so the bundled models pass theirs to keep the documented results.

    Returns:
        The copy, a new `keras.Model`.

    Raises:
        InputError: `top` outside 0 .. the number of weighted layers.
    """
    weighted = weighted_layers(model)
    if not 0 <= top <= len(weighted):
        raise InputError(f"top={top}; pass 0 .. {len(weighted)}, the model's weighted layers")
    keras.utils.set_random_seed(seed)
    twin = build() if build is not None else keras.models.clone_model(model)  # new initial weights
    for layer in weighted[: len(weighted) - top]:
        twin.get_layer(layer.name).set_weights(layer.get_weights())
    return twin


def cascade(model: keras.Model) -> list[tuple[str, int]]:
    """(label, number of top layers) of the randomisation steps: the classifier, the top half, everything."""
    count = len(weighted_layers(model))
    tops = sorted({1, max(1, count // 2), count})
    labels = {1: "classifier random", count: "all random"}
    return [(labels.get(top, f"top {top}/{count} random"), top) for top in tops]


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two maps, or NaN if either is constant (e.g. an all-zero Grad-CAM)."""
    a, b = np.ravel(a), np.ravel(b)
    if a.min() == a.max() or b.min() == b.max():
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def map_correlations(gbps: np.ndarray, cams: np.ndarray) -> list[tuple[float, float]]:
    """Rank correlation of each randomised net's maps of one image with the trained net's.

    Args:
        gbps: (S + 1, H, W, 3) guided backpropagation maps, the trained net's first; compared by their
            largest magnitude over the colour channels, as in Adebayo et al.
        cams: (S + 1, H, W) Grad-CAM maps, the trained net's first.

    Returns:
        S pairs (guided backprop, Grad-CAM), one per randomised net.
    """
    strength = np.abs(gbps).max(axis=-1)  # (S + 1, H, W)
    return [
        (rank_correlation(strength[0], s), rank_correlation(cams[0], c))
        for s, c in zip(strength[1:], cams[1:], strict=True)
    ]


def mean_correlations(correlations: Sequence) -> np.ndarray:
    """(S, 2) means over images of (images, S, 2) rank correlations, ignoring constant maps (NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column: every map was constant
        return np.nanmean(np.array(correlations), axis=0)


def correlation_table(steps: Sequence[tuple[str, int]], means: np.ndarray) -> str:
    """Markdown table of the mean rank correlations (S, 2) with the trained maps, a row per step."""
    lines = ["| randomised | guided backprop | Grad-CAM |", "| --- | --- | --- |"]
    lines += [
        f"| {label} | {gbp:.2f} | {cam:.2f} |" for (label, _), (gbp, cam) in zip(steps, means, strict=True)
    ]
    return "\n".join(lines)
