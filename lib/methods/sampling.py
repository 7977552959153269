"""What the sampling methods share: the classes fixed on the clean images, and a chunked loop that
averages a map over many variants of each image inside one compiled pass.

Integrated Gradients averages gradients over `steps` points on a path, SmoothGrad and VarGrad average
(or take the variance of) a method's maps over `samples` noisy copies. Both evaluate N * S variants,
which may not fit in memory at once, so `sample_moments` runs them `batch_size` at a time in a
`tf.while_loop` whose iterations run one after the other: memory is bounded by one chunk, and the
graph holds the model once, whatever S.

    targets_of, fields = clean_targets(graph, steps, x, targets)     # classes of the clean images
    mean, _ = sample_moments(N, S, batch_size, evaluate, shape)       # evaluate(n, s) -> (B, *shape)
"""

import tensorflow as tf

from lib.methods.targets import outcome


def clean_targets(graph, steps, x, targets):
    """The targets of the clean images, to keep fixed for every variant of them.

    Args:
        graph: the method's `ModelGraph`.
        steps: the steps of `graph` that compute its logits.
        x: float32 clean images (N, H, W, 3).
        targets: None (top class), a `TopK`, int32 (N, K), or a callable (see `targets.scores`).

    Returns:
        (targets_of, fields): `targets_of(n)` gives the targets of the images `n` (int32 (B,)), the
        clean images' class ids (B, K), or the callable itself; `fields` are the clean images'
        `targets.outcome` fields, which the method reports.
    """
    logits = graph.run(steps, {graph.input_key: x})[graph.logits_key]
    _, fields = outcome(logits, targets)
    ids = fields.get("class_ids")
    if ids is None:  # a callable: it scores each variant itself
        return (lambda n: targets), fields
    return (lambda n: tf.gather(ids, n)), fields


def sample_moments(num_images, samples, batch_size, evaluate, shape, variance=False):
    """Mean over `samples` evaluations per image (and their squared deviations), in chunks.

    Point j in 0 .. N * S - 1 is sample s = j // N of image n = j % N: a chunk holds few distinct
    samples (SmoothGrad draws one noise pattern per sample, for all images). Chunks hold at most
    `batch_size` points and are balanced (136 points in chunks of 32 run as 5 chunks of 28), the
    last one padded by repeating a point whose value is given weight 0. The variance is accumulated
    with Chan et al.'s pairwise update (1979), which stays accurate where the mean is much larger than
    the spread (a sum of squares minus the squared mean would cancel).

    Args:
        num_images: N, static.
        samples: S >= 1 evaluations per image, static.
        batch_size: most points per chunk.
        evaluate: `evaluate(n, s) -> float32 (B, *shape)`, the values at images n and samples s,
            int32 (B,) each; it runs once per chunk, traced once.
        shape: the static shape of one point's value.
        variance: also return the sum of squared deviations from the mean.

    Returns:
        (mean, m2): float32 (N, *shape) each; m2 is None unless `variance`. The variance is m2 / S.
    """
    total = num_images * samples
    chunks = -(-total // min(batch_size, total))
    size = -(-total // chunks)
    zeros = tf.zeros((num_images, *shape))
    per_image = (num_images,) + (1,) * len(shape)  # counts broadcast over the value axes

    def body(chunk, count, mean, m2):
        j = chunk * size + tf.range(size)
        valid = j < total
        j = tf.minimum(j, total - 1)
        n = j % num_images
        values = evaluate(n, j // num_images)  # (B, *shape)
        segment = tf.where(valid, n, num_images)  # padded points go to segment N, dropped below
        sums = tf.math.unsorted_segment_sum(values, segment, num_images + 1)
        counts = tf.math.unsorted_segment_sum(tf.ones(size), segment, num_images + 1)
        if not variance:
            return chunk + 1, count, mean + sums[:num_images], m2
        counts_b = tf.reshape(counts, (num_images + 1,) + per_image[1:])
        means = tf.math.divide_no_nan(sums, counts_b)
        deviations = values - tf.gather(means, segment)
        m2_b = tf.math.unsorted_segment_sum(tf.square(deviations), segment, num_images + 1)[:num_images]
        count_b, mean_b = counts_b[:num_images], means[:num_images]
        new_count = count + count_b
        delta = mean_b - mean
        mean = mean + delta * tf.math.divide_no_nan(count_b, new_count)
        m2 = m2 + m2_b + tf.square(delta) * tf.math.divide_no_nan(count * count_b, new_count)
        return chunk + 1, new_count, mean, m2

    start = (tf.constant(0), tf.zeros(per_image), zeros, zeros)
    _, _, result, m2 = tf.while_loop(
        lambda chunk, *_: chunk < chunks, body, start, parallel_iterations=1
    )  # one chunk at a time: parallel iterations would hold several chunks' activations at once
    if not variance:
        return result / samples, None
    return result, m2
