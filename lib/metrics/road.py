"""ROAD: Remove And Debias (Rong et al., ICML 2022), removal with noisy linear imputation.

Removing pixels to a constant leaves the shape of what was removed in the image, and a model can read
the class from that shape: the mask leaks. ROAD fills removed pixels from their neighbours instead,
so the filled region carries no trace of its outline, and scores the class on the filled image at
each percentage of removed pixels.

    result = road(model, images, ids, method=GradCAM(model), order="morf")
    result.curves, result.steps       # (N, K, P) probabilities, percentages removed
"""

import dataclasses

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import spsolve

from lib.errors import InputError
from lib.metrics.faithfulness import checked_inputs, pixel_ranks, random_maps
from lib.metrics.inputs import BATCH_SIZE, scorer
from lib.metrics.result import result

PERCENTAGES = (10, 20, 30, 40, 50, 60, 70, 80, 90)  # the paper's removal levels
NOISE = 0.01 * 255  # the reference imputer's noise, 0.01 of a [0, 1] pixel range, in our 0-255 pixels
# (row, column) offsets of the 8 neighbours and their weights, as in the reference `NoisyLinearImputer`
NEIGHBOURS = ((-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6)) + tuple(
    (dr, dc, 1 / 12) for dr in (-1, 1) for dc in (-1, 1)
)
ORDERS = ("morf", "lerf")


def road(
    model, images, class_ids, maps=None, method=None, order="morf", percentages=PERCENTAGES, noise=NOISE,
    batch_size=BATCH_SIZE, seed=0,
):  # fmt: skip
    """The class probability after removing a percentage of pixels by noisy linear imputation.

    For each percentage p, the first round(p * H * W / 100) pixels of the map's order (MoRF: most
    relevant first; LeRF: least relevant first) are removed and filled by `impute`; the curve is the
    class probability (softmax) at each p. The value per pair is the mean of its curve over the
    percentages (the paper plots the curve, of accuracy over a dataset; its mean is the area under it
    on equal steps). For MoRF lower is better (the score should fall fast); for LeRF higher is better.

    Args:
        model, images, class_ids, maps, method: as for `lib.metrics.deletion`.
        order: "morf" or "lerf".
        percentages: removal levels in [0, 100), increasing.
        noise: standard deviation of the Gaussian noise added to the imputed pixels, in pixel units.
        batch_size: imputed images per forward pass.
        seed: seed of the noise, the tie order, the random map and the bootstrap.

    Returns:
        `MetricResult` "ROAD MoRF" or "ROAD LeRF": values (N, K), curves (N, K, P), steps the
        percentages; its baseline is the same order of a random map.

    Raises:
        InputError: for bad maps, classes, order, percentages or noise.
    """
    x, maps, ids = checked_inputs(images, class_ids, maps, method, batch_size)
    if order not in ORDERS:
        raise InputError(
            f"order={order!r}; pass 'morf' (most relevant first) or 'lerf' (least relevant first)"
        )
    levels = _levels(percentages)
    if not np.isfinite(noise) or noise < 0:
        raise InputError(f"noise={noise!r}; pass a standard deviation >= 0 in pixel units (default 2.55)")
    name = f"ROAD {'MoRF' if order == 'morf' else 'LeRF'}"
    probabilities = scorer(model, batch_size)
    sign = 1 if order == "morf" else -1

    def measured(maps, label):
        ranks = pixel_ranks(sign * maps, seed)
        curves = road_curves(probabilities, x, ranks, ids, levels, noise, seed, batch_size)
        return result(label, curves.mean(axis=-1), seed, order == "lerf", curves=curves, steps=levels)

    chance = measured(random_maps(maps.shape, seed), f"{name} of a random map")
    return dataclasses.replace(measured(maps, name), baseline=chance)


def road_curves(probabilities, x, ranks, ids, levels, noise, seed, batch_size):
    """float64 (N, K, P): the probabilities of ids (N, K) on x with the pixels of ranks (N, K, H, W)
    below each level's count imputed; images are made and scored `batch_size` at a time."""
    n, k = ids.shape
    counts = np.rint(np.asarray(levels) * ranks.shape[2] * ranks.shape[3] / 100).astype(int)
    triples = list(np.ndindex(n, k, len(counts)))
    scores = []
    for start in range(0, len(triples), batch_size):
        chunk = triples[start : start + batch_size]
        made = [
            impute(x[i], ranks[i, j] < counts[p], noise, np.random.default_rng([seed, i, j, p]))
            for i, j, p in chunk
        ]
        scores.append(probabilities(np.stack(made), np.array([[ids[i, j]] for i, j, _ in chunk]))[:, 0])
    return np.concatenate(scores).reshape(n, k, len(counts))


def impute(image, removed, noise=0.0, rng=None):
    """float32 (H, W, C): `image` with its `removed` pixels (bool (H, W)) filled by noisy linear imputation.

    The removed values v solve one sparse linear system: each equals the weighted mean of its
    neighbours inside the image (weight 1/6 for the 4 direct, 1/12 for the 4 diagonal ones), removed
    neighbours being unknowns too: (sum_j w_j) v_i - sum_{j removed} w_j v_j = sum_{j kept} w_j x_j.
    It is solved by a sparse LU factorisation for all channels at once; Gaussian noise of std `noise`
    is then added to the removed pixels only (the reference adds it to every pixel), so the kept pixels
    are the image's own. With some pixel kept the system is non-singular.
    """
    image = np.asarray(image, np.float64)
    h, w, c = image.shape
    unknown = np.flatnonzero(removed)
    if unknown.size == 0:
        return image.astype(np.float32)
    if unknown.size == h * w:
        raise InputError("every pixel is removed; pass percentages below 100")
    variable = np.full(h * w, -1)
    variable[unknown] = np.arange(unknown.size)
    rows, cols = np.divmod(unknown, w)
    flat = image.reshape(h * w, c)
    diagonal, b = np.zeros(unknown.size), np.zeros((unknown.size, c))
    entries = []  # (equation, variable, weight) of the removed neighbours
    for dr, dc, weight in NEIGHBOURS:
        r, q = rows + dr, cols + dc
        inside = (r >= 0) & (r < h) & (q >= 0) & (q < w)
        equation, neighbour = np.flatnonzero(inside), (r * w + q)[inside]
        diagonal[equation] += weight
        open_ = variable[neighbour] >= 0
        entries.append((equation[open_], variable[neighbour[open_]], -weight))
        np.add.at(b, equation[~open_], weight * flat[neighbour[~open_]])
    eq, var = (np.concatenate([e[i] for e in entries]) for i in range(2))
    weights = np.concatenate([np.full(e[0].size, e[2]) for e in entries])
    system = sparse.coo_matrix(
        (
            np.concatenate([diagonal, weights]),
            (np.r_[np.arange(unknown.size), eq], np.r_[np.arange(unknown.size), var]),
        ),
        shape=(unknown.size, unknown.size),
    ).tocsc()
    values = spsolve(system, b).reshape(unknown.size, c)
    if noise > 0:
        rng = np.random.default_rng(0) if rng is None else rng
        values = values + rng.normal(0.0, noise, values.shape)
    filled = flat.copy()
    filled[unknown] = values
    return filled.reshape(h, w, c).astype(np.float32)


def _levels(percentages):
    levels = np.asarray(percentages, np.float64).reshape(-1)
    if levels.size == 0 or not np.isfinite(levels).all() or (levels < 0).any() or (levels >= 100).any():
        raise InputError(f"percentages={percentages!r}; pass removal levels in [0, 100), e.g. 10, 20, .. 90")
    if (np.diff(levels) <= 0).any():
        raise InputError(f"percentages={percentages!r}; pass increasing levels, e.g. 10, 20, .. 90")
    return levels
