"""The local runner's background work in Linux's idle scheduling class: the helper moves when asked
and counts its CPU time, `ModelLoad` measures the core time a model leaves idle, and a job moves its
helper and writer there only when their work fits in that time."""

import os
import threading
import time

import numpy as np
import pytest

from lib.batch import background, decoding, job, local, shards, sources
from lib.batch.job import Spec
from lib.dataflow.shapes import write_image_folder

SIZE, BATCH, SHARD = (12, 10), 4, 8
needs_idle_class = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling classes")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    write_image_folder(root, 40, seed=8)
    return sources.open_source(root)


def spin(seconds):
    """Keeps one core busy for `seconds`."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


@needs_idle_class
def test_the_helper_moves_to_the_idle_class_and_counts_all_but_its_first_batch(source):
    stream = list(local._stream(source, [0, 1], SHARD, BATCH))  # 4 batches of 4 images
    with decoding.DecodingProcess(SIZE, False, BATCH, 2) as helper:
        while not helper.ready():
            time.sleep(0.01)
        pid = helper._process.pid
        for number, (indices, data) in enumerate(stream):
            if number == 2:
                assert os.sched_getscheduler(pid) == os.SCHED_OTHER
                helper.to_idle_class()
            helper.submit(number % 2, *local._request(source, indices, data))
            helper.receive()
        assert os.sched_getscheduler(pid) == os.SCHED_IDLE
        assert helper.images == 3 * BATCH and 0 < helper.cpu_seconds < 5


def test_a_refused_move_leaves_the_work_at_the_normal_priority(monkeypatch):
    def refuse(*args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    assert background.idle_priority() is False


def test_model_load_gives_the_idle_core_time_per_image():
    asleep, busy = background.ModelLoad(), background.ModelLoad()
    for seconds in (0.2, 0.05, 0.05):  # the first batch, as if tracing, is not kept
        with asleep.batch(10):
            time.sleep(seconds)
        with busy.batch(10):
            spin(seconds)
    assert asleep.batches == 3 and asleep.images == 20 and 0.1 <= asleep.wall < 0.2
    # asleep, both cores idle all along (less what other threads of this process took)
    assert asleep.idle_per_image(2) == pytest.approx(2 * asleep.wall / 20, rel=0.1)
    # spinning one core: the 0.1 s of CPU kept are taken from the core time
    assert 0.1 <= busy.cpu <= busy.wall * 1.05 + 0.01
    assert busy.idle_per_image(1) == pytest.approx(max(0, busy.wall - busy.cpu) / 20, abs=2e-4)


class Worker:
    """A stand-in for `job.Worker` whose model sleeps (leaving every core idle) or spins one core."""

    maps = {"m": {"shape": (1, *SIZE), "dtype": "float16", "kind": "class map", "layer": None}}
    spec = Spec(model="", weights=None, methods=(), size=SIZE)

    def __init__(self, busy):
        self.busy, self.calls = busy, 0

    def explain(self, images, indices):
        self.calls += 1
        if self.calls == 1:
            time.sleep(2)  # the untimed first batch: the helper starts meanwhile
        elif self.busy:
            spin(0.03)
        else:
            time.sleep(0.03)
        n = len(images)
        ids, scores = np.zeros((n, 1), np.int32), np.zeros((n, 1), np.float32)
        maps = images[:, None, ..., 0] / 255
        return {"class_ids": ids, "scores": scores, "probabilities": scores, "m": maps}


def run_job(source, tmp_path, monkeypatch, busy, write_seconds=None):
    """(the job's Scheduling, whether each shard was written in the idle class) of a fake-model job
    on one core; `write_seconds` per image replaces the writer's measured CPU time if given."""
    made, idle_writes = [], []

    class Spy(local.Scheduling):
        def __init__(self, writer):
            super().__init__(writer)
            made.append(self)

    real = shards.write

    def write(*args):
        idle_writes.append(background.in_idle_class(threading.get_native_id()))
        return real(*args)

    monkeypatch.setattr(local, "Scheduling", Spy)
    monkeypatch.setattr(shards, "write", write)
    if write_seconds is not None:
        measured = local._write

        def slow_write(*args):
            measured(*args)
            return write_seconds * SHARD

        monkeypatch.setattr(local, "_write", slow_write)
    monkeypatch.setattr(background, "cores", lambda: 1)
    count = len(source) // SHARD
    plan = job.Plan(source, Worker(busy), tmp_path, list(range(count)), SHARD, count, BATCH)
    assert local.run(plan) == len(source)
    return made[0], idle_writes


@needs_idle_class
def test_a_job_whose_model_leaves_the_core_idle_moves_its_helper_and_writer(source, tmp_path, monkeypatch):
    scheduling, idle_writes = run_job(source, tmp_path, monkeypatch, busy=False)
    assert scheduling.idle is True and scheduling.helper.images > 0
    assert idle_writes[:2] == [False, False] and idle_writes[-1] is True


def test_a_job_whose_writing_outgrows_the_idle_time_keeps_the_normal_class(source, tmp_path, monkeypatch):
    scheduling, idle_writes = run_job(source, tmp_path, monkeypatch, busy=True, write_seconds=0.5)
    assert scheduling.idle is False and not any(idle_writes)
