"""`load_dataset`: the standard metric-learning benchmarks and image folders, split by class.

Deep metric learning is evaluated zero-shot: the test classes are never seen in training
(docs/methods.md section 7). Every split here is a split by class, and labels are re-indexed
from 0 within the split, so a split with `num_classes` classes has labels
`0 .. num_classes - 1`.

| name        | source                                   | train classes  | test classes       |
|-------------|------------------------------------------|----------------|--------------------|
| `"digits"`  | scikit-learn's bundled 8x8 digits        | 0-4            | 5-9                |
| `"cars196"` | TFDS `cars196` (its train + test images) | 1-98           | 99-196             |
| `"cub200"`  | TFDS `caltech_birds2011` (train + test)  | 1-100          | 101-200            |
| `"sop"`     | TFDS `stanford_online_products`          | `Ebay_train`   | `Ebay_test`        |
| a folder    | `root/<class name>/<image files>`        | all, or a seeded class-disjoint split by `test_fraction` |

Images come out as they are stored: encoded JPEG/PNG bytes (a `tf.string` scalar) for
the TFDS datasets and folders, float32 `(8, 8, 1)` pixels in `[0, 1]` for digits. The
transforms in `keras_dml.data.augment` decode them (decoding only the crop they need),
and `keras_dml.data.class_balanced` keeps the small encoded form in memory.

Example:

>>> from keras_dml.data import load_dataset
>>> train, num_classes = load_dataset("digits", "train")
>>> num_classes
5
"""
import dataclasses
import os
import pathlib
import warnings

import numpy as np
import tensorflow as tf

from keras_dml.data.digits import load_digits

SPLITS = ("train", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# The first bytes of each format TensorFlow decodes: a file that does not start with one
# of them is not an image whatever its name says.
IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


@dataclasses.dataclass(frozen=True)
class TFDSDataset:
    """A TFDS builder and, per split, the TFDS split read and its class range.

    `classes[split] = (tfds_split, first, end)`: TFDS labels `first <= label < end` form
    the split, relabelled `label - first`.
    """

    builder: str
    label_key: str
    classes: dict
    source: str


TFDS_DATASETS = {
    "cars196": TFDSDataset(
        builder="cars196",
        label_key="label",
        classes={"train": ("train+test", 0, 98), "test": ("train+test", 98, 196)},
        source=(
            "the original Stanford Cars archives; their Stanford addresses now answer "
            "404, so find a byte-identical copy (TFDS checks its SHA-256)"
        ),
    ),
    "cub200": TFDSDataset(
        builder="caltech_birds2011",
        label_key="label",
        classes={"train": ("train+test", 0, 100), "test": ("train+test", 100, 200)},
        source="CaltechDATA (https://data.caltech.edu/records/65de6-vp158), the CUB-200-2011 record",
    ),
    "sop": TFDSDataset(
        builder="stanford_online_products",
        label_key="class_id",
        classes={"train": ("train", 0, 11318), "test": ("test", 11318, 22634)},
        source=(
            "the Stanford Online Products page (https://cvgl.stanford.edu/projects/lifted_struct/); "
            "TFDS's own address is an old FTP one"
        ),
    ),
}
DATASETS = ("digits",) + tuple(TFDS_DATASETS)


def load_dataset(
    name,
    split="train",
    *,
    data_dir=None,
    manual_dir=None,
    download=False,
    test_fraction=0.0,
    seed=0,
    on_corrupt="warn",
):
    """`(dataset, num_classes)`: a `tf.data.Dataset` of `(image, label)` for one class split.

    Args:
        name: `"digits"`, `"cars196"`, `"cub200"`, `"sop"`, or the path of an image folder
            (see `load_image_folder`, which takes `test_fraction`, `seed`, `on_corrupt`).
        split: `"train"` or `"test"`.
        data_dir: TFDS data directory holding prepared datasets (TFDS's default if None).
        manual_dir: folder holding the original archives; a dataset not yet prepared in
            `data_dir` is prepared from them once (TFDS verifies their checksums).
        download: let TFDS fetch missing archives from its addresses instead of raising.

    The label is int32, re-indexed from 0 within the split.
    """
    _check_split(split)
    if name in DATASETS and test_fraction:
        raise ValueError(f"test_fraction applies to image folders only; {name!r} has a fixed class split.")
    if name == "digits":
        images, labels = load_digits(split)
        return tf.data.Dataset.from_tensor_slices((images, labels)), int(labels.max()) + 1
    if name in TFDS_DATASETS:
        return _load_tfds(name, split, data_dir, manual_dir, download)
    if _looks_like_path(name):
        return load_image_folder(name, split, test_fraction=test_fraction, seed=seed, on_corrupt=on_corrupt)
    raise ValueError(
        f"Unknown dataset {name!r}. Valid names: {', '.join(DATASETS)}, "
        "or the path of a folder with one sub-folder of images per class."
    )


def _check_split(split):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got split={split!r}.")


def _looks_like_path(name):
    name = os.fspath(name)
    return os.path.exists(name) or os.sep in name or "/" in name


def _load_tfds(name, split, data_dir, manual_dir, download):
    import tensorflow_datasets as tfds

    spec = TFDS_DATASETS[name]
    builder = tfds.builder(spec.builder, data_dir=data_dir)
    if not builder.is_prepared():
        _prepare(name, spec, builder, manual_dir, download)
    tfds_split, first, end = spec.classes[split]
    # Keep the image encoded (no decode of unused pixels, masks or boxes).
    decoders = tfds.decode.PartialDecoding(
        {"image": True, spec.label_key: True}, decoders={"image": tfds.decode.SkipDecoding()}
    )
    examples = builder.as_dataset(split=tfds_split, decoders=decoders, shuffle_files=False)
    dataset = examples.map(lambda ex: (ex["image"], tf.cast(ex[spec.label_key], "int32")))
    dataset = dataset.filter(lambda image, label: (label >= first) & (label < end))
    return dataset.map(lambda image, label: (image, label - first)), end - first


def _prepare(name, spec, builder, manual_dir, download):
    """Builds the TFDS dataset from the archives in `manual_dir`, or says how to get them."""
    import tensorflow_datasets as tfds

    archives = {info.filename: info for info in builder.url_infos.values()}
    missing = [
        filename
        for filename in sorted(archives)
        if manual_dir is None or not (pathlib.Path(manual_dir) / filename).exists()
    ]
    if missing and not download:
        wanted = "\n".join(
            f"  {filename}  ({int(archives[filename].size):,} bytes, sha256 {archives[filename].checksum})"
            for filename in missing
        )
        searched = "no manual_dir given" if manual_dir is None else f"manual_dir={manual_dir}"
        raise FileNotFoundError(
            f"Dataset {name!r} (TFDS builder {spec.builder!r}) is not prepared in {builder.data_dir}, "
            f"and its original archives were not found ({searched}). Missing:\n{wanted}\n"
            f"Obtain them from {spec.source}, put them in one folder and call "
            f"load_dataset({name!r}, manual_dir='/path/to/that/folder'); TFDS verifies the "
            "checksums and prepares the dataset once into data_dir. Or pass download=True to let "
            "TFDS try its original addresses. See docs/data.md."
        )
    config = tfds.download.DownloadConfig(manual_dir=None if manual_dir is None else os.fspath(manual_dir))
    builder.download_and_prepare(download_config=config)


def load_image_folder(path, split="train", *, test_fraction=0.0, seed=0, on_corrupt="warn"):
    """`(dataset, num_classes)` from `path/<class name>/<image files>`.

    Classes are the sub-folders, sorted by name; their images are the files with an
    image extension anywhere below them. With `test_fraction > 0`, that fraction of the
    classes (chosen by `seed`) is the `"test"` split and the rest is `"train"`; with
    `test_fraction=0` every class is `"train"`. Labels follow the sorted class names
    within the split, from 0. Images are the encoded file bytes.

    A file that is empty or does not start like a JPEG, PNG, GIF or BMP is corrupt:
    `on_corrupt="warn"` skips it with a warning naming it, `"raise"` raises. (Damage
    further into a file shows only when it is decoded.)
    """
    if on_corrupt not in ("warn", "raise"):
        raise ValueError(f"on_corrupt must be 'warn' or 'raise'; got on_corrupt={on_corrupt!r}.")
    _check_split(split)
    root = pathlib.Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder {root} does not exist or is not a folder.")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise ValueError(
            f"Image folder {root} has no class sub-folders; expected {root}/<class name>/<images>."
        )
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1); got test_fraction={test_fraction}.")
    num_test = int(round(test_fraction * len(class_dirs)))
    if test_fraction > 0 and not 0 < num_test < len(class_dirs):
        raise ValueError(
            f"test_fraction={test_fraction} of {len(class_dirs)} classes leaves no class for one "
            "split; use more classes or another fraction."
        )
    if split == "test" and num_test == 0:
        raise ValueError("split='test' of an image folder needs test_fraction > 0.")
    held_out = set(np.random.default_rng(seed).permutation(len(class_dirs))[:num_test].tolist())
    chosen = [d for i, d in enumerate(class_dirs) if (i in held_out) == (split == "test")]

    paths, labels = [], []
    for label, class_dir in enumerate(chosen):
        files = sorted(f for f in class_dir.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
        readable = [f for f in files if _is_image_file(f, on_corrupt)]
        if not readable:
            raise ValueError(f"Class folder {class_dir} has no readable images ({', '.join(IMAGE_EXTENSIONS)}).")
        paths += [os.fspath(f) for f in readable]
        labels += [label] * len(readable)
    dataset = tf.data.Dataset.from_tensor_slices((paths, tf.constant(labels, "int32")))
    dataset = dataset.map(
        lambda file, label: (tf.io.read_file(file), label), num_parallel_calls=tf.data.AUTOTUNE
    )
    return dataset, len(chosen)


def _is_image_file(file, on_corrupt):
    with open(file, "rb") as handle:
        head = handle.read(8)
    if head.startswith(IMAGE_SIGNATURES):
        return True
    message = f"Corrupt image file {file}: it is empty or not a JPEG, PNG, GIF or BMP."
    if on_corrupt == "raise":
        raise ValueError(message + " Pass on_corrupt='warn' to skip such files.")
    warnings.warn(message + " Skipped.", stacklevel=2)
    return False
