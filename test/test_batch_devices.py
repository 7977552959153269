"""MirroredStrategy over two logical CPU devices gives one device's maps, in lib.batch and alone.

One device explains the same slices of each batch as the two do: on some CPUs (seen on an AMD EPYC with
AVX2) a convolution's result for an image changes in its last bit with the image's place in the batch.

Logical devices must be made before TensorFlow initialises its devices, so the job runs in a
fresh process that splits the CPU in two first.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lib.batch.devices import Mirrored
from lib.errors import InputError
from lib.methods import GradCAM
from lib.nets import bundled

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys
sys.path.insert(0, {root!r})
import lib
lib.start_tensorflow()
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import numpy as np
import lib.batch
from lib.batch.devices import Mirrored
from lib.dataflow.shapes import generate, write_image_folder
from lib.methods import GuidedGradCAM, TopK
from lib.nets import bundled

report = {{"devices": [d.name for d in tf.config.list_logical_devices("CPU")]}}
model = bundled.load("shapes_vgg")
images = generate(10, seed=4)[0].astype("float32")
method = GuidedGradCAM(model, "conv4_2")
mirrored = Mirrored(method, 2)
halves = (images[:5], images[5:])  # what each device gets
two = mirrored.explain(images, TopK(2))
report["replicas"] = mirrored.replicas_used
report["equal"] = {{key: bool(np.array_equal(np.concatenate([getattr(method.explain(h, TopK(2)), key)
                                                             for h in halves]), getattr(two, key)))
                   for key in ("maps", "grad_cam", "class_ids", "scores", "probabilities")}}
fixed = np.concatenate([method.explain(h, [3, 5]).maps for h in halves])
report["ids_equal"] = bool(np.array_equal(fixed, mirrored.explain(images, [3, 5]).maps))

write_image_folder({out!r} + "/images", 24, seed=4)
for name, devices, batch_size in (("one", None, 3), ("two", 2, 6)):  # two devices get halves of 6
    lib.batch.run({out!r} + "/images", model, "grad_cam,saliency", {out!r} + "/" + name, devices=devices,
                  batch_size=batch_size, shard_size=12, dtype="float32")
a, b = lib.batch.read({out!r} + "/one"), lib.batch.read({out!r} + "/two")
report["batch_equal"] = {{name: bool(np.array_equal(a.maps[name], b.maps[name])) for name in a.maps}}
report["batch_ids_equal"] = bool(np.array_equal(a.class_ids, b.class_ids)) and a.paths == b.paths
print(json.dumps(report))
"""


@pytest.mark.slow
def test_two_logical_cpus_give_the_maps_of_one(tmp_path):
    code = CHILD.format(root=str(ROOT), out=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["devices"] == ["/device:CPU:0", "/device:CPU:1"] and report["replicas"] == 2
    assert all(report["equal"].values()) and report["ids_equal"], report
    assert report["batch_equal"] == {"grad_cam": True, "saliency": True} and report["batch_ids_equal"]


def test_more_devices_than_visible_is_a_one_line_error():
    method = GradCAM(bundled.load("shapes_vgg"), "conv4_2")
    with pytest.raises(InputError, match=r"devices=2 but 1 device\(s\) are visible \(/device:CPU:0\)"):
        Mirrored(method, 2)
