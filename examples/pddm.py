"""PDDM on glyphs: does mining with a learned pair scorer converge faster than triplets?

Question: the PDDM paper (Huang et al., NIPS 2016) mines hard quadruplets with a small
learned unit that scores a pair from its difference and its position, and reports
faster convergence than triplet training. Is that so for a small CNN trained from a
random start, and does re-ranking the nearest neighbours by the trained unit help?

The run: glyphs split by character (the test characters are never seen in training),
the same small CNN and P x K batches, trained by PDDMLoss (its defaults) and by
TripletLoss (its defaults); held-out Recall@1 after every epoch, by Euclidean distance
on the embedding (the paper's main protocol), then Recall@1 after re-ranking each
query's 10 nearest neighbours by the trained PDDM unit.

What to expect (evidence/pddm.py measures it over 3 seeds): the untrained unit's
scores are unrelated to the labels, so the mined quadruplets are random ones, and the
score hinge sends the embeddings a gradient over 100 times that of the embedding
hinge, in an unrelated direction. PDDM then stays near or below the untrained
embedder while triplets climb from the first epoch: the paper's faster convergence is
not reproduced here.

    python examples/pddm.py            # 5 epochs
    python examples/pddm.py --fast     # 2 epochs on one render per glyph (the test)
"""
import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_dml.data import class_balanced, load_glyphs  # noqa: E402
from keras_dml.evaluation import retrieval_metrics  # noqa: E402
from keras_dml.losses import TripletLoss  # noqa: E402
from keras_dml.losses.pddm import PDDMLoss  # noqa: E402
from keras_dml.models import MetricModel, build_embedder  # noqa: E402

EMBEDDING_DIM = 64
TOP_K = 10
CRITERIA = {"PDDMLoss": lambda: PDDMLoss(EMBEDDING_DIM), "TripletLoss": lambda: TripletLoss()}


def recall_at_1(embedder, images, labels):
    embeddings = embedder.predict(images, batch_size=512, verbose=0)
    return retrieval_metrics(embeddings, labels, k=(1,))["recall@1"]


def train(criterion, train_data, test_data, epochs, seed=0):
    """`(model, [held-out Recall@1 before training and after each epoch])`, same start for every criterion."""
    keras.utils.set_random_seed(seed)
    images, labels = train_data
    model = MetricModel(build_embedder("small_cnn", embedding_dim=EMBEDDING_DIM, input_shape=images.shape[1:]),
                        criterion)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)
    batches = class_balanced(tf.data.Dataset.from_tensor_slices((images, labels)), 16, 4, seed=seed)
    curve = [recall_at_1(model.embedder, *test_data)]
    for epoch in range(epochs):
        model.fit(batches, steps_per_epoch=len(labels) // 64, initial_epoch=epoch, epochs=epoch + 1, verbose=0)
        curve.append(recall_at_1(model.embedder, *test_data))
    return model, curve


def main(fast=False):
    renders, epochs = (1, 2) if fast else (3, 5)
    train_data, test_data = load_glyphs("train", renders=renders), load_glyphs("test", renders=renders)
    print(f"glyphs: {len(train_data[1])} training images, {len(test_data[1])} test images of other characters; "
          f"{epochs} epochs, seed 0")
    curves, models = {}, {}
    for name, make in CRITERIA.items():
        models[name], curves[name] = train(make(), train_data, test_data, epochs)
    print("\nHeld-out Recall@1 (Euclidean on the embedding)\n\n| epoch | " + " | ".join(CRITERIA) + " |")
    print("|---|" + "---|" * len(CRITERIA))
    for epoch in range(epochs + 1):
        print(f"| {epoch} | " + " | ".join(f"{curves[name][epoch]:.3f}" for name in CRITERIA) + " |")
    pddm_model = models["PDDMLoss"]
    embeddings = pddm_model.embedder.predict(test_data[0], batch_size=512, verbose=0)
    reranked = retrieval_metrics(embeddings, test_data[1], k=(1,), rerank=pddm_model.criterion.pddm,
                                 rerank_depth=TOP_K)["recall@1"]
    print(f"\nPDDMLoss embedder: Recall@1 {curves['PDDMLoss'][-1]:.3f} by distance, {reranked:.3f} after "
          f"re-ranking the top {TOP_K} by its PDDM unit.")
    return {"curves": curves, "reranked_recall@1": reranked}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="2 epochs on one render per glyph (the test)")
    main(fast=parser.parse_args().fast)
