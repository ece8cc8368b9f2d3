"""Backend-neutral helpers for the tests: gradients and small random batches."""
import keras
import numpy as np


def value_and_grad(fn, x):
    """`(fn(x), d fn / d x)` as NumPy arrays on whichever Keras backend is active."""
    backend = keras.backend.backend()
    x = np.asarray(x, dtype="float32")
    if backend == "tensorflow":
        import tensorflow as tf

        variable = tf.Variable(x)
        with tf.GradientTape() as tape:
            value = fn(variable)
        return np.asarray(value), np.asarray(tape.gradient(value, variable))
    if backend == "jax":
        import jax

        value, grad = jax.value_and_grad(lambda v: fn(v))(x)
        return np.asarray(value), np.asarray(grad)
    if backend == "torch":
        import torch

        variable = torch.tensor(x, requires_grad=True)
        value = fn(variable)
        value.backward()
        return value.detach().numpy(), variable.grad.numpy()
    raise NotImplementedError(backend)


def random_batch(classes=4, per_class=4, dim=8, seed=0, shuffle=True):
    """Integer labels and Gaussian embeddings with `per_class` samples of each class."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), per_class)
    if shuffle:
        labels = rng.permutation(labels)
    return labels.astype("int32"), rng.normal(size=(len(labels), dim)).astype("float32")


def compiled(fn):
    """`fn` compiled on the active backend: XLA on TensorFlow and JAX, `torch.compile` on PyTorch.

    NumPy arguments become the backend's tensors first, so that, as in a compiled train
    step, the values are not known while the function is traced.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(fn)
    if backend == "torch":
        import torch

        step = torch.compile(fn, backend="eager")
        return lambda *args: step(*(torch.as_tensor(a) if isinstance(a, np.ndarray) else a for a in args))
    import tensorflow as tf

    return tf.function(fn, jit_compile=True)


def is_nan_or_refused(step, *args):
    """Whether a compiled `step` on bad input gives NaN, never a finite loss.

    PyTorch's compiled step runs on concrete values, so the losses' eager check sees the
    bad value there and raises its `ValueError` instead: also never a finite loss.
    """
    try:
        return bool(np.isnan(float(step(*args))))
    except ValueError:
        return keras.backend.backend() == "torch"
