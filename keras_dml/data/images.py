"""Image files: the one decoder of training and serving, and the load-time check that finds damaged files.

`decode_image` is the only place an encoded image becomes pixels: the training and
evaluation transforms call it inside `tf.data`, `read_image` calls it on a file (what
`export/serve_onnx.py` serves with), and `find_corrupt` calls it on every file of an
image folder when the folder is loaded. So a file that loads is a file that trains, and
a served image has the pixels training saw (a 16-bit PNG keeps its high byte,
`value // 256`, in both).

Example:

>>> from keras_dml.data import images
>>> pixels = images.read_image("photo.jpg")  # doctest: +SKIP
>>> pixels.dtype, pixels.shape[-1]  # doctest: +SKIP
(dtype('uint8'), 3)
"""
import os

from keras_dml import backends

tf = backends.tensorflow("The image decoder (keras_dml.data.images)")


# What `tf.io.decode_image` reads.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


def decode_image(image):
    """Pixels `(H, W, 3)` of `image`: encoded bytes (a `tf.string` scalar) decode to uint8 RGB.

    Grey images get 3 equal channels, a GIF its first frame, a 16-bit PNG is scaled to
    8 bits by its high byte (`value // 256`). Pixels (any other dtype) pass through unchanged.
    """
    if image.dtype != tf.string:
        return image
    pixels = tf.io.decode_image(image, channels=3, expand_animations=False)
    pixels.set_shape([None, None, 3])
    return pixels


def read_image(path):
    """The uint8 `(H, W, 3)` pixels of an image file, decoded by `decode_image`.

    Raises `ValueError` naming the file when it cannot be read or decoded.
    """
    try:
        return decode_image(tf.io.read_file(os.fspath(path))).numpy()
    except (tf.errors.OpError, OSError) as error:
        raise ValueError(f"Cannot read image file {path}: {_reason(error)}") from None


# Files this process has decoded without error, by path: (size, modification time) then.
_DECODED = {}


def find_corrupt(paths):
    """`{path: reason}` of the files in `paths` that `decode_image` cannot decode.

    Every file is read and decoded in parallel inside `tf.data`, once per process: a file
    that decoded and has not changed since (same size and modification time) is not
    decoded again. A path that is not a regular file (missing, a folder, a dangling link)
    is corrupt too.
    """
    paths = [os.fspath(p) for p in paths]
    corrupt, candidates = {}, []
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            stat = None
        if stat is None or not os.path.isfile(path):
            corrupt[path] = "not a regular file (missing, a folder, or a dangling link)"
        elif _DECODED.get(path) != (stat.st_size, stat.st_mtime_ns):
            candidates.append((path, (stat.st_size, stat.st_mtime_ns)))
    if candidates:
        decoded = tf.data.Dataset.from_tensor_slices([path for path, _ in candidates]).enumerate().map(
            lambda index, path: (index, tf.shape(decode_image(tf.io.read_file(path)))),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        good = {int(index) for index, _ in decoded.ignore_errors().as_numpy_iterator()}
        for index, (path, signature) in enumerate(candidates):
            if index in good:
                _DECODED[path] = signature
                continue
            try:  # decode it again, alone, for the decoder's reason
                decode_image(tf.io.read_file(path))
                corrupt[path] = "failed to decode"
            except (tf.errors.OpError, OSError) as error:
                corrupt[path] = _reason(error)
    return {p: corrupt[p] for p in paths if p in corrupt}


def _reason(error):
    """The decoder's words, without TensorFlow's op and function names."""
    message = (getattr(error, "message", None) or str(error)).split("}}")[-1].split(" [Op:")[0].strip()
    return message.splitlines()[0] if message else type(error).__name__

