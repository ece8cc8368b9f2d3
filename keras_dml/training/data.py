"""The data of a run: its description (recorded in `dataset.json`), its training batches,
and the one evaluation pipeline that both training and `keras-dml evaluate` use.

The description says what the embedder takes and how a split is rebuilt:

    {"dataset": "photos/", "test_fraction": 0.25, "seed": 0, "image_size": 96,
     "input_shape": [96, 96, 3], "pixel_scale": 1.0, "num_train_classes": 12,
     "data_dir": null, "manual_dir": null}

`pixel_scale` is the value of one uint8 unit in the embedder's input (1 for images in
[0, 255], 1/16 for the digits, whose pixels are counts 0-16 divided by 16): export uses it.
"""
from keras_dml.training.config import TrainConfig

DIGITS_PIXEL_SCALE = 1 / 16


def describe(config):
    """The description of `config`'s data; loads nothing but checks the dataset exists."""
    config = TrainConfig.from_dict(config) if isinstance(config, dict) else config
    from keras_dml.data import load_dataset

    _, num_classes = load_dataset(config.dataset, "train", data_dir=config.data_dir,
                                  manual_dir=config.manual_dir, test_fraction=config.test_fraction,
                                  seed=config.seed)
    if config.dataset == "digits":
        input_shape, pixel_scale = [8, 8, 1], DIGITS_PIXEL_SCALE
    else:
        input_shape, pixel_scale = [config.image_size, config.image_size, 3], 1.0
    return {"dataset": config.dataset, "test_fraction": config.test_fraction, "seed": config.seed,
            "data_dir": config.data_dir, "manual_dir": config.manual_dir, "image_size": input_shape[0],
            "input_shape": input_shape, "pixel_scale": pixel_scale, "num_train_classes": num_classes}


def training_batches(config):
    """`(P x K batches, number of training images)` of `config`."""
    import tensorflow as tf

    from keras_dml.data import augment, class_balanced

    train = _split(describe(config), "train")
    train_size = int(train.reduce(0, lambda count, _: count + 1))
    transform = None if config.dataset == "digits" else augment.train_transform(config.image_size)
    batches = class_balanced(train, config.classes_per_batch, config.samples_per_class, seed=config.seed,
                             transform=transform)
    return batches.prefetch(tf.data.AUTOTUNE), train_size


def evaluation_batches(description, split="test", batch_size=64):
    """Batches of `(image, label)` of `split`, transformed the one way evaluation transforms them."""
    from keras_dml.data import augment

    dataset = _split(description, split)
    if description["dataset"] == "digits":
        return dataset.batch(batch_size)
    size = description["image_size"]
    transform = augment.eval_transform(size, resize_size=round(size * 256 / 224))
    return augment.map_images(dataset, transform, batch_size=batch_size)


def _split(description, split):
    from keras_dml.data import load_dataset

    dataset, _ = load_dataset(description["dataset"], split, data_dir=description["data_dir"],
                              manual_dir=description["manual_dir"], test_fraction=description["test_fraction"],
                              seed=description["seed"])
    return dataset
