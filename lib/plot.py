"""Drawing and saving: heatmap overlays, display scaling, image grids and mosaics, saved atomically.

Nothing here knows about the methods: it takes arrays and returns arrays or figures. Figures are
`matplotlib.figure.Figure` objects made directly, not through `pyplot`, so no backend is chosen and
no global figure list grows; this works the same in scripts, in tests and in notebooks (where a
returned figure displays itself).

Conventions: RGB images are uint8 in 0-255 or float in [0, 1] when drawn; heatmaps are float
`(H, W)` in [0, 1].
"""

import io
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from PIL import Image

from lib.atomic import atomic_path as atomic_path  # where callers first found it; it lives in lib.atomic
from lib.atomic import write_atomically
from lib.errors import InputError

# Title and label sizes, in points, chosen to stay readable when a figure is viewed at 100 dpi.
TITLE_SIZE = 9
LABEL_SIZE = 9


def _finite(array, what):
    array = np.asarray(array)
    if array.dtype.kind not in "biuf":
        raise InputError(f"{what} has dtype {array.dtype}; pass a numeric array")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InputError(f"{what} contains NaN or infinity; fix the values before drawing")
    return array


def _colormap(cmap):
    try:
        return matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    except KeyError:
        raise InputError(
            f"unknown colormap {cmap!r}; use a matplotlib name such as 'jet' or 'viridis'"
        ) from None


def to_uint8(array, value_range=(0.0, 1.0)):
    """Maps `value_range` linearly onto 0..255, clips, rounds and returns uint8 of the same shape.

    Args:
        array: numeric array, e.g. a map in [0, 1] or (with `value_range=(0, 255)`) a float image.
        value_range: `(low, high)` of the input that becomes `(0, 255)`.

    Raises:
        InputError: NaN or infinite values, or an empty `value_range`.
    """
    array = _finite(array, "array").astype(np.float64)
    low, high = value_range
    if not high > low:
        raise InputError(f"value_range={value_range} is empty; pass (low, high) with high > low")
    return np.clip(np.rint((array - low) * (255.0 / (high - low))), 0, 255).astype(np.uint8)


def _as_rgb(image):
    """(H, W), (H, W, 1) or (H, W, 3) in 0-255 -> float64 (H, W, 3)."""
    image = _finite(image, "image").astype(np.float64)
    if image.ndim == 3 and image.shape[-1] == 1 or image.ndim == 2:
        image = np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise InputError(f"image has shape {image.shape}; pass one RGB image (H, W, 3)")
    return image


def overlay(image, heatmap, cmap="jet", alpha=0.5):
    """Blends a colormapped heatmap onto an image.

    Args:
        image: `(H, W, 3)` uint8 or float in 0-255 (gray `(H, W)` is repeated to RGB).
        heatmap: float `(H, W)` in [0, 1], e.g. one Grad-CAM map resized to the image.
        cmap: matplotlib colormap name or object.
        alpha: weight of the heatmap colour: 0 gives the image, 1 gives the colormapped heatmap.

    Returns:
        uint8 `(H, W, 3)`: `round((1 - alpha) * image + alpha * 255 * cmap(heatmap))`.

    Raises:
        InputError: shapes differ, the heatmap leaves [0, 1], `alpha` leaves [0, 1], or unknown `cmap`.
    """
    image = _as_rgb(image)
    heatmap = _finite(heatmap, "heatmap").astype(np.float64)
    if heatmap.shape != image.shape[:2]:
        raise InputError(
            f"heatmap shape {heatmap.shape} differs from the image's {image.shape[:2]}; resize it first"
        )
    if heatmap.size and (heatmap.min() < 0 or heatmap.max() > 1):
        raise InputError(
            f"heatmap spans [{heatmap.min():.3g}, {heatmap.max():.3g}]; scale it to [0, 1] before the overlay"
        )
    if not 0 <= alpha <= 1:
        raise InputError(f"alpha={alpha} is outside [0, 1]")
    colour = 255.0 * _colormap(cmap)(heatmap)[..., :3]  # (H, W, 3) in 0-255
    return to_uint8((1 - alpha) * image + alpha * colour, value_range=(0, 255))


def normalize_input_map(input_map, percentile=99):
    """Displays a signed input-space map (guided backprop, deconvnet) as an image in [0, 1].

    Zero goes to 0.5 (gray); `x` goes to `0.5 + 0.5 * x / s`, clipped, where `s` is the given
    percentile of `|x|`, so a few extreme pixels do not wash out the rest. Positive values stay above
    0.5 and negative ones below; an all-zero map stays a constant 0.5, never NaN.

    Args:
        input_map: float `(H, W, 3)` or `(H, W)`: one map (the whole array shares one scale).
        percentile: in (0, 100]; 100 scales by the largest magnitude, with no clipping.

    Returns:
        float32 array of the same shape, in [0, 1].

    Raises:
        InputError: wrong rank, NaN or infinite values, or `percentile` outside (0, 100].
    """
    x = _finite(input_map, "input_map").astype(np.float64)
    if x.ndim not in (2, 3):
        raise InputError(f"input_map has shape {x.shape}; pass one map (H, W, 3), e.g. maps[i, k]")
    if not 0 < percentile <= 100:
        raise InputError(f"percentile={percentile} is outside (0, 100]")
    scale = np.percentile(np.abs(x), percentile) if x.size else 0.0
    if scale == 0:
        # Below the percentile everything is zero: scale by the largest value instead, if any.
        scale = np.abs(x).max(initial=0.0)
    if scale == 0:
        return np.full(x.shape, 0.5, dtype=np.float32)
    return np.clip(0.5 + 0.5 * x / scale, 0.0, 1.0).astype(np.float32)


def magnitude(input_map: np.ndarray, percentile: float = 99) -> np.ndarray:
    """Displays the strength of an input-space map (guided backprop, deconvnet) as a heatmap in [0, 1].

    The strength of a pixel is its largest `|value|` over the colour channels; it is divided by the
    given percentile of the strengths (by the largest one if that percentile is 0) and clipped. An
    all-zero map gives zeros, never NaN.

    Args:
        input_map: float `(H, W, 3)`: one map.
        percentile: in (0, 100]; 100 scales by the largest strength, with no clipping.

    Returns:
        float32 `(H, W)` in [0, 1].

    Raises:
        InputError: wrong rank, NaN or infinite values, or `percentile` outside (0, 100].
    """
    x = _finite(input_map, "input_map")
    if x.ndim != 3:
        raise InputError(f"input_map has shape {x.shape}; pass one map (H, W, channels), e.g. maps[i, k]")
    if not 0 < percentile <= 100:
        raise InputError(f"percentile={percentile} is outside (0, 100]")
    strength = np.abs(x).max(axis=-1)  # (H, W)
    scale = np.percentile(strength, percentile) or strength.max()
    if not scale:
        return np.zeros(strength.shape, np.float32)
    return np.clip(strength / scale, 0, 1).astype(np.float32)


def _tile(tile, index):
    """Checks one tile for `imshow`: gray 2-D, or RGB uint8 / float in [0, 1]."""
    tile = _finite(tile, f"tile {index}")
    if tile.ndim == 3 and tile.shape[-1] == 1:
        tile = tile[..., 0]
    if not (tile.ndim == 2 or tile.ndim == 3 and tile.shape[-1] in (3, 4)):
        raise InputError(f"tile {index} has shape {tile.shape}; pass (h, w), (h, w, 1) or (h, w, 3)")
    if tile.ndim == 3 and tile.dtype.kind == "f" and (tile.min() < 0 or tile.max() > 1):
        raise InputError(
            f"tile {index} is a float RGB image spanning [{tile.min():.3g}, {tile.max():.3g}]; "
            "pass uint8 (to_uint8(x, value_range=(0, 255))) or floats in [0, 1]"
        )
    return tile


def _bare(ax):
    """No ticks and no frame, but keep the y label (row titles) that `axis('off')` would hide."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _check_titles(titles, count, what):
    if titles is not None and len(titles) != count:
        raise InputError(f"{len(titles)} {what} for {count} entries; pass one per entry or None")


def image_grid(tiles, ncols, titles=None, cmap="gray", vmin=None, vmax=None, tile_size=1.5, suptitle=None):
    """Lays out tiles (filters, feature maps, patches) row by row in one figure.

    Args:
        tiles: list or array of images: gray `(h, w)` drawn with `cmap` (scaled to `vmin`..`vmax`, or
            each to its own range if both are None), or RGB `(h, w, 3)` uint8 or float in [0, 1].
            Tiles may differ in size.
        ncols: tiles per row (fewer if there are fewer tiles).
        titles: one short title per tile, or None.
        cmap: colormap for gray tiles.
        vmin, vmax: value range of gray tiles; None for each tile's own range.
        tile_size: inches per tile side.
        suptitle: title of the whole figure.

    Returns:
        A `matplotlib.figure.Figure` (constrained layout); save it with `save_figure`.

    Raises:
        InputError: no tiles, a tile of the wrong shape or range, `ncols` < 1, or titles of the wrong length.
    """
    tiles = [_tile(tile, i) for i, tile in enumerate(tiles)]
    if not tiles:
        raise InputError("no tiles to draw; pass at least one image")
    if ncols < 1:
        raise InputError(f"ncols={ncols}; pass at least 1")
    _check_titles(titles, len(tiles), "titles")
    ncols = min(ncols, len(tiles))
    nrows = -(-len(tiles) // ncols)
    title_room = 0.25 if titles is not None else 0.0
    fig = Figure(figsize=(ncols * tile_size, nrows * (tile_size + title_room) + 0.4 * bool(suptitle)))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        _bare(ax)
        if i >= len(tiles):
            ax.set_visible(False)
            continue
        ax.imshow(tiles[i], cmap=_colormap(cmap), vmin=vmin, vmax=vmax, interpolation="nearest")
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=TITLE_SIZE)
    if suptitle:
        fig.suptitle(suptitle, fontsize=TITLE_SIZE + 2)
    return fig


def figure_rows(
    rows, col_titles=None, row_titles=None, cell_titles=None, cmap="jet", colorbar=False, tile_size=2.5
):
    """One row per example, e.g. "image | Grad-CAM overlay | Guided Grad-CAM", with titles.

    Args:
        rows: list of rows, each a list of images: RGB `(H, W, 3)` uint8 or float in [0, 1], or a
            heatmap `(H, W)` in [0, 1] drawn with `cmap`. Rows may be shorter than the longest.
        col_titles: one title per column, drawn above the first row (e.g. method names).
        row_titles: one label per row, drawn left of it (e.g. "tabby cat 0.82").
        cell_titles: list of lists of per-image titles (None entries for no title).
        cmap: colormap of heatmap cells and of the colorbar.
        colorbar: add one colorbar for `cmap` over [0, 1] at the right of the figure.
        tile_size: inches per image side.

    Returns:
        A `matplotlib.figure.Figure` (constrained layout); save it with `save_figure`.

    Raises:
        InputError: no rows, an image of the wrong shape or range, or titles of the wrong length.
    """
    rows = [[_tile(image, f"{r},{c}") for c, image in enumerate(row)] for r, row in enumerate(rows)]
    ncols = max((len(row) for row in rows), default=0)
    if ncols == 0:
        raise InputError("no images to draw; pass rows=[[image, overlay, ...], ...]")
    _check_titles(col_titles, ncols, "col_titles")
    _check_titles(row_titles, len(rows), "row_titles")
    _check_titles(cell_titles, len(rows), "rows of cell_titles")
    width = ncols * tile_size + (0.6 if row_titles is not None else 0) + (0.8 if colorbar else 0)
    fig = Figure(figsize=(width, len(rows) * (tile_size + 0.35)))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for r, row in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            _bare(ax)
            if c >= len(row):
                ax.set_visible(False)
                continue
            ax.imshow(row[c], cmap=_colormap(cmap), vmin=0, vmax=1, interpolation="bilinear")
            title = cell_titles[r][c] if cell_titles is not None and c < len(cell_titles[r]) else None
            if r == 0 and col_titles is not None:
                title = col_titles[c] if title is None else f"{col_titles[c]}\n{title}"
            if title:
                ax.set_title(str(title), fontsize=TITLE_SIZE)
        if row_titles is not None:
            axes[r, 0].set_ylabel(str(row_titles[r]), fontsize=LABEL_SIZE)
    if colorbar:
        mappable = ScalarMappable(norm=Normalize(0, 1), cmap=_colormap(cmap))
        fig.colorbar(mappable, ax=axes.ravel().tolist(), shrink=0.8, label="map value")
    return fig


def mosaic(maps, ncols, tile=64, gap=4, label_room=16):
    """Lays out many feature maps as one array with NaN between tiles, for a single `imshow`.

    Hundreds of small axes (`image_grid`) take matplotlib tens of seconds to lay out; one image takes
    well under one. Draw it with a colormap whose "bad" colour is the background, e.g.
    `matplotlib.colormaps["viridis"].with_extremes(bad="white")`, and put labels at the anchors.

    Args:
        maps: float `(h, w, M)`: M maps of one layer, drawn on one colour scale.
        ncols: tiles per row.
        tile: about this many pixels per tile side (maps are repeated by a whole factor).
        gap, label_room: pixels between tiles, and above each row for its labels.

    Returns:
        (float32 array `(rows, cols)` with NaN gaps, list of `(x, y)` label positions above each tile).

    Raises:
        InputError: `maps` not 3-D or not finite, or `ncols` < 1.
    """
    maps = _finite(maps, "maps")
    if maps.ndim != 3:
        raise InputError(f"maps has shape {maps.shape}; pass (h, w, M), e.g. one image's maps[0]")
    if ncols < 1:
        raise InputError(f"ncols={ncols}; pass at least 1")
    h, w, count = maps.shape
    factor = max(1, round(tile / max(h, w)))
    th, tw = h * factor, w * factor
    nrows = -(-count // ncols)
    grid = np.full((nrows * (th + label_room), ncols * (tw + gap) - gap), np.nan, np.float32)
    anchors = []
    for i in range(count):
        top = (i // ncols) * (th + label_room) + label_room
        left = (i % ncols) * (tw + gap)
        grid[top : top + th, left : left + tw] = np.kron(maps[..., i], np.ones((factor, factor)))
        anchors.append((left + tw / 2, top - 2))
    return grid, anchors


def save_figure(fig, path, dpi=100, close=True, colors=None):
    """Renders `fig` to `path` atomically; the format follows the suffix (`.png`, `.pdf`, `.svg`...).

    The saved size is exactly `fig.get_size_inches() * dpi` pixels (no tight bounding box; the
    figures of this module use constrained layout instead).

    Args:
        fig: a `matplotlib.figure.Figure` (from this module, or from `pyplot`).
        path: output file; missing parent folders are created.
        dpi: pixels per inch.
        close: release the figure afterwards (closes it in `pyplot` if it was made there), even on error.
        colors: None for full colour, or 2..256 for a PNG of that many palette colours with
            Floyd-Steinberg dithering. 256 makes figures of noisy images (the generated shapes)
            about a third of the size with no visible loss; figures of flat colours can grow.

    Returns:
        The written `Path`.

    Raises:
        InputError: `colors` outside 2..256, or given for a format other than PNG.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    try:
        if colors is None:
            return write_atomically(path, lambda file: fig.savefig(file, format=fmt, dpi=dpi))
        _check_colors(colors, fmt)
        return write_atomically(path, lambda file: _save_palette_png(fig, file, dpi, colors))
    finally:
        if close and getattr(fig.canvas, "manager", None) is not None:
            import matplotlib.pyplot as plt  # only for figures pyplot already manages

            plt.close(fig)


def _check_colors(colors, fmt):
    if isinstance(colors, bool) or not isinstance(colors, (int, np.integer)) or not 2 <= colors <= 256:
        raise InputError(f"colors={colors!r}; pass None for full colour or an int in 2..256")
    if fmt != "png":
        raise InputError(f"colors={colors} makes a palette PNG; save to a .png path, not .{fmt}")


def _save_palette_png(fig, file, dpi, colors):
    """Writes `fig` to `file` as a PNG of `colors` palette colours: octree palette, dithered."""
    rendered = io.BytesIO()
    fig.savefig(rendered, format="png", dpi=dpi)
    image = Image.open(rendered).convert("RGB")
    palette = image.quantize(colors, method=Image.Quantize.FASTOCTREE)
    image.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(file, "PNG", optimize=True)


def png_bytes(image, colors=None) -> bytes:
    """An RGB (H, W, 3) or gray (H, W) image, uint8 or float in [0, 1], as PNG bytes (e.g. for an HTML
    page); with `colors`, a palette PNG of that many colours (a third of the size for photos and maps)."""
    image = np.asarray(image)
    pixels = image if image.dtype == np.uint8 else to_uint8(image)
    encoded, picture = io.BytesIO(), Image.fromarray(pixels)
    if colors is not None:
        _check_colors(colors, "png")
        picture = picture.quantize(colors, method=Image.Quantize.FASTOCTREE)
    picture.save(encoded, "PNG", optimize=True)
    return encoded.getvalue()


def figure_png(fig, dpi=100, colors=None) -> bytes:
    """`fig` rendered as PNG bytes (a palette PNG of `colors` colours if given), then closed."""
    try:
        encoded = io.BytesIO()
        if colors is None:
            fig.savefig(encoded, format="png", dpi=dpi)
        else:
            _check_colors(colors, "png")
            _save_palette_png(fig, encoded, dpi, colors)
        return encoded.getvalue()
    finally:
        if getattr(fig.canvas, "manager", None) is not None:
            import matplotlib.pyplot as plt

            plt.close(fig)


def save_text(path, text):
    """Writes `text` to exactly `path` as UTF-8, atomically (e.g. a CSV table). Returns the `Path`."""
    return write_atomically(path, lambda file: file.write(text.encode("utf-8")))


def save_array(path, array):
    """Writes `array` to exactly `path` in `.npy` format, atomically. Returns the `Path`."""
    return write_atomically(path, lambda file: np.save(file, np.asarray(array), allow_pickle=False))


def save_mat(path, mdict):
    """Writes a dict of arrays to a MATLAB `.mat` file (scipy.io.savemat), atomically. Returns the `Path`.

    Raises:
        InputError: a key is not a string.
    """
    import scipy.io  # scipy is only needed for .mat files

    bad = [key for key in mdict if not isinstance(key, str)]
    if bad:
        raise InputError(f"save_mat keys {bad} are not strings; MATLAB variables need names")
    return write_atomically(path, lambda file: scipy.io.savemat(file, mdict))
