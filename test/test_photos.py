"""lib.dataflow.photos: real photos from their packages, grids with exact cells, the grid pointing game."""

import importlib.util
import itertools
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lib import cli
from lib.dataflow import photos
from lib.dataflow.images import Picture, centre_crop, iter_batches, resize
from lib.errors import InputError, MissingFileError
from lib.metrics import energies, hits

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)


def test_every_photo_is_a_real_photo_read_from_its_package():
    assert photos.names() == tuple(sorted(photos.PHOTOS)) and len(photos.names()) >= 10
    digests = set()
    for name in photos.names():
        photo = photos.PHOTOS[name]
        assert photo.shows and photo.source and photo.licence
        root = importlib.util.find_spec(photo.package).submodule_search_locations[0]
        assert photos.photo_path(name) == os.path.join(root, *photo.path.split("/"))
        image = photos.load(name)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert min(image.shape[:2]) >= 170, name  # a photograph, not an icon
        assert image.std() > 15 and len(np.unique(image)) > 100, name  # not constant, not a few colours
        digests.add(image.tobytes()[::997])
    assert len(digests) == len(photos.names())  # no photo registered twice


def test_photo_path_imports_no_package_code():
    code = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from lib.dataflow import photos
paths = [photos.photo_path(name) for name in photos.names()]
images = [photos.load(name) for name in photos.names()]
print(sorted({{"skimage", "matplotlib", "ndf", "sklearn"}} & set(sys.modules)), len(paths))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["[]", str(len(photos.names()))]


def test_unknown_names_and_missing_packages_are_one_line_errors(monkeypatch):
    with pytest.raises(InputError, match=r"^unknown photo 'cat'; choose one of astronaut, book, "):
        photos.photo_path("cat")
    with pytest.raises(InputError, match="unknown photo 'cat'"):
        photos.grid_picture(("coffee", "cat", "rocket", "book"))
    ghost = photos.Photo("no_such_package_xyz", "a.png", "-", "-", "-")
    monkeypatch.setitem(photos.PHOTOS, "ghost", ghost)
    monkeypatch.setitem(photos._PIP_NAMES, "no_such_package_xyz", "no-such-package")
    message = r"^photo 'ghost' ships with the no-such-package package, which is not installed; pip install "
    with pytest.raises(MissingFileError, match=message + r"no-such-package$"):
        photos.load("ghost")
    monkeypatch.setitem(photos.PHOTOS, "gone", photos.Photo("skimage", "data/gone.png", "-", "-", "-"))
    with pytest.raises(MissingFileError, match=r"missing from the installed scikit-image; reinstall it"):
        photos.photo_path("gone")


def _image(height, width):
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_each_grid_cell_is_its_image_composed_alone():
    images = [_image(30, 50), _image(41, 17), _image(16, 16), _image(64, 48), _image(20, 21)]
    grid, cells = photos.compose_grid(images, cell=16, cols=2)  # 3 rows, the last one half empty
    assert grid.shape == (48, 32, 3) and grid.dtype == np.float32 and cells.shape == (48, 32)
    for i, image in enumerate(images):
        top, left = (i // 2) * 16, (i % 2) * 16
        alone, alone_cells = photos.compose_grid([image], cell=16, cols=1)
        np.testing.assert_array_equal(grid[top : top + 16, left : left + 16], alone)
        np.testing.assert_array_equal(alone, resize(centre_crop(image, 1.0), size=16))
        assert (cells[top : top + 16, left : left + 16] == i).all() and (alone_cells == 0).all()
    assert np.bincount(cells[cells >= 0]).tolist() == [256] * 5
    assert (cells[32:, 16:] == -1).all() and (grid[32:, 16:] == 0).all()


def test_grid_cells_show_the_centre_square():
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, :20], wide[:, 20:40], wide[:, 40:] = (255, 0, 0), (0, 200, 0), (0, 0, 255)
    grid, _ = photos.compose_grid([wide, wide.transpose(1, 0, 2)], cell=10)
    assert (grid == (0, 200, 0)).all()  # the sides are cut away, not squashed in


def test_default_grids_load_as_448_pixel_grids_of_four_photos():
    for names in photos.DEFAULT_GRIDS:
        assert len(set(names)) == 4 and set(names) <= set(photos.names())
    grids, cells = photos.load_grids(photos.DEFAULT_GRIDS[:2])
    assert grids.shape == (2, 448, 448, 3) and cells.shape == (448, 448)
    first, _ = photos.compose_grid([photos.load(name) for name in photos.DEFAULT_GRIDS[0]])
    np.testing.assert_array_equal(grids[0], first)
    assert grids.min() >= 0 and grids.max() <= 255


def _peak_in_cell(cells, index):
    """float (H, W): a bump centred on the cell `index`, positive everywhere."""
    ys, xs = np.nonzero(cells == index)
    yy, xx = np.mgrid[: cells.shape[0], : cells.shape[1]]
    return np.exp(-((yy - ys.mean()) ** 2 + (xx - xs.mean()) ** 2) / 50.0)


def test_cell_masks_give_the_grid_pointing_game():
    _, cells = photos.compose_grid([_image(8, 8)] * 4, cell=16)
    ids = np.array([[3, 7, 1, 5]])
    masks = photos.cell_masks(cells, ids)  # (1, 32, 32)
    assert masks.shape == (1, 32, 32) and masks.dtype == np.int64
    assert masks[0, 0, 0] == 4 and masks[0, 0, 31] == 8 and masks[0, 31, 0] == 2 and masks[0, 31, 31] == 6
    np.testing.assert_array_equal(photos.cell_masks(cells, ids[0]), masks[0])
    maps = np.broadcast_to(_peak_in_cell(cells, 2), (1, 4, 32, 32))  # every class's map peaks in cell 2
    np.testing.assert_array_equal(hits(maps, masks, ids), [[0, 0, 1, 0]])
    energy = energies(maps, masks, ids)[0]
    assert energy[2] > 0.5 and max(energy[[0, 1, 3]]) < 0.25
    np.testing.assert_allclose(energies(np.ones((1, 4, 32, 32)), masks, ids), 0.25)  # chance for 2x2


def test_cell_masks_batches_and_refusals():
    _, cells = photos.compose_grid([_image(8, 8)] * 3, cell=4)  # one empty cell
    ids = np.array([[0, 1, 2], [9, 8, 7]])
    masks = photos.cell_masks(cells, ids)
    assert masks.shape == (2, 8, 8)
    np.testing.assert_array_equal(masks[1][::4, ::4], [[10, 9], [8, 0]])
    np.testing.assert_array_equal(photos.cell_masks(np.stack([cells, cells]), ids), masks)
    with pytest.raises(InputError, match="repeat within a grid"):
        photos.cell_masks(cells, [1, 1, 2])
    with pytest.raises(InputError, match="do not match"):
        photos.cell_masks(cells, [1, 2])  # cell 2 has no class
    with pytest.raises(InputError, match="non-negative ints"):
        photos.cell_masks(cells, [0.5, 1, 2])
    with pytest.raises(InputError, match="one row per grid"):
        photos.cell_masks(np.stack([cells] * 3), ids)


def test_arrangements_are_deterministic_distinct_and_balanced():
    names = photos.names()
    for count in (2 * len(names), 3 * len(names) + 5):
        grids = photos.arrangements(names, count, seed=4)
        assert grids == photos.arrangements(names, count, seed=4) != photos.arrangements(names, count, 5)
        assert len(grids) == count == len(set(grids))
        assert all(len(set(grid)) == 4 and set(grid) <= set(names) for grid in grids)
        for position in range(4):
            seen = Counter(grid[position] for grid in grids)
            assert set(names) == set(seen) and max(seen.values()) - min(seen.values()) <= 1
    every = photos.arrangements("abcd", 24, seed=0)  # all orders: balance gives way to distinctness
    assert sorted(every) == sorted(itertools.permutations("abcd"))


def test_arrangements_refusals():
    with pytest.raises(InputError, match=r"exceeds the 24 ordered 4-tuples of 4 names; pass at most 24"):
        photos.arrangements("abcd", 25, seed=0)
    with pytest.raises(InputError, match="distinct names"):
        photos.arrangements(["a", "b", "c", "a", "e"], 2, seed=0)
    with pytest.raises(InputError, match="distinct names"):
        photos.arrangements("abc", 1, seed=0)
    with pytest.raises(InputError, match="count=0"):
        photos.arrangements("abcd", 0, seed=0)


def test_image_sources_names_photos_and_grids():
    pictures = cli.image_sources("photos")
    assert all(isinstance(p, Picture) for p in pictures)
    assert [Path(p).stem for p in pictures] == list(photos.names())
    assert os.fspath(pictures[photos.names().index("chelsea")]) == "chelsea.png"
    grids = cli.image_sources("grids")
    assert [Path(p).name for p in grids] == [f"grid_{'_'.join(g)}.png" for g in photos.DEFAULT_GRIDS]
    assert grids[0].args == (photos.DEFAULT_GRIDS[0], 224)
    batches = list(iter_batches(grids[:2], 4))  # their own size: 448x448
    assert [b.images.shape for b in batches] == [(2, 448, 448, 3)] and batches[0].paths == grids[:2]
    assert batches[0].images[0].std() > 30


def test_image_sources_prefers_a_real_folder_and_parses_crop(tmp_path, monkeypatch):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.png").write_bytes(Path(photos.photo_path("chelsea")).read_bytes())
    monkeypatch.chdir(tmp_path)
    assert cli.image_sources("photos") == [os.path.join("photos", "a.png")]
    with pytest.raises(MissingFileError, match="'grid' does not exist"):
        cli.image_sources("grid")
    parser = cli.argparse.ArgumentParser()
    cli.add_image_arguments(parser)
    args = parser.parse_args(["--images", "grids", "--crop"])
    assert (args.images, args.crop) == ("grids", True)
    assert parser.parse_args([]).crop is False


def test_image_run_crops_to_the_model_aspect_and_keeps_sizes_without_one():
    wide = np.zeros((10, 30, 3), np.uint8)
    wide[:, 10:20] = 255  # a white centre square between black sides
    pictures = [Picture("wide.png", lambda: wide), Picture("tall.png", lambda: wide[:, :12])]
    cropped = list(cli.ImageRun(pictures[:1], size=(5, 5), batch_size=2, crop=True))
    assert (cropped[0].images == 255).all()
    squashed = list(cli.ImageRun(pictures[:1], size=(5, 5), batch_size=2))
    assert squashed[0].images.min() == 0
    own = cli.ImageRun(pictures, size=None, batch_size=2, crop=True)  # no size: crop does nothing
    assert [b.images.shape for b in own] == [(1, 10, 30, 3), (1, 10, 12, 3)] and own.done == 2
