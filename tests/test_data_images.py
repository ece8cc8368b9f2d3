"""Image files: damaged files are found and named when a folder is loaded; serving decodes like training."""
import importlib.util
import io
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_dml.data import augment, decode_image, images, load_dataset, read_image

ROOT = Path(__file__).resolve().parent.parent


def serve_onnx():
    spec = importlib.util.spec_from_file_location("serve_onnx", ROOT / "export" / "serve_onnx.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def jpeg_bytes(value=100, size=32):
    return tf.io.encode_jpeg(tf.fill([size, size, 3], tf.constant(value, tf.uint8))).numpy()


def png16_bytes():
    """A 16-bit greyscale PNG with values 0 .. 65535 (PIL reads it as mode I;16)."""
    values = np.linspace(0, 65535, 6 * 7).reshape(6, 7).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")
    return values, buffer.getvalue()


def folder_with(tmp_path, damaged):
    """Two classes of two good JPEGs each, plus `damaged` = {relative path: bytes, or a callable making it}."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(2):
            (tmp_path / name / f"{i}.jpg").write_bytes(jpeg_bytes(40 * i + 10))
    for relative, make in damaged.items():
        make(tmp_path / relative) if callable(make) else (tmp_path / relative).write_bytes(make)
    return tmp_path


DAMAGED = {
    "truncated JPEG": ("a/cut.jpg", jpeg_bytes()[:300]),  # a valid header, then nothing
    "text starting with BM": ("a/fake.bmp", b"BM this is a text file, not a bitmap"),
    "dangling link": ("b/gone.png", lambda path: os.symlink(path.parent / "missing.png", path)),
    "folder with an image name": ("b/x.jpg", lambda path: path.mkdir()),
}


@pytest.mark.parametrize("kind", sorted(DAMAGED))
def test_damaged_file_is_named_at_load_and_skipped_with_warn(tmp_path, kind):
    relative, make = DAMAGED[kind]
    root = folder_with(tmp_path, {relative: make})
    with pytest.warns(UserWarning, match=f"Corrupt image file {root / relative}") as warned:
        dataset, num_classes = load_dataset(str(root))
    assert len(warned) == 1
    pairs = list(dataset.as_numpy_iterator())
    assert num_classes == 2 and [label for _, label in pairs] == [0, 0, 1, 1]
    for image, _ in pairs:  # what was kept decodes: fit will not fail on it
        decode_image(tf.constant(image))
    with pytest.raises(ValueError, match=str(root / relative)):
        load_dataset(str(root), on_corrupt="raise")


def test_find_corrupt_says_why(tmp_path):
    (tmp_path / "good.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "bad.png").write_bytes(tf.io.encode_png(tf.zeros([16, 16, 3], tf.uint8)).numpy()[:50])
    (tmp_path / "empty.gif").write_bytes(b"")
    paths = [str(tmp_path / name) for name in ("good.jpg", "bad.png", "empty.gif", "nowhere.jpg")]
    found = images.find_corrupt(paths)
    assert list(found) == paths[1:]
    assert all(reason for reason in found.values())
    assert "not a regular file" in found[paths[3]]


def test_sixteen_bit_png_decodes_the_same_in_training_and_serving(tmp_path):
    values, data = png16_bytes()
    path = tmp_path / "deep.png"
    path.write_bytes(data)
    expected = np.repeat((values >> 8).astype(np.uint8)[..., None], 3, axis=-1)
    np.testing.assert_array_equal(read_image(path), expected)
    # Training: the eval transform at the image's own size (no resize, no crop) on the encoded bytes.
    training = augment.eval_transform(6, resize_size=6)(tf.constant(data)).numpy()
    np.testing.assert_array_equal(training, expected[:, :6].astype(np.float32))
    # Serving: the same pixels, in colour and in grey.
    serve = serve_onnx()
    np.testing.assert_array_equal(serve.load_image(path, 6, 7, 3), expected)
    np.testing.assert_array_equal(serve.load_image(path, 6, 7, 1)[..., 0], expected[..., 0])
    clipped = np.asarray(Image.open(path).convert("L"))  # what serving did before: 0 or 255
    assert not np.array_equal(clipped, expected[..., 0])


def test_serving_names_a_truncated_png(tmp_path):
    path = tmp_path / "cut.png"
    path.write_bytes(tf.io.encode_png(tf.zeros([16, 16, 3], tf.uint8)).numpy()[:60])
    with pytest.raises(ValueError, match=f"Cannot read image file {path}"):
        serve_onnx().load_image(path, 8, 8, 3)


def test_a_file_damaged_after_a_first_load_is_found_again(tmp_path):
    root = folder_with(tmp_path, {})
    assert len(list(load_dataset(str(root))[0])) == 4  # decoded once, remembered
    damaged = root / "a" / "1.jpg"
    damaged.write_bytes(jpeg_bytes()[:200] + b"\0" * 10)  # other size: decoded again
    with pytest.warns(UserWarning, match=f"Corrupt image file {damaged}"):
        assert len(list(load_dataset(str(root))[0])) == 3
