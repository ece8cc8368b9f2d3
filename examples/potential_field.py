"""Potential fields: every embedding and every trainable proxy is a charge that attracts
its own class and repels the others, both decaying with distance (docs/methods.md section 4).

The loss holds trainable proxies, so it is a layer trained through `MetricModel`: plain
`compile(optimizer=...)` + `fit(x, labels)` trains the embedder and the proxies together,
the proxies at 100x the learning rate (as in the paper) through
`keras_dml.optimizers.with_proxy_lr_multiplier`, which also works under Adam.

    python examples/potential_field.py           # 20 epochs on digits, ~1 minute
    python examples/potential_field.py --fast    # 2 epochs (smoke test)

The real benchmark: `keras-dml train --recipe cars196-potential-field` (ResNet-50, 512-d,
15 proxies per class; SOP uses 2 per class and proxy_targets="batch").
"""
import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_dml  # noqa: E402


def main(epochs):
    keras.utils.set_random_seed(0)
    images, labels = keras_dml.data.load_digits("train")
    test_images, test_labels = keras_dml.data.load_digits("test")
    num_classes, dim = int(labels.max()) + 1, 16

    embedder = keras_dml.models.build_embedder("mlp", embedding_dim=dim, input_shape=(8, 8, 1))
    criterion = keras_dml.losses.PotentialFieldLoss(num_classes, dim, proxies_per_class=3)
    model = keras_dml.models.MetricModel(embedder, criterion)
    optimizer = keras_dml.optimizers.with_proxy_lr_multiplier(keras.optimizers.Adam(1e-3), 100.0)
    model.compile(optimizer=optimizer, jit_compile=True)

    def unit_proxies():  # the loss uses the proxies L2-normalised
        p = keras.ops.convert_to_numpy(criterion.proxies)
        return p / np.linalg.norm(p, axis=-1, keepdims=True)

    proxies_before = unit_proxies()
    model.fit(images, labels, batch_size=128, epochs=epochs, verbose=2)
    moved = np.linalg.norm(unit_proxies() - proxies_before, axis=-1).mean()
    metrics = keras_dml.evaluation.retrieval_metrics(model.predict(test_images, verbose=0), test_labels)
    print(f"proxies {tuple(criterion.proxies.shape)}: each moved {moved:.3f} on the unit sphere on average")
    print(f"held-out recall@1 {metrics['recall@1']:.4f}, map_at_r {metrics['map_at_r']:.4f}")
    # model.embedder is what you export: the proxies stay behind.
    return metrics


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="2 epochs (smoke test)")
    main(epochs=2 if parser.parse_args().fast else 20)
