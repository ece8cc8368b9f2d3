"""Screening k-NN candidates with a bfloat16 matrix multiply whose error is bounded.

On CPUs with bfloat16 matrix units (Intel AMX, AVX512-BF16), TensorFlow's oneDNN
bfloat16 matrix multiply runs several times faster than a float32 one. Its keys are
approximate, but the error is bounded: for augmented rows `[x, v, 1]` and `[-y, 1, w]`
(see `keras_dml.search.keys`), with `S = |x| |y| + |v| + |w|` bounding the sum of the
absolute products,

    |approximate key - float32 key| <= C * S,
    C = (2u + u^2)(1 + g) + 2^-7 (1 + 2u + u^2 + g) + 2g + 2^-23,

where `u = 2^-8` is bfloat16's unit roundoff (inputs are rounded to nearest by
`ml_dtypes`), `2^-7` covers the bfloat16 output under either rounding mode, and
`g = n 2^-24 / (1 - n 2^-24)` bounds the float32 accumulation of `n = D + 2` products,
counted twice: once for the multiply here and once for the float32 key it is compared
with. The search keeps every pair whose approximate key is within that margin of its
query's current bound and recomputes those keys in float32, so it stays exact.

Screening is used only where it is known to be safe: values whose magnitudes lie in
`[2^-50, 2^50]` (no product is subnormal, flushed or overflowing) and a matrix multiply
that `supported()` has checked accumulates in float32.

Example:

>>> import numpy as np
>>> from keras_dml.search import screen
>>> from keras_dml.search.keys import Frame
>>> x = np.random.default_rng(0).normal(size=(64, 128)).astype("float32")
>>> frame = Frame("euclidean", x)
>>> left, right = frame.left(frame.rows(x), own_term=True), frame.right(frame.rows(x))
>>> approximate = screen.BFloat16Screen(left, right)
>>> rows = slice(0, 64)
>>> error = np.abs(approximate.keys(rows, rows) - left @ right.T)
>>> bool(np.all(error <= approximate.margin(rows, rows)[:, None]))
True
"""
import functools
import os
import threading

import numpy as np

_BFLOAT16_FLAGS = ("amx_bf16", "avx512_bf16")
_LOW, _HIGH = 2.0 ** -50, 2.0 ** 50
_ROWS_PER_CHECK = 8192


def margin_coefficient(dim):
    """`C` of the module docstring for rows of `dim` values (augmented width)."""
    u = 2.0 ** -8
    g = dim * 2.0 ** -24 / (1.0 - dim * 2.0 ** -24)
    return (2 * u + u * u) * (1 + g) + 2.0 ** -7 * (1 + 2 * u + u * u + g) + 2 * g + 2.0 ** -23


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            return {flag for line in f if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    except OSError:
        return set()


@functools.lru_cache(maxsize=None)
def supported():
    """Whether a bfloat16 matrix multiply here is fast and accumulates in float32.

    Needs a CPU with bfloat16 units, TensorFlow with oneDNN enabled, and passes a probe
    whose sums a bfloat16 accumulator would get wrong (512 ones; 1 plus 511 halves of
    bfloat16's rounding step at 1).
    """
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") == "0" or \
            not any(flag in _cpu_flags() for flag in _BFLOAT16_FLAGS):
        return False
    try:
        import ml_dtypes
        import tensorflow as tf
    except ImportError:
        return False
    probe = np.ones((2, 512), np.float32)
    probe[1, 1:] = 2.0 ** -9
    product = tf.matmul(tf.constant(probe.astype(ml_dtypes.bfloat16)), tf.constant(
        np.ones((512, 1), ml_dtypes.bfloat16))).numpy().astype(np.float32)[:, 0]
    return bool(product[0] == 512.0 and product[1] > 1.5)


def screenable(rows):
    """Whether every non-zero magnitude in `rows` lies in `[2^-50, 2^50]`."""
    for start in range(0, len(rows), _ROWS_PER_CHECK):
        chunk = np.abs(rows[start:start + _ROWS_PER_CHECK])
        if chunk.max(initial=0.0) > _HIGH or np.any((chunk > 0) & (chunk < _LOW)):
            return False
    return True


class BFloat16Screen:
    """Approximate key blocks `left[rows] . right[cols]` and a bound on their error.

    `left` and `right` are augmented float32 rows (`keras_dml.search.keys.Frame`), whose
    last two columns hold `v` and `1` (left) and `1` and `w` (right).
    """

    def __init__(self, left, right):
        import ml_dtypes
        import tensorflow as tf

        self._tf = tf
        # Zero columns up to a multiple of 32 change no product and suit AMX tiles.
        width = -(-left.shape[1] // 32) * 32
        self.left = np.zeros((len(left), width), ml_dtypes.bfloat16)
        self.right = np.zeros((len(right), width), ml_dtypes.bfloat16)
        self.left[:, :left.shape[1]], self.right[:, :right.shape[1]] = left, right
        self._tensors = {}  # row spans already handed to TensorFlow, by side
        self._buffers = threading.local()
        self.left_norms = np.sqrt(np.einsum("ij,ij->i", left[:, :-2], left[:, :-2]))
        self.right_norms = np.sqrt(np.einsum("ij,ij->i", right[:, :-2], right[:, :-2]))
        self.left_extra, self.right_extra = np.abs(left[:, -2]), np.abs(right[:, -1])
        self.coefficient = margin_coefficient(left.shape[1])

    def keys(self, rows, cols):
        """Approximate keys of `left[rows]` against `right[cols]` (slices), as float32.

        The array is the calling thread's buffer: it is overwritten by its next call.
        """
        product = self._tf.matmul(self._tensor("left", rows), self._tensor("right", cols), transpose_b=True)
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        buffer = getattr(self._buffers, "array", None)
        if buffer is None or buffer.size < shape[0] * shape[1]:
            buffer = self._buffers.array = np.empty(shape[0] * shape[1], np.float32)
        keys = buffer[:shape[0] * shape[1]].reshape(shape)
        np.copyto(keys, product.numpy(), casting="unsafe")  # reusing it spares page faults
        return keys

    def _tensor(self, side, span):
        """`left[span]` or `right[span]` as a TensorFlow tensor, converted once per span."""
        key = (side, span.start, span.stop)
        if key not in self._tensors:
            self._tensors[key] = self._tf.constant(getattr(self, side)[span])
        return self._tensors[key]

    def margin(self, rows, cols, transposed=False):
        """The largest error of each row's keys in block `left[rows] x right[cols]`
        (of each column's, with `transposed=True`)."""
        sides = [(self.left_norms[rows], self.left_extra[rows]), (self.right_norms[cols], self.right_extra[cols])]
        (norms, extra), (other_norms, other_extra) = sides[::-1] if transposed else sides
        bound = norms * other_norms.max() + extra + other_extra.max()
        return (self.coefficient * bound + 2.0 ** -100).astype(np.float32)
