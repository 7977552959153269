"""Decoding and writing in the CPU time the model leaves idle, when they fit there.

The local runner's model keeps 1.83-1.86 of these 2 cores busy. Its decoding helper and its shard
writer, at the normal priority, take cores from the model's kernels whenever they run, and
TensorFlow, which splits an operation evenly over its threads, then waits for the thread whose core
was taken. In Linux's idle scheduling class (`SCHED_IDLE`) they run only on a core nothing else
wants, in the gaps the model leaves: SqueezeNet's Grad-CAM runner went from 0.81x to 0.86x of the
in-memory loop, `shapes_vgg`'s from 0.70x to 0.77x (means of 10 and 5 interleaved rounds,
doc/batch.md).

That pays only while the gaps can hold the work. A job whose decoding outgrows them (large photos
before a small model) would then decode only while the model waits for it, one thing after the
other, where the normal priority shares the cores. So the runner measures the first shards (the
model's CPU use with `ModelLoad`, the helper's and writer's CPU time) and moves them to the idle
class only if their work per image fits in the core time the model leaves idle per image. The move
is one way: an unprivileged process cannot leave the idle class.
"""

from __future__ import annotations

import contextlib
import os
import time


def idle_priority(thread_id: int = 0) -> bool:
    """Puts a thread (its native id; 0: the calling thread) in the idle class.

    Returns False where there is none (not Linux) or the system refuses (a sandbox's seccomp filter):
    the work then goes on at the normal priority.
    """
    if not hasattr(os, "SCHED_IDLE"):
        return False
    try:
        os.sched_setscheduler(thread_id, os.SCHED_IDLE, os.sched_param(0))
    except OSError:
        return False
    return True


def in_idle_class(thread_id: int = 0) -> bool:
    """Whether a thread (its native id; 0: the calling thread) is in the idle class."""
    return hasattr(os, "SCHED_IDLE") and os.sched_getscheduler(thread_id) == os.SCHED_IDLE


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class ModelLoad:
    """The model's wall time, CPU time and images, from the batches timed with `batch()`."""

    def __init__(self):
        self.wall = self.cpu = 0.0
        self.images = self.batches = 0

    @contextlib.contextmanager
    def batch(self, images: int):
        """Times one batch's explaining of `images` images (the first batch, which may trace, is not kept)."""
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.batches += 1
        if self.batches > 1:
            self.wall += time.perf_counter() - wall
            self.cpu += time.process_time() - cpu
            self.images += images

    def idle_per_image(self, cores: int) -> float | None:
        """Core seconds the model leaves idle per image it explains; None before a batch is kept.

        The CPU time is this process's, so it counts the writer's work while it overlaps: the idle
        time errs low, towards the normal priority.
        """
        if not (self.images and self.wall > 0):
            return None
        return max(0.0, cores - self.cpu / self.wall) * self.wall / self.images
