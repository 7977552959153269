"""What a batch job explains, and the explaining itself: the model, the methods, the classes, the maps.

`Spec` is everything a worker needs to rebuild the job (plain values, picklable, for Beam); `Worker`
holds the model and the methods and turns a batch of images into a block of shard rows. The local
runner and the Beam runner share both, so their shards are the same.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings

import numpy as np

from lib.batch import shards
from lib.errors import InputError

MAP_SIZES = ("image", "layer")


@dataclasses.dataclass(frozen=True)
class Spec:
    """A job's configuration in plain values.

    Attributes:
        model: a name of `lib.cli.model_names()` or the path of a saved Keras model.
        weights: `--weights` of an ImageNet model, or None.
        methods: (catalog name, resolved layer or None) per method, in column order.
        size: (height, width) images are resized to.
        top_k: classes per image when `class_ids` is None.
        class_ids: the same ids for every image, or None.
        dtype: how maps are stored, one of `shards.MAP_DTYPES`.
        map_size: "image" (the maps as the methods give them) or "layer" (class maps at the layer's size).
        crop: centre-crop to the aspect ratio of `size` before resizing.
    """

    model: str
    weights: str | None
    methods: tuple[tuple[str, str | None], ...]
    size: tuple[int, int]
    top_k: int = 1
    class_ids: tuple[int, ...] | None = None
    dtype: str = "float16"
    map_size: str = "image"
    crop: bool = False


def method_names(methods) -> list:
    """`methods` as a list: "grad_cam,cam" or ["grad_cam", "cam"] give names; Explainers stay objects."""
    if isinstance(methods, str):
        methods = [name.strip() for name in methods.split(",") if name.strip()]
    elif not isinstance(methods, (list, tuple)):
        methods = [methods]
    if not methods:
        raise InputError("no method given; pass one of lib.methods.catalog.names(), e.g. 'grad_cam'")
    return list(methods)


def catalog_name(explainer) -> str:
    """The catalog name of an Explainer object (its column name), or its class name in snake case."""
    from lib.methods import catalog

    cls = type(explainer)
    for key, entry in catalog.ENTRIES.items():
        if entry.cls == cls.__name__ and cls.__module__ == f"lib.methods.{entry.module}":
            return key
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in cls.__name__).lstrip("_")


def build_explainers(model, methods, layer):
    """{name: Explainer} of `methods` (names or objects) on `model`; a name takes `layer` if it has one.

    Raises:
        InputError: an unknown name, a name given twice, or an object that has no `explain()`.
    """
    from lib.methods import catalog

    built = {}
    for method in methods:
        if isinstance(method, str):
            with warnings.catch_warnings():  # layer=None takes the last spatial layer, said in the manifest
                warnings.filterwarnings("ignore", message="layer=None")
                explainer = catalog.build(method, model, layer)
            key = method
        else:
            explainer, key = method, catalog_name(method)
        if not callable(getattr(explainer, "explain", None)):
            raise InputError(
                f"method {key!r} has no explain(); pass a class-based method of lib.methods.catalog"
            )
        if key in built:
            raise InputError(f"method {key!r} is given twice; pass each method once")
        built[key] = explainer
    return built


def kind_of(name: str) -> str:
    """'class map', 'score map' or 'input space' of a catalog name; 'score map' for others (own range)."""
    from lib.methods import catalog

    return catalog.ENTRIES[name].kind if name in catalog.ENTRIES else "score map"


def weights_sha256(model) -> str:
    """sha256 of a model's weights: names, shapes, dtypes and values, in order."""
    digest = hashlib.sha256()
    for variable in model.weights:
        value = np.ascontiguousarray(variable.numpy())
        digest.update(f"{variable.path}:{value.dtype}:{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


class Worker:
    """The model and methods of a job; `explain(images)` gives a block of shard rows.

    Args:
        explainers: {name: Explainer} in column order, all on the same model.
        spec: the job's `Spec` (classes, dtype, map size).
        per_image_ids: int32 (N, K) class ids per image of the job (from a CSV), or None.
    """

    def __init__(self, explainers: dict, spec: Spec, per_image_ids: np.ndarray | None = None):
        self.explainers, self.spec, self.per_image_ids = explainers, spec, per_image_ids
        self.maps = {name: self._map_meta(name, e) for name, e in explainers.items()}
        self._order = self._compute_order()

    @property
    def k(self) -> int:
        if self.per_image_ids is not None:
            return self.per_image_ids.shape[1]
        return len(self.spec.class_ids) if self.spec.class_ids is not None else self.spec.top_k

    def _layer_size(self, explainer):
        layer_key = getattr(explainer, "layer_key", None)
        if self.spec.map_size != "layer" or layer_key is None:
            return None
        return tuple(int(side) for side in explainer.graph.shape_of(layer_key)[1:3])

    def _map_meta(self, name, explainer):
        kind = kind_of(name)
        height, width = self._layer_size(explainer) or self.spec.size
        shape = (self.k, height, width, 3) if kind == "input space" else (self.k, height, width)
        return {"shape": shape, "dtype": self.spec.dtype, "kind": kind, "layer": explainer.layer}

    def _compute_order(self):
        """Methods in the order they run, and the Grad-CAM taken from a Guided Grad-CAM pass.

        Guided Grad-CAM's `explain()` returns the Grad-CAM maps of its own pass (bit-equal to
        `GradCAM` at the same layer), so asking for both costs one pass.
        """
        names = list(self.explainers)
        shared = {}
        both = "grad_cam" in names and "guided_grad_cam" in names
        if both and self.explainers["grad_cam"].layer == self.explainers["guided_grad_cam"].layer:
            shared["grad_cam"] = "guided_grad_cam"
        return [n for n in names if n not in shared], shared

    def targets(self, indices):
        """The first method's class_ids for the images `indices` of the job."""
        from lib.methods.targets import TopK

        if self.per_image_ids is not None:
            return self.per_image_ids[np.asarray(indices)]
        return list(self.spec.class_ids) if self.spec.class_ids is not None else TopK(self.spec.top_k)

    def explain(self, images: np.ndarray, indices) -> dict:
        """A block of rows (without "index" and "path") for float32 images (n, H, W, 3)."""
        run, shared = self._order
        block, results, ids = {}, {}, self.targets(indices)
        for name in run:
            results[name] = self.explainers[name].explain(images, ids)
            if "class_ids" not in block:
                first = results[name]
                block.update(
                    class_ids=first.class_ids, scores=first.scores, probabilities=first.probabilities
                )
                ids = first.class_ids  # the others explain the same classes
        for name in self.explainers:
            maps = results[shared[name]].grad_cam if name in shared else results[name].maps
            self._store(block, name, self._resized(name, maps))
        return block

    def _resized(self, name, maps):
        """Class maps at the layer's size (area averages) when `map_size` is "layer"."""
        shape = self.maps[name]["shape"]
        if maps.shape[1:] == tuple(shape):
            return maps
        import tensorflow as tf

        n, k, height, width = maps.shape
        flat = tf.reshape(maps, (n * k, height, width, 1))
        small = tf.image.resize(flat, shape[1:3], method="area")
        return tf.reshape(small, (n, k, *shape[1:3])).numpy()

    def _store(self, block, name, maps):
        values, lo, hi = shards.quantise(maps, self.spec.dtype, self.maps[name]["kind"] == "class map")
        block[name] = values
        if lo is not None:
            block[f"{name}_lo"], block[f"{name}_hi"] = lo, hi


@dataclasses.dataclass
class Plan:
    """What a runner does: explain the `pending` shards of `source` with `worker` and write them to `out`.

    Attributes:
        source: the job's `sources.Source`; worker: its `Worker` (model, methods, spec, class ids).
        out: the job's folder; pending: the shard numbers to write, in order.
        shard_size, count: images per shard and shards in the job; batch_size: images per pass.
    """

    source: object
    worker: Worker
    out: object
    pending: list[int]
    shard_size: int
    count: int
    batch_size: int

    def shard_path(self, shard: int):
        return self.out / shards.name(shard, self.count)

    def explained(self) -> int:
        """Images explained in the pending shards, from their files' metadata."""
        metas = (shards.metadata(self.shard_path(shard)) for shard in self.pending)
        return sum(meta["stop"] - meta["start"] - len(meta["skipped"]) for meta in metas)


def load_worker(spec: Spec, per_image_ids=None) -> Worker:
    """A `Worker` rebuilt from its `Spec`: the model loaded, the methods made (in a Beam worker)."""
    from lib import cli

    model = cli.load_subject(spec.model, spec.weights).model
    explainers = {}
    for name, layer in spec.methods:
        explainers.update(build_explainers(model, [name], layer))
    return Worker(explainers, spec, per_image_ids)
