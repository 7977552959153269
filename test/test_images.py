"""Image files: conversions to RGB on real files, refusals with one-line errors, folders, array checks."""

import io
import re
import time
import warnings

import numpy as np
import pytest
import tensorflow as tf  # a reference for resize (with Pillow); conftest loads it anyway
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from image_files import png_header, save, truncated
from PIL import Image

from lib.dataflow import images
from lib.dataflow.images import (
    check_images,
    class_folders,
    iter_batches,
    list_images,
    load_images,
    read_image,
    resize,
)
from lib.errors import InputError, MissingFileError, VizError

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)


def test_rgb_png_and_bmp_are_exact(tmp_path):
    for name in ("a.png", "a.bmp"):
        image = read_image(save(tmp_path / name, RGB))
        assert image.dtype == np.uint8
        np.testing.assert_array_equal(image, RGB)


def test_grayscale_value_g_becomes_g_g_g(tmp_path):
    gray = RGB[..., 0]
    image = read_image(save(tmp_path / "gray.png", gray))
    np.testing.assert_array_equal(image, np.repeat(gray[..., None], 3, axis=2))
    Image.fromarray(gray).convert("1").save(tmp_path / "bits.png")
    assert set(np.unique(read_image(tmp_path / "bits.png"))) <= {0, 255}


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.array([[[200, 10, 30, 255], [200, 10, 30, 0], [200, 10, 30, 128]]], np.uint8)
    image = read_image(save(tmp_path / "rgba.png", rgba))
    expected = np.rint(rgba[..., :3] * (rgba[..., 3:] / 255) + 255 * (1 - rgba[..., 3:] / 255))
    np.testing.assert_array_equal(image, expected)
    assert image[0, 1].tolist() == [255, 255, 255]
    gray_alpha = np.array([[[40, 255], [40, 0]]], np.uint8)
    image = read_image(save(tmp_path / "la.png", gray_alpha, "LA"))
    assert image.tolist() == [[[40, 40, 40], [255, 255, 255]]]


def test_palette_colours_and_transparent_index(tmp_path):
    palette_image = Image.fromarray(np.array([[0, 1, 2]], np.uint8), "P")
    palette_image.putpalette([255, 0, 0, 0, 128, 0, 1, 2, 3] + [0] * 759)
    palette_image.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").tolist() == [[[255, 0, 0], [0, 128, 0], [1, 2, 3]]]
    palette_image.save(tmp_path / "pt.png", transparency=2)
    assert read_image(tmp_path / "pt.png")[0, 2].tolist() == [255, 255, 255]


@pytest.mark.parametrize("name", ["deep.png", "deep.tif"])
def test_16_bit_is_scaled_not_clipped(tmp_path, name):
    deep = np.array([[0, 300, 257 * 100, 65535]], np.uint16)
    image = read_image(save(tmp_path / name, deep))
    assert image[0, :, 0].tolist() == [0, 1, 100, 255]  # clipping would give 255 for 300
    assert (image == image[..., :1]).all()


def test_first_frame_of_gif_and_multipage_tiff(tmp_path):
    frames = [Image.new("RGB", (4, 3), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    for name in ("anim.gif", "pages.tif"):
        frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:])
        image = read_image(tmp_path / name)
        assert image.shape == (3, 4, 3)
        assert (image == [255, 0, 0]).all()


def test_jpeg_is_close_and_one_pixel_is_fine(tmp_path):
    flat = np.full((16, 16, 3), (30, 140, 220), np.uint8)
    assert np.abs(read_image(save(tmp_path / "a.jpg", flat, quality=95)).astype(int) - flat).max() <= 3
    assert read_image(save(tmp_path / "one.png", RGB[:1, :1])).tolist() == [[RGB[0, 0].tolist()]]


@pytest.mark.parametrize(("name", "file_format"), [("cut.png", "PNG"), ("cut.jpg", "JPEG")])
def test_truncated_files_are_input_errors_naming_the_file(tmp_path, name, file_format):
    buffer = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, file_format)
    path = tmp_path / name
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(InputError, match=f"cannot read image '.*{name}'"):
        read_image(path)


def test_text_file_named_jpg_and_missing_file_and_folder(tmp_path):
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(InputError, match="cannot read image '.*notes.jpg': not an image format"):
        read_image(tmp_path / "notes.jpg")
    with pytest.raises(MissingFileError, match="nowhere.png"):
        read_image(tmp_path / "nowhere.png")
    with pytest.raises(InputError, match="is a folder"):
        read_image(tmp_path)


@pytest.mark.parametrize(
    ("side", "message"),
    [(8000, "8000x8000 = 64 Mpx, above the 50 Mpx limit"), (10000, "10000x10000 = 100 Mpx")],
)
def test_huge_images_are_refused_from_the_header(tmp_path, side, message):
    path = tmp_path / "big.png"
    path.write_bytes(png_header(side, side))
    # The file has no pixel data, so any attempt to decode it would fail with "cannot read" instead.
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's own bomb warning (from 89 Mpx) must not leak
        with pytest.raises(InputError, match=f"image '.*big.png' is {message}.*downscale it first"):
            read_image(path)


def test_images_beyond_pillows_bomb_limit_get_our_message(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(20000, 20000))
    with pytest.raises(InputError, match=r"image '.*bomb.png' is 400 Mpx, above the 50 Mpx limit; downscale"):
        read_image(path)


def test_resize_to_size_and_shortest_side():
    image = RNG.integers(0, 256, (100, 200, 3), dtype=np.uint8)
    assert resize(image, 32).shape == (32, 32, 3)
    assert resize(image, size=(10, 30)).shape == (10, 30, 3)
    resized = resize(image, shortest_side=50)
    assert resized.shape == (50, 100, 3) and resized.dtype == np.float32
    assert resize(image.transpose(1, 0, 2), shortest_side=224).shape == (448, 224, 3)
    np.testing.assert_array_equal(resize(image), image)
    with pytest.raises(InputError, match="only one"):
        resize(image, size=10, shortest_side=10)


def test_resize_antialiases_when_shrinking():
    checkerboard = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
    small = resize(np.repeat(checkerboard[..., None], 3, axis=2), 8)
    # Sampling without a widened filter would hit only black or only white pixels.
    np.testing.assert_allclose(small, 127.5, atol=3)
    constant = resize(np.full((7, 9, 3), 42.0), (20, 31))
    np.testing.assert_allclose(constant, 42.0, atol=1e-4)


@pytest.mark.parametrize("size", [(24, 40), (97, 60), (200, 300)])
def test_resize_equals_tensorflow_antialiased_bilinear(size):
    image = RNG.integers(0, 256, (97, 131, 3), dtype=np.uint8)
    expected = tf.image.resize(image.astype(np.float32), size, antialias=True).numpy()
    np.testing.assert_allclose(resize(image, size), expected, atol=0.01)


@pytest.mark.parametrize(
    "shape, size",
    [((64, 64, 3), (227, 227)), ((375, 500, 3), (227, 227)), ((97, 31, 1), (13, 300)), ((1, 5, 3), (4, 1))],
)
def test_resize_equals_pillows_float_bilinear(shape, size):
    """Pillow resamples a float image ("F" mode) one channel at a time, in double precision."""
    image = RNG.uniform(0, 255, shape).astype(np.float32)
    expected = np.stack(
        [
            np.asarray(Image.fromarray(image[..., c]).resize(size[::-1], Image.Resampling.BILINEAR))
            for c in range(shape[2])
        ],
        axis=-1,
    )
    result = resize(image, size)
    assert result.shape == (*size, shape[2]) and result.dtype == np.float32
    np.testing.assert_allclose(result, expected, atol=2e-4)
    assert image.min() <= result.min() and result.max() <= image.max()  # weighted means, never beyond


def test_resize_stays_within_the_pixel_range():
    image = np.full((64, 64, 3), 255, np.uint8)
    image[::2, ::3] = 0
    for size in [(227, 227), (17, 40)]:
        result = resize(image, size)
        assert result.min() >= 0 and result.max() <= 255  # float32 rounding gave 255.00003 unclipped


def test_resize_never_returns_the_callers_array():
    image = np.zeros((4, 4, 3), np.float32)
    resize(image)[0, 0, 0] = 1
    assert image[0, 0, 0] == 0


def _tree(root):
    """class_a: 2 images (one upper-case .JPG), class_b: 1 image in a subfolder, plus non-images."""
    (root / "class_a").mkdir(parents=True)
    (root / "class_b" / "deeper").mkdir(parents=True)
    (root / ".ipynb_checkpoints").mkdir()
    paths = [
        save(root / "class_a" / "x.png", RGB),
        save(root / "class_a" / "Y.JPG", RGB),
        save(root / "class_b" / "deeper" / "z.bmp", RGB),
    ]
    save(root / ".ipynb_checkpoints" / "x-checkpoint.png", RGB)
    save(root / "class_a" / "._x.png", RGB)
    (root / "class_a" / "notes.txt").write_text("text")
    return sorted(str(path) for path in paths)


def test_list_images_recursive_sorted_and_skipping_hidden(tmp_path):
    expected = _tree(tmp_path)
    assert list_images(tmp_path) == expected
    assert list_images(tmp_path / "class_a", recursive=False) == expected[:2]
    assert list_images(tmp_path / "class_a" / "x.png") == [str(tmp_path / "class_a" / "x.png")]


def test_list_images_errors(tmp_path):
    _tree(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no images \(jpg, jpeg, png, .*\) in folder '.*empty'"):
        list_images(tmp_path / "empty")
    with pytest.raises(InputError, match=r"no images"):
        list_images(tmp_path / "class_b", recursive=False)
    with pytest.raises(InputError, match="not an image file"):
        list_images(tmp_path / "class_a" / "notes.txt")
    with pytest.raises(MissingFileError, match="missing"):
        list_images(tmp_path / "missing")


def test_class_folders_labels_and_empty_class(tmp_path):
    _tree(tmp_path)
    (tmp_path / "class_c").mkdir()
    with pytest.warns(UserWarning, match="class_c' has no images; class 2"):
        paths, labels, names = class_folders(tmp_path)
    assert names == ["class_a", "class_b", "class_c"]
    assert [p.split("/")[-2] for p in paths] == ["class_a", "class_a", "deeper"]
    assert labels.tolist() == [0, 0, 1] and labels.dtype == np.int64


def test_class_folders_without_subfolders(tmp_path):
    save(tmp_path / "flat.png", RGB)
    with pytest.raises(InputError, match="no class subfolders"):
        class_folders(tmp_path)
    with pytest.raises(MissingFileError):
        class_folders(tmp_path / "missing")


def _mixed_folder(root):
    """Two good images, a truncated PNG and a text file named .jpg."""
    good = [save(root / "a.png", RGB), save(root / "c.bmp", RGB[::-1])]
    (root / "b.png").write_bytes((root / "a.png").read_bytes()[:40])
    (root / "d.jpg").write_text("hello")
    return [str(path) for path in good]


def test_load_images_skips_bad_files_and_names_them(tmp_path):
    good = _mixed_folder(tmp_path)
    with pytest.warns(UserWarning) as caught:
        result = load_images(tmp_path)
    assert result.paths == good
    assert result.images.shape == (2, 6, 5, 3) and result.images.dtype == np.float32
    np.testing.assert_array_equal(result.images[1], RGB[::-1])
    assert [path.rsplit("/", 1)[1] for path, _ in result.skipped] == ["b.png", "d.jpg"]
    messages = " ".join(str(warning.message) for warning in caught)
    assert "b.png" in messages and "d.jpg" in messages


def test_load_images_sizes_must_agree(tmp_path):
    paths = [save(tmp_path / "a.png", RGB), save(tmp_path / "b.png", RGB[:4])]
    with pytest.raises(InputError, match=r"differ in size.*pass size=\(height, width\)"):
        load_images(paths)
    assert load_images(paths, size=(8, 9)).images.shape == (2, 8, 9, 3)
    assert load_images(paths[:1], shortest_side=10).images.shape == (1, 12, 10, 3)


def test_load_images_all_bad_or_none(tmp_path):
    (tmp_path / "d.jpg").write_text("hello")
    with pytest.warns(UserWarning), pytest.raises(InputError, match="none of the 1 images"):
        load_images([tmp_path / "d.jpg"])
    with pytest.raises(InputError, match="no image paths"):
        load_images([])


def test_iter_batches_is_lazy_and_matches_load_images(tmp_path):
    paths = [save(tmp_path / f"{i}.png", RNG.integers(0, 256, (5, 4, 3), dtype=np.uint8)) for i in range(5)]
    with pytest.raises(InputError, match="batch_size"):
        iter_batches(paths, 0)  # checked at the call, not at the first batch
    batches = iter_batches(paths + [tmp_path / "gone.png", tmp_path / "gone2.png"], 2)
    paths[0].unlink()  # nothing has been read yet
    with pytest.warns(UserWarning) as caught:
        results = list(batches)
    assert [len(result.paths) for result in results] == [1, 2, 1]  # no batch for [gone2.png]
    assert [str(warning.message).split("/")[-1].split("'")[0] for warning in caught] == [
        "0.png",
        "gone.png",
        "gone2.png",
    ]
    np.testing.assert_array_equal(
        np.concatenate([result.images for result in results]), load_images(paths[1:]).images
    )


def test_check_images_conversions():
    single = RNG.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    checked = check_images(single)
    assert checked.shape == (1, 4, 5, 3) and checked.dtype == np.float32
    np.testing.assert_array_equal(checked[0], single)
    batch = np.zeros((2, 4, 5, 1), np.float32)
    assert check_images(batch) is batch
    assert check_images(np.zeros((1, 2, 2, 3), np.int64)).dtype == np.float32


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.zeros((2, 2, 3), bool), "dtype bool"),
        (np.zeros((1, 2, 2, 3), complex), "dtype complex"),
        (np.array([[[["a"]]]]), "dtype <U1"),
        (np.zeros((4, 4)), r"shape \(4, 4\)"),
        (np.zeros((1, 1, 4, 4, 3)), "shape"),
        (np.zeros((0, 4, 4, 3)), "empty"),
        ([[[1, 2]], [[3]]], r"differ in size: image 0 has shape \(1, 2\), image 1 has \(1, 1\)"),
        ([[[[1, [2]]]]], "cannot be turned into an array"),
        (np.array([[[[np.nan, 1, np.inf]]]]), "NaN or Inf at 2 positions"),
        (np.full((1, 1, 1, 3), 1e300), "NaN or Inf at 3 positions"),
    ],
)
def test_check_images_refusals(value, message):
    with pytest.raises(InputError, match=message):
        check_images(value)


# Hypothesis: bytes from nowhere, and damaged real files, must give an image or one of our errors.
_VALID_FILES = {}
for _fmt, _ext in [("PNG", "png"), ("JPEG", "jpg"), ("GIF", "gif"), ("BMP", "bmp"), ("TIFF", "tif")]:
    _buffer = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (9, 7, 3), dtype=np.uint8)).save(_buffer, _fmt)
    _VALID_FILES[_ext] = _buffer.getvalue()


@st.composite
def _damaged_files(draw):
    extension = draw(st.sampled_from(sorted(_VALID_FILES)))
    data = bytearray(_VALID_FILES[extension])
    for _ in range(draw(st.integers(0, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return extension, bytes(data[: draw(st.integers(1, len(data)))])


def _read_or_our_error(path, data):
    path.write_bytes(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            image = read_image(path)
        except VizError:
            return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert all(str(path) in str(warning.message) for warning in caught)  # Pillow's, naming the file


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extension=st.sampled_from(images.IMAGE_EXTENSIONS), data=st.binary(max_size=300))
def test_random_bytes_give_an_image_or_our_error(tmp_path, extension, data):
    _read_or_our_error(tmp_path / f"x.{extension}", data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damaged=_damaged_files())
def test_damaged_files_give_an_image_or_our_error(tmp_path, damaged):
    extension, data = damaged
    _read_or_our_error(tmp_path / f"x.{extension}", data)


def _finite_in_float32(array):
    with np.errstate(over="ignore"):
        return np.isfinite(array.astype(np.float32)).all()


_DTYPES = st.sampled_from(
    ["uint8", "uint16", "int8", "int64", "float16", "float32", "float64", "bool", "complex64"]
)


@settings(max_examples=60, deadline=None)
@given(arrays(_DTYPES, array_shapes(min_dims=1, max_dims=5, min_side=0, max_side=3)))
def test_check_images_returns_float32_4d_or_input_error(array):
    try:
        checked = check_images(array)
    except InputError:
        refused_dtype = array.dtype.kind in "bc"
        assert refused_dtype or array.ndim not in (3, 4) or array.size == 0 or not _finite_in_float32(array)
        return
    assert checked.dtype == np.float32 and checked.ndim == 4 and np.isfinite(checked).all()
    np.testing.assert_array_equal(checked.reshape(array.shape), array.astype(np.float32))


def test_pictures_pass_through_load_and_iter_batches_with_their_names(tmp_path):
    import os
    from pathlib import Path

    from lib.dataflow.images import Picture

    a, b = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8), RNG.random((6, 5, 3)) * 255
    pictures = [Picture("grid_a.png", lambda: a), Picture("b.jpg", lambda: b)]
    file = save(tmp_path / "c.png", RGB)
    batches = list(iter_batches([pictures[0], file, pictures[1]], 2))
    assert [batch.paths for batch in batches] == [[pictures[0], str(file)], [pictures[1]]]
    assert batches[0].paths[0] is pictures[0]  # kept as given, not turned into a path
    np.testing.assert_array_equal(batches[0].images[0], a)
    np.testing.assert_allclose(batches[1].images[0], b.astype(np.float32))
    assert [Path(p).stem for p in pictures] == ["grid_a", "b"] and Path(pictures[1]).name == "b.jpg"
    assert os.fspath(pictures[0]) == "grid_a.png" and not os.path.exists("grid_a.png")
    assert load_images(pictures[0], size=3).paths == [pictures[0]]  # one Picture, not a folder
    same = Picture("x.png", read_image, ("x.png",))
    assert same == Picture("x.png", read_image, ("x.png",)) and len({same, same}) == 1


def test_bad_pictures_are_refused_or_skipped_by_name():
    import os

    from lib.dataflow.images import Picture

    for name in ("", "a/b.png", 3):
        with pytest.raises(InputError, match="Picture name"):
            Picture(name, lambda: RGB)
    with pytest.raises(InputError, match="unhashable args"):
        Picture("a.png", np.copy, ([1, 2],))
    flat = Picture("flat.png", lambda: RGB[..., 0])
    with pytest.warns(UserWarning, match=r"skipped: picture 'flat.png' loaded shape \(6, 5\)"):
        result = load_images([flat, Picture("ok.png", lambda: RGB)])
    assert [os.fspath(p) for p, _ in result.skipped] == ["flat.png"] and len(result.paths) == 1


def test_centre_crop_keeps_the_centre_at_the_target_aspect(tmp_path):
    from lib.dataflow.images import centre_crop

    image = np.zeros((20, 60, 3), np.uint8)
    image[:, 20:40] = (0, 200, 0)  # the centre square is green, the sides black
    path = save(tmp_path / "wide.png", image)
    cropped = load_images([path], size=(10, 10), crop=True).images[0]
    assert (cropped == (0, 200, 0)).all()
    assert load_images([path], size=(10, 10)).images[0].min() == 0  # squashed: the sides are still there
    assert load_images([path], size=(10, 30), crop=True).images.shape == (1, 10, 30, 3)
    tall = np.arange(7 * 3).reshape(7, 3)
    assert np.shares_memory(centre_crop(tall, 1.0), tall)
    np.testing.assert_array_equal(centre_crop(tall, 1.0), tall[2:5])  # odd margin: extra row at the bottom
    np.testing.assert_array_equal(centre_crop(tall, 3.0), tall[3:4])
    assert centre_crop(tall, 100.0).shape == (1, 3) and centre_crop(tall, 0.01).shape == (7, 1)
    for aspect in (0, -1.0, float("inf"), float("nan"), True, "1"):
        with pytest.raises(InputError, match="aspect="):
            centre_crop(tall, aspect)


def test_crop_needs_a_size():
    with pytest.raises(InputError, match=r"crop=True needs size=\(height, width\)"):
        load_images([], shortest_side=4, crop=True)
    with pytest.raises(InputError, match=r"crop=True needs size"):
        iter_batches([], 2, crop=True)
    with pytest.raises(InputError, match="crop='yes' is invalid"):
        iter_batches([], 2, size=4, crop="yes")


def test_iter_batches_without_size_never_mixes_sizes(tmp_path):
    shapes = [(6, 5), (6, 5), (4, 5), (6, 5), (4, 5), (4, 5), (4, 4)]
    paths = [save(tmp_path / f"{i}.png", RGB[:h, :w]) for i, (h, w) in enumerate(shapes)]
    paths.insert(1, tmp_path / "gone.png")
    with pytest.warns(UserWarning, match="gone.png"):
        batches = list(iter_batches(paths, 4))
    assert [batch.images.shape[:3] for batch in batches] == [
        (2, 6, 5),  # files 0-3: cut where the size changes
        (1, 4, 5),
        (1, 6, 5),  # files 4-7
        (2, 4, 5),
        (1, 4, 4),
    ]
    assert [p for batch in batches for p in batch.paths] == [str(p) for p in paths if p.exists()]
    assert [len(batch.skipped) for batch in batches] == [1, 0, 0, 0, 0]
    with pytest.raises(InputError, match="differ in size"):
        load_images([paths[0], paths[3]])  # one array cannot hold both sizes


# One exact case per kind of bad image input: the whole message, naming the value and the fix.


def test_a_path_that_does_not_exist(tmp_path):
    missing = tmp_path / "nowhere.png"
    for read in (read_image, list_images, load_images):
        with pytest.raises(MissingFileError, match=f"'{re.escape(str(missing))}' does not exist") as error:
            read(missing)
        assert isinstance(error.value, FileNotFoundError)


@pytest.mark.parametrize("content", [(), ("notes.txt", "._hidden.jpg")], ids=["empty", "no-images"])
def test_an_empty_folder_or_one_without_images(tmp_path, content):
    for name in content:
        (tmp_path / name).write_text("not an image")
    folder = re.escape(str(tmp_path))
    with pytest.raises(
        InputError, match=rf"no images \(jpg, jpeg, png, bmp, gif, tif, tiff\) in folder '{folder}'"
    ):
        load_images(tmp_path)


@pytest.mark.parametrize(("name", "file_format"), [("cut.jpg", "JPEG"), ("cut.png", "PNG")])
def test_a_truncated_jpeg_or_png(tmp_path, name, file_format):
    path = truncated(tmp_path / name, file_format)
    with pytest.raises(
        InputError, match=rf"cannot read image '{re.escape(str(path))}': .*runcated.*; re-save the file"
    ):
        read_image(path)


def test_a_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are notes")
    with pytest.raises(
        InputError,
        match=f"cannot read image '{re.escape(str(path))}': not an image format Pillow can identify",
    ):
        read_image(path)


@pytest.mark.parametrize(
    ("mode", "array", "expected"),
    [
        ("L", np.full((3, 4), 77, np.uint8), (77, 77, 77)),
        ("RGBA", np.tile(np.uint8([255, 0, 0, 128]), (3, 4, 1)), (255, 127, 127)),  # on white
        ("P", np.zeros((3, 4), np.uint8), (10, 20, 30)),  # palette index 0
        ("I;16", np.full((3, 4), 100 * 257, np.uint16), (100, 100, 100)),  # 16 bits scaled
    ],
)
def test_grayscale_rgba_palette_and_16_bit_pngs_are_converted(tmp_path, mode, array, expected):
    image = Image.fromarray(array) if mode != "P" else Image.fromarray(array, "P")
    if mode == "P":
        image.putpalette([10, 20, 30] + [0] * 765)
    image.save(tmp_path / "x.png")
    with Image.open(tmp_path / "x.png") as saved:
        assert saved.mode == mode
    rgb = read_image(tmp_path / "x.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (3, 4, 3)
    assert (rgb == expected).all()


def test_a_1x1_image_is_resized(tmp_path):
    path = save(tmp_path / "one.png", np.uint8([[[200, 100, 50]]]))
    result = load_images([path], size=64)
    assert result.images.shape == (1, 64, 64, 3) and (result.images == [200, 100, 50]).all()


@pytest.mark.parametrize(
    ("side", "message"),
    [(8000, "8000x8000 = 64 Mpx, above the 50 Mpx limit"), (20000, "400 Mpx, above the 50 Mpx limit")],
)
def test_a_huge_image_is_refused_from_its_header_with_the_limit_named(tmp_path, side, message):
    path = tmp_path / "huge.png"
    path.write_bytes(png_header(side, side))  # no pixel data: decoding would fail with "cannot read"
    start = time.perf_counter()
    with pytest.raises(InputError, match=f"image '{re.escape(str(path))}' is {message}; downscale it first"):
        read_image(path)
    assert time.perf_counter() - start < 1


def test_images_of_different_sizes_in_one_batch(tmp_path):
    paths = [save(tmp_path / "a.png", RNG.integers(0, 256, (6, 5, 3), np.uint8))]
    paths.append(save(tmp_path / "b.png", RNG.integers(0, 256, (4, 5, 3), np.uint8)))
    with pytest.raises(
        InputError,
        match=rf"'{re.escape(str(paths[1]))}' is 4x5 \(height x width\); pass size=\(height, width\)",
    ):
        load_images(paths)
    assert load_images(paths, size=8).images.shape == (2, 8, 8, 3)
    arrays_ = [np.zeros((8, 8, 3), np.float32), np.zeros((9, 8, 3), np.float32)]
    with pytest.raises(InputError, match=r"image 0 has shape \(8, 8, 3\), image 1 has \(9, 8, 3\)"):
        check_images(arrays_)


_HEADERS = [
    b"",
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff\xe0",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    png_header(4, 3)[:33],
]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("random_files")


@settings(max_examples=80, deadline=5000)
@given(
    header=st.sampled_from(_HEADERS),
    body=st.binary(max_size=200),
    extension=st.sampled_from(["png", "jpg", "gif", "bmp", "tif"]),
)
def test_random_bytes_after_an_image_header_give_an_image_or_one_line_of_our_error(
    scratch, header, body, extension
):
    path = scratch / f"random.{extension}"
    path.write_bytes(header + body)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's (re-issued) metadata warnings are fine
            image = read_image(path)
    except VizError as error:
        assert "\n" not in str(error)
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
