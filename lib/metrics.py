"""Localisation scores for class maps against segmentation masks.

Masks follow `lib.dataflow.shapes`: int (N, H, W) with 0 for background and c + 1 where an object of
class c lies. A pair (image n, target k) counts only if class `class_ids[n, k]` is in image n.

    rate = pointing_game(GradCAM(model)(images, ids), masks, ids)     # share of hits in [0, 1]
"""

import numpy as np
from scipy import ndimage

from lib.errors import InputError


def as_class_maps(maps):
    """(N, K, H, W) class maps as they are; (N, K, H, W, 3) input-space maps (guided backpropagation,
    Guided Grad-CAM) as their magnitude over the colour channels, so that every map has one peak."""
    maps = np.asarray(maps)
    return np.linalg.norm(maps, axis=-1) if maps.ndim == 5 else maps


def _check(maps, masks, class_ids):
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


def pointing_game(maps, masks, class_ids, tolerance=0):
    """Share of class maps whose maximum falls on their object (Zhang et al. 2016).

    A map hits if any of its maximal pixels (ties count as one peak set) lies within `tolerance`
    pixels of the object of its class. A constant map, all zero included, points nowhere and misses.

    Args:
        maps: float (N, K, H, W), e.g. Grad-CAM maps.
        masks: int (N, H, W), 0 background and c + 1 on objects of class c.
        class_ids: int (N, K), the class of each map.
        tolerance: distance in pixels still counted as a hit (the original game uses 15 at 224 px).

    Returns:
        float, hits / pairs over pairs whose class is in the image; NaN if there is no such pair.

    Raises:
        InputError: if the shapes do not match.
    """
    maps, masks, class_ids = _check(maps, masks, class_ids)
    hits = []
    for n, k, inside in _pairs(masks, class_ids):
        peak = maps[n, k] == maps[n, k].max()
        if tolerance > 0:
            inside = ndimage.distance_transform_edt(~inside) <= tolerance
        hits.append(bool((peak & inside).any()) and not peak.all())
    return float(np.mean(hits)) if hits else float("nan")


def energy_in_mask(maps, masks, class_ids):
    """Mean share of each map's mass that lies on its object (the energy-based pointing game).

    Args:
        maps: float (N, K, H, W), non-negative (as Grad-CAM and CAM give).
        masks: int (N, H, W), as for `pointing_game`.
        class_ids: int (N, K).

    Returns:
        float in [0, 1] averaged over pairs whose class is in the image (an all-zero map scores 0);
        NaN if there is no such pair.

    Raises:
        InputError: if the shapes do not match or a map has negative values.
    """
    maps, masks, class_ids = _check(maps, masks, class_ids)
    if (maps < 0).any():
        raise InputError("maps have negative values; pass non-negative maps such as Grad-CAM or CAM")
    shares = []
    for n, k, inside in _pairs(masks, class_ids):
        total = maps[n, k].sum()
        shares.append(maps[n, k][inside].sum() / total if total > 0 else 0.0)
    return float(np.mean(shares)) if shares else float("nan")
