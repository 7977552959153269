"""Decoding a job's images in a helper process, one batch ahead of the model.

The local runner's model fills the CPU cores with its kernels between short stretches of Python.
Decoding on threads of the same process (tf.data's parallel map, or a Python thread) took cores from
those kernels and held the GIL that the model's Python needs: 0.63-0.78x the in-memory method loop on
SqueezeNet, against 0.84-0.91x decoding in line between batches. A process has its own GIL and is
scheduled by the OS into the gaps between the model's kernels: a little ahead of decoding in line in
the same rounds on these 2 cores (doc/batch.md), and the whole decoding overlapped where the model
leaves cores free.

The images go back through shared memory (a Linux `memfd`, `slots` batches large), so the model's
process copies nothing; only the requests (paths, or the encoded bytes of TFRecord images) and the
replies (which images were readable, and why not) travel through pipes. The helper imports no
TensorFlow, ignores Ctrl-C (the runner stops it), and ends when its request pipe closes, so it never
outlives a runner that was killed. Where `os.memfd_create` is missing (not Linux), `available()` is
False and the runner decodes in line.

The helper is `python -c HELPER CONFIG`, which runs `serve(CONFIG)`.
"""

from __future__ import annotations

import json
import mmap
import os
import signal
import subprocess
import sys
import time
import warnings
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from lib.batch import background, sources
from lib.errors import InputError, MissingFileError

ROOT = Path(__file__).resolve().parents[2]  # the folder holding `lib`, for the helper's imports
READY = b"ready"  # the helper's first message
HELPER = "import json, sys; from lib.batch import decoding; decoding.serve(json.loads(sys.argv[1]))"
# Bytes of freed memory glibc keeps at the top of the helper's heap (its MALLOC_TOP_PAD_). By default
# it gave the heap's top back to the kernel after each photo and took it back, zero-filled, for the
# next: a 500x375 JPEG resized to 227x227 took 1,550 page faults and 6.9 ms of CPU, against 28 and
# 3.0 ms with this pad (a helper's whole memory stays under the pad plus one photo's arrays).
HEAP_PAD = 64 << 20


def available() -> bool:
    return hasattr(os, "memfd_create")


class DecodingProcess:
    """A helper process that decodes batches into `slots` shared buffers, in the order asked.

    It takes a few tenths of a second to start (Python and its imports); `ready()` says when it has.
    `submit(slot, items, names)` asks for one batch (a path or encoded bytes per image, None for an
    image the caller fills itself); `receive()` waits for the oldest one asked and gives (its slot's
    images float32 (B, H, W, 3), ok (B,), reasons (B,) bytes). A slot's images are valid until that
    slot is submitted again. `cpu_seconds` and `images` add up the helper's CPU time and the images
    it decoded in the batches received after the first (which imports the decoders).
    `to_idle_class()` moves it to the idle scheduling class (`background`). Use as a context
    manager: leaving it stops the helper.

    Args:
        size: (height, width) the images are resized to; crop: centre-crop first (`sources.decode`).
        batch_size: images per batch; slots: batches in flight at once.
    """

    def __init__(self, size, crop, batch_size, slots=2):
        shape = (slots, batch_size, *size, 3)
        nbytes = int(np.prod(shape)) * 4
        memory = os.memfd_create("lib-batch-decoded")
        try:
            os.ftruncate(memory, nbytes)
            self._buffer = mmap.mmap(memory, nbytes)
            self._process, self._requests, self._replies = _start(memory, shape, crop)
        finally:
            os.close(memory)  # the mapping and the helper keep it
        self.slots = np.frombuffer(self._buffer, np.float32).reshape(shape)
        self._pending, self._ready = [], False
        self.cpu_seconds, self.images, self._received = 0.0, 0, 0

    def ready(self) -> bool:
        """Whether the helper has started (imported its modules, mapped the buffers); never waits."""
        if not self._ready and self._replies.poll():
            try:
                self._ready = self._replies.recv_bytes() == READY
            except EOFError:
                raise RuntimeError(self._ended()) from None
        return self._ready

    def submit(self, slot: int, items: list, names: list[str]) -> None:
        kinds = ["bytes" if isinstance(item, bytes) else None if item is None else "path" for item in items]
        paths = [os.fspath(item) if kind == "path" else None for item, kind in zip(items, kinds, strict=True)]
        header = {"slot": slot, "kinds": kinds, "paths": paths, "names": names}
        self._send(json.dumps(header).encode())
        for item in items:
            if isinstance(item, bytes):
                self._send(item)
        self._pending.append((slot, len(items) - kinds.count(None)))

    def receive(self):
        slot, images = self._pending.pop(0)
        try:
            reply = json.loads(self._replies.recv_bytes())
        except EOFError:
            raise RuntimeError(self._ended()) from None
        if "error" in reply:
            raise RuntimeError(f"the decoding process failed: {reply['error']}")
        self._received += 1
        if self._received > 1:
            self.cpu_seconds += reply["cpu"]
            self.images += images
        for module, name, message in reply["warnings"]:
            warnings.warn(message, _warning_category(module, name), stacklevel=2)
        return (self.slots[slot], *as_arrays(reply["ok"], reply["reasons"]))

    def to_idle_class(self) -> None:
        """From its next request on, the helper decodes only on cores nothing else wants (one way)."""
        self._send(json.dumps({"idle": True}).encode())

    def _send(self, data: bytes) -> None:
        try:
            self._requests.send_bytes(data)
        except (BrokenPipeError, ConnectionResetError):
            raise RuntimeError(self._ended()) from None

    def _ended(self) -> str:
        code = self._process.wait()
        return f"the decoding process ended with exit status {code}; its error is printed above"

    def close(self) -> None:
        """Ends the helper: its request pipe closes, it returns; killed if it has not after 10 s."""
        self._requests.close()
        self._replies.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _start(memory, shape, crop):
    """(Popen, request Connection, reply Connection) of a new helper that maps `memory`."""
    request_read, request_write = os.pipe()
    reply_read, reply_write = os.pipe()
    fds = (memory, request_read, reply_write)
    config = json.dumps({"fds": fds, "shape": shape, "crop": crop})
    environment = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        OPENBLAS_NUM_THREADS="1",  # it decodes on one core; numpy's BLAS threads only cost their start
    )
    environment.setdefault("MALLOC_TOP_PAD_", str(HEAP_PAD))
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", HELPER, config],
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
            env=environment,
        )
    finally:
        os.close(request_read)
        os.close(reply_write)
    return process, Connection(request_write, readable=False), Connection(reply_read, writable=False)


def _warning_category(module: str, name: str) -> type[Warning]:
    """The class of a warning the helper caught (UserWarning if this process has not imported it)."""
    category = getattr(sys.modules.get(module), name, None)
    return category if isinstance(category, type) and issubclass(category, Warning) else UserWarning


def serve(config: dict) -> None:
    """The helper's loop: decode each requested batch into its slot, reply, until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the runner, which stops this process
    memory, request_read, reply_write = config["fds"]
    shape = tuple(config["shape"])
    buffer = mmap.mmap(memory, int(np.prod(shape)) * 4)
    slots = np.frombuffer(buffer, np.float32).reshape(shape)
    requests, replies = Connection(request_read, writable=False), Connection(reply_write, readable=False)
    replies.send_bytes(READY)
    while True:
        try:
            header = json.loads(requests.recv_bytes())
            if header.get("idle"):
                background.idle_priority()
                continue
            items = [
                requests.recv_bytes() if kind == "bytes" else path
                for kind, path in zip(header["kinds"], header["paths"], strict=True)
            ]
        except EOFError:  # the runner closed the pipe, or ended
            return
        try:
            reply = _decode_into(slots[header["slot"]], items, header["names"], shape[2:4], config["crop"])
        except Exception as err:  # a bug, not a bad image: the runner raises it
            reply = {"error": f"{type(err).__name__}: {err}"}
        try:
            replies.send_bytes(json.dumps(reply).encode())
        except (BrokenPipeError, ConnectionResetError):  # the runner has gone (stopped, or killed)
            return


def decode_into(images, items, names, size, crop) -> tuple[list[bool], list[str]]:
    """Decodes `items` (paths, Pictures or encoded bytes; None for padding) into `images` (B, H, W, 3).

    Returns (ok, reasons) per image; padding and unreadable images are zeros with ok False, the
    latter with their reader's one-line message.
    """
    ok, reasons = [False] * len(items), [""] * len(items)
    for i, (item, name) in enumerate(zip(items, names, strict=True)):
        if item is None:
            images[i] = 0.0  # a reused slot holds another batch's images
            continue
        try:
            images[i] = sources.decode(item, size, crop, name)
            ok[i] = True
        except (InputError, MissingFileError) as err:
            images[i] = 0.0
            reasons[i] = str(err)
    return ok, reasons


def as_arrays(ok, reasons):
    """ok as bool (B,) and reasons as bytes (B,) arrays, as the runners keep them."""
    return np.array(ok, bool), np.array([reason.encode() for reason in reasons], object)


def _decode_into(images, items, names, size, crop) -> dict:
    """The helper's reply for one batch: `decode_into`'s results, the warnings it raised, its CPU time."""
    started = time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ok, reasons = decode_into(images, items, names, size, crop)
    found = [[w.category.__module__, w.category.__qualname__, str(w.message)] for w in caught]
    return {"ok": ok, "reasons": reasons, "warnings": found, "cpu": time.process_time() - started}
