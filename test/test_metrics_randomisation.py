"""Sanity checks on shapes_vgg: cascading model randomisation separates Grad-CAM from guided
backpropagation, the similarities are scipy's and skimage's, the cascade runs top first on a copy, and
the permuted-label model memorises its labels and gets different Grad-CAM maps."""

import functools

import keras
import numpy as np
import pytest
from scipy import stats
from skimage.feature import hog
from skimage.metrics import structural_similarity

from lib.dataflow.shapes import generate
from lib.errors import InputError
from lib.methods import RISE, GradCAM, GuidedBackprop, Saliency, SmoothGrad
from lib.metrics.inputs import maps_and_classes
from lib.metrics.randomisation import (
    SanityResult,
    data_randomisation,
    deterministic_ops,
    model_randomisation,
    normalised,
    permuted_label_model,
    permuted_labels,
    rebuild,
    similarities,
    train_permuted,
)
from lib.nets import bundled
from lib.sanity import randomised

LAYERS = ("fc8", "conv4_2", "conv4_1", "conv3_2", "conv3_1", "conv2_1", "conv1_1")  # top first
RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def model():
    return bundled.load("shapes_vgg")


@pytest.fixture(scope="module")
def shapes():
    images, labels, _ = generate(8, seed=5, objects_per_image=2)
    return images.astype(np.float32), labels  # (8, 64, 64, 3), (8, 2): both objects explained


@pytest.fixture(scope="module")
def cascades(model, shapes):
    images, labels = shapes
    cam = model_randomisation(model, images, labels, method=GradCAM(model, layer="conv4_2"))
    gbp = model_randomisation(model, images, labels, method=GuidedBackprop(model))
    return cam, gbp


def test_randomising_every_layer_leaves_grad_cam_uncorrelated_with_its_trained_maps(cascades):
    cam = cascades[0]
    assert isinstance(cam, SanityResult) and cam.values.shape == (8, 2) and cam.curves.shape == (8, 2, 8)
    assert cam.mean < 0.2 and not cam.higher_is_better
    assert np.nanmean(cam.curves[..., 1]) < 0.3  # the classifier alone already decides Grad-CAM's maps
    np.testing.assert_allclose(cam.curves[..., 0], 1.0)  # step 0: the trained maps themselves
    assert cam.ssim.mean < 0.4 and cam.hog.mean < 0.2


def test_guided_backprop_stays_similar_while_grad_cam_does_not(cascades):
    cam, gbp = (np.nanmean(r.curves, axis=(0, 1)) for r in cascades)  # (T + 1,) mean per step
    assert (gbp[1:4] > 0.75).all() and (cam[1:4] < 0.3).all()  # top three layers random: Adebayo et al.
    assert cascades[1].mean > cascades[0].mean + 0.15  # still a gap with every layer random
    assert np.nanmean(cascades[1].hog.curves[..., 3]) > 0.7 > 0.2 > np.nanmean(cascades[0].hog.curves[..., 3])


def reference_similarities(a, b):
    """Spearman of |a|, |b|; SSIM and the HOG Pearson correlation of maps scaled by their 99th percentile."""
    a, b = np.abs(a), np.abs(b)
    scaled = [np.clip(m / np.percentile(m, 99), 0, 1) for m in (a, b)]
    features = [hog(m, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(3, 3)) for m in scaled]
    return (
        stats.spearmanr(a.ravel(), b.ravel()).statistic,
        structural_similarity(*scaled, data_range=1.0),
        stats.pearsonr(*features).statistic,
    )


def test_similarities_are_spearman_ssim_and_hog_correlation_of_scipy_and_skimage():
    a = RNG.normal(size=(2, 3, 64, 64))
    b = a + RNG.normal(scale=0.8, size=a.shape)  # related but not equal maps, signed
    found = similarities(a, b)
    assert list(found) == ["rank correlation", "SSIM", "HOG"]
    for n, k in np.ndindex(2, 3):
        expected = reference_similarities(a[n, k], b[n, k])
        got = [found[name][n, k] for name in found]
        np.testing.assert_allclose(got, expected, rtol=1e-9)
    same = similarities(a, a)
    for values in same.values():
        np.testing.assert_allclose(values, 1.0)
    assert (found["rank correlation"] < 0.95).all()


def test_constant_maps_have_no_correlation_and_stay_zero_when_normalised():
    a, zero = RNG.uniform(size=(1, 1, 64, 64)), np.zeros((1, 1, 64, 64))
    found = similarities(a, zero)
    assert np.isnan(found["rank correlation"][0, 0]) and np.isnan(found["HOG"][0, 0])
    assert similarities(zero, zero)["SSIM"][0, 0] == 1.0
    np.testing.assert_array_equal(normalised(zero), 0.0)
    scaled = normalised(-a)
    assert (
        scaled.min() >= 0 and scaled.max() == 1.0 and np.mean(scaled == 1.0) == pytest.approx(0.01, abs=0.002)
    )


def test_each_step_is_the_method_on_the_copy_with_its_top_layers_randomised(model, shapes, cascades):
    images, labels = shapes[0][:4], shapes[1][:4]
    cam = cascades[0]
    assert cam.labels == ("trained", *LAYERS) and list(cam.steps) == list(range(8))
    trained = maps_and_classes(images, labels, method=GradCAM(model, layer="conv4_2"))[0]
    for top in (1, 3, 7):  # fc8; fc8 to conv4_1; everything
        copy = randomised(model, top, seed=0)
        maps = maps_and_classes(images, labels, method=GradCAM(copy, layer="conv4_2"))[0]
        np.testing.assert_allclose(cam.curves[:4, :, top], similarities(trained, maps)["rank correlation"])


def test_seeds_reproduce_and_the_model_is_unchanged(model, shapes, cascades):
    images, labels = shapes[0][:4], shapes[1][:4]
    before = [w.copy() for w in model.get_weights()]
    again = model_randomisation(model, images, labels, method=functools.partial(GradCAM, layer="conv4_2"))
    np.testing.assert_allclose(again.curves, cascades[0].curves[:4])  # the same seed, a callable method
    maps = GradCAM(model, layer="conv4_2")(images, labels)
    given = model_randomisation(model, images, labels, maps=maps, method=GradCAM(model, layer="conv4_2"))
    np.testing.assert_allclose(given.curves, again.curves)  # trained maps given: the same comparison
    other = model_randomisation(model, images, labels, method=GradCAM(model, layer="conv4_2"), seed=1)
    assert not np.allclose(other.curves[..., 1:], again.curves[..., 1:])
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_rebuild_keeps_the_class_and_arguments(model, shapes):
    copy = bundled.build("shapes_vgg")
    cam = rebuild(GradCAM(model, layer="conv3_1"), copy)
    assert type(cam) is GradCAM and cam.model is copy and cam.layer == "conv3_1"
    smooth = SmoothGrad(Saliency(model), samples=3, seed=7)
    twin = rebuild(smooth, model)
    assert twin.samples == 3 and twin.seed == 7 and twin.method is not smooth.method
    np.testing.assert_allclose(twin(shapes[0][:2], [0]), smooth(shapes[0][:2], [0]), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def permuted(tmp_path_factory):
    return permuted_label_model(weights=tmp_path_factory.mktemp("permuted") / "shapes_vgg.weights.h5")


@pytest.mark.slow  # trains the permuted-label model: under a minute on 2 cores
def test_the_permuted_label_model_memorises_labels_that_say_nothing(permuted):
    images, labels = permuted_labels()
    accuracy = np.mean(permuted.predict(images, verbose=0).argmax(axis=1) == labels)
    assert accuracy > 0.8  # chance is 1 / 8
    held_out, truth, _ = generate(256, seed=2026)
    assert np.mean(permuted.predict(held_out.astype(np.float32), verbose=0).argmax(axis=1) == truth) < 0.3


@pytest.mark.slow
def test_grad_cam_maps_of_the_permuted_label_model_differ(model, shapes, permuted):
    images, labels = shapes
    found = data_randomisation(
        model, images, labels, method=GradCAM(model, layer="conv4_2"), permuted=permuted
    )
    assert found.values.shape == (8, 2) and found.curves is None
    assert found.mean < 0.3 and found.hog.mean < 0.3


@pytest.mark.slow
def test_the_permuted_label_model_is_trained_once(permuted, tmp_path_factory, monkeypatch):
    path = tmp_path_factory.getbasetemp() / "cached.weights.h5"
    permuted.save_weights(path)
    monkeypatch.setattr("lib.metrics.randomisation.train_permuted", pytest.fail)  # must read, not train
    again = permuted_label_model(weights=path)
    for a, b in zip(again.get_weights(), permuted.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def three_classes():
    x = keras.Input((64, 64, 3))
    y = keras.layers.Conv2D(2, 3, activation="relu")(x)
    return keras.Model(x, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(y)))


def test_bad_inputs_raise_one_line_input_errors(model, shapes):
    images, labels = shapes
    maps = np.zeros((8, 2, 64, 64))
    cases = [
        (lambda: model_randomisation(model, images, labels, maps=maps), "pass method="),
        (lambda: data_randomisation(model, images, labels, maps=maps), "pass method="),
        (lambda: model_randomisation(model, images, labels, method=RISE(model, masks=8)), "does not keep"),
        (lambda: model_randomisation(model, images, labels, method="grad_cam"), "a callable model -> method"),
        (
            lambda: data_randomisation(model, images, labels, method=GradCAM, permuted=three_classes()),
            "same arch",
        ),
        (lambda: similarities(maps, maps[:, :1]), "pass two"),
    ]
    for call, message in cases:
        with pytest.raises(InputError, match=message) as caught:
            call()
        assert "\n" not in str(caught.value)


@pytest.mark.parametrize("before", [False, True])
def test_deterministic_ops_leave_the_setting_as_they_found_it(before):
    from tensorflow.python.framework import config

    (config.enable_op_determinism if before else config.disable_op_determinism)()
    try:
        with deterministic_ops():
            assert config.is_op_determinism_enabled()
        assert config.is_op_determinism_enabled() == before
    finally:
        config.disable_op_determinism()


def test_training_the_permuted_label_model_leaves_op_determinism_off(tmp_path):
    from tensorflow.python.framework import config

    config.disable_op_determinism()
    train_permuted("shapes_vgg", num_images=8, epochs=1, path=tmp_path / "permuted.weights.h5")
    assert (tmp_path / "permuted.weights.h5").is_file()
    assert not config.is_op_determinism_enabled()
