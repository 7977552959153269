"""The local runner: batches decoded a batch ahead by a helper process, explained; a thread writes shards.

Decoding runs in a helper process (`decoding`), not on threads of this one: tf.data's parallel map,
as this runner first did, and a Python thread both took cores from the model's kernels and held the
GIL that the model's Python needs (0.63-0.78x the in-memory method loop on SqueezeNet, doc/batch.md).
Where the helper cannot run (no `os.memfd_create`, or in-memory `Picture`s among the images), each
batch is decoded in line, between the model's batches. Once two shards are written, if the helper's
and the writer's work per image fits in the core time the model leaves idle, both move to Linux's
idle scheduling class, so they stop taking cores from the model (`Scheduling`, `background`).

Memory is bounded: two batches are decoded at a time, one shard is gathered while the previous one
is written, and nothing else is kept. Batches never straddle shards (each shard's images are padded to
whole batches before decoding, and the padding is dropped after), so a shard's content does not
depend on which shards ran before it in the same process: a resumed run writes the same bytes of maps
as an uninterrupted one.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import itertools
import math
import time

import numpy as np

from lib.batch import background, decoding, shards
from lib.dataflow.images import Picture

PAD = -1  # index of the padding that ends a shard on a whole batch
SLOTS = 2  # batches the helper process holds: the one being explained and the one being decoded


def shard_range(shard: int, shard_size: int, total: int) -> tuple[int, int]:
    start = shard * shard_size
    return start, min(start + shard_size, total)


def _stream(source, pending, shard_size, batch_size):
    """(indices, encoded bytes) of whole batches, shard by shard; a shard's last batch padded with PAD.

    The bytes are those of TFRecord images, empty for files (read by index when decoded).
    """
    for shard in pending:
        start, stop = shard_range(shard, shard_size, len(source))
        if source.records is None:
            elements = ((index, b"") for index in range(start, stop))
        else:
            elements = source.encoded(start, stop)
        batch = []
        for element in elements:
            batch.append(element)
            if len(batch) == batch_size:
                yield _columns(batch)
                batch = []
        if batch:
            yield _columns(batch + [(PAD, b"")] * (batch_size - len(batch)))


def _columns(batch):
    indices, data = zip(*batch, strict=True)
    return np.array(indices, np.int64), np.array(data, object)


def decode_batch(source, spec, indices, data):
    """(images float32 (B, H, W, 3), ok (B,), reasons (B,) bytes) of a batch of `_stream`, in line.

    Padding and unreadable images get zeros and ok False; the latter their reader's message.
    """
    images = np.zeros((len(indices), *spec.size, 3), np.float32)
    ok, reasons = decoding.decode_into(images, *_request(source, indices, data), spec.size, spec.crop)
    return (images, *decoding.as_arrays(ok, reasons))


def batches(source, pending, spec, shard_size, batch_size, scheduling=None):
    """(indices, images, ok, reasons) of the pending shards' batches, as `decode_batch` gives them.

    A helper process decodes the next batch while the caller explains this one (the first batches
    are decoded in line while it starts); a batch's images are valid until the next one is asked for.
    The helper is handed to `scheduling` (a `Scheduling`), if given, when it starts.
    """
    stream = _stream(source, pending, shard_size, batch_size)
    if not _helper_can_decode(source):
        for indices, data in stream:
            yield (indices, *decode_batch(source, spec, indices, data))
        return
    with decoding.DecodingProcess(spec.size, spec.crop, batch_size, SLOTS) as helper:
        if scheduling is not None:
            scheduling.helper = helper
        for indices, data in stream:  # in line while the helper starts
            yield (indices, *decode_batch(source, spec, indices, data))
            if helper.ready():
                break
        asked, slots = collections.deque(), itertools.cycle(range(SLOTS))
        for indices, data in stream:
            if len(asked) == SLOTS:
                yield (asked.popleft(), *helper.receive())
            helper.submit(next(slots), *_request(source, indices, data))
            asked.append(indices)
        while asked:
            yield (asked.popleft(), *helper.receive())


def _helper_can_decode(source) -> bool:
    """Files and TFRecord bytes go to the helper; `Picture`s are made by code in this process."""
    items = source.items or ()
    return decoding.available() and not any(isinstance(item, Picture) for item in items)


def _request(source, indices, data):
    """(items, names) of a batch: a path, Picture or encoded bytes per image, None for padding."""
    real = [index != PAD for index in indices]
    if source.records is None:
        items = [source.items[i] if keep else None for i, keep in zip(indices, real, strict=True)]
    else:
        items = [item if keep else None for item, keep in zip(data, real, strict=True)]
    return items, [source.names[i] if keep else "" for i, keep in zip(indices, real, strict=True)]


def empty_block(maps: dict) -> dict:
    """A block of no rows, with the shapes of `maps` ({method: {"shape": (K, ...), "dtype": str}})."""
    k = next(iter(maps.values()))["shape"][0]
    block = {"index": np.zeros(0, np.int64), "path": []}
    for key in ("class_ids", "scores", "probabilities"):
        block[key] = np.zeros((0, k), np.int32 if key == "class_ids" else np.float32)
    for name, meta in maps.items():
        block[name] = np.zeros((0, *meta["shape"]), meta["dtype"])
        if meta["dtype"] == "uint8":
            block[f"{name}_lo"] = block[f"{name}_hi"] = np.zeros((0, k), np.float32)
    return block


def concat(blocks: list[dict], maps: dict) -> dict:
    """One block of rows from several, in order."""
    blocks = [empty_block(maps), *blocks]
    return {
        key: sum((b[key] for b in blocks), []) if key == "path" else np.concatenate([b[key] for b in blocks])
        for key in blocks[0]
    }


def shard_metadata(shard, start, stop, skipped, maps) -> dict:
    maps = {name: {**meta, "shape": list(meta["shape"])} for name, meta in maps.items()}
    return {"shard": shard, "start": start, "stop": stop, "skipped": skipped, "maps": maps}


class Scheduling:
    """Moves the decoding helper and the shard writer to the idle scheduling class if their work fits.

    Decided once, after the batch during which the second shard's writing ends, if the helper (when
    there is one) has counted a batch by then: see `background` for why and how. The first shard's
    writing is not measured: pyarrow's first write in a process took 1.8-2.3 ms an image of
    SqueezeNet's maps, the next ones 0.4-0.9 ms.

    Attributes:
        load: the model's `background.ModelLoad`; helper: the `DecodingProcess`, once started.
        idle: whether the helper and the writer were moved (None until decided).
    """

    def __init__(self, writer):
        self.load, self.writer, self.helper, self.idle = background.ModelLoad(), writer, None, None
        self._writes, self._measured = 0, None  # shards submitted; (future of `_write`, images)

    def watch(self, future, images: int) -> None:
        """Keeps the second shard's writing, whose CPU time is the writer's cost."""
        self._writes += 1
        if self._writes == 2:
            self._measured = (future, images)

    def settle(self) -> None:
        """Decides, if not yet decided and all it needs is measured; called after each batch."""
        if self.idle is not None or self._measured is None or not self._measured[0].done():
            return
        future, images = self._measured
        idle_time = self.load.idle_per_image(background.cores())
        counted = self.helper is None or self.helper.images
        if future.exception() is not None or not images or idle_time is None or not counted:
            return
        decoding = self.helper.cpu_seconds / self.helper.images if self.helper is not None else 0.0
        self.idle = decoding + future.result() / images <= idle_time
        if self.idle:
            if self.helper is not None:
                self.helper.to_idle_class()
            self.writer.submit(background.idle_priority)  # runs on the writer's thread, before the next shard


def run(plan, bar=None, on_shard=None) -> int:
    """Explains the images of the plan's pending shards and writes them; returns how many were explained."""
    source, worker, explained = plan.source, plan.worker, 0
    writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-writer")
    scheduling = Scheduling(writer)
    decoded = batches(source, plan.pending, worker.spec, plan.shard_size, plan.batch_size, scheduling)
    with contextlib.closing(decoded), writer:  # closing: the helper process stops on errors too
        writing = None
        for shard in plan.pending:
            start, stop = shard_range(shard, plan.shard_size, len(source))
            count = math.ceil((stop - start) / plan.batch_size)
            block, skipped = _shard_rows(worker, source, decoded, count, bar, scheduling)
            explained += len(block["index"])
            metadata = shard_metadata(shard, start, stop, skipped, worker.maps)
            _finish(writing, on_shard)  # one shard written while the next is explained
            write = (plan.shard_path(shard), block, worker.maps, metadata)
            writing = (shard, writer.submit(_write, *write))
            scheduling.watch(writing[1], len(block["index"]))
        _finish(writing, on_shard)
    return explained


def _write(*args) -> float:
    """Writes a shard (`shards.write`); returns the CPU seconds of this thread it took."""
    started = time.thread_time()
    shards.write(*args)
    return time.thread_time() - started


def _shard_rows(worker, source, decoded, count, bar, scheduling):
    """(block of rows, skipped [index, name, reason]) of the next `count` batches, one shard's."""
    blocks, skipped = [], []
    for _ in range(count):
        indices, images, ok, reasons = next(decoded)
        with scheduling.load.batch(int(np.count_nonzero(ok))):
            if ok.all():
                blocks.append(_explain(worker, source, indices, images))
            elif ok.any():
                blocks.append(_explain(worker, source, indices[ok], images[ok]))
        rows = zip(indices, ok, reasons, strict=True)
        skipped += [[int(i), source.names[i], r.decode()] for i, good, r in rows if not good and i != PAD]
        if bar is not None:
            bar.add(int(np.count_nonzero(indices != PAD)))
        scheduling.settle()
    return concat(blocks, worker.maps), skipped


def _explain(worker, source, indices, images):
    block = worker.explain(images, indices)
    block.update(index=indices.astype(np.int64), path=[source.names[i] for i in indices])
    return block


def _finish(writing, on_shard):
    """Waits for the shard being written (its error, if any, raises here), then calls `on_shard`."""
    if writing is None:
        return
    shard, future = writing
    future.result()
    if on_shard is not None:
        on_shard(shard)
