"""PDDM on the digits zero-shot split: PDDMLoss vs hard-mined triplets, and PDDM re-ranking.

Trains the same small embedder (pixels -> Dense(16) -> L2 normalise) on digits 0-4 with
two criteria, from the same initial weights and batch order:

- `PDDMLoss` (hard quadruplets mined by a learned PDDM unit, double-header hinge), and
- `TripletLoss(positive="hard", negative="hard")` (hardest positive and negative by distance),

and reports held-out Recall@1 on the unseen digits 5-9 after every epoch, then Recall@1
of the PDDM-trained embedder with and without re-ranking each query's 10 nearest
neighbours by the trained unit. Nothing is downloaded.

    python examples/pddm.py            # 3 seeds x 20 epochs
    python examples/pddm.py --fast     # 1 seed x 3 epochs (a smoke run)
"""
import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_dml.data import load_digits  # noqa: E402
from keras_dml.evaluation.callback import RetrievalEvaluation  # noqa: E402
from keras_dml.evaluation.metrics import retrieval_metrics  # noqa: E402
from keras_dml.evaluation.rerank import retrieval_metrics_reranked  # noqa: E402
from keras_dml.losses.pair import TripletLoss  # noqa: E402
from keras_dml.losses.pddm import PDDMLoss  # noqa: E402
from keras_dml.models import MetricModel  # noqa: E402

EMBEDDING_DIM = 16
CRITERIA = {
    "PDDMLoss": lambda: PDDMLoss(EMBEDDING_DIM),
    "Triplet hard/hard": lambda: TripletLoss(positive="hard", negative="hard"),
}


def embedder(input_shape):
    return keras.Sequential(
        [keras.Input(input_shape), keras.layers.Flatten(), keras.layers.Dense(EMBEDDING_DIM),
         keras.layers.UnitNormalization()],
        name="embedder",
    )


def train(criterion, train_data, test_data, epochs, seed, batch_size=128, learning_rate=1e-3):
    """`(model, [held-out Recall@1 before training and after each epoch])`."""
    keras.utils.set_random_seed(seed)  # same initial weights and batch order for every criterion
    model = MetricModel(embedder(train_data[0].shape[1:]), criterion)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), jit_compile=True)
    evaluation = RetrievalEvaluation(test_data, k=(1,), monitor="recall@1", verbose=0)
    start = retrieval_metrics(model.predict(test_data[0], verbose=0), test_data[1], k=(1,))["recall@1"]
    history = model.fit(*train_data, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0,
                        callbacks=[evaluation])
    return model, [start] + history.history["val_recall@1"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="1 seed x 3 epochs")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--top-k", type=int, default=10, help="neighbours re-ranked by the PDDM unit")
    args = parser.parse_args(argv)
    epochs, seeds = (3, 1) if args.fast else (args.epochs, args.seeds)

    train_data, test_data = load_digits("train"), load_digits("test")
    print(f"digits: {len(train_data[1])} training images (classes 0-4), {len(test_data[1])} held out (5-9); "
          f"epochs={epochs}, seeds={list(range(seeds))}")
    curves = {name: [] for name in CRITERIA}
    reranked = []
    for seed in range(seeds):
        for name, make in CRITERIA.items():
            model, curve = train(make(), train_data, test_data, epochs, seed)
            curves[name].append(curve)
            if name == "PDDMLoss":
                embeddings = model.predict(test_data[0], verbose=0)
                plain = retrieval_metrics(embeddings, test_data[1], k=(1,))["recall@1"]
                rerank = retrieval_metrics_reranked(embeddings, test_data[1], model.criterion.pddm,
                                                    top_k=args.top_k, k=(1,))["recall@1"]
                reranked.append((plain, rerank))

    def cell(values):
        return f"{np.mean(values):.4f} ± {np.std(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"

    print("\nHeld-out Recall@1 (mean ± std over seeds)\n")
    print("| epoch | " + " | ".join(CRITERIA) + " |")
    print("|---|" + "---|" * len(CRITERIA))
    for epoch in range(epochs + 1):
        print(f"| {epoch} | " + " | ".join(cell([c[epoch] for c in curves[name]]) for name in CRITERIA) + " |")
    plain, rerank = zip(*reranked)
    print(f"\nPDDMLoss embedder, held-out Recall@1: k-NN {cell(plain)}; "
          f"k-NN top {args.top_k} re-ranked by its PDDM unit {cell(rerank)}")


if __name__ == "__main__":
    main()
