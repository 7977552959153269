"""Plotting: overlay limits, display scaling properties, real PNGs, mosaics, atomic and palette writes."""

import os

import imageio.v3 as iio
import matplotlib
import numpy as np
import pytest
import scipy.io
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from PIL import Image

from lib.errors import InputError
from lib.plot import (
    figure_rows,
    image_grid,
    magnitude,
    mosaic,
    normalize_input_map,
    overlay,
    save_array,
    save_figure,
    save_mat,
    save_text,
    to_uint8,
)

RNG = np.random.default_rng(0)
IMAGE = RNG.integers(0, 256, (16, 20, 3), dtype=np.uint8)
HEATMAP = RNG.uniform(0, 1, (16, 20))


def test_overlay_alpha_0_is_the_image_and_alpha_1_the_colormap():
    np.testing.assert_array_equal(overlay(IMAGE, HEATMAP, alpha=0), IMAGE)
    np.testing.assert_array_equal(overlay(IMAGE.astype(np.float32), HEATMAP, alpha=0.0), IMAGE)
    jet = to_uint8(matplotlib.colormaps["jet"](HEATMAP)[..., :3])
    np.testing.assert_array_equal(overlay(IMAGE, HEATMAP, alpha=1), jet)
    half = overlay(IMAGE, HEATMAP, cmap="viridis")
    assert half.dtype == np.uint8 and half.shape == IMAGE.shape
    assert not np.array_equal(half, IMAGE)


def test_overlay_rejects_what_it_cannot_draw():
    with pytest.raises(InputError, match="resize it first"):
        overlay(IMAGE, HEATMAP[:8])
    with pytest.raises(InputError, match=r"scale it to \[0, 1\]"):
        overlay(IMAGE, HEATMAP * 2)
    with pytest.raises(InputError, match="unknown colormap 'nope'"):
        overlay(IMAGE, HEATMAP, cmap="nope")


maps = arrays(
    np.float32,
    st.tuples(st.integers(1, 6), st.integers(1, 6), st.just(3)),
    elements=st.floats(-1e6, 1e6, width=32),
)


@settings(max_examples=60, deadline=None)
@given(maps, st.sampled_from([50, 90, 99, 100]))
def test_normalize_input_map_properties(x, percentile):
    out = normalize_input_map(x, percentile)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    scale = np.abs(x).max()
    clear = np.abs(x) > 1e-6 * scale  # below float32 resolution around 0.5 a value may round to 0.5
    np.testing.assert_array_equal(np.sign(out - 0.5)[clear], np.sign(x)[clear])
    assert np.all(out[x == 0] == 0.5)
    order = np.argsort(x, axis=None)  # monotone: never reorders values
    assert np.all(np.diff(out.ravel()[order]) >= 0)


def test_normalize_input_map_zero_and_scale():
    np.testing.assert_array_equal(normalize_input_map(np.zeros((4, 4, 3))), np.full((4, 4, 3), 0.5))
    x = np.linspace(-2, 4, 48).reshape(4, 4, 3)
    out = normalize_input_map(x, percentile=100)
    assert out.max() == 1.0 and out.min() == pytest.approx(0.25)  # -2 -> 0.5 - 0.5 * 2 / 4
    sparse = np.zeros((10, 10, 3))
    sparse[0, 0, 0] = -3.0  # 99th percentile of |x| is 0: falls back to the largest magnitude
    assert normalize_input_map(sparse)[0, 0, 0] == 0.0


def test_magnitude_is_the_strongest_channel_scaled_by_its_percentile():
    x = np.zeros((10, 10, 3), np.float32)
    x[..., 1] = np.arange(100, dtype=np.float32).reshape(10, 10) / 10  # 0 .. 9.9 in the green channel
    x[0, 0] = [-20.0, 1.0, 0.0]  # the largest |value| counts, whatever its sign and channel
    out = magnitude(x, percentile=100)
    assert out.dtype == np.float32 and out.shape == (10, 10)
    assert out[0, 0] == 1.0 and out[9, 9] == pytest.approx(9.9 / 20)
    np.testing.assert_allclose(magnitude(-3 * x, percentile=100), out, rtol=1e-6)  # sign and scale free
    clipped = magnitude(x)  # the 99th percentile, about 10, is far below the outlier's 20: it clips
    assert clipped[0, 0] == 1.0 and clipped.max() == 1.0 and 0.5 < clipped[9, 9] < 1.0


def test_magnitude_of_a_zero_or_sparse_map():
    np.testing.assert_array_equal(magnitude(np.zeros((4, 4, 3), np.float32)), np.zeros((4, 4)))
    sparse = np.zeros((10, 10, 3), np.float32)
    sparse[3, 4, 2] = -5.0  # the 99th percentile is 0: scaled by the largest strength instead
    expected = np.zeros((10, 10), np.float32)
    expected[3, 4] = 1.0
    np.testing.assert_array_equal(magnitude(sparse), expected)


@pytest.mark.parametrize(
    ("input_map", "percentile", "message"),
    [
        (np.zeros((4, 4)), 99, r"shape \(4, 4\); pass one map"),
        (np.full((2, 2, 3), np.nan), 99, "NaN"),
        (np.zeros((2, 2, 3)), 0, "outside"),
    ],
)
def test_magnitude_refuses_what_it_cannot_draw(input_map, percentile, message):
    with pytest.raises(InputError, match=message):
        magnitude(input_map, percentile)


def test_to_uint8_rounds_and_clips():
    np.testing.assert_array_equal(to_uint8([-0.5, 0, 0.5, 1, 2]), [0, 0, 128, 255, 255])
    np.testing.assert_array_equal(to_uint8([0.4, 254.6], value_range=(0, 255)), [0, 255])
    with pytest.raises(InputError, match="NaN"):
        to_uint8([np.nan])


def read_png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return iio.imread(path)


def test_image_grid_saves_a_real_png_of_the_figure_size(tmp_path):
    tiles = [RNG.uniform(0, 1, (5, 5)) for _ in range(5)] + [IMAGE]
    fig = image_grid(tiles, ncols=4, titles=[f"#{i}" for i in range(6)], suptitle="filters")
    width, height = fig.get_size_inches() * 80
    path = save_figure(fig, tmp_path / "grid.png", dpi=80)
    pixels = read_png(path)
    assert pixels.shape[:2] == (round(height), round(width))
    assert pixels[..., :3].std() > 10  # drawn, not blank
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png"]


def test_figure_rows_titles_colorbar_and_png(tmp_path):
    row = [IMAGE, overlay(IMAGE, HEATMAP), HEATMAP]
    fig = figure_rows(
        [row, row[:2]],
        col_titles=["image", "Grad-CAM", "Guided Grad-CAM"],
        row_titles=["tabby 0.82", "tiger 0.11"],
        colorbar=True,
    )
    grid = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert [ax.get_title() for ax in grid[:3]] == ["image", "Grad-CAM", "Guided Grad-CAM"]
    assert grid[3].get_ylabel() == "tiger 0.11" and not grid[5].get_visible()
    assert len(fig.axes) == 7  # six cells and the colorbar
    pixels = read_png(save_figure(fig, tmp_path / "rows.png", dpi=50))
    assert pixels.shape[:2] == tuple(np.round(fig.get_size_inches()[::-1] * 50).astype(int))
    assert pixels[..., :3].std() > 10
    with pytest.raises(InputError, match="row_titles"):
        figure_rows([row], row_titles=["a", "b"])


class Exploding(Artist):
    def draw(self, renderer):
        raise RuntimeError("boom while rendering")


def test_failed_render_leaves_no_file_and_keeps_the_old_one(tmp_path):
    fig = image_grid([HEATMAP], ncols=1)
    fig.add_artist(Exploding())
    with pytest.raises(RuntimeError, match="boom"):
        save_figure(fig, tmp_path / "new.png")
    assert list(tmp_path.iterdir()) == []
    old = tmp_path / "old.png"
    old.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="boom"):
        save_figure(fig, old)
    assert old.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["old.png"]


def test_save_array_and_mat_round_trip(tmp_path):
    maps = RNG.uniform(0, 1, (2, 3, 7, 7)).astype(np.float32)
    np.testing.assert_array_equal(np.load(save_array(tmp_path / "sub" / "maps.npy", maps)), maps)
    loaded = scipy.io.loadmat(save_mat(tmp_path / "maps.mat", {"cam": maps, "ids": np.arange(3)}))
    np.testing.assert_array_equal(loaded["cam"], maps)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["maps.mat", "maps.npy", "sub"]
    with pytest.raises(InputError, match="not strings"):
        save_mat(tmp_path / "bad.mat", {1: maps})
    assert not (tmp_path / "bad.mat").exists()


def test_save_text_writes_utf8_and_replaces_the_old_file(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("old")
    assert save_text(path, "rank,name\n1,café\n") == path
    assert path.read_bytes() == "rank,name\n1,café\n".encode()
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_save_figure_colors_writes_a_smaller_palette_png_of_the_same_picture(tmp_path):
    noise = RNG.integers(0, 256, (200, 200, 3), dtype=np.uint8)  # like the shapes' noisy backgrounds
    fig = figure_rows([[noise, HEATMAP]], tile_size=2)
    full = save_figure(fig, tmp_path / "full.png", close=False)
    small = save_figure(fig, tmp_path / "small.png", close=False, colors=256)
    with Image.open(small) as image:
        assert image.mode == "P" and len(image.getcolors(256)) <= 256
        pixels = np.asarray(image.convert("RGB"), np.float64)
    reference = iio.imread(full)[..., :3].astype(np.float64)
    assert pixels.shape == reference.shape
    assert np.abs(pixels.mean(axis=(0, 1)) - reference.mean(axis=(0, 1))).max() < 2  # dithering keeps colour
    assert small.stat().st_size < 0.6 * full.stat().st_size
    for colors, path, message in [
        (1, "a.png", r"colors=1; pass None"),
        (300, "a.png", r"colors=300"),
        (True, "a.png", r"colors=True"),
        (256, "a.pdf", r"not \.pdf"),
    ]:
        with pytest.raises(InputError, match=message):
            save_figure(fig, tmp_path / path, close=False, colors=colors)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.png", "small.png"]


def test_mosaic_puts_each_map_under_its_label():
    maps = np.random.default_rng(0).uniform(size=(8, 8, 10)).astype(np.float32)
    grid, anchors = mosaic(maps, ncols=4, tile=32, gap=4, label_room=16)
    assert grid.shape == (3 * (32 + 16), 4 * 36 - 4) and len(anchors) == 10
    for i, (x, y) in enumerate(anchors):
        top, left = int(y) + 2, int(x - 16)
        np.testing.assert_array_equal(grid[top : top + 32 : 4, left : left + 32 : 4], maps[..., i])
        assert np.isnan(grid[top - 1, left])  # the label row above is background
    assert np.isnan(grid[-1, -1])  # two empty cells in the last row


def test_mosaic_refuses_what_it_cannot_lay_out():
    with pytest.raises(InputError, match=r"shape \(8, 8\); pass \(h, w, M\)"):
        mosaic(np.zeros((8, 8)), ncols=2)
    with pytest.raises(InputError, match="ncols=0"):
        mosaic(np.zeros((8, 8, 3)), ncols=0)
    with pytest.raises(InputError, match="NaN"):
        mosaic(np.full((8, 8, 3), np.nan), ncols=2)


def _crash_midway(error):
    def write(file, *args, **kwargs):
        file.write(b"\x89PNG\r\n\x1a\nhalf a file")
        raise error

    return write


@pytest.mark.parametrize(
    "error", [OSError(28, "No space left on device"), KeyboardInterrupt()], ids=["crash", "ctrl-c"]
)
@pytest.mark.parametrize("suffix", [".png", ".npy", ".mat"])
def test_a_crash_during_a_save_leaves_the_old_file_or_nothing_never_a_partial_one(
    tmp_path, monkeypatch, suffix, error
):
    fig = Figure(figsize=(1, 1))
    fig.add_subplot().imshow(RNG.uniform(size=(4, 4)))
    save = {
        ".png": lambda path: save_figure(fig, path, close=False),
        ".npy": lambda path: save_array(path, np.ones((2, 3))),
        ".mat": lambda path: save_mat(path, {"maps": np.ones((2, 3))}),
    }[suffix]
    old = save(tmp_path / f"old{suffix}")
    before = old.read_bytes()
    target = {".png": (fig, "savefig"), ".npy": (np, "save"), ".mat": (scipy.io, "savemat")}[suffix]
    monkeypatch.setattr(*target, _crash_midway(error))
    for path in (old, tmp_path / f"new{suffix}"):
        with pytest.raises(type(error)):
            save(path)
    assert sorted(os.listdir(tmp_path)) == [old.name] and old.read_bytes() == before  # hidden files too


def test_png_bytes_keep_uint8_images_and_scale_floats_in_0_1():
    import io

    from PIL import Image

    from lib.plot import png_bytes, to_uint8

    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png_bytes(rgb)))), rgb)
    gray = np.linspace(0, 1, 35).reshape(5, 7)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png_bytes(gray)))), to_uint8(gray))
