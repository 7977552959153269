"""Where deconvnet reconstructions lie: their energy on the object, against the object's share of the field.

For the top activations of a layer over generated shape images (whose masks are exact), each
reconstruction is cut to the unit's receptive field. If the deconvnet shows what the unit responds to,
more of the reconstruction's energy lies on the object than the object's share of the field.

    top = Deconvnet(model, "conv4_2").top_activations(images, k=9)
    shares = object_shares(top, [masks[i] for i in top.image_index], deconv.field(images.shape[1:3]))
"""

from collections.abc import Sequence

import numpy as np

from lib.methods.deconvnet import TopActivations
from lib.methods.receptive_field import Field


def window(array: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """The `box` (top, left, bottom, right; exclusive) of a 2-D array, False/0 where it leaves the array."""
    top, left, bottom, right = box
    out = np.zeros((bottom - top, right - left), array.dtype)
    t, le, b, r = max(top, 0), max(left, 0), min(bottom, array.shape[0]), min(right, array.shape[1])
    out[t - top : b - top, le - left : r - left] = array[t:b, le:r]
    return out


def object_shares(top: TopActivations, masks: Sequence[np.ndarray | None], field: Field) -> np.ndarray:
    """Per activation: (share of the reconstruction's energy on the object, object's share of the field).

    Args:
        top: the top activations (their `reconstructions` (k, Rh, Rw, 3) and `positions` (k, 2)).
        masks: per activation, the object mask (H, W) of its source image (non-zero on objects), or
            None for a source without one (an image file).
        field: the layer's receptive field, as `Deconvnet.field` gives it for the images' size.

    Returns:
        float64 (k, 2); both NaN where the mask is None. The field counts only its pixels in the image;
        an all-zero reconstruction has no energy on the object (0).
    """
    shares = []
    for rec, mask, (row, col) in zip(top.reconstructions, masks, top.positions, strict=True):
        if mask is None:
            shares.append((np.nan, np.nan))
            continue
        box = field.box(row, col)  # unclipped, as the reconstructions are cut
        on_object, in_image = window(mask > 0, box), window(np.ones(mask.shape, bool), box)
        energy = (rec.astype(np.float64) ** 2).sum(axis=-1)  # (Rh, Rw)
        total = energy.sum()
        shares.append(
            (energy[on_object].sum() / total if total > 0 else 0.0, on_object.sum() / in_image.sum())
        )
    return np.array(shares).reshape(-1, 2)
