"""Several devices in one worker: `tf.distribute.MirroredStrategy` splits each batch over them.

    method = Mirrored(GradCAM(model, "conv4_2"), devices=2)   # the first 2 GPUs, or CPUs if no GPU
    method.explain(images, TopK(1))                           # the same Explanation, computed in halves

Each replica runs the method's own compiled pass (with its NaN and Inf checks) on its slice of the
batch, and the slices are joined in order: the result is one device's on those slices, bit for bit.
Against one device on the whole batch it agrees within float32 rounding, since CPU convolutions can
change an image's result in the last bit with its place in the batch (seen on an AMD EPYC with AVX2).
To try it on a CPU, split the CPU into logical devices before TensorFlow starts:

    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
"""

from __future__ import annotations

import numpy as np

from lib.errors import InputError


def visible_devices(count: int) -> list[str]:
    """The names of the first `count` logical GPUs, or CPUs when there is no GPU.

    Raises:
        InputError: fewer devices are visible.
    """
    import tensorflow as tf

    found = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= len(found):
        raise InputError(
            f"devices={count!r} but {len(found)} device(s) are visible ({', '.join(d.name for d in found)}); "
            "pass at most that many"
        )
    return [device.name for device in found[:count]]


class Mirrored:
    """A class-based method whose `explain()` runs over several devices with MirroredStrategy.

    Args:
        explainer: a `lib.methods` ClassExplainer; its model is not copied (variables are read
            where they live).
        devices: how many of `visible_devices` to use.

    Attributes:
        strategy: the `tf.distribute.MirroredStrategy`.
        replicas_used: how many replicas the last call ran on (fewer when the batch is smaller).
    """

    def __init__(self, explainer, devices: int):
        import tensorflow as tf

        self.explainer = explainer
        self.strategy = tf.distribute.MirroredStrategy(visible_devices(devices))
        self.replicas_used = 0
        self._functions = {}

    def __getattr__(self, name):
        return getattr(self.explainer, name)  # layer, layer_key, graph, model: the method's own

    def explain(self, images, class_ids=None):
        """As the method's `explain`, with the batch split over the devices."""
        import tensorflow as tf

        from lib.methods.base import Explanation
        from lib.methods.targets import parse_class_ids

        method = self.explainer
        x = method._images(images)
        replicas = self.strategy.num_replicas_in_sync
        if x.shape[0] < replicas:  # a slice per device is needed
            self.replicas_used = 1
            return method.explain(images, class_ids)
        ids = parse_class_ids(class_ids, x.shape[0], method._num_classes(class_ids))
        kind, args = ("ids", (x, tf.constant(ids))) if isinstance(ids, np.ndarray) else (ids, (x,))
        function = self._function(kind, layers_checked=not method._pixel_bound.covers(x))
        parts = self.strategy.experimental_local_results(function(*self._split(args)))
        self.replicas_used = len(parts)
        joined = {key: np.concatenate([part[key].numpy() for part in parts]) for key in parts[0]}
        return Explanation(layer=method.layer, **joined)

    def _split(self, args):
        """Each argument as per-replica values: replica r gets its contiguous slice of the batch."""
        replicas = self.strategy.num_replicas_in_sync
        bounds = np.linspace(0, len(args[0]), replicas + 1).astype(int)

        def slices(arg):
            def replica_slice(context):
                replica = context.replica_id_in_sync_group
                return arg[bounds[replica] : bounds[replica + 1]]

            return self.strategy.experimental_distribute_values_from_function(replica_slice)

        return [slices(arg) for arg in args]

    def _function(self, kind, layers_checked):
        """strategy.run of the method's pass for `kind`, with its checks, compiled once per kind; as in
        `Explainer._run`, without the per-layer check where the weights' bounds cover the pixels."""
        import tensorflow as tf

        key = (kind, layers_checked)
        if key not in self._functions:
            step = self.explainer._checked_pass(kind, layers_checked)
            self._functions[key] = tf.function(
                lambda *args: self.strategy.run(step, args=args), autograph=False, reduce_retracing=True
            )
        return self._functions[key]
