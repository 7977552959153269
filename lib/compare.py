"""Several methods side by side on the same images and classes: their maps, timings, and display tiles.

    results = compare(model, images, ["grad_cam", "score_cam", "saliency"], layer="fire9_concat")
    results[1].label, results[1].seconds, results[1].result.maps       # 'Score-CAM', s per image, maps

The first method picks the classes (each image's top class unless `class_ids` are given) and every
other method explains exactly those, so that the columns of a comparison agree on what they explain.
"""

import dataclasses
import time
import warnings
from collections.abc import Callable, Sequence

import keras
import numpy as np

from lib import cli, plot
from lib.methods import catalog
from lib.methods.base import Explanation
from lib.methods.targets import TopK
from lib.nets import bundled

# The layer the class-map methods explain by default, per network: the last block before the classifier.
DEFAULT_LAYERS = {
    "squeezenet": "fire9_concat",
    "efficientnet_lite0": "top_activation",
    **bundled.LAST_CONV_LAYER,
}
# Lighter settings than the methods' defaults (the papers'), so that a comparison of every method on
# a few photos takes a minute or two on a CPU; shown in the figures.
OPTIONS = {"rise": {"masks": 1000}, "smoothgrad": {"samples": 25}, "integrated_gradients": {"steps": 32}}


@dataclasses.dataclass(frozen=True)
class Compared:
    """One method's maps in a comparison.

    Attributes:
        name: its `catalog` name; label: its display name; kind: one of `catalog.KINDS`.
        settings: the options it was built with, as text ("masks=1000"), or "".
        result: its `Explanation` of the images.
        seconds: wall time per image of a call once compiled (the median of `repeats` calls).
        method: the method object, for scores that call it again (lib.evaluation).
    """

    name: str
    label: str
    kind: str
    settings: str
    result: Explanation
    seconds: float
    method: object = None


def compare(
    model: keras.Model,
    images: np.ndarray,
    names: Sequence[str],
    class_ids=None,
    layer: str | None = None,
    repeats: int = 1,
    progress: Callable[[Compared], None] | None = None,
    options: dict | None = None,
) -> list[Compared]:
    """Every method of `names` on the same images and classes, each compiled once, then timed.

    Args:
        model: a Keras CNN.
        images: float32 (N, H, W, 3) as the model expects.
        names: `catalog` names.
        class_ids: as the methods take them; None for each image's top class.
        layer: the layer of the methods that take one; None for each its default (the last spatial layer).
        repeats: timed calls per method after the compiling one.
        progress: called with each result as it is done.
        options: keyword arguments per method name; `OPTIONS` by default.

    Returns:
        One `Compared` per name, in order.
    """
    targets = TopK(1) if class_ids is None else class_ids
    options = OPTIONS if options is None else options
    results = []
    for name in names:
        entry, chosen = catalog.ENTRIES.get(name), options.get(name, {})
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="layer=None")
            method = catalog.build(name, model, layer if entry and entry.takes_layer else None, **chosen)
        result = method.explain(images, targets)  # compiles
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            result = method.explain(images, targets)
            times.append((time.perf_counter() - start) / len(images))
        if not results and result.class_ids is not None:
            targets = result.class_ids  # the others explain exactly the classes the first one did
        settings = " ".join(f"{key}={value}" for key, value in chosen.items())
        compared = Compared(name, entry.label, entry.kind, settings, result, float(np.median(times)), method)
        results.append(compared)
        if progress:
            progress(compared)
    return results


def tile(kind: str, image: np.ndarray, map_: np.ndarray) -> np.ndarray:
    """What a person looks at for one map of `kind`: a heatmap overlay, or an input-space image.

    Class maps are overlaid as they are; score maps (occlusion's score drops, RISE's mean scores) are
    scaled from their minimum to their maximum, since their level says little and their order all;
    input-space maps (gradients) are shown signed, gray for zero.
    """
    pixels = plot.to_uint8(image, value_range=(0, 255))
    if kind == "input space":
        return plot.normalize_input_map(map_)
    if kind == "score map":
        low, span = map_.min(), np.ptp(map_)
        map_ = (map_ - low) / span if span > 0 else np.zeros_like(map_)
    return plot.overlay(pixels, np.clip(map_, 0, 1))


def per_image(seconds: float) -> str:
    """A time per image as people read it: "16 ms/img", "2.9 s/img"."""
    return f"{1000 * seconds:.0f} ms/img" if seconds < 1 else f"{seconds:.1f} s/img"


def comparison_figure(images, names, results: Sequence[Compared], class_names, title):
    """Rows image x class; columns: the image, then each method with its settings and time per image.

    Args:
        images: float (N, H, W, 3), RGB 0-255, the images the methods explained.
        names: N row labels (e.g. file stems).
        results: `compare`'s results on those images.
        class_names: the model's class names, for the row titles.
        title: the figure's title.
    """
    rows, row_titles = [], []
    first = results[0].result
    for i, name in enumerate(names):
        pixels = plot.to_uint8(images[i], value_range=(0, 255))
        for k, label in enumerate(cli.class_labels(class_names, first, i)):
            rows.append([pixels, *(tile(r.kind, images[i], r.result.maps[i, k]) for r in results)])
            row_titles.append(f"{name}\n{label}")
    columns = [
        "image",
        *("\n".join(filter(None, (r.label, r.settings, per_image(r.seconds)))) for r in results),
    ]
    fig = plot.figure_rows(rows, col_titles=columns, row_titles=row_titles, tile_size=1.45)
    fig.suptitle(title, fontsize=plot.TITLE_SIZE + 1)
    return fig
