"""Localisation: does a map point at the object of its class? On images with exact masks.

Masks follow `lib.dataflow.shapes`: int (N, H, W) with 0 for background and c + 1 where an object of
class c lies. A pair (image n, target k) counts only if class `class_ids[n, k]` is in image n; the
others get NaN. Each metric also scores a map that knows nothing of the image, as its baseline.

    result = pointing_game(model, images, ids, method=GradCAM(model), masks=masks)
    print(result)                     # pointing game: 0.910 [0.870, 0.945], baseline 0.412
"""

import numpy as np
from scipy import ndimage

from lib.errors import InputError
from lib.metrics.inputs import maps_and_classes
from lib.metrics.result import result

TOLERANCE_AT_224 = 15  # pixels, the original game's (Zhang et al., ECCV 2016), scaled to the image


def pointing_game(model, images, class_ids, maps=None, method=None, masks=None, tolerance=None, seed=0):
    """Hit rate of each map's peak on its object, within a tolerance (Zhang et al., ECCV 2016).

    A map hits if any of its maximal pixels lies within `tolerance` pixels of the object of its class.
    A constant map, all zero included, points nowhere and misses. The baseline is a centre prior: a
    Gaussian peaked at the image centre.

    Args:
        model: the network (used only through `method`).
        images: (N, H, W, 3) as the model expects.
        class_ids: the class of each map, int (N, K); with `method`, anything it takes.
        maps, method: precomputed maps (N, K, H, W), or a method that makes them.
        masks: int (N, H, W), 0 background and c + 1 on objects of class c.
        tolerance: pixels still counted as a hit; default 15 at 224 px, scaled to the image height.
        seed: seed of the bootstrap interval.

    Returns:
        `MetricResult` "pointing game": values 1 (hit), 0 (miss) or NaN (class not in the image).
    """
    maps, class_ids, masks = _localisation_inputs(images, class_ids, maps, method, masks)
    if tolerance is None:
        tolerance = TOLERANCE_AT_224 * masks.shape[1] / 224
    baseline = result("centre prior", hits(centre_prior(maps.shape), masks, class_ids, tolerance), seed)
    return result("pointing game", hits(maps, masks, class_ids, tolerance), seed, baseline=baseline)


def energy_in_mask(model, images, class_ids, maps=None, method=None, masks=None, seed=0):
    """Share of each map's positive mass that lies on its object (energy-based pointing game).

    Negative values (occlusion's, Integrated Gradients' before their magnitude) do not count. The
    baseline is a uniform map, whose share is the object's area over the image's.

    Args:
        model, images, class_ids, maps, method, masks, seed: as for `pointing_game`.

    Returns:
        `MetricResult` "energy in mask": values in [0, 1] (an all-zero map scores 0), NaN for absent classes.
    """
    maps, class_ids, masks = _localisation_inputs(images, class_ids, maps, method, masks)
    baseline = result("uniform map", energies(np.ones_like(maps), masks, class_ids), seed)
    return result("energy in mask", energies(maps, masks, class_ids), seed, baseline=baseline)


def grid_pointing_game(model, images, class_ids, maps=None, method=None, cells=None, seed=0):
    """The grid pointing game (Böhle et al., CVPR 2021): the share of positive mass in the class's cell.

    Each image is a grid of photos (`lib.dataflow.photos.load_grids`) and `class_ids[n, k]` is the class
    of the photo in cell k; the map of that class should put its positive mass in cell k. The baseline
    is a uniform map, 1 / cells for equal cells (0.25 for 2x2).

    Args:
        model, images, maps, method, seed: as for `pointing_game`.
        class_ids: int (N, K), the class of the photo in each of the K cells.
        cells: int (H, W) or (N, H, W), k on cell k (`compose_grid`'s cells, -1 on unused cells).

    Returns:
        `MetricResult` "grid pointing game": values in [0, 1].
    """
    from lib.dataflow.photos import cell_masks

    if cells is None:
        raise InputError("pass cells= (H, W), the cell index of each pixel, as load_grids returns")
    maps, class_ids = maps_and_classes(images, class_ids, maps, method)
    cells = np.asarray(cells)
    masks = cell_masks(np.broadcast_to(cells, (len(maps), *cells.shape[-2:])), class_ids)
    baseline = result("uniform map", energies(np.ones_like(maps), masks, class_ids), seed)
    return result("grid pointing game", energies(maps, masks, class_ids), seed, baseline=baseline)


def hits(maps, masks, class_ids, tolerance=0):
    """float (N, K): 1 where the peak of maps[n, k] is within `tolerance` px of its object, 0 where
    not, NaN where the class is not in the image; maps (N, K, H, W), masks (N, H, W), ids (N, K)."""
    maps, masks, class_ids = _checked(maps, masks, class_ids)
    values = np.full(class_ids.shape, np.nan)
    for n, k, inside in _pairs(masks, class_ids):
        peak = maps[n, k] == maps[n, k].max()
        if tolerance > 0:
            inside = ndimage.distance_transform_edt(~inside) <= tolerance
        values[n, k] = bool((peak & inside).any()) and not peak.all()
    return values


def energies(maps, masks, class_ids):
    """float (N, K): the share of the positive part of maps[n, k] on its object, NaN for absent classes."""
    maps, masks, class_ids = _checked(maps, masks, class_ids)
    positive = np.maximum(maps, 0)
    values = np.full(class_ids.shape, np.nan)
    for n, k, inside in _pairs(masks, class_ids):
        total = positive[n, k].sum()
        values[n, k] = positive[n, k][inside].sum() / total if total > 0 else 0.0
    return values


def _localisation_inputs(images, class_ids, maps, method, masks):
    if masks is None:
        raise InputError("pass masks= (N, H, W), 0 for background and c + 1 on objects of class c")
    maps, class_ids = maps_and_classes(images, class_ids, maps, method)
    return maps, class_ids, np.asarray(masks)


def centre_prior(shape):
    """(N, K, H, W) Gaussians peaked at the image centre, sigma a quarter of each side: the pointing
    game's baseline, a map that knows where objects tend to be but nothing of the image."""
    rows, cols = (np.arange(size) - (size - 1) / 2 for size in shape[2:])
    prior = np.exp(-0.5 * ((rows[:, None] / (shape[2] / 4)) ** 2 + (cols[None] / (shape[3] / 4)) ** 2))
    return np.broadcast_to(prior, shape)


def _checked(maps, masks, class_ids):
    maps, masks, class_ids = np.asarray(maps), np.asarray(masks), np.asarray(class_ids)
    if maps.ndim != 4 or masks.shape != (maps.shape[0], *maps.shape[2:]):
        raise InputError(
            f"maps {maps.shape} and masks {masks.shape} do not match; pass (N, K, H, W) and (N, H, W)"
        )
    if class_ids.shape != maps.shape[:2] or not np.issubdtype(class_ids.dtype, np.integer):
        raise InputError(f"class_ids has shape {class_ids.shape}; pass ints (N, K) = {maps.shape[:2]}")
    return maps, masks, class_ids


def _pairs(masks, class_ids):
    """(n, k, object mask (H, W)) for each pair whose class is present in its image."""
    for n, k in np.ndindex(*class_ids.shape):
        inside = masks[n] == class_ids[n, k] + 1
        if inside.any():
            yield n, k, inside
