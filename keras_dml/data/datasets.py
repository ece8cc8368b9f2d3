"""The dataset descriptions: one `DatasetInfo` per dataset, which everything else reads.

A description says where a dataset comes from, its class splits, what its items are
(`input_kind`: encoded images or pixel arrays), the input shape and transforms at an
image size, and the scale from uint8 pixels to the embedder's input. Training, its
evaluation callback, `keras-dml evaluate` and export all ask it, so they cannot
disagree: `eval_batches` is the one evaluation input path.

Deep metric learning is evaluated zero-shot: test classes are never seen in training
(docs/methods.md, section 7). Every split is a split by class, labels re-indexed from 0.

| name        | source                                   | `"train"` classes         | `"test"` classes   |
|-------------|------------------------------------------|---------------------------|--------------------|
| `"digits"`  | scikit-learn's bundled 8x8 digits        | 0-4                       | 5-9                |
| `"glyphs"`  | characters rendered from fonts           | `load_glyphs`' train      | its test           |
| `"cars196"` | TFDS `cars196` (its train + test images) | 1-98                      | 99-196             |
| `"cub200"`  | TFDS `caltech_birds2011` (train + test)  | 1-100                     | 101-200            |
| `"sop"`     | TFDS `stanford_online_products`          | `Ebay_train`              | `Ebay_test`        |
| a folder    | `root/<class name>/<image files>`        | all, or 1 - test_fraction | `test_fraction`    |

`"val"` is `val_fraction` of the training classes (`split_classes` with `val_seed`),
and `"train"` with `val_fraction > 0` is the rest: hyperparameters are chosen on
`"val"`, never on `"test"`.

Example:

>>> from keras_dml.data import get_dataset
>>> digits = get_dataset("digits")
>>> train, num_classes = digits.load("train")
>>> num_classes, digits.input_shape(8), digits.input_scale
(5, (8, 8, 1), 0.00392156862745098)
>>> val, _ = digits.load("val", val_fraction=0.4)  # 2 of the 5 training classes
>>> test_batches = digits.eval_batches("test", image_size=8, batch_size=256)
"""
import dataclasses
import os
from typing import Callable


from keras_dml import backends, checks
from keras_dml.names import DATASETS

tf = backends.tensorflow("keras_dml.data.get_dataset and load_dataset (tf.data pipelines)",
                         instead="keras_dml.data.load_glyphs or load_digits, NumPy arrays")

from keras_dml.data import augment, folders, tfds_datasets  # noqa: E402 (after the TensorFlow check)
from keras_dml.data.splits import select_classes, split_classes  # noqa: E402

SPLITS = ("train", "val", "test")
INPUT_KINDS = ("encoded image", "pixels")


@dataclasses.dataclass(frozen=True)
class Loaded:
    """One base split as a loader gives it: `dataset` of `(item, label)`, label `i` is `class_names[i]`."""

    dataset: tf.data.Dataset
    class_names: list
    files: object = None  # a folders.FolderSplit: the file and label of each element


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What is known about one dataset, and the one way to load and evaluate it.

    Attributes:
        name: the registered name, or the folder path.
        source: where the data comes from, in words.
        input_kind: `"encoded image"` (JPEG/PNG bytes, decoded by the transforms) or
            `"pixels"` (float32 arrays the embedder takes as they are).
        input_scale: the factor from uint8 pixels `0..255` to the embedder's input:
            `1.0` for decoded images (what `keras.applications` backbones take), `1/255`
            for pixel datasets in `[0, 1]`. Export's `pixel_scale`.
        options: the loading options this dataset takes besides `image_size`,
            `val_fraction`, `val_seed` (e.g. `data_dir` for TFDS, `test_fraction` for a folder).
        fixed_size: the one image size of a pixel dataset that has one (digits: 8).
        channels: channels of the embedder's input.
        splits: `("train", "val", "test")`.
    """

    name: str
    source: str
    input_kind: str
    input_scale: float
    options: tuple
    loader: Callable = dataclasses.field(repr=False)  # (split, **options) -> Loaded; pixels also get image_size
    class_names_of: Callable = dataclasses.field(default=None, repr=False)  # (split, **options) -> names
    fixed_size: int = None
    channels: int = 3
    splits: tuple = SPLITS

    def __post_init__(self):
        checks.one_of(self.input_kind, "input_kind", INPUT_KINDS)

    def load(self, split="train", *, image_size=None, val_fraction=0.0, val_seed=0, return_paths=False,
             **options):
        """`(dataset, num_classes)`: a `tf.data.Dataset` of `(item, label)` for one class split.

        Args:
            split: `"train"`, `"val"` or `"test"`.
            image_size: the size of a pixel dataset rendered at a chosen size (glyphs);
                encoded images are sized by the transforms, so it does not apply to them.
            val_fraction: the fraction of the training classes held out as `"val"`
                (drawn with `val_seed`); `"train"` is then the other training classes.
            return_paths: for image folders, also return `paths[i]`, the file of the
                `i`-th element: `(dataset, num_classes, paths)`.
            **options: this dataset's `options`; an option set to None is left out.

        Labels are int32, re-indexed from 0 within the split.
        """
        loaded = self._load(split, image_size, val_fraction, val_seed, options)
        if return_paths:
            if loaded.files is None:
                raise ValueError(f"return_paths applies to image folders only; {self.name!r} is not one.")
            return loaded.dataset, len(loaded.class_names), loaded.files.paths
        return loaded.dataset, len(loaded.class_names)

    def class_splits(self, *, image_size=None, val_fraction=0.0, val_seed=0, **options):
        """`{"train": names, "val": names, "test": names}`: the classes of each split (label i is names[i]).

        What a run records to say which classes it trained, tuned and tested on. For
        folders the names are the class folders (no image is read); for TFDS datasets
        their TFDS label ids; for glyphs the characters or font files. Takes `load`'s
        arguments.
        """
        options = self._options(options)
        if self.input_kind == "pixels":
            options["image_size"] = self._size(image_size)
        base = {split: self._class_names(split, options) for split in ("train", "test")}
        train, val = split_classes(base["train"], val_fraction, val_seed, name="val_fraction")
        return {"train": train, "val": val, "test": base["test"]}

    def input_shape(self, image_size):
        """The embedder's input shape at `image_size`: `(size, size, channels)`."""
        return (self._size(image_size),) * 2 + (self.channels,)

    def train_transform(self, image_size):
        """The per-item `transform(item, seed)` for `class_balanced`, or None (pixels are used as they are)."""
        if self.input_kind == "pixels":
            self._size(image_size)
            return None
        return augment.train_transform(image_size)

    def eval_transform(self, image_size):
        """The per-item `transform(item)` of evaluation, or None (pixels are used as they are)."""
        if self.input_kind == "pixels":
            self._size(image_size)
            return None
        return augment.eval_transform(image_size)

    def eval_batches(self, split, image_size, batch_size, **options):
        """Batches of `(input, label)` of `split` as the embedder takes them: the one evaluation input path.

        Training's `RetrievalEvaluation` and `keras-dml evaluate` both use it. `options`
        are `load`'s (`val_fraction`, `data_dir`, ...).
        """
        batch_size = checks.positive_int(batch_size, "batch_size")
        dataset, _ = self.load(split, image_size=image_size if self.input_kind == "pixels" else None, **options)
        transform = self.eval_transform(image_size)
        if transform is None:
            return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
        return augment.map_images(dataset, transform, batch_size=batch_size)

    # --- internals -----------------------------------------------------------------------

    def _load(self, split, image_size, val_fraction, val_seed, options):
        checks.one_of(split, "split", self.splits)
        options = self._options(options)
        if self.input_kind == "pixels":
            options["image_size"] = self._size(image_size)
        if split == "val" and not val_fraction:
            raise ValueError("split='val' needs val_fraction > 0: the fraction of the training classes "
                             "held out for validation, e.g. val_fraction=0.2.")
        loaded = self.loader("test" if split == "test" else "train", **options)
        if split == "test" or not val_fraction:
            return loaded
        train, val = split_classes(range(len(loaded.class_names)), val_fraction, val_seed, name="val_fraction")
        chosen = val if split == "val" else train
        class_names = [loaded.class_names[c] for c in chosen]
        if loaded.files is not None:  # select the files before any is read
            files = folders.select_files(loaded.files, chosen)
            return Loaded(dataset=folders.read_files(files), class_names=class_names, files=files)
        return Loaded(dataset=select_classes(loaded.dataset, chosen, len(loaded.class_names)),
                      class_names=class_names)

    def _class_names(self, split, options):
        if self.class_names_of is not None:
            return self.class_names_of(split, **options)
        return self.loader(split, **options).class_names

    def _options(self, options):
        options = {k: v for k, v in options.items() if v is not None}
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not an option of dataset {self.name!r}; "
                             f"its options are {list(self.options) or 'none'}.")
        return options

    def _size(self, image_size):
        if self.fixed_size is not None:
            if image_size not in (None, self.fixed_size):
                raise ValueError(f"image_size={image_size}: dataset {self.name!r} is {self.fixed_size} x "
                                 f"{self.fixed_size} pixels only.")
            return self.fixed_size
        if image_size is None:
            raise ValueError(f"image_size is needed for dataset {self.name!r}.")
        return checks.positive_int(image_size, "image_size")


# --- the registered datasets ----------------------------------------------------------------


def _load_digits(split, image_size):
    from keras_dml.data.digits import CLASSES, load_digits

    return Loaded(dataset=tf.data.Dataset.from_tensor_slices(load_digits(split)),
                  class_names=[str(c) for c in CLASSES[split]])


def _load_glyphs(split, image_size, render_seed=None, **options):
    from keras_dml.data.glyphs import load_glyphs  # another module's, imported when used

    if render_seed is not None:
        options["seed"] = render_seed
    images, labels, metadata = load_glyphs(split, image_size=image_size, return_metadata=True, **options)
    names = metadata["font" if options.get("by") == "font" else "character"]
    return Loaded(dataset=tf.data.Dataset.from_tensor_slices((images, labels)),
                  class_names=sorted(set(names.tolist())))  # load_glyphs numbers classes in name order


def _tfds_info(name, source):
    def class_names(split, **options):  # TFDS label ids
        _, first, end = tfds_datasets.TFDS_DATASETS[name].classes[split]
        return [str(label) for label in range(first, end)]

    def load(split, **options):
        dataset, _ = tfds_datasets.load_tfds(name, split, **options)
        return Loaded(dataset=dataset, class_names=class_names(split))

    return DatasetInfo(name=name, source=source, input_kind="encoded image", input_scale=1.0,
                       options=("data_dir", "manual_dir", "download"), loader=load, class_names_of=class_names)


DATASET_INFOS = {
    "digits": DatasetInfo(
        name="digits", source="scikit-learn's bundled 8x8 digits (nothing to download); classes 0-4 / 5-9",
        input_kind="pixels", input_scale=1 / 255, options=(), loader=_load_digits, fixed_size=8, channels=1,
    ),
    "glyphs": DatasetInfo(
        name="glyphs", source="characters rendered from fonts (keras_dml.data.glyphs.load_glyphs)",
        input_kind="pixels", input_scale=1 / 255,
        options=("by", "fonts", "renders", "render_seed", "characters", "cache_dir"),
        loader=_load_glyphs, channels=1,
    ),
    "cars196": _tfds_info("cars196", "TFDS cars196, its train + test images; classes 1-98 / 99-196"),
    "cub200": _tfds_info("cub200", "TFDS caltech_birds2011, its train + test images; classes 1-100 / 101-200"),
    "sop": _tfds_info("sop", "TFDS stanford_online_products; Ebay_train / Ebay_test classes"),
}


def folder_info(path):
    """The `DatasetInfo` of an image folder `path/<class name>/<image files>`."""

    def load(split, **options):
        files = folders.list_image_folder(path, split, **options)
        return Loaded(dataset=folders.read_files(files), class_names=files.class_names, files=files)

    def class_names_of(split, test_fraction=0.0, seed=0, on_corrupt=None):
        return folders.folder_classes(path, test_fraction, seed)[split]

    return DatasetInfo(name=os.fspath(path), source=f"the image folder {os.fspath(path)}",
                       input_kind="encoded image", input_scale=1.0,
                       options=("test_fraction", "seed", "on_corrupt"), loader=load,
                       class_names_of=class_names_of)


def get_dataset(name):
    """The `DatasetInfo` of a registered dataset (`DATASETS`) or of an image folder path."""
    if isinstance(name, str) and name in DATASET_INFOS:
        return DATASET_INFOS[name]
    if isinstance(name, (str, os.PathLike)) and _looks_like_path(name):
        return folder_info(name)
    raise ValueError(
        f"Unknown dataset {name!r}. Valid names: {', '.join(DATASETS)}, "
        "or the path of a folder with one sub-folder of images per class."
    )


def load_dataset(name, split="train", *, data_dir=None, manual_dir=None, download=False, test_fraction=0.0,
                 seed=0, on_corrupt="warn", **options):
    """`(dataset, num_classes)` of one class split: `get_dataset(name).load(split, ...)`.

    Args:
        name: `"digits"`, `"glyphs"`, `"cars196"`, `"cub200"`, `"sop"`, or the path of an
            image folder.
        split: `"train"`, `"val"` (with `val_fraction`) or `"test"`.
        data_dir, manual_dir, download: where TFDS datasets are prepared and their
            archives found (see `DatasetInfo`); ignored by the other datasets.
        test_fraction, seed, on_corrupt: an image folder's class split and corrupt-file
            policy (see `load_image_folder`); a registered dataset has a fixed test split,
            so `test_fraction` must be 0 for it, and ignores `seed` and `on_corrupt`.
        **options: the rest of `DatasetInfo.load`'s (`val_fraction`, `val_seed`,
            `image_size`, `return_paths`, glyphs' options).
    """
    info = get_dataset(name)
    given = {"data_dir": data_dir, "manual_dir": manual_dir, "download": download or None,
             "test_fraction": test_fraction, "seed": seed, "on_corrupt": on_corrupt}
    if test_fraction and "test_fraction" not in info.options:
        raise ValueError(f"test_fraction applies to image folders only; {info.name!r} has a fixed class split.")
    return info.load(split, **{k: v for k, v in given.items() if k in info.options}, **options)


def _looks_like_path(name):
    name = os.fspath(name)
    return os.path.exists(name) or os.sep in name or "/" in name
