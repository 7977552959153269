"""lib/atomic.py: a write lands whole or not at all, for the helper and for the writers built on it."""

import os
import stat

import numpy as np
import pytest

from lib import atomic, plot
from lib.atomic import atomic_path, write_atomically
from lib.dataflow import shapes


def test_atomic_path_keeps_the_suffix_renames_on_success_and_cleans_up_on_failure(tmp_path):
    target = tmp_path / "sub" / "state.npz"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith("state.npz") and tmp != target
        np.savez(tmp, a=np.arange(3))  # np.savez would append .npz to a name without it
    np.testing.assert_array_equal(np.load(target)["a"], np.arange(3))
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("boom")
    np.testing.assert_array_equal(np.load(target)["a"], np.arange(3))
    assert [p.name for p in target.parent.iterdir()] == ["state.npz"]


def test_write_atomically_writes_beside_the_target_under_a_hidden_name_then_renames(tmp_path):
    target = tmp_path / "new" / "table.csv"
    seen = []

    def write(file):
        seen.extend(os.listdir(target.parent))  # while writing: only the temporary file exists
        file.write(b"a,b\n")

    assert write_atomically(target, write) == target
    assert len(seen) == 1 and seen[0].startswith(".") and seen[0].endswith("table.csv")
    assert target.read_bytes() == b"a,b\n" and os.listdir(target.parent) == ["table.csv"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # like any new file, not mkstemp's 0600


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
@pytest.mark.parametrize("old", [None, b"old content"], ids=["new-file", "existing-file"])
def test_a_failing_write_leaves_the_old_file_or_none_and_no_temporary_file(tmp_path, error, old):
    target = tmp_path / "maps.npy"
    if old is not None:
        target.write_bytes(old)

    def write(file):
        file.write(b"\x93NUMPY half a file")
        raise error

    with pytest.raises(type(error)):
        write_atomically(target, write)
    assert os.listdir(tmp_path) == ([] if old is None else ["maps.npy"])
    assert old is None or target.read_bytes() == old


def test_a_failing_rename_leaves_no_temporary_file(tmp_path, monkeypatch):
    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_atomically(tmp_path / "a.txt", lambda file: file.write(b"x"))
    assert os.listdir(tmp_path) == []


def test_plot_keeps_atomic_path_under_its_old_name():
    assert plot.atomic_path is atomic_path


def test_write_image_folder_interrupted_leaves_only_whole_images(tmp_path, monkeypatch):
    written = []
    imwrite = shapes.iio.imwrite

    def crash_on_third(file, image, **kwargs):
        if len(written) == 2:
            file.write(b"\x89PNG\r\n\x1a\nhalf")
            raise KeyboardInterrupt
        written.append(1)
        return imwrite(file, image, **kwargs)

    monkeypatch.setattr(shapes.iio, "imwrite", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        shapes.write_image_folder(tmp_path, 5, seed=0, size=32)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 2 and not [p for p in files if p.name.startswith(".")]
    for path in files:
        assert shapes.iio.imread(path).shape == (32, 32, 3)
