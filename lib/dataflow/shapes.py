"""Procedural shapes dataset with exact ground truth, in pure NumPy.

Each image holds one or more filled shapes (random colour, size, position, rotation and texture) on a
cluttered background of gradients, stripes, noise and small distractor blobs. Object colour and the
background are drawn independently of the class, so a classifier has to look at the outline. Masks give
`1 + class id` for the pixels of each object and 0 elsewhere; they are exactly the pixels that were drawn.

Image `i` of `generate(n, seed)` depends only on `(seed, i)`, so `generate(10, s)` equals the first ten
images of `generate(1000, s)`.

Usage:
    images, labels, masks = generate(2000, seed=0)  # (2000, 64, 64, 3) uint8, (2000,), (2000, 64, 64)
"""

import functools
import math
import os

import imageio.v3 as iio
import numpy as np

from lib.atomic import write_atomically
from lib.errors import InputError

# Sorted, so that `images.class_folders` on a folder from `write_image_folder` gives the same class ids.
CLASS_NAMES = ("arrow", "crescent", "cross", "disk", "ring", "square", "star", "triangle")

_MIN_SIDE = 32
_GAP = 2.0  # pixels between the bounding circles of two objects, so their masks never touch
_MIN_CONTRAST = 32.0  # every object pixel differs from the background by this much in some channel
# Drawing reads outlines from tables (the exact polygon distance costs ~10x more per object); with
# 257 samples over [-1.1, 1.1] an outline moves by < 0.01 of the object radius.
_TABLE_SIZE, _EXTENT = 257, 1.1


def _regular(n, radius=1.0, phase=np.pi / 2):
    angles = phase + 2 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(points, inner):
    outer, inner = _regular(points), _regular(points, inner, np.pi / 2 + np.pi / points)
    return np.stack([outer, inner], axis=1).reshape(-1, 2)


# Outlines in the object's own frame; every shape fits in the unit circle, which is what placement uses.
_POLYGONS = {
    "arrow": np.array(
        [(-0.95, -0.25), (0.1, -0.25), (0.1, -0.65), (1.0, 0.0), (0.1, 0.65), (0.1, 0.25), (-0.95, 0.25)]
    ),
    "cross": np.array(
        [(0.3, 0.3), (0.3, 0.95), (-0.3, 0.95), (-0.3, 0.3), (-0.95, 0.3), (-0.95, -0.3)]
        + [(-0.3, -0.3), (-0.3, -0.95), (0.3, -0.95), (0.3, -0.3), (0.95, -0.3), (0.95, 0.3)]
    ),
    "star": _star(5, 0.45),
    "triangle": _regular(3),
}


def _polygon_distance(u, v, vertices):
    """Signed distance (negative inside) from points `(u, v)` to a closed polygon, even-odd rule."""
    a, e = vertices, np.roll(vertices, -1, axis=0) - vertices  # (E, 2) edge starts and vectors
    du, dv = u[..., None] - a[:, 0], v[..., None] - a[:, 1]  # (..., E)
    t = np.clip((du * e[:, 0] + dv * e[:, 1]) / (e * e).sum(axis=1), 0.0, 1.0)
    dist = np.sqrt(((du - t * e[:, 0]) ** 2 + (dv - t * e[:, 1]) ** 2).min(axis=-1))
    # A horizontal edge never straddles the scan line, so its placeholder slope is never used.
    crosses = (a[:, 1] > v[..., None]) != (a[:, 1] + e[:, 1] > v[..., None])
    slope = e[:, 0] / np.where(e[:, 1] == 0, 1.0, e[:, 1])
    inside = (crosses & (du < dv * slope)).sum(axis=-1) % 2 == 1
    return np.where(inside, -dist, dist)


def _signed_distance(class_id, u, v):
    """Signed distance of class `class_id`'s outline at object-frame points `(u, v)` (unit radius)."""
    name = CLASS_NAMES[class_id]
    r = np.hypot(u, v)
    if name == "disk":
        return r - 1.0
    if name == "ring":
        return np.abs(r - 0.775) - 0.225  # outer radius 1, hole radius 0.55
    if name == "crescent":
        # A disk minus an offset disk, with the horns cut where they are still >= 0.3 wide, so that
        # small crescents do not break into pieces.
        return np.maximum(np.maximum(r - 1.0, 0.8 - np.hypot(u - 0.5, v)), u - 0.1)
    if name == "square":
        qu, qv = np.abs(u) - 0.7, np.abs(v) - 0.7
        outside = np.hypot(np.maximum(qu, 0.0), np.maximum(qv, 0.0))
        return outside + np.minimum(np.maximum(qu, qv), 0.0)
    return _polygon_distance(u, v, _POLYGONS[name])


@functools.cache
def _distance_table(class_id):
    """`_signed_distance` sampled once on a grid: float32 (v, u), indexed from -_EXTENT to _EXTENT."""
    axis = np.linspace(-_EXTENT, _EXTENT, _TABLE_SIZE)
    return _signed_distance(class_id, axis[None, :], axis[:, None]).astype(np.float32)


def _lookup(table, u, v):
    """Bilinear interpolation of a distance table; points beyond it read its (outside) border."""
    scale = (_TABLE_SIZE - 1) / (2 * _EXTENT)
    gu = np.clip((u + _EXTENT) * scale, 0, _TABLE_SIZE - 1.001)
    gv = np.clip((v + _EXTENT) * scale, 0, _TABLE_SIZE - 1.001)
    i, j = gv.astype(np.intp), gu.astype(np.intp)
    fv, fu = gv - i, gu - j
    top = table[i, j] + fu * (table[i, j + 1] - table[i, j])
    bottom = table[i + 1, j] + fu * (table[i + 1, j + 1] - table[i + 1, j])
    return top + fv * (bottom - top)


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InputError(f"{name}={value!r} is invalid; pass an integer >= {low}")
    return int(value)


def _check_size(size):
    hw = (size, size) if isinstance(size, (int, np.integer)) and not isinstance(size, bool) else size
    if not (isinstance(hw, (tuple, list)) and len(hw) == 2):
        raise InputError(f"size={size!r} is invalid; pass an int or a (height, width) pair")
    return tuple(_check_int("size", s, _MIN_SIDE) for s in hw)


def _layout(rng, h, w, count):
    """Random `(cy, cx, radius)` rows for `count` objects whose bounding circles keep a gap apart."""
    # Diameters of 25-45 % of the side for one object; smaller when several must fit.
    scale = min(1.0, 0.8 * np.sqrt(2.0 / count)) * min(h, w)
    while True:
        radii = rng.uniform(0.125, 0.225, count) * scale
        placed = []
        for r in radii:
            for _ in range(50):
                cy, cx = rng.uniform(r + 1, h - 2 - r), rng.uniform(r + 1, w - 2 - r)
                if all(np.hypot(cy - y, cx - x) >= r + q + _GAP for y, x, q in placed):
                    placed.append((cy, cx, r))
                    break
            else:
                break
        if len(placed) == count:
            return np.array(placed)
        scale *= 0.9  # crowded: shrink everything and start over


def _linear_ramp(rng, yy, xx):
    """A (h, w) ramp from 0 to 1 along a random direction."""
    angle = rng.uniform(0, 2 * math.pi)
    t = math.cos(angle) * xx + math.sin(angle) * yy
    return (t - t.min()) / (t.max() - t.min())


def _background(rng, h, w):
    """Clutter that carries no class information: float32 (3, h, w) in 0-255."""
    # Channels first throughout drawing: numpy is several times slower when the last axis is 3 long.
    yy = np.arange(h, dtype=np.float32)[:, None] / max(h, w)  # (h, 1)
    xx = np.arange(w, dtype=np.float32)[None, :] / max(h, w)  # (1, w)
    c0, c1 = rng.uniform(0, 255, (2, 3, 1, 1)).astype(np.float32)
    image = c0 + (c1 - c0) * _linear_ramp(rng, yy, xx)
    if rng.random() < 0.5:  # stripes of another colour, soft or hard
        angle, freq, phase = rng.uniform(0, math.pi), rng.uniform(2, 8), rng.uniform(0, 2 * math.pi)
        wave = 0.5 + 0.5 * np.sin(2 * math.pi * freq * (math.cos(angle) * xx + math.sin(angle) * yy) + phase)
        wave = wave if rng.random() < 0.5 else (wave > 0.5).astype(np.float32)
        alpha = rng.uniform(0.2, 0.6) * wave
        image = image * (1 - alpha) + rng.uniform(0, 255, (3, 1, 1)).astype(np.float32) * alpha
    if rng.random() < 0.5:  # a second, crossing gradient of brightness
        image *= 0.7 + 0.6 * _linear_ramp(rng, yy, xx)
    image += rng.uniform(0, 40) * (rng.random((3, h, w), dtype=np.float32) - 0.5)
    return np.clip(image, 0, 255, out=image)


def _box(h, w, cy, cx, r):
    """Slices of the pixel box around a circle, and the pixel offsets from its centre."""
    y0, y1 = max(0, int(cy - r) - 1), min(h, int(cy + r) + 2)
    x0, x1 = max(0, int(cx - r) - 1), min(w, int(cx + r) + 2)
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
    return (slice(y0, y1), slice(x0, x1)), dy, dx


def _draw_distractors(rng, image, objects):
    """A few blobs, under a third of the smallest object's radius, kept clear of the objects."""
    h, w = image.shape[1:]
    for _ in range(rng.integers(2, 7)):
        r = rng.uniform(0.15, 0.3) * objects[:, 2].min()
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        if any(np.hypot(cy - y, cx - x) < q + r + _GAP for y, x, q in objects):
            continue
        (rows, cols), dy, dx = _box(h, w, cy, cx, r)
        square = rng.random() < 0.5
        inside = np.maximum(abs(dy), abs(dx)) <= r if square else np.hypot(dy, dx) <= r
        image[:, rows, cols][:, inside] = rng.uniform(0, 255, (3, 1))


def _texture(rng, colour, u, v):
    """`colour` (3,) with noise, stripes or a gradient across the object: float (3, pixels) in 0-255."""
    kind = rng.integers(3)
    if kind == 0:
        gain = np.ones_like(u)
    elif kind == 1:
        angle, freq = rng.uniform(0, math.pi), rng.uniform(1, 3)
        gain = 1 + 0.3 * np.sin(2 * math.pi * freq * (math.cos(angle) * u + math.sin(angle) * v))
    else:
        angle = rng.uniform(0, 2 * math.pi)
        gain = 1 + 0.3 * (math.cos(angle) * u + math.sin(angle) * v)
    noise = rng.uniform(5, 40) * (rng.random((3,) + u.shape, dtype=np.float32) - 0.5)
    return np.clip(colour[:, None] * gain + noise, 0, 255)


def _draw_object(rng, image, mask, class_id, cy, cx, r):
    """Paint one object into `image` (3, h, w) and `1 + class_id` into `mask`, over the same pixels."""
    (rows, cols), dy, dx = _box(image.shape[1], image.shape[2], cy, cx, r)
    angle = rng.uniform(0, 2 * math.pi)
    u = (math.cos(angle) * dx + math.sin(angle) * dy) / r
    v = (-math.sin(angle) * dx + math.cos(angle) * dy) / r
    distance = _lookup(_distance_table(class_id), u, v) * r  # (bh, bw) in pixels
    inside = distance < 0
    region = image[:, rows, cols]  # a view
    background = region[:, inside]  # (3, pixels)
    # Of three random colours take the one farthest from the local background: still blind to the class.
    candidates = rng.uniform(0, 255, (3, 3)).astype(np.float32)
    colour = candidates[np.argmax(np.abs(candidates - background.mean(axis=1)).sum(axis=1))]
    # Anti-alias only inside the outline (coverage >= 0.5), so nothing is drawn outside the mask.
    alpha = np.clip(0.5 - distance[inside], 0, 1)
    pixels = background + alpha * (_texture(rng, colour, u[inside], v[inside]) - background)
    faint = np.abs(pixels - background).max(axis=0) < _MIN_CONTRAST
    push = np.where(background[:, faint] > 127.5, -_MIN_CONTRAST, _MIN_CONTRAST)
    pixels[:, faint] = background[:, faint] + push
    region[:, inside] = pixels
    mask[rows, cols][inside] = 1 + class_id


def _render(seed, index, h, w, count):
    """Image `index` of the dataset `seed`: (image, labels, mask, background before objects)."""
    rng = np.random.default_rng([seed, index])
    labels = rng.permutation(len(CLASS_NAMES))[:count]
    objects = _layout(rng, h, w, count)
    image = _background(rng, h, w)  # (3, h, w)
    _draw_distractors(rng, image, objects)
    background = np.rint(image).astype(np.uint8).transpose(1, 2, 0)
    mask = np.zeros((h, w), np.int64)
    for class_id, (cy, cx, r) in zip(labels, objects, strict=True):
        _draw_object(rng, image, mask, class_id, cy, cx, r)
    return np.rint(image).astype(np.uint8).transpose(1, 2, 0), labels.astype(np.int64), mask, background


def generate(num_images, seed, size=64, objects_per_image=1):
    """Generate a deterministic batch of shape images with labels and masks.

    Args:
        num_images: number of images, >= 0.
        seed: non-negative int; the same seed gives identical output.
        size: int for square images or `(height, width)`, each side >= 32.
        objects_per_image: 1 to `len(CLASS_NAMES)`; the classes within one image are all distinct.

    Returns:
        `(images, labels, masks)`: uint8 `(N, H, W, 3)`; int64 `(N,)` for one object per image, else
        `(N, objects_per_image)`; int64 `(N, H, W)` holding `1 + class id` on each object, 0 elsewhere.

    Raises:
        InputError: if an argument is not of the form above.
    """
    num_images, seed = _check_int("num_images", num_images, 0), _check_int("seed", seed, 0)
    count = _check_int("objects_per_image", objects_per_image, 1)
    if count > len(CLASS_NAMES):
        raise InputError(f"objects_per_image={count} is too many; pass at most {len(CLASS_NAMES)}")
    h, w = _check_size(size)
    images = np.empty((num_images, h, w, 3), np.uint8)
    labels = np.empty((num_images, count), np.int64)
    masks = np.empty((num_images, h, w), np.int64)
    for i in range(num_images):
        images[i], labels[i], masks[i], _ = _render(seed, i, h, w, count)
    return images, (labels[:, 0] if count == 1 else labels), masks


def write_image_folder(root, num_images, seed, size=64):
    """Write single-object images as `root/<class name>/<index>.png`, one folder per class.

    Image `i` is image `i` of `generate(num_images, seed, size)`; indices are zero-padded so that sorted
    file names follow the index. Every class folder is created, even if it receives no image.

    Args:
        root: folder to write into; created if missing.
        num_images: number of images, >= 0.
        seed: non-negative int.
        size: int or `(height, width)`, as in `generate`.

    Returns:
        list of str: the written paths, in index order.
    """
    num_images, seed = _check_int("num_images", num_images, 0), _check_int("seed", seed, 0)
    h, w = _check_size(size)
    for name in CLASS_NAMES:
        os.makedirs(os.path.join(root, name), exist_ok=True)
    digits = max(5, len(str(num_images - 1)))
    paths = []
    for i in range(num_images):
        image, labels, _, _ = _render(seed, i, h, w, 1)
        path = os.path.join(root, CLASS_NAMES[labels[0]], f"{i:0{digits}d}.png")
        write_atomically(path, lambda file, image=image: iio.imwrite(file, image, extension=".png"))
        paths.append(path)
    return paths
