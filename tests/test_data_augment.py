"""Train and eval transforms: shapes, scale, crops against NumPy, stateless determinism."""
import numpy as np
import pytest
import tensorflow as tf

from keras_dml.data import augment

RNG = np.random.default_rng(0)
PIXELS = RNG.integers(0, 256, size=(12, 16, 3)).astype("uint8")
SEED = tf.constant([1, 2], "int64")


def smooth_image(height=48, width=64):
    """A smooth image JPEG keeps almost exactly: gradients in each channel."""
    y, x = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
    return (np.stack([x, y, (x + y) / 2], axis=-1) * 255).astype("uint8")


def encoded(pixels, image_format):
    return tf.io.encode_jpeg(pixels) if image_format == "jpeg" else tf.io.encode_png(pixels)


@pytest.mark.parametrize("source", ["jpeg", "png", "pixels"])
def test_train_transform_shape_dtype_and_scale(source):
    image = PIXELS if source == "pixels" else encoded(PIXELS, source)
    out = augment.train_transform(7)(tf.constant(image), SEED).numpy()
    assert out.shape == (7, 7, 3) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 255.0


def test_full_window_is_the_image_or_its_mirror():
    # scale (1, 1) of a square image at ratio 1 leaves one window, the whole image, and
    # resizing it to its own size changes nothing.
    square = PIXELS[:, :12]
    keep = augment.train_transform(12, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
    np.testing.assert_array_equal(keep(tf.constant(square), SEED).numpy(), square)
    flipping = augment.train_transform(12, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    outputs = [flipping(tf.constant(square), tf.constant([s, 0], "int64")).numpy() for s in range(8)]
    mirrored = square[:, ::-1]
    assert all(np.array_equal(o, square) or np.array_equal(o, mirrored) for o in outputs)
    assert any(np.array_equal(o, mirrored) for o in outputs) and any(np.array_equal(o, square) for o in outputs)


def test_crop_windows_respect_scale_and_ratio():
    # Coordinates as pixels: the crop's corners tell where the window was.
    height, width = 60, 80
    y, x = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    coords = np.stack([y, x, np.zeros_like(y)], axis=-1).astype("float32")
    transform = augment.train_transform(4, scale=(0.25, 0.5), ratio=(0.75, 1.25), flip=False)
    for s in range(20):
        crop = transform(tf.constant(coords), tf.constant([s, 5], "int64")).numpy()
        # Bilinear resize keeps the corners within half a source pixel per output pixel.
        top, left = crop[0, 0, :2]
        bottom, right = crop[-1, -1, :2]
        crop_h, crop_w = (bottom - top) * 4 / 3, (right - left) * 4 / 3  # 4 samples span 3 steps
        area = crop_h * crop_w / (height * width)
        assert 0.2 <= area <= 0.56, area
        assert 0.65 <= crop_w / crop_h <= 1.4


def test_train_transform_is_deterministic_under_its_seed():
    transform = augment.train_transform(8)
    image = encoded(smooth_image(), "jpeg")
    first, again = transform(image, SEED).numpy(), transform(image, SEED).numpy()
    np.testing.assert_array_equal(first, again)
    others = [transform(image, tf.constant([s, 9], "int64")).numpy() for s in range(4)]
    assert any(not np.array_equal(first, other) for other in others)


def test_eval_transform_against_numpy():
    # 2x2 blocks of constant colour, downscaled by exactly 2: bilinear sampling hits the
    # middle of each block, so the result is the block grid; then the centre crop.
    blocks = RNG.integers(0, 256, size=(16, 8, 3)).astype("uint8")
    image = np.repeat(np.repeat(blocks, 2, axis=0), 2, axis=1)  # 32 x 16, shorter side 16
    out = augment.eval_transform(image_size=8, resize_size=8)(tf.constant(image)).numpy()
    np.testing.assert_allclose(out, blocks[4:12].astype("float32"))


def test_eval_transform_from_grey_png_gives_three_channels():
    grey = RNG.integers(0, 256, size=(30, 20, 1)).astype("uint8")
    out = augment.eval_transform(image_size=10, resize_size=12)(tf.io.encode_png(grey)).numpy()
    assert out.shape == (10, 10, 3)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_map_images_keeps_order_and_batches():
    images = RNG.integers(0, 256, size=(5, 6, 6, 3)).astype("uint8")
    dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(5, dtype="int32")))
    batches = list(augment.map_images(dataset, augment.eval_transform(4, resize_size=4), batch_size=2))
    assert [b[0].shape[0] for b in batches] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), np.arange(5))


def test_bad_arguments():
    with pytest.raises(ValueError, match="image_size"):
        augment.train_transform(0)
    with pytest.raises(ValueError, match="scale"):
        augment.train_transform(scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="ratio"):
        augment.train_transform(ratio=(0.0, 1.0))
    with pytest.raises(ValueError, match="resize_size"):
        augment.eval_transform(resize_size=-1)
