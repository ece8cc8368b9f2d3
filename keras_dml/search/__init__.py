"""Nearest-neighbour search: the exact engine under the retrieval metrics, and the serving index.

- `ExactSearch` / `nearest_neighbors` (`exact`): exact k-NN, equal to a float64 brute
  force (ties by lower gallery index), in chunks, with bfloat16 screening where it pays;
- `Index` (`index`): stored embeddings with ids and labels, search, thresholds,
  re-ranking, atomic save and checked load;
- `rerank` (`rerank`): re-order candidates by a learned pair scorer such as PDDM.

Modules: `inputs` (argument checks), `keys` (search frame and keys), `topk` (running
top-k lists), `screen` (bfloat16 screening), `exact`, `rerank`, `index`.
"""
from keras_dml.search.exact import ExactSearch, nearest_neighbors
from keras_dml.search.index import Index
from keras_dml.search.inputs import SUPPORTED_DISTANCES
from keras_dml.search.rerank import rerank

__all__ = ["ExactSearch", "Index", "SUPPORTED_DISTANCES", "nearest_neighbors", "rerank"]
