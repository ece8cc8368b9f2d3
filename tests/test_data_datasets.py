"""load_dataset: digits, the TFDS class splits (mocked and from a tiny prepared
directory, never downloaded) and image folders."""
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_dml.data import (DATASETS, augment, folder_classes, get_dataset, load_dataset, load_digits,
                            load_image_folder, split_classes)
from keras_dml.data.tfds_datasets import TFDS_DATASETS


def as_lists(dataset):
    pairs = [(image, int(label)) for image, label in dataset.as_numpy_iterator()]
    return [image for image, _ in pairs], [label for _, label in pairs]


# --- digits -----------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "test"])
def test_digits_is_load_digits_as_a_dataset(split):
    dataset, num_classes = load_dataset("digits", split)
    images, labels = as_lists(dataset)
    expected_images, expected_labels = load_digits(split)
    assert num_classes == 5
    np.testing.assert_array_equal(np.stack(images), expected_images)
    assert labels == expected_labels.tolist()
    assert sorted(set(labels)) == [0, 1, 2, 3, 4]


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="cars196, cub200, sop") as error:
        load_dataset("cifar10")
    assert "digits" in str(error.value) and "folder" in str(error.value)


def test_bad_split_and_misplaced_test_fraction():
    with pytest.raises(ValueError, match="split"):
        load_dataset("digits", "validation")
    with pytest.raises(ValueError, match="test_fraction"):
        load_dataset("cars196", "train", test_fraction=0.5)


def test_load_dataset_keeps_its_keywords():
    # Folder keywords at their defaults and TFDS keywords set to None pass for any dataset, as before.
    dataset, num_classes = load_dataset("digits", "test", data_dir=None, manual_dir=None, test_fraction=0.0, seed=7)
    assert num_classes == 5 and len(list(dataset)) == len(load_digits("test")[1])


# --- TFDS datasets on mock data ---------------------------------------------------------

RAW_SPLITS = {"cars196": "train+test", "cub200": "train+test", "sop": None}


@pytest.fixture(scope="module")
def tfds_metadata(tmp_path_factory):
    """A data_dir holding only each builder's metadata, as if prepared; mock_data supplies examples."""
    root = tmp_path_factory.mktemp("tfds_metadata")
    for spec in TFDS_DATASETS.values():
        builder = tfds.builder(spec.builder, data_dir=root)
        builder.data_path.mkdir(parents=True)
        builder.info.write_to_directory(builder.data_path)
    return root


@pytest.mark.parametrize("name", sorted(TFDS_DATASETS))
def test_tfds_class_split_on_mock_data(name, tfds_metadata):
    spec = TFDS_DATASETS[name]
    with tfds.testing.mock_data(num_examples=60, data_dir=tfds_metadata):
        for split in ("train", "test"):
            tfds_split, first, end = spec.classes[split]
            raw = tfds.builder(spec.builder).as_dataset(
                split=tfds_split,
                decoders=tfds.decode.PartialDecoding(
                    {"image": True, spec.label_key: True}, decoders={"image": tfds.decode.SkipDecoding()}
                ),
            )
            expected = [
                (ex["image"], int(ex[spec.label_key]) - first)
                for ex in raw.as_numpy_iterator()
                if first <= ex[spec.label_key] < end
            ]
            dataset, num_classes = load_dataset(name, split)
            got = list(dataset.as_numpy_iterator())
            assert num_classes == end - first
            assert len(expected) > 0
            assert [(image, int(label)) for image, label in got] == expected
            assert all(0 <= label < num_classes for _, label in got)
            assert dataset.element_spec[0].dtype == tf.string
            assert dataset.element_spec[1].dtype == tf.int32


def test_tfds_splits_follow_the_protocol():
    ranges = {name: {split: spec.classes[split][1:] for split in spec.classes} for name, spec in TFDS_DATASETS.items()}
    # Cars 1-98 / 99-196, CUB 1-100 / 101-200 (TFDS labels are 0-based), SOP Ebay_train / Ebay_test.
    assert ranges["cars196"] == {"train": (0, 98), "test": (98, 196)}
    assert ranges["cub200"] == {"train": (0, 100), "test": (100, 200)}
    assert ranges["sop"] == {"train": (0, 11318), "test": (11318, 22634)}
    assert TFDS_DATASETS["sop"].classes["train"][0] == "train"
    assert TFDS_DATASETS["sop"].classes["test"][0] == "test"


# --- TFDS: a tiny prepared directory, read for real -------------------------------------

TRAIN_LABELS = [0, 1, 97, 98, 150, 195]  # TFDS's own image split mixes the classes...
TEST_LABELS = [2, 97, 98, 195]  # ...so keras_dml reads both and re-splits by class.


@pytest.fixture(scope="module")
def tiny_cars196(tmp_path_factory):
    """cars196 prepared by TFDS from 10 fake 6x5 images whose pixels equal their label."""
    data_dir = tmp_path_factory.mktemp("tfds_data")
    builder = tfds.builder("cars196", data_dir=data_dir)

    def examples(labels, prefix):
        for i, label in enumerate(labels):
            yield f"{prefix}{i}", {
                "image": np.full((6, 5, 3), label, np.uint8),
                "label": label,
                "bbox": tfds.features.BBox(0.0, 0.0, 1.0, 1.0),
                "id": f"{prefix}{i}",
            }

    def split_generators(self, dl_manager):
        return {"train": examples(TRAIN_LABELS, "train"), "test": examples(TEST_LABELS, "test")}

    with mock.patch.object(type(builder), "_split_generators", split_generators):
        builder.download_and_prepare()
    return data_dir


@pytest.mark.parametrize("split, first", [("train", 0), ("test", 98)])
def test_tfds_class_split_on_a_prepared_directory(tiny_cars196, split, first):
    dataset, num_classes = load_dataset("cars196", split, data_dir=tiny_cars196)
    images, labels = as_lists(dataset)
    expected = sorted(label - first for label in TRAIN_LABELS + TEST_LABELS if first <= label < first + 98)
    assert num_classes == 98
    assert sorted(labels) == expected
    for image, label in zip(images, labels):  # each image is still paired with its label
        np.testing.assert_array_equal(tf.io.decode_image(image).numpy(), np.full((6, 5, 3), label + first))


def test_missing_tfds_data_says_where_it_looked_and_what_to_get(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_dataset("cars196", data_dir=tmp_path)
    message = str(error.value)
    assert "'cars196'" in message and str(tmp_path) in message and "manual_dir" in message
    for archive in ("cars_train.tgz", "cars_test.tgz", "car_devkit.tgz", "cars_test_annos_withlabels.mat"):
        assert archive in message

    manual = tmp_path / "archives"
    manual.mkdir()
    (manual / "cars_train.tgz").write_bytes(b"not the archive")
    with pytest.raises(FileNotFoundError) as error:
        load_dataset("cub200", data_dir=tmp_path, manual_dir=manual)
    assert "'cub200'" in str(error.value) and str(manual) in str(error.value)
    assert "CUB_200_2011.tgz" in str(error.value) and "segmentations.tgz" in str(error.value)


def test_wrong_archive_fails_the_checksum_without_downloading(tmp_path):
    manual = tmp_path / "archives"
    manual.mkdir()
    for archive in ("cars_train.tgz", "cars_test.tgz", "car_devkit.tgz", "cars_test_annos_withlabels.mat"):
        (manual / archive).write_bytes(b"not the archive")
    with pytest.raises(Exception, match="checksum") as error:
        load_dataset("cars196", data_dir=tmp_path / "data", manual_dir=manual)
    assert str(manual) in str(error.value)


# --- image folders ----------------------------------------------------------------------


def write_folder(root, classes=("ant", "bee", "cat", "dog"), per_class=3):
    """`root/<class>/<i>.png|jpg`, pixels = class index * 20 + i; returns {path: (class, i)}."""
    written = {}
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = tf.fill([4, 5, 3], tf.constant(c * 20 + i, tf.uint8))
            if i % 2:
                path, data = root / name / f"{i}.jpg", tf.io.encode_jpeg(pixels)
            else:
                path, data = root / name / f"{i}.png", tf.io.encode_png(pixels)
            path.write_bytes(data.numpy())
            written[str(path)] = (name, i)
    (root / classes[0] / "notes.txt").write_text("not an image file: ignored")
    return written


def test_image_folder_labels_follow_sorted_class_names(tmp_path):
    written = write_folder(tmp_path)
    dataset, num_classes = load_dataset(str(tmp_path))
    images, labels = as_lists(dataset)
    assert num_classes == 4
    assert labels == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    files = sorted(written, key=lambda path: (written[path][0], path))
    assert images == [open(path, "rb").read() for path in files]


def original_classes(path, split, seed):
    """`{label: original class}` of a folder written by write_folder (pixel = class * 20 + i)."""
    dataset, num_classes = load_image_folder(path, split, test_fraction=0.3, seed=seed)
    images, labels = as_lists(dataset)
    pairs = {(label, int(tf.io.decode_image(image)[0, 0, 0]) // 20) for image, label in zip(images, labels)}
    assert sorted({label for label, _ in pairs}) == list(range(num_classes))
    assert len(pairs) == num_classes  # one original class per label
    return dict(pairs)


def test_image_folder_class_disjoint_split(tmp_path):
    write_folder(tmp_path, classes=[f"class{c}" for c in range(10)], per_class=2)
    train, test = original_classes(tmp_path, "train", 1), original_classes(tmp_path, "test", 1)
    assert (len(train), len(test)) == (7, 3)
    assert set(train.values()).isdisjoint(test.values())
    assert set(train.values()) | set(test.values()) == set(range(10))
    # Labels follow the sorted class names within the split.
    assert [train[label] for label in range(7)] == sorted(train.values())
    assert original_classes(tmp_path, "test", 1) == test
    assert original_classes(tmp_path, "test", 2) != test


def test_corrupt_file_is_skipped_with_a_warning_or_raises(tmp_path):
    write_folder(tmp_path)
    corrupt = tmp_path / "bee" / "broken.jpg"
    corrupt.write_bytes(b"this is not a JPEG")
    (tmp_path / "cat" / "empty.png").write_bytes(b"")
    with pytest.warns(UserWarning) as warned:
        dataset, _ = load_dataset(str(tmp_path))
    assert sorted(str(w.message).split(":")[0] for w in warned) == [
        f"Corrupt image file {corrupt}",
        f"Corrupt image file {tmp_path / 'cat' / 'empty.png'}",
    ]
    assert len(as_lists(dataset)[1]) == 12
    with pytest.raises(ValueError, match="broken.jpg|empty.png"):
        load_dataset(str(tmp_path), on_corrupt="raise")
    with pytest.raises(ValueError, match="on_corrupt"):
        load_dataset(str(tmp_path), on_corrupt="ignore")


def test_bad_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        load_dataset(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_dataset(str(tmp_path))
    (tmp_path / "lonely").mkdir()
    (tmp_path / "lonely" / "bad.png").write_bytes(b"garbage")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="lonely.*no readable images"):
        load_dataset(str(tmp_path))
    (tmp_path / "lonely" / "bad.png").unlink()
    write_folder(tmp_path / "ok", classes=("a", "b"))
    with pytest.raises(ValueError, match="test_fraction > 0"):
        load_image_folder(tmp_path / "ok", "test")
    with pytest.raises(ValueError, match="test_fraction"):
        load_image_folder(tmp_path / "ok", test_fraction=0.1)


# --- the dataset descriptions -----------------------------------------------------------


def test_one_description_per_dataset():
    assert DATASETS == ("digits", "glyphs", "cars196", "cub200", "sop")
    for name in DATASETS:
        info = get_dataset(name)
        assert info.name == name and info.splits == ("train", "val", "test")
        assert info.input_kind in ("encoded image", "pixels")
    digits, cars = get_dataset("digits"), get_dataset("cars196")
    assert (digits.input_kind, digits.input_scale, digits.input_shape(8)) == ("pixels", 1 / 255, (8, 8, 1))
    assert (cars.input_kind, cars.input_scale, cars.input_shape(96)) == ("encoded image", 1.0, (96, 96, 3))
    assert digits.train_transform(8) is None and cars.train_transform(96) is not None
    with pytest.raises(ValueError, match="image_size=16"):
        digits.input_shape(16)
    with pytest.raises(ValueError, match="data_dir: not an option of dataset 'digits'"):
        digits.load("train", data_dir="/tmp")


def test_eval_resize_keeps_the_224_to_256_ratio_at_every_size():
    image = tf.constant(np.random.default_rng(0).integers(0, 256, size=(50, 70, 3)).astype("uint8"))
    for size, resize in ((224, 256), (96, 110), (32, 37)):
        np.testing.assert_array_equal(augment.eval_transform(size)(image).numpy(),
                                      augment.eval_transform(size, resize_size=resize)(image).numpy())


def test_eval_batches_are_the_eval_transform_of_the_split(tmp_path):
    write_folder(tmp_path, classes=("ant", "bee", "cat", "dog"), per_class=2)
    info = get_dataset(str(tmp_path))
    got = [x.numpy() for x, _ in info.eval_batches("test", 16, 3, test_fraction=0.5, seed=0)]
    test, _ = load_dataset(str(tmp_path), "test", test_fraction=0.5, seed=0)
    expected = [x.numpy() for x, _ in augment.map_images(test, augment.eval_transform(16, resize_size=18), 3)]
    assert [x.shape for x in got] == [(3, 16, 16, 3), (1, 16, 16, 3)]
    np.testing.assert_array_equal(np.concatenate(got), np.concatenate(expected))
    digits = get_dataset("digits").eval_batches("test", 8, 1000)
    np.testing.assert_array_equal(next(iter(digits))[0].numpy(), load_digits("test")[0][:1000])


def test_val_classes_are_carved_from_the_training_classes():
    digits = get_dataset("digits")
    splits = digits.class_splits(val_fraction=0.4, val_seed=3)
    assert sorted(splits["train"] + splits["val"]) == ["0", "1", "2", "3", "4"] and len(splits["val"]) == 2
    assert splits["test"] == ["5", "6", "7", "8", "9"]
    images, labels = load_digits("train")
    for split in ("train", "val"):
        dataset, num_classes = digits.load(split, val_fraction=0.4, val_seed=3)
        got_images, got_labels = map(np.stack, zip(*dataset.as_numpy_iterator()))
        assert num_classes == len(splits[split]) and sorted(set(got_labels)) == list(range(num_classes))
        originals = [int(name) for name in splits[split]]
        keep = np.isin(labels, originals)
        np.testing.assert_array_equal(got_images, images[keep])  # the same images, in order
        np.testing.assert_array_equal(np.asarray(originals)[got_labels], labels[keep])  # label i is names[i]
    with pytest.raises(ValueError, match="val_fraction > 0"):
        digits.load("val")
    with pytest.raises(ValueError, match="val_fraction"):
        digits.load("val", val_fraction=0.1)  # 0 of 5 classes


def test_split_classes():
    kept, held = split_classes(10, 0.3, seed=1)
    assert len(held) == 3 and sorted(kept + held) == list(range(10)) and kept == sorted(kept)
    assert split_classes(10, 0.3, seed=1) == (kept, held) and split_classes(10, 0.3, seed=2) != (kept, held)
    assert split_classes(["c", "a", "b"], 0.0) == (["c", "a", "b"], [])
    for fraction in (1.0, -0.1, 0.01):
        with pytest.raises(ValueError, match="val_fraction"):
            split_classes(10, fraction, name="val_fraction")


# --- image folders: paths, class record, validation classes ------------------------------


def test_folder_paths_and_class_record(tmp_path):
    written = write_folder(tmp_path, classes=[f"class{c}" for c in range(8)], per_class=2)
    info = get_dataset(str(tmp_path))
    record = info.class_splits(test_fraction=0.25, seed=4, val_fraction=0.5, val_seed=0)
    assert len(record["test"]) == 2 and len(record["val"]) == 3 and len(record["train"]) == 3
    assert sorted(sum(record.values(), [])) == [f"class{c}" for c in range(8)]
    assert record == info.class_splits(test_fraction=0.25, seed=4, val_fraction=0.5, val_seed=0)
    assert folder_classes(tmp_path, 0.25, seed=4)["test"] == record["test"]
    for split in ("train", "val", "test"):
        dataset, num_classes, paths = info.load(split, test_fraction=0.25, seed=4, val_fraction=0.5,
                                                return_paths=True)
        pairs = list(dataset.as_numpy_iterator())
        assert num_classes == len(record[split]) and len(paths) == len(pairs) == 2 * num_classes
        for (image, label), path in zip(pairs, paths):
            assert image == open(path, "rb").read()  # paths[i] is the file of element i
            assert written[path][0] == record[split][label]  # and label i is class record[split][i]
    with pytest.raises(ValueError, match="return_paths applies to image folders only"):
        load_dataset("digits", return_paths=True)


def test_tfds_val_classes_on_a_prepared_directory(tiny_cars196):
    cars = get_dataset("cars196")
    names = cars.class_splits(val_fraction=0.5, val_seed=1, data_dir=tiny_cars196)
    assert len(names["val"]) == 49 and sorted(names["train"] + names["val"], key=int) == [str(c) for c in range(98)]
    seen = {}
    for split in ("train", "val"):
        dataset, num_classes = cars.load(split, val_fraction=0.5, val_seed=1, data_dir=tiny_cars196)
        assert num_classes == 49
        for image, label in dataset.as_numpy_iterator():  # each image's pixels are its TFDS label
            seen[int(tf.io.decode_image(image)[0, 0, 0])] = names[split][label]
    assert seen == {label: str(label) for label in TRAIN_LABELS + TEST_LABELS if label < 98}
