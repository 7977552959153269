"""The local runner's decoding helper process: the same pixels, reasons and warnings as decoding in line,
its shared slots reused without leftovers, and no helper outliving a runner that is killed."""

import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lib.batch import decoding, local, sources
from lib.batch.job import Spec
from lib.dataflow.images import load_images
from lib.dataflow.shapes import write_image_folder

ROOT = Path(__file__).resolve().parents[1]
SIZE, BATCH, SHARD = (12, 10), 4, 6


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """11 images: 9 generated PNGs, a corrupt PNG (third) and a JPEG with corrupt EXIF (last)."""
    root = tmp_path_factory.mktemp("images")
    write_image_folder(root, 9, seed=5)
    (root / "arrow" / "00001b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    exif = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\x05\x01\x12\x00\x03\xff\xff\xff\xff"
    pixels = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "zz_exif.jpg", exif=exif)
    return sources.open_source(root)


def started(size=SIZE, crop=True, slots=2):
    helper = decoding.DecodingProcess(size, crop, BATCH, slots)
    deadline = time.monotonic() + 60
    while not helper.ready():
        assert time.monotonic() < deadline, "the helper did not start within 60 s"
        time.sleep(0.01)
    return helper


def test_helper_batches_equal_decoding_in_line_bit_for_bit(source):
    spec = Spec(model="", weights=None, methods=(), size=SIZE, crop=True)
    stream = list(local._stream(source, [0, 1], SHARD, BATCH))  # 2 shards: 4 batches, 3 padded
    assert len(stream) == 4 and sum((indices == local.PAD).sum() for indices, _ in stream) == 5
    unreadable = []
    with started() as helper, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the EXIF warning, tested below
        for number, (indices, data) in enumerate(stream):
            helper.submit(number % 2, *local._request(source, indices, data))
            images, ok, reasons = helper.receive()
            want_images, want_ok, want_reasons = local.decode_batch(source, spec, indices, data)
            # the slot held another batch's images before: padding and unreadable images are zeros again
            assert np.array_equal(images, want_images), number
            assert np.array_equal(ok, want_ok) and list(reasons) == list(want_reasons), number
            unreadable += [reason.decode() for reason in reasons if reason]
    assert len(unreadable) == 1 and "cannot read image" in unreadable[0] and "00001b.png" in unreadable[0]


@pytest.mark.parametrize("size", [(64, 64), SIZE])
def test_pixels_equal_the_image_readers_at_and_off_the_files_size(source, size):
    paths = [item for item in source.items if not str(item).endswith("00001b.png")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decoded = [sources.decode(path, size, crop=True) for path in paths]
        want = load_images(paths, size=size, crop=True).images
    # at 64x64 the generated PNGs need no resize and come back as read (uint8); the 30x40 JPEG is resized
    kinds = {image.dtype.name for image in decoded}
    assert kinds == ({"uint8", "float32"} if size == (64, 64) else {"float32"})
    assert np.array_equal(np.stack(decoded).astype(np.float32), want)


def test_the_helper_imports_neither_pyarrow_nor_tensorflow():
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from lib.batch import decoding\n"
        "print(sorted({'pyarrow', 'tensorflow', 'keras', 'apache_beam'} & set(sys.modules)))\n"
    )  # any of them would add seconds and hundreds of MB to every job's start
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stderr[-2000:]
    assert found.stdout.strip() == "[]"


def minor_faults(pid):
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def test_the_helper_keeps_its_freed_heap_for_the_next_photo(tmp_path):
    """Without `HEAP_PAD`, glibc gave the heap's top back after each photo and faulted it in again."""
    rng = np.random.default_rng(1)
    paths = [tmp_path / f"{i}.jpg" for i in range(8)]
    for path in paths:
        Image.fromarray(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)).save(path, quality=90)
    with started(size=(227, 227), crop=False) as helper:
        helper.submit(0, paths[:BATCH], [path.name for path in paths[:BATCH]])  # imports, filter matrices
        assert helper.receive()[1].all()
        before = minor_faults(helper._process.pid)
        helper.submit(1, paths[BATCH:], [path.name for path in paths[BATCH:]])
        assert helper.receive()[1].all()
        faults = (minor_faults(helper._process.pid) - before) / BATCH
    assert faults < 300, f"{faults:.0f} page faults a photo"  # 1,550-1,800 without the pad, about 30 with it


def test_two_batches_in_flight_stay_apart_and_in_order(source):
    spec = Spec(model="", weights=None, methods=(), size=(7, 9), crop=False)
    stream = list(local._stream(source, [0, 1], SHARD, BATCH))
    with started(size=(7, 9), crop=False) as helper, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        helper.submit(0, *local._request(source, *stream[0]))
        helper.submit(1, *local._request(source, *stream[1]))
        first, second = helper.receive()[0].copy(), helper.receive()[0].copy()
    assert np.array_equal(first, local.decode_batch(source, spec, *stream[0])[0])
    assert np.array_equal(second, local.decode_batch(source, spec, *stream[1])[0])


def test_pillows_warnings_reach_the_runner_with_the_files_name(source):
    exif = next(i for i, name in enumerate(source.names) if name.endswith("zz_exif.jpg"))
    with pytest.warns(UserWarning) as in_line:
        sources.decode(source.items[exif], SIZE, True, source.names[exif])
    with started() as helper, pytest.warns(UserWarning) as forwarded:
        helper.submit(0, [source.items[exif]], [source.names[exif]])
        _, ok, _ = helper.receive()
    assert ok.tolist() == [True]
    assert [str(w.message) for w in forwarded] == [str(w.message) for w in in_line]
    assert "zz_exif.jpg" in str(forwarded[0].message) and "EXIF" in str(forwarded[0].message)


def test_a_helper_that_dies_is_a_clear_error(source):
    helper = started()
    helper._process.kill()
    with pytest.raises(RuntimeError, match="decoding process ended with exit status"):
        helper.submit(0, [source.items[0]], [source.names[0]])
        helper.receive()
    helper.close()


def ended(pid):
    """Whether `pid` is gone or a zombie (a killed runner's orphan is reaped only by init)."""
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, IndexError):
        return True


def test_a_runner_killed_mid_job_leaves_no_helper_behind(source):
    code = (
        "import os, signal, sys, time\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from lib.batch import decoding\n"
        "helper = decoding.DecodingProcess((12, 10), True, 4)\n"
        "while not helper.ready(): time.sleep(0.01)\n"
        "print(helper._process.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    runner = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert runner.returncode == -signal.SIGKILL, runner.stderr[-2000:]
    pid = int(runner.stdout.split()[0])
    deadline = time.monotonic() + 20
    while not ended(pid):
        assert time.monotonic() < deadline, f"helper {pid} still runs 20 s after its runner was killed"
        time.sleep(0.05)


def test_in_memory_pictures_are_decoded_in_line(source):
    assert local._helper_can_decode(source)
    assert not local._helper_can_decode(sources.open_source("photos"))  # made by code in this process
