"""The grid pointing game (Böhle et al., CVPR 2021) on 2x2 grids of real photographs.

Each grid holds four photos that a network classifies as four different classes; the cell of each
photo is the ground truth for the map of its class. Two scores per method, over every (grid, cell):
the share of the class map's positive mass inside its own cell (chance: 0.25) and the rate at which
the map's peak falls inside that cell. Input-space maps (guided backpropagation, Guided Grad-CAM)
are scored by their magnitude over the colour channels.

    chosen = confident_photos(model, cell=224)                 # [(photo, class id, probability)]
    result = grid_game(model_448, {"Grad-CAM": GradCAM(model_448, "top_activation")}, chosen)
"""

import dataclasses

import numpy as np
from scipy.special import softmax

from lib.dataflow import photos
from lib.errors import InputError
from lib.methods.cam import CAM
from lib.methods.grad_cam import GradCAM, GuidedGradCAM
from lib.methods.guided_backprop import GuidedBackprop
from lib.metrics import as_class_maps, energies, hits
from lib.nets.efficientnet import efficientnet_lite0
from lib.nets.imagenet import class_names
from lib.nets.squeezenet import squeezenet


@dataclasses.dataclass(frozen=True)
class Chosen:
    """A photo, the class a network gives it alone (cropped to a cell), and its probability."""

    name: str
    class_id: int
    probability: float


@dataclasses.dataclass(frozen=True)
class GridScore:
    """One method's grid pointing game: mean share of positive mass in the right cell, and hit rate."""

    method: str
    mass_in_cell: float
    pointing: float
    cells: int


def confident_photos(model, cell, count=6, min_probability=0.5, names=None):
    """The photos a model classifies most confidently, one per predicted class.

    Each photo is centre-cropped and resized to `cell`, as it appears in a grid. Photos of at least
    `min_probability` come first; if fewer than `count` reach it, the next most confident fill up.

    Args:
        model: an ImageNet classifier taking (N, cell, cell, 3) RGB 0-255 images to logits.
        cell: the side of a grid cell (the model's input size).
        count: photos wanted (at least 4, one per cell of a 2x2 grid).
        min_probability: the confidence preferred.
        names: photo names to choose from (default: every registered photo).

    Returns:
        list of `Chosen`, most confident first, with distinct class ids.
    """
    names = list(names or photos.names())
    images, _ = photos.load_grids([(name,) for name in names], cell=cell, cols=1)
    probabilities = softmax(np.asarray(model.predict(images, batch_size=8, verbose=0), np.float64), axis=-1)
    ranked = sorted(zip(names, probabilities, strict=True), key=lambda item: -item[1].max())
    chosen, classes = [], set()
    for name, p in ranked:
        if int(p.argmax()) not in classes:
            classes.add(int(p.argmax()))
            chosen.append(Chosen(name, int(p.argmax()), float(p.max())))
    confident = [c for c in chosen if c.probability >= min_probability]
    chosen = confident if len(confident) >= count else chosen[:count]
    if len(chosen) < 4:
        raise InputError(f"only {len(chosen)} photos of distinct classes; a 2x2 grid needs 4")
    return chosen


def grid_game(model, methods, chosen, num_grids=24, seed=0, batch_size=4, progress=None):
    """Scores every method on the same grids of the chosen photos.

    Args:
        model: the network, built for the grid's size (2 x cell on each side).
        methods: `{label: method object}`, each called as `method(images, class_ids)`.
        chosen: `Chosen` photos (from `confident_photos`, at the same cell size).
        num_grids: grids to compose from them (every photo in every cell equally often when possible).
        seed: seed of the arrangements.
        batch_size: grids per call of a method.
        progress: optional callable `progress(grids done)`, called after each batch.

    Returns:
        list of `GridScore`, in the order of `methods`.
    """
    side = model.input_shape[1]
    if side is None or side % 2:
        raise InputError(f"the model's input is {model.input_shape[1:3]}; build it for an even grid size")
    ids_of = {c.name: c.class_id for c in chosen}
    arrangement = photos.arrangements(list(ids_of), num_grids, seed)
    grids, cells = photos.load_grids(arrangement, cell=side // 2)
    ids = np.array([[ids_of[name] for name in names] for names in arrangement])  # (G, 4)
    masks = photos.cell_masks(cells, ids)  # (G, H, W)
    maps = {label: [] for label in methods}
    for start in range(0, len(grids), batch_size):
        batch = slice(start, start + batch_size)
        for label, method in methods.items():
            maps[label].append(as_class_maps(method(grids[batch], ids[batch])))
        if progress is not None:
            progress(min(start + batch_size, len(grids)))
    scores = []
    for label, parts in maps.items():
        values = np.concatenate(parts)
        scores.append(
            GridScore(
                label,
                float(np.nanmean(energies(values, masks, ids))),
                float(np.nanmean(hits(values, masks, ids))),
                ids.size,
            )
        )
    return scores


# (builder, cell side, Grad-CAM layers: the last spatial one first) of the networks the report scores
NETWORKS = {
    "efficientnet_lite0": (efficientnet_lite0, 224, ("top_activation", "block6d_add")),
    "squeezenet": (squeezenet, 227, ("fire9_concat", "fire8_concat")),
}


def network_methods(model, layers):
    """Every class-map method on `model`: Grad-CAM at each layer, CAM, Guided Grad-CAM, guided backprop."""
    methods = {f"Grad-CAM {layer}": GradCAM(model, layer) for layer in layers}
    cam = CAM(model)
    methods[f"CAM {cam.layer}"] = cam
    methods[f"Guided Grad-CAM {layers[0]} (magnitude)"] = GuidedGradCAM(model, layers[0])
    methods["guided backprop (magnitude)"] = GuidedBackprop(model)
    return methods


def report(num_grids=24, seed=0, networks=tuple(NETWORKS), progress=None):
    """Markdown table of the grid pointing game of every class-map method on the ImageNet networks.

    Each network scores its own most confident photos, on grids at full resolution (2 x its input size).

    Returns:
        (table, chosen): the markdown text, and `{network: [Chosen]}`.
    """
    names = class_names()
    lines = [
        "| network | method | mass in the right cell | peak in the right cell |",
        "| --- | --- | --- | --- |",
        "| - | uniform map (chance) | 25.0% | 25.0% |",
    ]
    chosen_of = {}
    for network in networks:
        build, cell, layers = NETWORKS[network]
        chosen = chosen_of[network] = confident_photos(build(weights="imagenet"), cell)
        grid_model = build(weights="imagenet", input_shape=(2 * cell, 2 * cell, 3))
        for score in grid_game(
            grid_model, network_methods(grid_model, layers), chosen, num_grids, seed, progress=progress
        ):
            lines.append(f"| {network} | {score.method} | {score.mass_in_cell:.1%} | {score.pointing:.1%} |")
    photos_used = "; ".join(
        f"{network}: " + ", ".join(f"{c.name} ({names[c.class_id]} {c.probability:.2f})" for c in chosen)
        for network, chosen in chosen_of.items()
    )
    return "\n".join(
        lines
    ) + f"\n\n{num_grids} grids of 4 cells per network; photos: {photos_used}.", chosen_of
