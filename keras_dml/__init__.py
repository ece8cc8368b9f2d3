"""keras-dml: deep metric learning for Keras 3."""
__version__ = "0.1.0"

from keras_dml import distances, losses, miners  # noqa: E402

__all__ = ["distances", "losses", "miners", "__version__"]
