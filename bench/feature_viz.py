"""Feature visualization and inversion (issue 14): one optimisation step against the forward+backward floor.

Called by `benchmark.py` (its section "feature visualization"), on SqueezeNet v1.1 at 227x227 with
a batch of B objectives. The floor is one compiled forward pass plus the backward pass of one logit
to the input, at batch B, on images a visualisation made, timed in the same rounds (target: a step
at most 1.2x it). The step adds
to that what the Distill recipe needs: the Fourier parameterisation (an inverse FFT and its
gradient), the random affine transform (a bilinear resampling and its gradient), and Adam; the rows
without them show what each costs. The last line runs a whole 512-step visualisation of 16 channels.
"""

import time

import tensorflow as tf

from lib.methods.feature_visualization import NO_TRANSFORMS, FeatureVisualization, channel, class_logit
from lib.methods.inversion import Inversion
from lib.nets.squeezenet import squeezenet

TARGET = 1.2
FULL_RUN = {"layer": "fire5_concat", "channels": 16, "steps": 512}
FLOOR_STEPS = 16


def _objectives(kind, batch):
    if kind == "class logits":
        return [class_logit(c) for c in range(batch)]
    return [channel(kind, c) for c in range(batch)]


def _floor_images(model, batch):
    """The floors' input: the images of a short visualisation of B classes, like those a step sees.

    Not zeros, and not noise: max-pooling's gradient costs less where a window's maximum is its
    first element, so the floor took 0.95x as long on all-zero images and 1.04x on uniform noise as
    on these (15 interleaved rounds, run Q in doc/benchmark.md).
    """
    visualize = FeatureVisualization(model)
    return visualize(_objectives("class logits", batch), steps=FLOOR_STEPS, seed=0, progress=False)


def _step_call(optimizer, key, extra=(), redirect=False):
    """A call that runs one compiled step of `optimizer` for `key` (traced on first call)."""
    batch = extra[0].shape[0] if extra else len(key[1])
    params = optimizer.parameterization.random(batch, 0)
    zeros = tf.zeros_like(params)
    step = optimizer._step_function(key, redirect)
    seed, rate = tf.constant([0, 3]), tf.constant(0.05)
    return lambda images: step(params, zeros, zeros, seed, rate, *extra)[0].numpy()


def feature_viz_rows(time_rounds, row, plain_floors, batch, repeats):
    """Table rows of one optimisation step for B = `batch` objectives, with the floors."""
    model = squeezenet(weights="imagenet")
    variants = {
        "step: B class logits": ({}, "class logits"),
        "step: B class logits, Fourier, no transforms": ({"transforms": NO_TRANSFORMS}, "class logits"),
        "step: B class logits, pixels, no transforms": (
            {"transforms": NO_TRANSFORMS, "parameterization": "pixel"},
            "class logits",
        ),
        "step: B channels of fire9_concat": ({}, "fire9_concat"),
        "step: B channels of fire5_concat": ({}, "fire5_concat"),
    }
    optimizers, calls = [], dict(plain_floors(model))
    for name, (options, kind) in variants.items():
        optimizers.append(FeatureVisualization(model, **options))
        calls[name] = _step_call(optimizers[-1], ("visualize", tuple(_objectives(kind, batch))))
    key = ("visualize", tuple(_objectives("class logits", batch)))
    calls["first steps: B class logits, redirected ReLU gradient"] = _step_call(
        optimizers[0], key, redirect=True
    )
    invert = Inversion(model, layer="fire5_concat")
    optimizers.append(invert)
    target = invert._features(tf.random.uniform((batch, 227, 227, 3), 0, 255))
    calls["inversion step: fire5_concat, pixels"] = _step_call(invert, ("invert", invert.layer), (target,))
    images = _floor_images(model, batch)
    times = time_rounds(calls, images, repeats, lambda: sum(o.tracing_count for o in optimizers))
    fwd, both = times["forward"], times["forward+backward"]
    rows = [row("squeezenet", batch, name, times[name], fwd) for name in ("forward", "forward+backward")]
    for name in calls:
        if name not in ("forward", "forward+backward"):
            rows.append(row("squeezenet", batch, name, times[name], fwd, (1, both), TARGET))
    return rows


def vgg19_rows(time_rounds, row, plain_floors, batch, repeats):
    """The default step (class logits) on VGG19 (random weights: speed does not depend on them)."""
    from lib.nets.vgg import vgg19

    model = vgg19(weights=None)
    visualize = FeatureVisualization(model)
    calls = dict(plain_floors(model))
    calls["step: B class logits"] = _step_call(
        visualize, ("visualize", tuple(_objectives("class logits", batch)))
    )
    images = _floor_images(model, batch)
    times = time_rounds(calls, images, repeats, lambda: visualize.tracing_count)
    fwd, both = times["forward"], times["forward+backward"]
    rows = [row("vgg19", batch, name, times[name], fwd) for name in ("forward", "forward+backward")]
    rows.append(
        row("vgg19", batch, "step: B class logits", times["step: B class logits"], fwd, (1, both), TARGET)
    )
    return rows


def full_run_seconds():
    """Wall seconds of a 512-step visualisation of 16 channels of fire5_concat, tracing included."""
    model = squeezenet(weights="imagenet")
    objectives = [channel(FULL_RUN["layer"], c) for c in range(FULL_RUN["channels"])]
    start = time.perf_counter()
    FeatureVisualization(model)(objectives, steps=FULL_RUN["steps"], seed=0, progress=False)
    return time.perf_counter() - start
