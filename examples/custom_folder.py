"""Your own images: a folder with one sub-folder per class is a dataset.

    my_images/
      cats/ 001.jpg 002.jpg ...
      dogs/ ...

`load_dataset(path, split, test_fraction=0.3)` splits the *classes* (not the images)
into train and test, so the test measures retrieval of classes never seen in training,
and `class_balanced` draws P classes x K images per batch, the batches every mining
strategy needs.

    python examples/custom_folder.py --folder my_images
    python examples/custom_folder.py --fast      # writes a small synthetic folder first

For a real model use build_embedder("resnet50", weights="imagenet") at 224 x 224 (the
default sizes of the transforms), or `keras-dml train --recipe cub200-triplet-easy
--set dataset='"/path/to/my_images"'`.
"""
import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_dml  # noqa: E402
from keras_dml.data import augment  # noqa: E402

SIZE = 32


def write_synthetic_folder(root, classes=8, per_class=12, seed=0):
    """PNG images of bars in random colours, one sub-folder per class: a class is a bar shape."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(classes):
        os.makedirs(os.path.join(root, f"class_{c:02d}"))
        height, width = 6 + 3 * (c % 4), 28 - 6 * (c // 4)
        for i in range(per_class):
            image = np.full((48, 48, 3), 20, "uint8")
            x, y = rng.integers(2, 18, size=2)
            image[y:y + height, x:x + width] = rng.integers(60, 255, size=3)
            noise = rng.integers(0, 60, size=image.shape)
            Image.fromarray(np.clip(image + noise, 0, 255).astype("uint8")).save(os.path.join(root, f"class_{c:02d}", f"{i}.png"))
    return root


def main(folder, epochs, steps):
    keras.utils.set_random_seed(0)
    train, num_classes = keras_dml.data.load_dataset(folder, "train", test_fraction=0.4, seed=0)
    test, _ = keras_dml.data.load_dataset(folder, "test", test_fraction=0.4, seed=0)
    batches = keras_dml.data.class_balanced(
        train, classes_per_batch=min(4, num_classes), samples_per_class=4, seed=0,
        transform=augment.train_transform(SIZE, scale=(0.5, 1.0)),
    )
    test_batches = augment.map_images(test, augment.eval_transform(SIZE, resize_size=SIZE + 4), batch_size=64)

    embedder = keras_dml.models.build_embedder("small_cnn", embedding_dim=16, input_shape=(SIZE, SIZE, 3))
    embedder.compile(optimizer="adam", jit_compile=True,
                     loss=keras_dml.losses.TripletLoss(positive="easy", negative="semihard"))
    evaluation = keras_dml.evaluation.RetrievalEvaluation(test_batches)
    history = embedder.fit(batches, epochs=epochs, steps_per_epoch=steps, callbacks=[evaluation], verbose=2)
    print(f"{num_classes} training classes; held-out MAP@R by epoch: "
          + ", ".join(f"{v:.3f}" for v in history.history["val_map_at_r"]))
    return history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", help="a folder of class sub-folders")
    parser.add_argument("--fast", action="store_true", help="a synthetic folder, 2 short epochs")
    args = parser.parse_args()
    if args.folder:
        main(args.folder, epochs=10, steps=50)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(write_synthetic_folder(os.path.join(tmp, "images")), epochs=2 if args.fast else 10,
                 steps=5 if args.fast else 30)
