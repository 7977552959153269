"""The shipped ImageNet class list and top-k decoding."""

import re
from pathlib import Path

import numpy as np
import pytest

from lib.errors import InputError
from lib.nets import imagenet
from lib.nets.imagenet import class_names, decode_predictions, wnids

# Class ids that Keras's imagenet_class_index.json and Caffe's synset_words.txt agree on.
ANCHORS = {
    0: ("n01440764", "tench"),
    1: ("n01443537", "goldfish"),
    207: ("n02099601", "golden retriever"),
    281: ("n02123045", "tabby"),
    340: ("n02391049", "zebra"),
    386: ("n02504458", "African elephant"),
    950: ("n07747607", "orange"),
    999: ("n15075141", "toilet tissue"),
}


def test_wnids_are_1000_unique_sorted_wordnet_ids():
    ids = wnids()
    assert len(ids) == 1000
    assert len(set(ids)) == 1000
    assert list(ids) == sorted(ids)
    assert all(re.fullmatch(r"n\d{8}", wnid) for wnid in ids)


@pytest.mark.parametrize("class_id", sorted(ANCHORS))
def test_known_class_ids(class_id):
    wnid, name = ANCHORS[class_id]
    assert wnids()[class_id] == wnid
    assert class_names()[class_id] == name
    assert class_names(short=False)[class_id].startswith(name)


def test_full_labels_keep_every_synonym():
    assert class_names(short=False)[0] == "tench, Tinca tinca"
    assert class_names(short=False)[999] == "toilet tissue, toilet paper, bathroom tissue"


def test_short_names_are_first_synonyms_and_clean():
    for short, full in zip(class_names(), class_names(short=False), strict=True):
        assert short and short == short.strip()
        assert full.split(", ")[0] == short


def test_only_crane_and_maillot_repeat_as_short_names():
    names = class_names()
    repeated = {name for name in names if names.count(name) > 1}
    assert repeated == {"crane", "maillot"}
    assert len(set(class_names(short=False))) == 999  # "crane" appears alone twice


def test_names_are_read_once():
    assert class_names() is class_names()
    assert class_names() is class_names(short=True)
    assert class_names(short=False) is class_names(short=False)


def test_classes_file_is_package_data():
    assert imagenet.CLASSES_FILE.is_file()
    assert Path(imagenet.__file__).parent / "data" / "imagenet_classes.txt" == imagenet.CLASSES_FILE


def test_decode_matches_argsort_on_random_logits():
    logits = np.random.default_rng(0).normal(size=(4, 1000)).astype(np.float32)
    decoded = decode_predictions(logits, top=5)
    expected_ids = np.argsort(-logits, axis=1)[:, :5]
    assert len(decoded) == 4
    for row, got, ids in zip(logits, decoded, expected_ids, strict=True):
        assert [c for c, _, _ in got] == ids.tolist()
        assert [name for _, name, _ in got] == [class_names()[c] for c in ids]
        assert [score for _, _, score in got] == row[ids].tolist()


def test_probabilities_rank_like_logits():
    logits = np.random.default_rng(1).normal(scale=3.0, size=(3, 1000))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    ids_from_logits = [[c for c, _, _ in row] for row in decode_predictions(logits, top=10)]
    ids_from_probs = [[c for c, _, _ in row] for row in decode_predictions(probs, top=10)]
    assert ids_from_logits == ids_from_probs


def test_top_1000_is_a_full_descending_ranking():
    logits = np.random.default_rng(2).normal(size=(1, 1000))
    (ranking,) = decode_predictions(logits, top=1000)
    assert sorted(c for c, _, _ in ranking) == list(range(1000))
    scores = [score for _, _, score in ranking]
    assert scores == sorted(scores, reverse=True)


def test_ties_go_to_the_lower_class_id():
    scores = np.zeros((1, 1000))
    scores[0, [7, 3, 500]] = 1.0
    assert [c for c, _, _ in decode_predictions(scores, top=4)[0]] == [3, 7, 500, 0]


def test_decodes_a_tensorflow_tensor():
    tf = pytest.importorskip("tensorflow")
    logits = np.random.default_rng(3).normal(size=(2, 1000)).astype(np.float32)
    assert decode_predictions(tf.constant(logits), top=3) == decode_predictions(logits, top=3)


@pytest.mark.parametrize("shape", [(1000,), (2, 10), (2, 1000, 1), (1001, 1)])
def test_wrong_shape_names_shape_and_expectation(shape):
    with pytest.raises(InputError, match=r"shape \(batch, 1000\)") as info:
        decode_predictions(np.zeros(shape), top=5)
    assert str(shape) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_single_image_gets_a_batch_axis_hint():
    with pytest.raises(InputError, match=r"scores\[None\]"):
        decode_predictions(np.zeros(1000))


@pytest.mark.parametrize("top", [0, -1, 1001, 2.5, True])
def test_top_out_of_range_raises(top):
    with pytest.raises(InputError, match="top must be an integer from 1 to 1000"):
        decode_predictions(np.zeros((1, 1000)), top=top)


def test_non_numeric_scores_raise():
    with pytest.raises(InputError, match="numeric"):
        decode_predictions([["a"] * 1000])
