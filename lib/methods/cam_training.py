"""Build and fine-tune a CAM network (Zhou et al. 2016, https://arxiv.org/abs/1512.04150).

Zhou et al. make a classifier whose class maps can be read off its weights: keep a network's
convolutional part up to its last convolution (VGG's pool5 and fully connected layers go), add a
3x3 convolution, global average pooling and a dense classifier, then fine-tune on labelled images.
`cam_model` builds that network from any builder's convolutional base; `train_cam` fine-tunes it on
an image folder, writing checkpoints it resumes from and recording the maps of one image as it learns.

    model = cam_model(vgg19(include_top=False, weights="imagenet"), num_classes=10)
    history = train_cam(model, "photos/", epochs=5, out_dir="runs/cam", inference_image=image)
    CAM(model)(images)                # (N, 1, H, W): the trained model's maps
"""

import dataclasses
import json
import os
import sys
from pathlib import Path

import keras
import numpy as np

from lib.atomic import atomic_path
from lib.dataflow.images import class_folders, iter_batches, read_image, resize
from lib.errors import InputError, LayerError, MissingFileError
from lib.methods.cam import CAM
from lib.methods.graph import ModelGraph
from lib.plot import save_text

CHECKPOINT = "checkpoint.json"
_POOLING = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)


def cam_model(
    base: keras.Model,
    num_classes: int,
    feature_layer: str | None = None,
    conv_width: int = 1024,
    train_base: bool = False,
    seed: int = 0,
    name: str = "cam",
) -> keras.Model:
    """A CAM network: `base` up to `feature_layer`, then conv 3x3 ReLU, global average pooling, dense.

    The base layers are cloned (with their weights), so training never changes `base` itself.

    Args:
        base: a functional Keras model, e.g. `vgg19(include_top=False, weights=...)` or a bundled model.
        num_classes: outputs of the classifier (logits).
        feature_layer: name of the base layer to build on; None takes the last spatial layer that is not
            a pooling layer (VGG19's conv5_4, as Zhou et al. dropped pool5).
        conv_width: units of the added convolution `cam_conv` (1024 in the paper).
        train_base: fine-tune the base too; False trains only the added layers.
        seed: seed of the added layers' initial weights, so that a build is reproducible.
        name: model name.

    Returns:
        A functional `keras.Model` (layers `cam_conv`, `global_pool`, `classifier`) giving logits,
        which `lib.methods.cam.CAM` explains at `cam_conv`.

    Raises:
        LayerError: `feature_layer` is unknown or not spatial.
    """
    layer = find_feature_layer(base, feature_layer)
    features = keras.Model(base.inputs, layer.output)
    clone = keras.models.clone_model(features)
    clone.set_weights(features.get_weights())
    clone.trainable = train_base
    init = keras.initializers.GlorotUniform
    x = keras.layers.Conv2D(
        conv_width, 3, padding="same", activation="relu", kernel_initializer=init(seed), name="cam_conv"
    )(clone.output)  # (N, h, w, conv_width)
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)  # (N, conv_width)
    logits = keras.layers.Dense(num_classes, kernel_initializer=init(seed + 1), name="classifier")(x)
    return keras.Model(clone.inputs, logits, name=name)


def find_feature_layer(base: keras.Model, name: str | None = None) -> keras.layers.Layer:
    """The layer of `base` that `cam_model` builds on: `name`, or the last spatial non-pooling layer.

    Found as every method finds layers (`ModelGraph.resolve`), so a layer inside a nested model is
    found too; `cam_model` then asks for that nested model as the base.

    Raises:
        LayerError: `name` is unknown or not spatial, or `base` has no spatial layer.
    """
    graph = ModelGraph(base)
    if name is None:
        spatial = set(graph.spatial_names())
        convs = [s for s in graph.steps if s.name in spatial and not isinstance(s.op, _POOLING)]
        if not convs:
            raise LayerError(f"model {base.name!r} has no spatial layer to build a CAM head on")
        step = convs[-1]
    else:
        step = graph.producer(graph.resolve(name)[0])
    if "/" in step.name:
        nested = step.name.rsplit("/", 1)[0]
        raise LayerError(
            f"layer {step.name!r} is inside the nested model {nested!r}; cam_model builds on a layer of "
            f"the base's own graph, so pass base.get_layer({nested.split('/')[0]!r}) as the base"
        )
    return step.op


@dataclasses.dataclass
class History:
    """What `train_cam` recorded, epoch by epoch and snapshot by snapshot.

    Attributes:
        class_names: the folder's classes, in class-id order.
        class_ids: the K classes whose maps were recorded.
        image: float32 (H, W, 3), the inference image as the model saw it.
        loss, accuracy, val_loss, val_accuracy: float (E,), one per finished epoch (NaN without
            validation images).
        steps: int (S,), the training step of each snapshot (0 is before training).
        maps: float32 (S, K, H, W), CAM of `image` for `class_ids` at each snapshot, in [0, 1].
        scores: float32 (S, K), softmax probabilities of the K classes at each snapshot.
        step_accuracy: float (S,), training accuracy of the batches since the previous snapshot.
        resumed_from: the epoch the run started at (0 for a fresh run).
    """

    class_names: list
    class_ids: list
    image: np.ndarray
    loss: list = dataclasses.field(default_factory=list)
    accuracy: list = dataclasses.field(default_factory=list)
    val_loss: list = dataclasses.field(default_factory=list)
    val_accuracy: list = dataclasses.field(default_factory=list)
    steps: list = dataclasses.field(default_factory=list)
    maps: list = dataclasses.field(default_factory=list)
    scores: list = dataclasses.field(default_factory=list)
    step_accuracy: list = dataclasses.field(default_factory=list)
    resumed_from: int = 0

    def arrays(self):
        """The recorded values as numpy arrays, keyed by attribute name (for `.npz` or `.mat` files)."""
        values = {k: np.asarray(v) for k, v in dataclasses.asdict(self).items() if k != "class_names"}
        values["maps"] = np.asarray(self.maps, np.float32).reshape(
            -1, len(self.class_ids), *self.image.shape[:2]
        )
        values["scores"] = np.asarray(self.scores, np.float32).reshape(-1, len(self.class_ids))
        return values


def train_cam(
    model,
    folder,
    epochs,
    out_dir,
    *,
    val_fraction=0.2,
    seed=0,
    batch_size=32,
    image_size=None,
    learning_rate=1e-3,
    inference_image=None,
    class_ids=None,
    maps_every=10,
    resume=True,
    metadata=None,
    verbose="auto",
):
    """Fine-tunes `model` on `folder/<class>/<images>`, checkpointing every epoch into `out_dir`.

    The split and each epoch's order derive from `seed` alone, so a run that is interrupted and
    restarted (with `resume`) continues from its last finished epoch and ends with the weights an
    uninterrupted run would have.

    Args:
        model: from `cam_model`, with as many outputs as the folder has classes.
        folder: one subfolder of images per class (`lib.dataflow.images.class_folders`).
        epochs: total number of epochs, counting those of a resumed checkpoint.
        out_dir: folder for the checkpoint (`checkpoint.json`, `epoch-NNN.weights.h5`, `epoch-NNN.state.npz`).
        val_fraction: share of the images held out for validation.
        seed: seed of the split and of the shuffling.
        batch_size: images per step.
        image_size: side images are resized to; None takes the model's input size (224 if it has none).
        learning_rate: Adam's learning rate.
        inference_image: path or (H, W, 3) array whose maps are recorded; None takes the first
            validation image.
        class_ids: the classes whose maps are recorded; None takes the inference image's label (or 0).
        maps_every: record the maps every this many steps (and before the first and after the last).
        resume: continue from a checkpoint in `out_dir`; False starts afresh (the old one is replaced).
        metadata: a JSON-serialisable dict stored in `checkpoint.json`, e.g. how to rebuild the model.
        verbose: 0 silent, 1 progress bar, 2 one line per epoch, "auto" 1 on a terminal else 2.

    Returns:
        A `History`.

    Raises:
        InputError: the folder has no images, or its class count differs from the model's outputs.
        MissingFileError: `folder` or `inference_image` does not exist.
    """
    data = _split(model, folder, val_fraction, seed, image_size)
    history = _new_history(data, inference_image, class_ids)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=False,
    )
    model.optimizer.build(model.trainable_variables)
    out_dir = Path(out_dir)
    if resume and (out_dir / CHECKPOINT).exists():
        history = _restore(model, out_dir, history)
    start = history.resumed_from = len(history.loss)
    if start < epochs and history.steps and history.steps[-1] % maps_every:
        for values in (history.steps, history.maps, history.scores, history.step_accuracy):
            values.pop()  # the end-of-run snapshot: training goes on
    verbose = (1 if sys.stdout.isatty() else 2) if verbose == "auto" else verbose
    if verbose and start:
        print(f"resuming from the epoch-{start} checkpoint in {out_dir}")
    cam = CAM(model)
    if start == 0:
        _snapshot(model, cam, history, 0, [])
    for epoch in range(start, epochs):
        if verbose:
            print(f"epoch {epoch + 1}/{epochs}")
        bar = keras.utils.Progbar(data.steps(batch_size), verbose=verbose, unit_name="step")
        order = np.random.default_rng([seed, epoch]).permutation(data.train)
        step, results = epoch * data.steps(batch_size), []
        for images, y in data.batches(order, batch_size):
            results.append(model.train_on_batch(images, y, return_dict=True))
            step += 1
            if step % maps_every == 0:
                _snapshot(model, cam, history, step, results[-maps_every:])
            bar.update(len(results), [(k, results[-1][k]) for k in ("loss", "accuracy")], finalize=False)
        if epoch == epochs - 1 and step % maps_every:
            _snapshot(model, cam, history, step, results[-(step % maps_every) :])
        _end_epoch(model, data, history, results, batch_size)
        _save(model, out_dir, history, epoch + 1, metadata or {})
        bar.update(
            len(results), [(k, getattr(history, k)[-1]) for k in ("val_loss", "val_accuracy")], finalize=True
        )
    return history


@dataclasses.dataclass
class _Split:
    """A labelled folder split into training and validation indices, read at `size` x `size`."""

    paths: list
    labels: np.ndarray
    class_names: list
    train: np.ndarray
    val: np.ndarray
    size: int

    def steps(self, batch_size):
        return -(-len(self.train) // batch_size)

    def batches(self, indices, batch_size):
        """(images (n, size, size, 3), labels (n,)) for `indices`, read lazily; unreadable files skipped."""
        label_of = {self.paths[i]: self.labels[i] for i in indices}
        for batch in iter_batches([self.paths[i] for i in indices], batch_size, size=self.size):
            yield batch.images, np.array([label_of[p] for p in batch.paths])


def _split(model, folder, val_fraction, seed, image_size):
    paths, labels, class_names = class_folders(folder)
    if model.output_shape[-1] != len(class_names):
        raise InputError(
            f"model {model.name!r} has {model.output_shape[-1]} outputs but '{folder}' has "
            f"{len(class_names)} classes; build it with num_classes={len(class_names)}"
        )
    order = np.random.default_rng(seed).permutation(len(paths))
    num_val = int(round(len(paths) * val_fraction))
    size = image_size or model.input_shape[1] or 224
    return _Split(paths, labels, class_names, order[num_val:], order[:num_val], size)


def _new_history(data, inference_image, class_ids):
    if inference_image is None:
        first = (data.val if len(data.val) else data.train)[0]
        inference_image = data.paths[first]
        class_ids = [data.labels[first]] if class_ids is None else class_ids
    if isinstance(inference_image, (str, os.PathLike)):
        inference_image = read_image(inference_image)
    class_ids = [0] if class_ids is None else [int(c) for c in np.atleast_1d(class_ids)]
    return History(list(data.class_names), class_ids, resize(inference_image, size=data.size))


def _end_epoch(model, data, history, results, batch_size):
    """Records the epoch's mean training loss and accuracy, and its validation scores."""
    history.loss.append(float(np.mean([r["loss"] for r in results])))
    history.accuracy.append(float(np.mean([r["accuracy"] for r in results])))
    val_loss, val_accuracy = _evaluate(model, data, batch_size)
    history.val_loss.append(val_loss)
    history.val_accuracy.append(val_accuracy)


def _evaluate(model, data, batch_size):
    """Mean cross-entropy and accuracy on the validation images; NaN without any."""
    losses, hits = [], []
    for images, y in data.batches(data.val, batch_size) if len(data.val) else ():
        logits = np.asarray(model.predict_on_batch(images), np.float64)  # (n, classes)
        log_p = logits - logits.max(1, keepdims=True)
        log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
        losses += list(-log_p[np.arange(len(y)), y])
        hits += list(logits.argmax(1) == y)
    return (float(np.mean(losses)), float(np.mean(hits))) if losses else (float("nan"), float("nan"))


def _snapshot(model, cam, history, step, results):
    """Records the CAM and scores of the inference image, and the accuracy of `results` (the last steps)."""
    image, ids = history.image[None], history.class_ids
    probabilities = keras.ops.softmax(model.predict_on_batch(image)).numpy()[0]
    history.steps.append(step)
    history.maps.append(cam(image, [ids])[0])  # (K, H, W)
    history.scores.append(probabilities[ids])
    history.step_accuracy.append(
        float(np.mean([r["accuracy"] for r in results])) if results else float("nan")
    )


def _save(model, out_dir, history, epoch, metadata):
    """Writes the epoch's files, then `checkpoint.json` naming them (the commit), then drops old ones."""
    out_dir.mkdir(parents=True, exist_ok=True)
    weights, state = out_dir / f"epoch-{epoch:03d}.weights.h5", out_dir / f"epoch-{epoch:03d}.state.npz"
    optimizer = {f"optimizer_{i}": v.numpy() for i, v in enumerate(model.optimizer.variables)}
    with atomic_path(weights) as tmp:
        model.save_weights(tmp)
    with atomic_path(state) as tmp:
        np.savez(tmp, **optimizer, **history.arrays())
    info = {"epoch": epoch, "weights": weights.name, "state": state.name, "class_names": history.class_names}
    text = json.dumps({**info, "metadata": metadata}, indent=1)
    save_text(out_dir / CHECKPOINT, text)
    for old in out_dir.glob("epoch-*"):
        if old.name not in (weights.name, state.name):
            old.unlink()


def read_checkpoint(out_dir: str | os.PathLike) -> dict:
    """The contents of `out_dir/checkpoint.json`: epoch, file names, class_names and metadata.

    Raises:
        MissingFileError: there is no checkpoint in `out_dir`.
        InputError: `checkpoint.json` is not JSON (edited by hand, or written by another tool).
    """
    path = Path(out_dir) / CHECKPOINT
    if not path.exists():
        raise MissingFileError(f"no checkpoint in '{out_dir}' ({CHECKPOINT} is missing); train first")
    try:
        return json.loads(path.read_text())
    except ValueError as err:  # json.JSONDecodeError, UnicodeDecodeError
        raise InputError(
            f"checkpoint '{path}' is damaged ({err}); start afresh (resume=False, or cam.py --fresh)"
        ) from None


def load_weights(model: keras.Model, out_dir: str | os.PathLike) -> dict:
    """Loads the weights of the last checkpoint in `out_dir` into `model`; returns `read_checkpoint`."""
    info = read_checkpoint(out_dir)
    try:
        model.load_weights(Path(out_dir) / info["weights"])
    except ValueError as err:
        raise InputError(f"checkpoint in '{out_dir}' does not fit model {model.name!r}: {err}") from None
    return info


def _restore(model, out_dir, history):
    info = load_weights(model, out_dir)
    if info["class_names"] != history.class_names:
        raise InputError(
            f"checkpoint in '{out_dir}' was trained on classes {info['class_names']}, the folder has "
            f"{history.class_names}; pass another out_dir or resume=False"
        )
    with np.load(Path(out_dir) / info["state"]) as state:
        if (
            not np.array_equal(state["image"], history.image)
            or state["class_ids"].tolist() != history.class_ids
        ):
            raise InputError(
                f"checkpoint in '{out_dir}' records the maps of another inference image or other classes "
                "(its snapshots cannot be redrawn); pass the same image and class_ids, another out_dir, "
                "or resume=False"
            )
        saved = [state[f"optimizer_{i}"] for i in range(sum(k.startswith("optimizer_") for k in state))]
        variables = model.optimizer.variables
        if [v.shape for v in saved] != [tuple(v.shape) for v in variables]:
            raise InputError(
                f"the optimizer state in '{out_dir}' does not fit model {model.name!r} (was train_base "
                "changed?); pass another out_dir or resume=False"
            )
        for variable, value in zip(variables, saved, strict=True):
            variable.assign(value)
        fields = ("loss", "accuracy", "val_loss", "val_accuracy", "steps", "maps", "scores", "step_accuracy")
        return History(
            history.class_names,
            history.class_ids,
            history.image,
            **{k: list(state[k]) if k == "maps" else state[k].tolist() for k in fields},
        )
