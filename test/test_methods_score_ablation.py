"""Score-CAM and Ablation-CAM against plain Python loops of one masked or ablated forward pass per
channel (with Keras' own models, not the methods' graph runner), for every chunk size; Ablation-CAM
on a global-average-pooling network against the closed form w_kc * mean(A_k)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from lib.errors import InputError
from lib.methods.ablation_cam import AblationCAM
from lib.methods.score_cam import ScoreCAM, interpolation

SIZE, CHANNELS, CLASSES = 16, 8, 5
IDS = np.array([[0, 2], [1, 3], [4, 0]], np.int32)  # K = 2 classes for each of 3 images
# one copy; 3 of one image's channels (the last chunk padded); one whole image per chunk; two whole
# images per chunk (the last padded); all 3 x 8 copies in one chunk
BATCH_SIZES = [1, 3, CHANNELS, 2 * CHANNELS, 50]


def margin(logits):
    """A callable target: the logit of class 0 minus that of class 1, (N, 1)."""
    return logits[:, :1] - logits[:, 1:2]


def gap_net():
    """conv-relu, pool, conv-relu (c2, the layer), global average pooling, dense logits."""
    keras.utils.set_random_seed(2)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c1")(inp)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(CHANNELS, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, keras.layers.Dense(CLASSES, name="fc")(x))


def skip_net():
    """c1 -> c2 (the layer) -> add(c2, a 1x1 projection of c1) -> c3 -> pooling, concatenated with a
    pooling of c1 that bypasses c2 -> dense. Returns the model and its head as a Keras model of
    (c2, c1): the part above c2, which reads c1 twice besides c2."""
    keras.utils.set_random_seed(3)
    layers = {
        "proj": keras.layers.Conv2D(CHANNELS, 1, name="proj"),
        "add": keras.layers.Add(name="add"),
        "c3": keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c3"),
        "gap3": keras.layers.GlobalAveragePooling2D(name="gap3"),
        "gap1": keras.layers.GlobalAveragePooling2D(name="gap1"),
        "concat": keras.layers.Concatenate(name="concat"),
        "fc": keras.layers.Dense(CLASSES, name="fc"),
    }

    def head(a, c1):
        x = layers["gap3"](layers["c3"](layers["add"]([a, layers["proj"](c1)])))
        return layers["fc"](layers["concat"]([x, layers["gap1"](c1)]))

    inp = keras.Input((SIZE, SIZE, 3))
    c1 = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="c1")(inp)
    c2 = keras.layers.Conv2D(CHANNELS, 3, padding="same", activation="relu", name="c2")(c1)
    model = keras.Model(inp, head(c2, c1))
    a_in, c1_in = keras.Input(c2.shape[1:]), keras.Input(c1.shape[1:])
    return model, keras.Model([a_in, c1_in], head(a_in, c1_in))


def images(n=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3)).astype(np.float32)


def outputs(model, x, *names):
    """The outputs of the named layers of `model` for `x`, from a Keras model of them."""
    found = keras.Model(model.input, [model.get_layer(n).output for n in names])(x)
    return [t.numpy() for t in (found if isinstance(found, (list, tuple)) else [found])]


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def upsample(maps, size):
    """Bilinear resize of (..., h, w) maps, one at a time with tf.image.resize."""
    flat = maps.reshape(-1, *maps.shape[-2:], 1)
    return tf.image.resize(flat, size).numpy().reshape(*maps.shape[:-2], *size)


def expected_maps(activations, weights, size):
    """relu(sum_c w[n, k, c] A[n, :, :, c]) resized and divided by its peak (zero stays zero), in NumPy."""
    maps = upsample(np.maximum(np.einsum("nhwc,nkc->nkhw", activations, weights), 0), size)
    peak = maps.max(axis=(2, 3), keepdims=True)
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)


def score_cam_loop(model, layer, x, targets):
    """Score-CAM weights (N, K, C): one forward pass of `model` per image and channel."""
    (activations,) = outputs(model, x, layer)
    weights = np.zeros((len(x), 1 if callable(targets) else targets.shape[1], CHANNELS))
    for n in range(len(x)):
        for c in range(CHANNELS):
            mask = upsample(activations[n, :, :, c], x.shape[1:3])
            span = mask.max() - mask.min()
            mask = (mask - mask.min()) / span if span > 0 else np.zeros_like(mask)
            logits = model(x[n : n + 1] * mask[None, :, :, None]).numpy()
            weights[n, :, c] = targets(logits)[0] if callable(targets) else softmax(logits)[0, targets[n]]
    return activations, weights


def ablation_cam_loop(model, head, x, targets):
    """Ablation-CAM weights (N, K, C): the head run once per image and zeroed channel of c2."""
    a, c1 = outputs(model, x, "c2", "c1")

    def score(logits, n):
        return np.asarray(targets(tf.constant(logits)))[0] if callable(targets) else logits[0, targets[n]]

    weights = np.zeros((len(x), 1 if callable(targets) else targets.shape[1], CHANNELS))
    for n in range(len(x)):
        y = score(model(x[n : n + 1]).numpy(), n)
        for c in range(CHANNELS):
            ablated = a[n : n + 1].copy()
            ablated[..., c] = 0
            y_c = score(head([ablated, c1[n : n + 1]]).numpy(), n)
            weights[n, :, c] = (y - y_c) / np.maximum(np.abs(y), 1e-6)
    return a, weights


@pytest.fixture(scope="module")
def score_cam_reference():
    model, x = gap_net(), images()
    return (
        model,
        x,
        {"ids": score_cam_loop(model, "c2", x, IDS), "callable": score_cam_loop(model, "c2", x, margin)},
    )


@pytest.fixture(scope="module")
def ablation_cam_reference():
    (model, head), x = skip_net(), images()
    loops = {
        "ids": ablation_cam_loop(model, head, x, IDS),
        "callable": ablation_cam_loop(model, head, x, margin),
    }
    return model, x, loops


@pytest.mark.parametrize("targets", ["ids", "callable"])
@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_score_cam_equals_a_loop_of_masked_forward_passes_for_every_chunk_size(
    score_cam_reference, batch_size, targets
):
    model, x, loops = score_cam_reference
    activations, weights = loops[targets]
    method = ScoreCAM(model, "c2", batch_size=batch_size)
    class_ids = IDS if targets == "ids" else margin
    np.testing.assert_allclose(method.weights_of(x, class_ids), weights, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        method(x, class_ids), expected_maps(activations, weights, (SIZE, SIZE)), atol=1e-5
    )


@pytest.mark.parametrize("targets", ["ids", "callable"])
@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_ablation_cam_equals_a_loop_of_ablated_head_passes_through_skip_connections(
    ablation_cam_reference, batch_size, targets
):
    model, x, loops = ablation_cam_reference
    activations, weights = loops[targets]
    method = AblationCAM(model, "c2", batch_size=batch_size)
    assert [s.name for s in method._ablated] == ["add", "c3", "gap3", "concat", "fc"]  # not proj, gap1
    class_ids = IDS if targets == "ids" else margin
    np.testing.assert_allclose(method.weights_of(x, class_ids), weights, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        method(x, class_ids), expected_maps(activations, weights, (SIZE, SIZE)), rtol=1e-4, atol=1e-5
    )


def test_ablation_cam_on_a_gap_dense_network_drops_the_score_by_the_weight_times_the_mean():
    model, x = gap_net(), images()
    (a,) = outputs(model, x, "c2")  # (N, h, w, C)
    kernel, bias = model.get_layer("fc").get_weights()  # (C, classes)
    y = np.einsum("nc,ck->nk", a.mean(axis=(1, 2)), kernel) + bias
    drops = np.einsum("nc,ck->nkc", a.mean(axis=(1, 2)), kernel)  # y - y_k = w_kc * mean(A_k)
    expected = np.take_along_axis(drops, IDS[:, :, None], 1)
    weights = AblationCAM(model, "c2", batch_size=5).weights_of(x, IDS)
    denominator = np.maximum(np.abs(np.take_along_axis(y, IDS, 1)), 1e-6)[:, :, None]
    np.testing.assert_allclose(weights * denominator, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("method", [ScoreCAM, AblationCAM])
def test_k_classes_per_image_the_top_class_and_determinism(method):
    model, x = gap_net(), images()
    explainer = method(model, "c2", batch_size=3)
    together = explainer(x, IDS)
    class_by_class = np.concatenate([explainer(x, IDS[:, k : k + 1]) for k in range(2)], axis=1)
    one_by_one = np.concatenate([explainer(x[n : n + 1], IDS[n : n + 1]) for n in range(3)])
    np.testing.assert_allclose(class_by_class, together, atol=1e-6)
    # Ablation-CAM's (y - y_k) / y amplifies a score's last bit, which on some CPUs changes with the batch
    np.testing.assert_allclose(one_by_one, together, rtol=1e-4, atol=1e-6)
    result = explainer.explain(x)
    np.testing.assert_array_equal(result.class_ids, model(x).numpy().argmax(-1)[:, None])
    np.testing.assert_array_equal(result.maps, explainer(x, result.class_ids))
    np.testing.assert_array_equal(method(model, "c2", batch_size=3)(x, IDS), together)
    assert result.maps.shape == (3, 1, SIZE, SIZE) and result.layer == "c2"


def lowered(model, class_id, bias):
    """`model` with every dense weight of `class_id` negative: ReLU features can only lower its logit."""
    kernel, biases = model.get_layer("fc").get_weights()
    kernel[:, class_id], biases[class_id] = -np.abs(kernel[:, class_id]) - 0.1, bias
    model.get_layer("fc").set_weights([kernel, biases])
    return model


@pytest.mark.parametrize("bias", [1e3, -1e3])
def test_ablation_cam_gives_an_all_zero_map_when_removing_any_channel_raises_the_score(bias):
    # with y < 0, (y - y_k) / y would make every weight positive; dividing by |y| keeps them negative
    model, x = lowered(gap_net(), 0, bias), images()
    method = AblationCAM(model, "c2")
    assert (method.weights_of(x, 0) <= 0).all()
    maps = method(x, 0)
    assert np.isfinite(maps).all() and not maps.any()


def test_score_cam_gives_an_all_zero_map_when_every_masked_image_scores_below_zero():
    model, x = lowered(gap_net(), 0, -1e3), images()
    maps = ScoreCAM(model, "c2")(x, lambda logits: logits[:, :1])  # the logit of class 0 is always < 0
    assert np.isfinite(maps).all() and not maps.any()


def test_score_cam_masks_with_zero_for_a_constant_channel():
    model, x = gap_net(), images()
    kernel, _ = model.get_layer("c2").get_weights()
    model.get_layer("c2").set_weights([kernel, np.full(CHANNELS, -1e4, np.float32)])  # ReLU gives all 0
    method = ScoreCAM(model, "c2")
    black = np.take_along_axis(softmax(model(np.zeros_like(x)).numpy()), IDS, 1)  # scores of a black image
    np.testing.assert_allclose(
        method.weights_of(x, IDS), np.repeat(black[:, :, None], CHANNELS, 2), rtol=1e-5
    )
    maps = method(x, IDS)
    assert np.isfinite(maps).all() and not maps.any()


@pytest.mark.parametrize("method", [ScoreCAM, AblationCAM])
def test_each_chunk_holds_at_most_batch_size_copies_and_the_model_is_traced_once(method):
    explainer, shapes = method(gap_net(), "c2", batch_size=5), []
    run = explainer.graph.run

    def recording(steps, values, call=None):
        shapes.append(next(iter(values.values())).shape[0])
        return run(steps, values, call)

    explainer.graph.run = recording
    explainer(images(3), IDS)  # 8 channels in chunks of at most 5: two chunks of 4 per image
    perturbed = [n for n in shapes if n != 3]  # the passes that are not on the 3 clean images
    assert perturbed == [4]  # one traced pass inside the loop, of 4 copies
    explainer(images(seed=1), IDS)
    assert explainer.tracing_count == 1


@pytest.mark.parametrize(("small", "large"), [((13, 13), (227, 227)), ((7, 5), (20, 33)), ((20, 9), (7, 4))])
def test_the_masks_matrix_products_equal_tf_image_resize(small, large):
    maps = np.random.default_rng(1).uniform(0, 3, (4, *small)).astype(np.float32)
    rows, cols = interpolation(small[0], large[0]).numpy(), interpolation(small[1], large[1]).numpy()
    np.testing.assert_allclose(rows @ maps @ cols.T, upsample(maps, large), rtol=1e-5, atol=1e-5)
    # what Score-CAM relies on to min-max scale a mask on the layer's grid: each pixel's weights sum to 1
    np.testing.assert_allclose(rows.sum(1), 1, rtol=1e-6)
    np.testing.assert_allclose(cols.sum(1), 1, rtol=1e-6)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True, "8"])
def test_batch_size_must_be_a_positive_int(batch_size):
    for method in (ScoreCAM, AblationCAM):
        with pytest.raises(InputError, match="batch_size"):
            method(gap_net(), "c2", batch_size=batch_size)


@pytest.mark.slow
def test_squeezenet_weights_equal_single_masked_and_ablated_passes():
    from lib.dataflow import images as image_io
    from lib.dataflow import photos
    from lib.nets import squeezenet

    model = squeezenet(weights="imagenet")
    x = image_io.resize(photos.load("chelsea"), size=(227, 227)).astype(np.float32)[None]
    (a,) = outputs(model, x, "fire9_concat")  # (1, 13, 13, 512)
    logits = model(x).numpy()
    top, spans = logits[0].argmax(), np.ptp(a[0], axis=(0, 1))
    live = np.flatnonzero(spans > 0)
    channels = live[np.argsort(spans[live])][[0, len(live) // 2, -1]]  # weakest, median, strongest
    method = ScoreCAM(model, "fire9_concat")
    result, weights = method.explain(x), method.weights_of(x)[0, 0]
    assert result.class_ids[0, 0] == top
    for c in channels:
        mask = upsample(a[0, :, :, c], (227, 227))
        mask = (mask - mask.min()) / (mask.max() - mask.min())
        masked_logits = model(x * mask[None, :, :, None]).numpy()
        np.testing.assert_allclose(weights[c], softmax(masked_logits)[0, top], rtol=1e-3, atol=1e-7)
    head = keras.Sequential([model.get_layer("conv10"), model.get_layer("global_pool")])
    ablation = AblationCAM(model, "fire9_concat")
    weights, y = ablation.weights_of(x)[0, 0], logits[0, top]
    for c in list(channels) + [np.flatnonzero(spans == 0)[0]]:  # and a dead channel: weight 0
        ablated = a.copy()
        ablated[..., c] = 0
        expected = (y - head(ablated).numpy()[0, top]) / abs(y)
        np.testing.assert_allclose(weights[c], expected, rtol=1e-3, atol=1e-5)
    for maps in (result.maps, ablation(x)):
        assert maps.shape == (1, 1, 227, 227) and np.isfinite(maps).all() and maps.max() == 1
