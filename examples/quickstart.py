"""Quickstart: train an embedder with plain `model.fit`, measure retrieval on unseen classes.

Digits 0-4 train the embedder; digits 5-9, never seen in training, are the retrieval
test (the zero-shot protocol of CUB-200 and Cars196). Runs in well under a minute on a CPU.

    python examples/quickstart.py            # 20 epochs
    python examples/quickstart.py --fast     # 2 epochs (smoke test)

The real benchmark is one line away: replace the digits block by
    train, n = keras_dml.data.load_dataset("cub200", "train", manual_dir="~/archives")
and the embedder by keras_dml.models.build_embedder("resnet50", weights="imagenet"),
or run the whole recipe: `keras-dml train --recipe cub200-triplet-easy`.
"""
import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import keras_dml  # noqa: E402


def main(epochs):
    keras.utils.set_random_seed(0)
    images, labels = keras_dml.data.load_digits("train")  # (n, 8, 8, 1) in [0, 1], classes 0-4
    test_images, test_labels = keras_dml.data.load_digits("test")  # classes 5-9, relabelled 0-4

    # Any Keras model whose output is (batch, dim) is an embedder.
    embedder = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Flatten(),
        keras.layers.Dense(16),
        keras.layers.UnitNormalization(),
    ])
    # Triplets with easy positives (each sample's nearest same-class sample) and
    # semi-hard negatives: labels are y_true, embeddings are y_pred.
    loss = keras_dml.losses.TripletLoss(margin=0.2, positive="easy", negative="semihard")
    embedder.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, jit_compile=True)

    before = keras_dml.evaluation.retrieval_metrics(embedder.predict(test_images, verbose=0), test_labels)
    embedder.fit(images, labels, batch_size=128, epochs=epochs, verbose=2)
    after = keras_dml.evaluation.retrieval_metrics(embedder.predict(test_images, verbose=0), test_labels)
    for name in ("recall@1", "r_precision", "map_at_r"):
        print(f"{name:<12} before {before[name]:.4f}   after {after[name]:.4f}")
    return before, after


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="2 epochs (smoke test)")
    main(epochs=2 if parser.parse_args().fast else 20)
