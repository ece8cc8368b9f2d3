"""The standard deep-metric-learning image transforms, as `tf.image` ops.

- train: random resized crop (a window of `scale` = (0.16, 1) of the image's area and
  aspect ratio in `ratio` = (3/4, 4/3), resized to `image_size` = 224), then a random
  horizontal flip;
- eval: resize the shorter side to `resize_size` (aspect kept; by default
  `image_size * 256 / 224`, i.e. 256 for 224), centre crop `image_size`.

Each transform takes one image: encoded bytes (a `tf.string` scalar, as `load_dataset`
gives) or pixels `(H, W, C)`. Encoded images are decoded by `images.decode_image` (3
channels; grey images are repeated), the decoder serving uses too. (Decoding only
the crop window with `tf.io.decode_and_crop_jpeg` saved nothing measurable on 500 x 375
JPEGs, so images are decoded whole: one code path.)
Results are float32 `(image_size, image_size, C)` on the input's pixel scale:
`[0, 255]` for encoded or uint8 images, which is what `keras.applications`'
`preprocess_input` functions expect.

The train transform is random through stateless ops only, so with the per-image seed
`class_balanced` passes it, the augmented stream is the same on every run with the
same seed, at any parallelism.

Example:

>>> from keras_dml.data import augment, class_balanced, load_dataset
>>> train, _ = load_dataset("digits", "train")
>>> batches = class_balanced(train, 4, 2, seed=0, transform=augment.train_transform(16))
>>> next(iter(batches))[0].shape
TensorShape([8, 16, 16, 1])
>>> test, _ = load_dataset("digits", "test")
>>> test = augment.map_images(test, augment.eval_transform(16, resize_size=18), batch_size=32)
"""

from keras_dml import backends, checks

tf = backends.tensorflow("Image augmentation (keras_dml.data.augment, tf.data transforms)")

from keras_dml.data.images import decode_image  # noqa: E402 (after the TensorFlow check)


def train_transform(image_size=224, scale=(0.16, 1.0), ratio=(3 / 4, 4 / 3), flip=True):
    """`transform(image, seed)`: random resized crop to `image_size`, random flip.

    `seed` is a `(2,)` integer tensor (stateless randomness); `class_balanced` gives
    each sampled image its own.
    """
    checks.positive_int(image_size, "image_size")
    if not 0.0 < scale[0] <= scale[1] <= 1.0:
        raise ValueError(f"scale must satisfy 0 < scale[0] <= scale[1] <= 1; got scale={scale}.")
    if not 0.0 < ratio[0] <= ratio[1]:
        raise ValueError(f"ratio must satisfy 0 < ratio[0] <= ratio[1]; got ratio={ratio}.")

    def transform(image, seed):
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        pixels = decode_image(image)
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(pixels),
            bounding_boxes=tf.zeros([1, 0, 4]),
            seed=crop_seed,
            min_object_covered=0.0,
            aspect_ratio_range=ratio,
            area_range=scale,
            max_attempts=10,  # then the whole image
            use_image_if_no_bounding_boxes=True,
        )
        pixels = tf.image.resize(tf.slice(pixels, begin, size), [image_size, image_size])
        if flip:
            pixels = tf.image.stateless_random_flip_left_right(pixels, flip_seed)
        return tf.cast(pixels, "float32")

    return transform


def eval_transform(image_size=224, resize_size=None):
    """`transform(image)`: shorter side resized to `resize_size`, centre crop `image_size`.

    `resize_size=None` keeps the standard ratio 256 / 224: `round(image_size * 256 / 224)`.
    """
    image_size = checks.positive_int(image_size, "image_size")
    resize_size = round(image_size * 256 / 224) if resize_size is None else resize_size
    checks.positive_int(resize_size, "resize_size")

    def transform(image):
        pixels = decode_image(image)
        height, width = tf.unstack(tf.cast(tf.shape(pixels)[:2], "float32"))
        factor = resize_size / tf.minimum(height, width)
        new_size = tf.cast(tf.round(tf.stack([height, width]) * factor), "int32")
        pixels = tf.image.resize(pixels, tf.maximum(new_size, 1))
        return tf.cast(tf.image.resize_with_crop_or_pad(pixels, image_size, image_size), "float32")

    return transform


def map_images(dataset, transform, batch_size=None):
    """`(transform(image), label)` over a dataset, in parallel, in order, prefetched."""
    dataset = dataset.map(
        lambda image, label: (transform(image), label),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if batch_size is not None:
        dataset = dataset.batch(batch_size)
    return dataset.prefetch(tf.data.AUTOTUNE)
