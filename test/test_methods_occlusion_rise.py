"""Occlusion and RISE against their formulas: patch sums of a linear model, the RISE estimator computed
in NumPy from the method's own masks, masks that are shifted crops of upsampled binary grids; and the
properties the methods must have whatever the model (batch-size invariance, fixed clean classes,
reproducible seeds, the peak on the region that decides the class, one-line errors)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from lib.errors import InputError
from lib.methods.occlusion import Occlusion
from lib.methods.rise import RISE


def linear_net(height=12, width=12, classes=4, softmax=False):
    """Flatten -> Dense: every logit is sum(w * x) + b, so occlusion drops are patch sums."""
    keras.utils.set_random_seed(2)
    inp = keras.Input((height, width, 3))
    out = keras.layers.Dense(classes, activation="softmax" if softmax else None, name="fc")(
        keras.layers.Flatten()(inp)
    )
    return keras.Model(inp, out)


def weights_of(model, height, width):
    kernel, bias = model.get_layer("fc").get_weights()
    return kernel.reshape(height, width, 3, -1), bias  # (H, W, 3, classes), (classes,)


def images(n=2, height=12, width=12, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, height, width, 3)).astype(np.float32)


def starts(length, size, stride):
    """Patch offsets as documented: 0, stride, ... and one flush with the far border if needed."""
    offsets = list(range(0, length - size + 1, stride))
    if offsets[-1] + size < length:
        offsets.append(length - size)
    return offsets


def occlusion_by_loops(x, kernel, ids, size, stride, value):
    """The mean over covering patches of sum_patch w * (x - value), with plain loops."""
    n, height, width, _ = x.shape
    total = np.zeros((n, len(ids), height, width))
    count = np.zeros((height, width))
    for top in starts(height, size[0], stride[0]):
        for left in starts(width, size[1], stride[1]):
            rows, cols = slice(top, top + size[0]), slice(left, left + size[1])
            for j, c in enumerate(ids):
                drop = ((x[:, rows, cols] - value) * kernel[rows, cols, :, c]).sum(axis=(1, 2, 3))  # (N,)
                total[:, j, rows, cols] += drop[:, None, None]
            count[rows, cols] += 1
    assert count.min() >= 1  # every pixel is covered
    return total / count


def test_occlusion_of_a_linear_model_equals_the_patch_sum_of_weight_times_input_minus_value():
    model, x = linear_net(), images()
    kernel, _ = weights_of(model, 12, 12)
    result = Occlusion(model, size=4, stride=4, value=10.0, batch_size=5).explain(x, [1, 3])
    expected = np.zeros((2, 2, 12, 12))
    for top in range(0, 12, 4):
        for left in range(0, 12, 4):
            patch = (slice(None), slice(top, top + 4), slice(left, left + 4))
            drop = np.einsum("nhwc,hwck->nk", x[patch] - 10.0, kernel[patch[1:]][..., [1, 3]])
            expected[:, :, patch[1], patch[2]] = drop[:, :, None, None]
    assert result.maps.shape == (2, 2, 12, 12) and result.maps.dtype == np.float32
    np.testing.assert_allclose(result.maps, expected, rtol=1e-4, atol=1e-3)
    assert result.layer is None


def test_overlapping_patches_give_each_pixel_the_mean_of_the_patch_sums_covering_it():
    """A 13x11 image, 5x4 patches by 3x2: the last patches sit flush with the border, so offsets overlap
    unevenly; per-channel fill value."""
    model, x = linear_net(13, 11), images(3, 13, 11, seed=1)
    kernel, _ = weights_of(model, 13, 11)
    value = np.float32([30.0, 120.0, 200.0])
    maps = Occlusion(model, size=(5, 4), stride=(3, 2), value=value, batch_size=16)(x, [0, 2, 3])
    expected = occlusion_by_loops(x, kernel, [0, 2, 3], (5, 4), (3, 2), value)
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-3)


def test_occlusion_drops_are_of_the_class_fixed_on_the_clean_image():
    """class_ids=None: the clean image's top class, its logit and probability, for every patch."""
    model, x = linear_net(softmax=True), images(3)
    kernel, bias = weights_of(model, 12, 12)
    logits = np.einsum("nhwc,hwck->nk", x, kernel) + bias
    top = logits.argmax(1)[:, None]
    result = Occlusion(model, size=6, stride=3).explain(x)
    np.testing.assert_array_equal(result.class_ids, top)
    np.testing.assert_allclose(result.scores, np.take_along_axis(logits, top, 1), rtol=1e-5)
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    np.testing.assert_allclose(result.probabilities, np.take_along_axis(softmax, top, 1), atol=1e-6)
    # the drops are of that class even where an occluded image's top class is another one
    maps = np.concatenate(
        [occlusion_by_loops(x[i : i + 1], kernel, top[i], (6, 6), (3, 3), 0.0) for i in range(3)]
    )
    np.testing.assert_allclose(result.maps, maps, rtol=1e-4, atol=1e-3)


def test_a_callable_target_is_scored_on_every_perturbed_image():
    model, x = linear_net(), images()
    kernel, bias = weights_of(model, 12, 12)
    margin = lambda logits: logits[:, :1] - logits[:, 1:2]  # noqa: E731
    result = Occlusion(model, size=4, stride=2).explain(x, margin)
    assert result.class_ids is None and result.probabilities is None
    logits = np.einsum("nhwc,hwck->nk", x, kernel) + bias
    np.testing.assert_allclose(result.scores[:, 0], logits[:, 0] - logits[:, 1], rtol=1e-4, atol=1e-3)
    difference = kernel[..., :1] - kernel[..., 1:2]  # the margin is linear too
    expected = occlusion_by_loops(x, difference, [0], (4, 4), (2, 2), 0.0)
    np.testing.assert_allclose(result.maps, expected, rtol=1e-4, atol=1e-3)


def rise_by_numpy(x, masks, score, p, value=0.0):
    """(1 / (M p)) sum_m score(value + (x - value) * m) * m, one image (H, W, 3) -> (H, W)."""
    perturbed = value + (x[None] - value) * masks[..., None]  # (M, H, W, 3)
    return np.einsum("m,mhw->hw", score(perturbed), masks) / (len(masks) * p)


def test_rise_of_a_linear_score_is_the_score_weighted_sum_of_its_masks():
    model, x = linear_net(), images()
    kernel, bias = weights_of(model, 12, 12)
    rise = RISE(model, masks=40, grid=3, p=0.4, seed=5, value=20.0, batch_size=16)
    result = rise.explain(x, lambda logits: logits[:, 2:3])
    masks = rise.masks((12, 12), range(40))  # (40, 12, 12)
    linear = lambda z: np.einsum("mhwc,hwc->m", z, kernel[..., 2]) + bias[2]  # noqa: E731
    for i in range(2):
        np.testing.assert_allclose(
            result.maps[i, 0], rise_by_numpy(x[i], masks, linear, 0.4, 20.0), rtol=1e-4, atol=1e-2
        )


def test_rise_weighs_masks_by_the_softmax_probability_of_the_clean_top_class():
    model, x = linear_net(softmax=True), images(3)
    kernel, bias = weights_of(model, 12, 12)
    rise = RISE(model, masks=30, grid=4, seed=1)
    result = rise.explain(x)
    logits = np.einsum("nhwc,hwck->nk", x, kernel) + bias
    np.testing.assert_array_equal(result.class_ids[:, 0], logits.argmax(1))
    masks = rise.masks((12, 12), range(30))
    for i, c in enumerate(result.class_ids[:, 0]):

        def probability(z, c=c):
            z = np.einsum("mhwc,hwck->mk", z, kernel) + bias
            z = np.exp(z - z.max(1, keepdims=True))
            return z[:, c] / z.sum(1)

        np.testing.assert_allclose(result.maps[i, 0], rise_by_numpy(x[i], masks, probability, 0.5), atol=1e-5)


def test_rise_with_masks_all_one_gives_a_constant_map_of_the_clean_score():
    model, x = linear_net(softmax=True), images(3)
    rise = RISE(model, masks=20, p=1.0)
    result = rise.explain(x, [0, 3])
    np.testing.assert_allclose(rise.masks((12, 12), range(20)), 1.0, atol=1e-6)
    np.testing.assert_allclose(
        result.maps, np.broadcast_to(result.probabilities[..., None, None], result.maps.shape), rtol=1e-5
    )
    logit = rise.explain(x, lambda z: z[:, 1:2])  # a callable's value replaces the probability
    np.testing.assert_allclose(
        logit.maps[:, 0], np.broadcast_to(logit.scores, (3, 12 * 12)).reshape(3, 12, 12), rtol=1e-4
    )


def test_rise_is_reproducible_with_a_seed_and_another_seed_differs():
    model, x = linear_net(softmax=True), images()
    first = RISE(model, masks=25, seed=7)(x)
    np.testing.assert_array_equal(RISE(model, masks=25, seed=7)(x), first)
    assert np.abs(RISE(model, masks=25, seed=8)(x) - first).max() > 1e-3
    masks = RISE(model, masks=25, seed=7).masks((12, 12), range(25))
    assert not np.array_equal(masks, RISE(model, masks=25, seed=8).masks((12, 12), range(25)))


def test_rise_masks_are_shifted_crops_of_bilinearly_upsampled_binary_grids():
    """Each mask is some crop, at a shift in [0, cell) per axis, of a binary 3x3 grid resized by
    `tf.image.resize` to (3 + 1) * cell: least squares on the resized one-hot grids recovers it."""
    grid, size, cell = 3, (10, 11), (4, 4)  # cell = ceil(size / grid)
    up = [(grid + 1) * c for c in cell]
    basis = tf.image.resize(np.eye(grid * grid, dtype=np.float32).reshape(-1, grid, grid, 1), up).numpy()[
        ..., 0
    ]
    masks = RISE(linear_net(*size), masks=30, grid=grid, seed=3).masks(size, range(30))
    shifts = []
    for mask in masks:
        found = []
        for a in range(cell[0]):
            for b in range(cell[1]):
                crops = basis[:, a : a + size[0], b : b + size[1]].reshape(grid * grid, -1).T
                coefficients = np.linalg.lstsq(crops, mask.ravel(), rcond=None)[0]
                binary = np.round(coefficients)
                if np.abs(crops @ binary - mask.ravel()).max() < 1e-5 and np.isin(binary, (0, 1)).all():
                    found.append((a, b))
        assert found, "a mask is no crop of an upsampled binary grid"
        shifts.append(found[0])
    assert len(set(shifts)) > 5  # the shifts are random, not one fixed offset


def test_rise_masks_keep_each_pixel_with_probability_p():
    """E[m(i, j)] = p for every pixel, so a constant score gives a map of about 1 everywhere."""
    model = linear_net(16, 16)
    rise = RISE(model, masks=3000, grid=4, p=0.3, seed=2, batch_size=512)
    masks = rise.masks((16, 16), range(3000))
    assert masks.min() >= -1e-6 and masks.max() <= 1 + 1e-6
    np.testing.assert_allclose(masks.mean(0), 0.3, atol=0.03)
    maps = rise(images(1, 16, 16), lambda z: tf.ones_like(z[:, :1]))
    np.testing.assert_allclose(maps, 1.0, atol=0.1)


METHODS = {
    "occlusion": lambda model, batch_size=32: Occlusion(model, size=5, stride=3, batch_size=batch_size),
    "rise": lambda model, batch_size=32: RISE(model, masks=30, grid=3, seed=4, batch_size=batch_size),
}


@pytest.mark.parametrize("name", METHODS)
def test_the_chunked_pass_gives_the_same_maps_for_every_batch_size(name):
    model, x = linear_net(softmax=True), images(3)
    expected = METHODS[name](model, batch_size=1000)(x, [0, 2])  # one chunk
    for batch_size in (1, 7, 32):  # drops of logits near 300 differ by their float32 rounding, 1e-4
        np.testing.assert_allclose(
            METHODS[name](model, batch_size)(x, [0, 2]), expected, rtol=1e-5, atol=1e-3
        )


@pytest.mark.parametrize("name", METHODS)
def test_k_classes_equal_k_calls_and_a_batch_equals_one_image_at_a_time(name):
    model, x = linear_net(softmax=True), images(3)
    method = METHODS[name](model, batch_size=8)
    together = method(x, [[0, 2], [1, 3], [3, 0]])
    ids = np.array([[0, 2], [1, 3], [3, 0]])
    by_class = np.concatenate([method(x, ids[:, k : k + 1]) for k in range(2)], axis=1)
    by_image = np.concatenate([method(x[i : i + 1], ids[i : i + 1]) for i in range(3)])
    scale = np.abs(together).max()
    np.testing.assert_allclose(by_class, together, atol=1e-5 * scale)
    np.testing.assert_allclose(by_image, together, atol=1e-5 * scale)


def bright_square_net():
    """Class 1 is the area of bright pixels (a 3x3 mean above 150): ReLU(conv - 150), global average
    pooling, logit 1 = 0.05 x that area, logit 0 = minus it. The dim background never counts."""
    inp = keras.Input((24, 24, 3))
    conv = keras.layers.Conv2D(1, 3, padding="same", activation="relu", name="bright")
    x = keras.layers.GlobalAveragePooling2D()(conv(inp))
    dense = keras.layers.Dense(2, activation="softmax", name="fc")
    model = keras.Model(inp, dense(x))
    conv.set_weights([np.full((3, 3, 3, 1), 1 / 27, np.float32), np.float32([-150])])
    dense.set_weights([np.float32([[-2.0, 2.0]]), np.zeros(2, np.float32)])
    return model


@pytest.mark.parametrize(
    "make",
    [lambda m: Occlusion(m, size=6, stride=2), lambda m: RISE(m, masks=1000, grid=6, seed=0, batch_size=250)],
    ids=["occlusion", "rise"],
)
def test_the_peak_lies_in_the_region_that_alone_decides_the_class(make):
    x = np.random.default_rng(3).uniform(0, 60, (2, 24, 24, 3)).astype(np.float32)
    boxes = [(3, 9, 14, 20), (12, 19, 2, 9)]  # (top, bottom, left, right) of a bright square per image
    for image, (top, bottom, left, right) in zip(x, boxes, strict=True):
        image[top:bottom, left:right] = 255
    result = make(bright_square_net()).explain(x)
    np.testing.assert_array_equal(result.class_ids, [[1], [1]])
    for maps, (top, bottom, left, right) in zip(result.maps[:, 0], boxes, strict=True):
        row, col = np.unravel_index(maps.argmax(), maps.shape)
        assert top <= row < bottom and left <= col < right
        inside = maps[top:bottom, left:right].mean()
        assert inside > maps.mean() + 0.5 * maps.std()


def test_a_second_call_with_the_same_shapes_does_not_retrace():
    model = linear_net()
    for method in (Occlusion(model, size=4, stride=4), RISE(model, masks=10)):
        method(images(2))
        method(images(2, seed=1))
        method(images(2, seed=2), [1, 2])
        assert method.tracing_count == 2  # top class, and explicit ids


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda m: Occlusion(m, size=0), r"size=0; pass a whole number of at least 1"),
        (lambda m: Occlusion(m, size=2.5), r"size=2\.5; pass a whole number"),
        (lambda m: Occlusion(m, size=True), r"size=True; pass a whole number"),
        (lambda m: Occlusion(m, size=(2, 3, 4)), r"size=\(2, 3, 4\); pass an int or two ints"),
        (lambda m: Occlusion(m, size=4, stride=-1), r"stride=-1; pass a whole number"),
        (lambda m: Occlusion(m, size=4, stride=5), r"stride \(5, 5\) exceeds the patch size \(4, 4\)"),
        (
            lambda m: Occlusion(m, size=(4, 13), stride=2),
            r"patch size \(4, 13\) is larger than the images \(12x12\)",
        ),
        (lambda m: Occlusion(m, size=4, batch_size=0), r"batch_size=0; pass a whole number"),
        (lambda m: Occlusion(m, size=4, value=np.nan), r"value=nan; pass a finite pixel value"),
        (lambda m: Occlusion(m, size=4, value="grey"), r"value='grey'; pass a finite pixel value"),
        (lambda m: Occlusion(m, size=4, value=[1, 2]), r"value has 2 entries for images with 3 channels"),
        (lambda m: RISE(m, masks=0), r"masks=0; pass a whole number"),
        (lambda m: RISE(m, masks=10.0), r"masks=10\.0; pass a whole number"),
        (lambda m: RISE(m, grid=0), r"grid=0; pass a whole number"),
        (lambda m: RISE(m, p=0), r"p=0; pass the probability of keeping a grid cell, in \(0, 1\]"),
        (lambda m: RISE(m, p=1.5), r"p=1\.5; pass the probability"),
        (lambda m: RISE(m, p="half"), r"p='half'; pass the probability"),
        (lambda m: RISE(m, seed=-1), r"seed=-1; pass a whole number from 0"),
        (lambda m: RISE(m, seed=1.5), r"seed=1\.5; pass a whole number from 0"),
        (lambda m: RISE(m, batch_size=False), r"batch_size=False; pass a whole number"),
        (lambda m: RISE(m, value=np.inf), r"value=inf; pass a finite pixel value"),
        (
            lambda m: RISE(m, masks=5).masks((12, 12), [0, 5]),
            r"mask indices \[0, 5\]; pass a list of ints in 0..4",
        ),
    ],
)
def test_bad_arguments_raise_one_line_input_errors(make, message):
    with pytest.raises(InputError, match=message) as caught:
        make(linear_net())
    assert "\n" not in str(caught.value)


def test_a_patch_larger_than_images_of_a_model_without_a_fixed_size_is_refused_at_the_call():
    inp = keras.Input((None, None, 3))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inp)))
    method = Occlusion(model, size=16, stride=8)
    assert method(images(1, 16, 20)).shape == (1, 1, 16, 20)
    with pytest.raises(InputError, match=r"patch size \(16, 16\) is larger than the images \(12x20\)"):
        method(images(1, 12, 20))


def test_nan_pixels_are_refused():
    bad = images()
    bad[1, 3, 4, 0] = np.nan
    for method in (Occlusion(linear_net(), size=4), RISE(linear_net(), masks=5)):
        with pytest.raises(InputError, match="images contain NaN or Inf"):
            method(bad)


@pytest.mark.slow
def test_on_squeezenet_grids_of_photos_the_peak_of_each_class_lies_on_its_photo():
    """The grid pointing game (doc/imagenet.md) on 2 grids of 2x2 photos at 454x454: 8 maps each, about
    900 SqueezeNet passes. Measured: occlusion hits 8 of 8 cells, RISE 7 (4 grids: 15 of 16 each, in
    twice the time)."""
    from lib.dataflow import photos
    from lib.grid_game import confident_photos
    from lib.metrics import hits
    from lib.nets import squeezenet

    chosen = confident_photos(squeezenet(weights="imagenet"), cell=227)
    ids_of = {c.name: c.class_id for c in chosen}
    arrangement = photos.arrangements(list(ids_of), 2, seed=0)
    grids, cells = photos.load_grids(arrangement, cell=227)
    ids = np.array([[ids_of[name] for name in names] for names in arrangement])  # (2, 4)
    masks = photos.cell_masks(cells, ids)
    model = squeezenet(weights="imagenet", input_shape=(454, 454, 3))
    for method in (Occlusion(model, size=76, stride=38), RISE(model, masks=300, seed=0)):
        maps = method(grids, ids)
        assert maps.shape == (2, 4, 454, 454) and np.isfinite(maps).all()
        assert np.nanmean(hits(maps, masks, ids)) >= 0.75, type(method).__name__


@pytest.mark.parametrize(("name", "total", "chunk"), [("occlusion", 2 * 16, 16), ("rise", 2 * 30, 20)])
def test_the_perturbed_pass_runs_in_chunks_of_at_most_batch_size_inside_one_loop(name, total, chunk):
    """The graph is traced twice (clean images, then the loop body once: not unrolled), and each
    chunk holds at most `batch_size` = 24 perturbed images, balanced: 60 images run as 3 chunks of 20."""
    model, x = linear_net(), images(2)
    method = METHODS[name](model, batch_size=24)
    batches, run = [], method.graph.run

    def recording(steps, values, call=None, **options):
        batches.append(values[method.graph.input_key].shape[0])
        return run(steps, values, call, **options)

    method.graph.run = recording
    assert 2 * method.mask_count((12, 12)) == total  # 16 patches (offsets 0, 3, 6, 7), 30 masks
    method(x, [1])
    assert batches == [2, chunk]
