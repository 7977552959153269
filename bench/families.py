"""The method families of issue 12, each timed against its own floor measured in the same rounds.

Called by `benchmark.py` (its section "method families"), on SqueezeNet v1.1 at 227x227 with layer
fire9_concat (C = 512 channels). Floors, per call on N images, with B a method's chunk size:

    gradient CAM variants, Eigen-CAM   forward(N)                                   target 1.15
    Saliency, Gradient x Input         forward+backward(N)                          target 1.10
    SmoothGrad (S samples), IG (S)     forward+backward on the N*S images at once   target 1.10
    Score-CAM (C channels)             N*C/B forward passes of B images             target 1.10
    Occlusion, RISE (P passes)         N*P/B forward passes of B images             target 1.10
    Ablation-CAM                       forward(N) + N*C/B head passes of B          target 1.10

A reference row times a forward pass plus the gradient of the top logit at the layer by plain
automatic differentiation, without the NaN/Inf check: on SqueezeNet about 1.15x the forward pass, since
the backward pass through conv10 (512 -> 1000 channels, 13x13) costs as much as its forward, a sixth of
the network's. The gradient CAM variants differentiate only the chosen classes' columns of conv10
(`lib.methods.class_columns`), so they can come in under that row.

The peers' figures are printed beside them where known (tf-keras-vis's Score-CAM: more than 60 s for
one VGG19 image on this kind of CPU, its issue #75).
"""

import numpy as np
import tensorflow as tf

from lib.methods import (
    RISE,
    AblationCAM,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    GradientTimesInput,
    HiResCAM,
    IntegratedGradients,
    LayerCAM,
    Occlusion,
    Saliency,
    ScoreCAM,
    SmoothGrad,
    XGradCAM,
)
from lib.nets import squeezenet

LAYER = "fire9_concat"
SAMPLES = 32  # SmoothGrad samples and Integrated Gradients steps, as compare.OPTIONS gives IG
CHUNK = 64  # masked or ablated copies per pass
OCCLUSION = {"size": 32, "stride": 16}
RISE_MASKS = 512
FAST_ROUNDS = 10  # rounds of the gradient methods per round of the perturbation methods
LAYER_GRADIENT = f"fwd + gradient at {LAYER}, unchecked"  # the gradient CAM variants' own floor
CAM_VARIANTS = (GradCAM, GradCAMPlusPlus, XGradCAM, LayerCAM, HiResCAM, EigenCAM)  # Grad-CAM for reference


def family_rows(time_rounds, row, plain_floors, batch, repeats):
    """Table rows of every family method at `batch` images, on SqueezeNet, with their floors.

    Args:
        time_rounds: `benchmark.time_rounds`, which times calls in interleaved rounds.
        row: `benchmark._row`, which turns times and a floor into a table row.
        plain_floors: `benchmark.floors`, the compiled forward and forward+backward of a model.
        batch: images per call, N.
        repeats: timed rounds.
    """
    model = squeezenet(weights="imagenet")
    size = model.inputs[0].shape[1:3]
    images = np.random.default_rng(batch).uniform(0, 255, (batch, *size, 3)).astype("float32")
    floors = _floors(model, batch, plain_floors(model))
    methods = {
        **{m.__name__: (m(model, LAYER), "fwd", 1.15) for m in CAM_VARIANTS},
        "Saliency": (Saliency(model), "fwd+bwd", 1.10),
        "Gradient x Input": (GradientTimesInput(model), "fwd+bwd", 1.10),
        f"SmoothGrad S={SAMPLES}": (
            SmoothGrad(Saliency(model), samples=SAMPLES, batch_size=batch * SAMPLES),
            "sampled",
            1.10,
        ),
        f"Integrated Gradients S={SAMPLES}": (
            IntegratedGradients(model, steps=SAMPLES, batch_size=batch * SAMPLES),
            "sampled",
            1.10,
        ),
        "Score-CAM C=512": (ScoreCAM(model, LAYER, batch_size=CHUNK), "channels", 1.10),
        "Ablation-CAM C=512": (AblationCAM(model, LAYER, batch_size=CHUNK), "ablations", 1.10),
        "Occlusion 32/16": (Occlusion(model, batch_size=CHUNK, **OCCLUSION), "patches", 1.10),
        f"RISE {RISE_MASKS} masks": (RISE(model, masks=RISE_MASKS, batch_size=CHUNK), "masks", 1.10),
    }
    references = ("forward", "forward+backward", LAYER_GRADIENT)
    fast = [name for name, (_, kind, _) in methods.items() if kind in ("fwd", "fwd+bwd")]
    slow = [name for name in methods if name not in fast]

    def timed(names, floor_names, rounds):  # a group of methods in rounds with their floors
        calls = {**{n: floors[n] for n in floor_names}, **{n: methods[n][0] for n in names}}
        objects = [methods[n][0] for n in names]
        return time_rounds(calls, images, rounds, lambda: sum(m.tracing_count for m in objects))

    # the fast methods get more rounds: a call of one takes 15-30 ms, and the machine's noise is larger
    fast_times = timed(fast, references, repeats * FAST_ROUNDS)
    slow_times = timed(slow, [n for n in floors if n not in references[1:]], repeats)
    rows = [row("squeezenet", batch, name, fast_times[name], fast_times["forward"]) for name in references]
    occlusion = methods["Occlusion 32/16"][0]
    passes = {
        "channels": batch * 512 / CHUNK,
        "patches": batch * occlusion.mask_count(tuple(size)) / CHUNK,
        "masks": batch * RISE_MASKS / CHUNK,
    }
    for name, (_, kind, target) in methods.items():
        times = fast_times if name in fast else slow_times
        fwd = times["forward"]
        if kind == "fwd":
            floor = ("fwd", fwd)
        elif kind == "fwd+bwd":
            floor = ("fwd + bwd", times["forward+backward"])
        elif kind == "sampled":
            floor = (f"fwd+bwd of {batch * SAMPLES}", times[f"forward+backward x{SAMPLES}"])
        elif kind == "ablations":
            count = batch * 512 / CHUNK
            floor = (f"fwd + {count:g} heads", fwd + count * times[f"head of {CHUNK}"])
        else:
            floor = (f"{passes[kind]:g} fwd of {CHUNK}", passes[kind] * times[f"forward of {CHUNK}"])
        rows.append(row("squeezenet", batch, name, times[name], fwd, floor, target))
    return rows


def _floors(model, batch, plain):
    """name -> call on the N images: `plain` (forward, forward+backward), and the floors' building blocks."""
    from lib.methods.graph import ModelGraph

    graph = ModelGraph(model)
    key = graph.resolve(LAYER)[0]
    base, head = graph.split(key)
    activation_shape = (CHUNK, *graph.shape_of(key)[1:])

    @tf.function
    def run_head(a):
        return graph.run(head, {key: a})[graph.logits_key]

    @tf.function
    def layer_gradient(x):  # what automatic differentiation alone costs a gradient CAM variant
        with graph.unchecked():
            values = graph.run(base, {graph.input_key: x})
            with tf.GradientTape() as tape:
                tape.watch(values[key])
                logits = graph.run(head, values)[graph.logits_key]
                top = tf.reduce_max(logits, axis=-1)
            return tape.gradient(top, values[key])

    rng = np.random.default_rng(0)
    chunk = tf.constant(rng.uniform(0, 255, (CHUNK, *model.inputs[0].shape[1:])).astype("float32"))
    sampled = tf.constant(
        rng.uniform(0, 255, (batch * SAMPLES, *model.inputs[0].shape[1:])).astype("float32")
    )
    activations = tf.constant(rng.uniform(0, 1, activation_shape).astype("float32"))
    forward, forward_backward = plain["forward"], plain["forward+backward"]
    return {
        **plain,
        f"forward+backward x{SAMPLES}": lambda x: forward_backward(sampled),
        f"forward of {CHUNK}": lambda x: forward(chunk),
        f"head of {CHUNK}": lambda x: run_head(activations).numpy(),
        LAYER_GRADIENT: lambda x: layer_gradient(x).numpy(),
    }
