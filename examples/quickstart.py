"""Quickstart: can a network learn to match characters it has never seen?

The question. Deep metric learning trains an embedding in which images of one class lie
close together, and judges it on classes left out of training (the zero-shot protocol of
CUB-200 and Cars196). Here a class is a character: Latin and Greek letters, digits and
Cyrillic letters, each drawn by the ~20 typefaces matplotlib ships, 3 slightly distorted
renders each (`keras_dml.data.load_glyphs`). Half of the characters train the embedder;
the other half, never seen, are the test: does a query's nearest image show the same
character, in another typeface?

The run. A small CNN (`build_embedder("small_cnn")`) trained with `model.fit` on P x K
batches (32 characters x 4 images each, `keras_dml.data.class_balanced`) and a triplet
loss: each sample's nearest same-character sample as positive ("easy"), the nearest
farther different character as negative ("semihard"). About half a minute of CPU time;
the first call also renders the glyphs (seconds) and caches them.

    python examples/quickstart.py                 # 8 epochs, seed 0
    python examples/quickstart.py --seed 1        # another initialisation and batch order
    python examples/quickstart.py --fast          # 1 epoch, 1 render per glyph (smoke test)
    python examples/quickstart.py --grid grid.png # also draw test queries and their top 6

Reading the result. Recall@1 is the share of test images whose nearest other test image
shows the same character; MAP@R ranks all R other images of the query's character (R is
47 to 65 here) and is 1 only when all of them come before any other character. The
untrained network starts below raw pixels; the trained one leaves both far behind, on
characters it never saw (Recall@1 0.44 -> 0.95, MAP@R 0.04 -> 0.50, 3 seeds).
"""
import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_dml  # noqa: E402


def main(epochs=8, renders=3, seed=0, grid=None):
    keras.utils.set_random_seed(seed)
    # float32 (n, 32, 32, 1) in [0, 1]; labels 0..69 in each split, different characters.
    images, labels = keras_dml.data.load_glyphs("train", renders=renders)
    test_images, test_labels = keras_dml.data.load_glyphs("test", renders=renders)
    print(f"{len(images)} training images of {labels.max() + 1} characters; "
          f"{len(test_images)} test images of {test_labels.max() + 1} other characters")

    # images -> two 3x3 convolutions -> average pooling -> Dense(64) -> L2 normalisation
    embedder = keras_dml.models.build_embedder("small_cnn", embedding_dim=64, input_shape=images.shape[1:])
    loss = keras_dml.losses.TripletLoss(margin=0.2, positive="easy", negative="semihard")
    embedder.compile(optimizer=keras.optimizers.Adam(2e-3), loss=loss)

    def retrieval(embeddings):
        return keras_dml.evaluation.retrieval_metrics(embeddings, test_labels)

    pixels = retrieval(test_images.reshape(len(test_images), -1))
    before = retrieval(embedder.predict(test_images, verbose=0))
    # Every batch: 32 characters x 4 of their images, so every image has positives.
    batches = keras_dml.data.class_balanced(tf.data.Dataset.from_tensor_slices((images, labels)),
                                            classes_per_batch=32, samples_per_class=4, seed=seed)
    embedder.fit(batches, steps_per_epoch=len(images) // 128, epochs=epochs, shuffle=False, verbose=2)
    embeddings = embedder.predict(test_images, verbose=0)
    after = retrieval(embeddings)

    print("Retrieval among the unseen test characters:")
    print(f"{'':<20}{'Recall@1':>10}{'MAP@R':>10}")
    for name, metrics in (("raw pixels", pixels), ("untrained network", before), ("trained network", after)):
        print(f"{name:<20}{metrics['recall@1']:>10.3f}{metrics['map_at_r']:>10.3f}")
    print("Recall@1: share of queries whose nearest other image is the same character. "
          "MAP@R: precision over the R images of that character, 1 when they all come first.")
    if grid:
        from keras_dml import visualize  # matplotlib, imported on demand

        visualize.retrieval_grid(grid, test_images, test_labels, embeddings, num_queries=8, k=6, cell_pixels=48)
        print(f"Wrote {grid}: queries (blue), then their nearest images, right ones green, wrong ones red.")
    return pixels, before, after


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="1 epoch, 1 render per glyph (smoke test)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and batch order (default 0)")
    parser.add_argument("--grid", help="write a retrieval grid PNG of test queries to this path")
    args = parser.parse_args()
    main(epochs=1 if args.fast else 8, renders=1 if args.fast else 3, seed=args.seed, grid=args.grid)
