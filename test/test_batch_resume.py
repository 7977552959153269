"""Resume: a job killed (SIGKILL at a chosen shard, from a hook or from outside) or interrupted (Ctrl-C)
and rerun writes only the missing shards, and ends with the files of one uninterrupted run; no shard
is ever seen partial."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import lib.batch
from lib.batch import shards
from lib.dataflow.shapes import write_image_folder

ROOT = Path(__file__).resolve().parents[1]
IMAGES, SHARD, BATCH = 48, 8, 4
COUNT = IMAGES // SHARD
OPTIONS = dict(shard_size=SHARD, batch_size=BATCH, dtype="uint8", top_k=2)
JOB = ("shapes_vgg", "grad_cam,saliency")

CHILD = """
import os, signal, sys
sys.path.insert(0, {root!r})
import lib
lib.start_tensorflow()
import lib.batch

def hook(shard):
    if shard == {kill_at}:
        os.kill(os.getpid(), signal.SIGKILL)

lib.batch.run({images!r}, *{job!r}, {out!r}, on_shard=hook, **{options!r})
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    write_image_folder(root, IMAGES, seed=5)
    return root


@pytest.fixture(scope="module")
def uninterrupted(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    lib.batch.run(folder, *JOB, out, **OPTIONS)
    return out


def child(folder, out, kill_at=-1):
    code = CHILD.format(
        root=str(ROOT), kill_at=kill_at, images=str(folder), job=JOB, out=str(out), options=OPTIONS
    )
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stderr=subprocess.PIPE)


def shard_files(out):
    return sorted(path.name for path in Path(out).glob("shard-*.parquet"))


def assert_same_files(out, reference):
    """Every shard equal, table and metadata, and the same manifest."""
    assert shard_files(out) == shard_files(reference) == [shards.name(i, COUNT) for i in range(COUNT)]
    for name in shard_files(reference):
        got, want = pq.read_table(out / name), pq.read_table(reference / name)
        assert got.equals(want) and got.schema.metadata == want.schema.metadata, name
    assert json.loads((out / "manifest.json").read_text()) == json.loads(
        (reference / "manifest.json").read_text()
    )
    assert not list(Path(out).glob(".tmp-*")), "a temporary file was left behind"


def check_complete(path):
    """A shard as a reader first sees it: whole, with every row of its range."""
    table = pq.read_table(path)
    assert table.num_rows == SHARD, path


def test_killed_at_a_chosen_shard_then_rerun_equals_one_uninterrupted_run(folder, tmp_path, uninterrupted):
    process = child(folder, tmp_path, kill_at=1)
    _, err = process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL, err.decode()[-2000:]
    written = shard_files(tmp_path)
    assert 0 < len(written) < COUNT and (tmp_path / "job.json").exists()
    assert not (tmp_path / "manifest.json").exists()
    for name in written:
        check_complete(tmp_path / name)
    summary = lib.batch.run(folder, *JOB, tmp_path, **OPTIONS)
    assert summary.written == COUNT - len(written) and summary.explained == (COUNT - len(written)) * SHARD
    assert_same_files(tmp_path, uninterrupted)
    again = lib.batch.run(folder, *JOB, tmp_path, **OPTIONS)
    assert again.written == 0 and again.explained == 0


@pytest.mark.slow
def test_killed_from_outside_while_watched_no_shard_is_ever_partial(folder, tmp_path, uninterrupted):
    """The test polls the folder while the job runs and reads each shard the moment it appears."""
    process, seen = child(folder, tmp_path), set()
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        for name in set(shard_files(tmp_path)) - seen:
            check_complete(tmp_path / name)
            seen.add(name)
        if len(seen) >= 3:
            os.kill(process.pid, signal.SIGKILL)  # mid-run: the next shard may be half-written
            break
        time.sleep(0.002)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL and 3 <= len(shard_files(tmp_path)) < COUNT
    for name in shard_files(tmp_path):
        check_complete(tmp_path / name)
    lib.batch.run(folder, *JOB, tmp_path, **OPTIONS)
    assert_same_files(tmp_path, uninterrupted)


def test_ctrl_c_then_rerun_equals_one_uninterrupted_run(folder, tmp_path, uninterrupted):
    def interrupt(shard):
        if shard == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        lib.batch.run(folder, *JOB, tmp_path, on_shard=interrupt, **OPTIONS)
    assert shard_files(tmp_path) == [shards.name(i, COUNT) for i in range(3)]
    assert not list(tmp_path.glob(".tmp-*"))
    resumed = []
    summary = lib.batch.run(folder, *JOB, tmp_path, on_shard=resumed.append, **OPTIONS)
    assert resumed == [3, 4, 5] and summary.written == 3
    assert_same_files(tmp_path, uninterrupted)


def test_a_missing_shard_in_the_middle_is_the_only_one_rewritten(folder, tmp_path, uninterrupted):
    lib.batch.run(folder, *JOB, tmp_path, **OPTIONS)
    (tmp_path / shards.name(2, COUNT)).unlink()
    before = {name: (tmp_path / name).stat().st_mtime_ns for name in shard_files(tmp_path)}
    written = []
    lib.batch.run(folder, *JOB, tmp_path, on_shard=written.append, **OPTIONS)
    assert written == [2]
    assert all((tmp_path / name).stat().st_mtime_ns == mtime for name, mtime in before.items())
    assert_same_files(tmp_path, uninterrupted)
