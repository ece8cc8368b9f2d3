"""`keras_dml.index.Index`: the serving index, which lives in `keras_dml.search.index`."""
from keras_dml.search.index import FORMAT_VERSION, Index

__all__ = ["FORMAT_VERSION", "Index"]
