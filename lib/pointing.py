"""The pointing game of every class-map method of the bundled models, on two-object shape images.

Each generated image holds two objects of different classes and their exact masks; each method explains
both classes, and each map is scored by `lib.metrics`: the pointing game (the map's peak on its object,
within 0, 1 or 4 pixels) and the share of its energy on its object. A centre-peaked Gaussian, which
knows nothing of the image, is the baseline a method must beat.

    scores = pointing_scores(num_images=500)        # [PointingScore], the baseline first
    print(pointing_table(scores))                   # markdown, one row per (model, method, layer)
"""

import dataclasses
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from lib.dataflow.shapes import generate
from lib.errors import InputError
from lib.methods.cam import CAM
from lib.methods.grad_cam import GradCAM, GuidedGradCAM
from lib.methods.guided_backprop import GuidedBackprop
from lib.metrics import as_class_maps, energies, hits
from lib.nets import bundled

SEED = 11  # generator seed of the pointing-game images (never used in training)
TOLERANCES = (0, 1, 4)  # pixels; 4 px at 64 px is the original game's 15 px at 224 px
# Per bundled model: the last spatial layer (what CAM uses) and an earlier one, to show the layer matters.
LAYERS = {
    "shapes_vgg": ("conv4_2", "conv3_2"),
    "shapes_googlenet": ("inception_3b_output", "inception_3a_output"),
}
BASELINE = ("-", "centre-peaked Gaussian (baseline)", "-")  # (model, method, layer) of the baseline row

# progress(label, images done, images in all), called as a method starts and after each of its batches.
Progress = Callable[[str, int, int], None]


@dataclasses.dataclass(frozen=True)
class PointingScore:
    """One method's scores on the pointing-game images.

    Attributes:
        model, method, layer: what was scored ("-" where it does not apply).
        pointing: hit rate in [0, 1] per tolerance of `tolerances`.
        tolerances: the tolerances in pixels, e.g. (0, 1, 4).
        energy: mean share of each map's energy on its object, in [0, 1].
    """

    model: str
    method: str
    layer: str
    pointing: tuple[float, ...]
    tolerances: tuple[int, ...]
    energy: float


def centre_maps(shape: Sequence[int]) -> np.ndarray:
    """float (N, K, H, W): a Gaussian peaked at the image centre in every map, the prior baseline."""
    _, _, h, w = shape
    yy, xx = np.mgrid[:h, :w]
    bump = np.exp(-(((yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2) / (2 * (h / 4) ** 2)))
    return np.broadcast_to(bump, tuple(shape))


def batched_maps(
    method: Callable,
    images: np.ndarray,
    class_ids: np.ndarray,
    batch_size: int,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """A method's class maps (N, K, H, W) of all images, `batch_size` at a time.

    Input-space maps (N, K, H, W, 3) become their magnitude, as in `lib.metrics.as_class_maps`.
    `progress(images done)` is called before the first batch (with 0) and after each batch.
    """
    if progress is not None:
        progress(0)
    maps = []
    for start in range(0, len(images), batch_size):
        batch = slice(start, start + batch_size)
        maps.append(as_class_maps(method(images[batch], class_ids[batch])))
        if progress is not None:
            progress(start + len(maps[-1]))
    return np.concatenate(maps)


def score(
    maps: np.ndarray,
    masks: np.ndarray,
    class_ids: np.ndarray,
    label: tuple[str, str, str],
    tolerances: Iterable[int] = TOLERANCES,
) -> PointingScore:
    """The `PointingScore` of maps (N, K, H, W) against masks (N, H, W), labelled (model, method, layer)."""
    tolerances = tuple(tolerances)
    pointing = tuple(_mean(hits(maps, masks, class_ids, tolerance=t)) for t in tolerances)
    return PointingScore(*label, pointing, tolerances, _mean(energies(maps, masks, class_ids)))


def _mean(values):
    return float(np.nanmean(values))


def bundled_methods(name: str) -> list[tuple[str, str, Callable]]:
    """(method name, layer, method) of every class-map method on bundled model `name`.

    Grad-CAM at the layers of `LAYERS[name]`, CAM, Guided Grad-CAM at the last spatial layer and guided
    backpropagation (the last two scored by their magnitude).
    """
    model = bundled.load(name)
    last = bundled.LAST_CONV_LAYER[name]
    methods = [("Grad-CAM", layer, GradCAM(model, layer)) for layer in LAYERS[name]]
    cam = CAM(model)
    return [
        *methods,
        ("CAM", cam.layer, cam),
        ("Guided Grad-CAM (magnitude)", last, GuidedGradCAM(model, last)),
        ("guided backprop (magnitude)", "-", GuidedBackprop(model)),
    ]


def pointing_scores(
    num_images: int,
    batch_size: int = 32,
    seed: int = SEED,
    models: Iterable[str] | None = None,
    tolerances: Iterable[int] = TOLERANCES,
    progress: Progress | None = None,
) -> list[PointingScore]:
    """Scores every class-map method of the bundled models on `num_images` two-object images.

    Args:
        num_images: generated images (`lib.dataflow.shapes.generate(..., objects_per_image=2)`), >= 1.
        batch_size: images per call of a method.
        seed: generator seed of the images.
        models: bundled model names (default: all of them).
        tolerances: pointing-game tolerances in pixels.
        progress: optional `progress(label, images done, images in all)`, called as each method
            starts (0 done) and after each batch; `label` is "<model> <method> <layer>".

    Returns:
        list of `PointingScore`: the centre-peaked baseline first, then each model's methods in the
        order of `bundled_methods`.

    Raises:
        InputError: `num_images` below 1.
    """
    if num_images < 1:
        raise InputError(f"num_images={num_images}; pass a number of images >= 1")
    images, labels, masks = generate(num_images, seed=seed, objects_per_image=2)
    images, labels = images.astype(np.float32), labels.astype(np.int32)  # (N, 64, 64, 3), (N, 2)
    scores = [score(centre_maps((num_images, 2, *masks.shape[1:])), masks, labels, BASELINE, tolerances)]
    for name in bundled.names() if models is None else models:
        for method_name, layer, method in bundled_methods(name):
            label = f"{name} {method_name} {layer}"
            report = None if progress is None else lambda done, label=label: progress(label, done, num_images)
            maps = batched_maps(method, images, labels, batch_size, report)
            scores.append(score(maps, masks, labels, (name, method_name, layer), tolerances))
    return scores


def pointing_table(scores: Sequence[PointingScore]) -> str:
    """Markdown table of `PointingScore`s: a column per tolerance, then the energy in the mask."""
    tolerances = scores[0].tolerances
    games = " | ".join("pointing game" if t == 0 else f"within {t} px" for t in tolerances)
    lines = [
        f"| model | method | layer | {games} | energy in mask |",
        "| --- | --- | --- |" + " --- |" * (len(tolerances) + 1),
    ]
    for s in scores:
        rates = " | ".join(f"{r:.1%}" for r in (*s.pointing, s.energy))
        lines.append(f"| {s.model} | {s.method} | {s.layer} | {rates} |")
    return "\n".join(lines)
