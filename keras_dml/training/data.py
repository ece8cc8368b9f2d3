"""The data of a run, from its dataset's description (`keras_dml.data.get_dataset`).

`describe(config)` is what a run records in `dataset.json`: which dataset with which
loading options, the embedder's input shape, the input scale export uses, and the
classes of each split (and, for an image folder, the test files):

    {"dataset": "photos/", "options": {"test_fraction": 0.25, "seed": 0}, "image_size": 96,
     "input_shape": [96, 96, 3], "pixel_scale": 1.0, "num_train_classes": 12,
     "classes": {"train": [...], "val": [], "test": [...]}, "test_files": [...]}

`evaluation_batches(description)` is the one evaluation input path of training and of
`keras-dml evaluate`: the description's `eval_batches` on the recorded split.
"""
from keras_dml.training.config import TrainConfig


def loading_options(config):
    """The dataset's loading options that `config` sets (None = not set, left out)."""
    options = {"data_dir": config.data_dir, "manual_dir": config.manual_dir,
               "test_fraction": config.test_fraction, **config.data_options}
    if config.split_seed is not None:
        if "seed" in config.data_options:
            raise ValueError("split_seed and data_options['seed'] both set the dataset's seed; set one.")
        options["seed"] = config.split_seed
    return {key: value for key, value in options.items() if value is not None}


def describe(config):
    """The description of `config`'s data, after checking it can be loaded and has test classes."""
    from keras_dml.data import get_dataset

    config = TrainConfig.from_dict(config) if isinstance(config, dict) else config
    info = get_dataset(config.dataset)
    options = loading_options(config)
    classes = info.class_splits(image_size=config.image_size, **options)
    if not classes["test"]:
        raise ValueError(f"dataset={config.dataset} has no test classes to evaluate on: hold some out with "
                         "test_fraction, e.g. test_fraction=0.25.")
    _, num_train_classes = info.load("train", image_size=config.image_size, **options)
    description = {"dataset": info.name, "options": options, "image_size": config.image_size,
                   "input_shape": list(info.input_shape(config.image_size)), "pixel_scale": info.input_scale,
                   "num_train_classes": num_train_classes, "classes": classes}
    if "test_fraction" in info.options:  # an image folder: which files are its test split
        _, _, paths = info.load("test", return_paths=True, **options)
        description["test_files"] = [str(path) for path in paths]
    return description


def training_batches(config, description):
    """`(P x K batches, number of training images)` of `config`."""
    import tensorflow as tf

    from keras_dml.data import class_balanced, get_dataset

    info = get_dataset(description["dataset"])
    train, _ = info.load("train", image_size=config.image_size, **description["options"])
    train_size = int(train.reduce(0, lambda count, _: count + 1))
    batches = class_balanced(train, config.classes_per_batch, config.samples_per_class, seed=config.seed,
                             transform=info.train_transform(config.image_size))
    return batches.prefetch(tf.data.AUTOTUNE), train_size


def evaluation_batches(description, split="test", batch_size=64):
    """Batches of `(input, label)` of the recorded `split`, as training evaluates them.

    A `ValueError` when the dataset's classes are no longer those the run recorded (a
    folder changed since).
    """
    from keras_dml.data import get_dataset

    info = get_dataset(description["dataset"])
    recorded = description.get("classes", {}).get(split)
    now = info.class_splits(image_size=description["image_size"], **description["options"])
    if recorded is not None and now[split] != recorded:
        raise ValueError(f"the {split} classes of {description['dataset']} are not those the run recorded: "
                         "the dataset changed since training.")
    return info.eval_batches(split, description["image_size"], batch_size, **description["options"])
