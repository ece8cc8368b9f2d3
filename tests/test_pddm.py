"""PDDM unit, PDDMLoss and PDDM re-ranking against NumPy references (docs/methods.md, PDDM)."""
import keras
import numpy as np
import pytest
from keras import ops

from keras_dml.evaluation.metrics import retrieval_metrics
from keras_dml.evaluation.rerank import rerank, retrieval_metrics_reranked
from keras_dml.index import Index
from keras_dml.layers.pddm import PDDM
from keras_dml.losses.pddm import PDDMLoss
from keras_dml.models import MetricModel
from tests.helpers import random_batch, value_and_grad


def numpy(x):
    return ops.convert_to_numpy(x)


def randomise(pddm, seed=0):
    """Random kernels and biases, so that no ReLU is trivially on or off."""
    rng = np.random.default_rng(seed)
    for weight in pddm.weights:
        weight.assign(rng.normal(scale=0.7, size=weight.shape).astype("float32"))
    return pddm


def reference_scores(pddm, a, b):
    """`S(a, b)` from the formula, in float64, reading the unit's own weights."""
    (wu, bu), (wv, bv), (wc, bc), (ws, bs) = [
        (numpy(kernel).astype("float64"), numpy(bias).astype("float64"))
        for kernel, bias in (pddm.difference, pddm.position, pddm.joint, pddm.score)
    ]

    def l2norm(x):
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)

    u = l2norm(np.maximum(np.abs(a - b) @ wu + bu, 0.0))
    v = l2norm(np.maximum((a + b) / 2.0 @ wv + bv, 0.0))
    c = np.maximum(np.concatenate([u, v], axis=-1) @ wc + bc, 0.0)
    return (c @ ws + bs)[..., 0]


def quadruplet_loss(scores, x, i, j, k, l, alpha, beta, lam):
    """`E_m + lam * E_e` of one quadruplet, float64."""
    def d2(a, b):
        return np.sum((x[a] - x[b]) ** 2)

    e_m = max(alpha + scores[i, k] - scores[i, j], 0) + max(alpha + scores[j, l] - scores[i, j], 0)
    e_e = max(beta + d2(i, j) - d2(i, k), 0) + max(beta + d2(i, j) - d2(j, l), 0)
    return e_m + lam * e_e


def reference_loss(pddm, labels, embeddings, alpha=0.5, beta=0.5, lam=0.5):
    """`quadruplets="per_anchor"`: one quadruplet per anchor, explicit loops."""
    x = embeddings.astype("float64")
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    n = len(x)
    scores = reference_scores(pddm, x[:, None, :], x[None, :, :])
    total, count = 0.0, 0
    for i in range(n):
        positives = [p for p in range(n) if p != i and labels[p] == labels[i]]
        negatives_i = [q for q in range(n) if labels[q] != labels[i]]
        if not positives or not negatives_i:
            continue
        j = min(positives, key=lambda p: scores[i, p])
        k = max(negatives_i, key=lambda q: scores[i, q])
        l = max((q for q in range(n) if labels[q] != labels[j]), key=lambda q: scores[j, q])
        total += quadruplet_loss(scores, x, i, j, k, l, alpha, beta, lam)
        count += 1
    return total / max(count, 1)


def reference_batch_quadruplet(pddm, labels, embeddings):
    """The paper's rule: the positive pair `(i, j)` of least score among those whose
    members both have a negative, then each member's highest-scoring negative. Mined on
    the layer's own float32 pairwise matrix; ties to the lower (row-major) index.
    Returns `(i, j, k, l)` or None."""
    n = len(labels)
    x = embeddings / np.linalg.norm(embeddings.astype("float64"), axis=1, keepdims=True)
    scores = numpy(pddm.pairwise(x.astype("float32")))

    def negatives(a):
        return [q for q in range(n) if labels[q] != labels[a]]

    pairs = [(a, b) for a in range(n) for b in range(n)
             if a != b and labels[a] == labels[b] and negatives(a) and negatives(b)]
    if not pairs:
        return None
    i, j = min(pairs, key=lambda pair: scores[pair])  # min keeps the first of equal scores
    return i, j, max(negatives(i), key=lambda q: scores[i, q]), max(negatives(j), key=lambda q: scores[j, q])


def reference_batch_loss(pddm, labels, embeddings, alpha=0.5, beta=0.5, lam=0.5):
    """`quadruplets="batch"`: `E_m + lam * E_e` of the batch's one quadruplet, else 0."""
    quadruplet = reference_batch_quadruplet(pddm, labels, embeddings)
    if quadruplet is None:
        return 0.0
    x = embeddings.astype("float64")
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    scores = reference_scores(pddm, x[:, None, :], x[None, :, :])
    return quadruplet_loss(scores, x, *quadruplet, alpha, beta, lam)


@pytest.mark.parametrize("hidden_dim", [None, 5])
def test_unit_matches_the_formula_pairwise_equals_pair_by_pair_and_is_symmetric(hidden_dim):
    x = np.random.default_rng(1).normal(size=(7, 6)).astype("float32")
    pddm = PDDM(hidden_dim=hidden_dim)
    pddm.build(x.shape, x.shape)
    randomise(pddm)
    assert pddm.joint[0].shape == (2 * (hidden_dim or 6), hidden_dim or 6)
    np.testing.assert_allclose(numpy(pddm(x[:4], x[3:])), reference_scores(pddm, x[:4], x[3:]), atol=1e-5)
    matrix = numpy(pddm.pairwise(x))
    one_by_one = np.array([[float(pddm(x[i][None], x[j][None])[0]) for j in range(7)] for i in range(7)])
    np.testing.assert_allclose(matrix, one_by_one, atol=1e-5)
    np.testing.assert_array_equal(matrix, matrix.T)
    assert np.ptp(matrix) > 0.1  # the scores really vary with the pair
    batched = numpy(pddm(np.broadcast_to(x[:2, None], (2, 7, 6)), np.broadcast_to(x[None], (2, 7, 6))))
    np.testing.assert_allclose(batched, matrix[:2], atol=1e-5)


@pytest.mark.parametrize("seed,hidden_dim,alpha,beta,lam", [(0, None, 0.5, 0.5, 0.5), (1, 3, 0.2, 1.0, 2.0)])
def test_per_anchor_loss_matches_numpy_reference(seed, hidden_dim, alpha, beta, lam):
    labels, embeddings = random_batch(classes=3, per_class=4, dim=6, seed=seed)
    loss = PDDMLoss(6, hidden_dim=hidden_dim, alpha=alpha, beta=beta, lam=lam, quadruplets="per_anchor")
    randomise(loss.pddm, seed)
    expected = reference_loss(loss.pddm, labels, embeddings, alpha, beta, lam)
    assert expected > 0.1
    value, grad = value_and_grad(lambda e: loss(labels, e), embeddings)
    np.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-4)
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


@pytest.mark.parametrize("seed", range(6))
def test_batch_quadruplet_matches_the_papers_rule_on_random_batches(seed):
    rng = np.random.default_rng(seed)
    n = 10
    # Varied batches: several classes with singletons mixed in; seed 5 is one class
    # (its hardest positive pair has members without negatives: no quadruplet).
    labels = np.zeros(n, "int32") if seed == 5 else rng.integers(0, 2 + seed, size=n).astype("int32")
    embeddings = rng.normal(size=(n, 6)).astype("float32")
    loss = PDDMLoss(6, hidden_dim=4, alpha=0.3, beta=0.8, lam=0.7)
    randomise(loss.pddm, seed)
    expected_quadruplet = reference_batch_quadruplet(loss.pddm, labels, embeddings)
    assert (expected_quadruplet is None) == (seed == 5)
    i, j, k, l, valid = (numpy(t) for t in loss.mine(ops.convert_to_tensor(labels), ops.convert_to_tensor(embeddings) / np.linalg.norm(embeddings, axis=1, keepdims=True)))
    assert valid.shape == (1,) and bool(valid[0]) == (expected_quadruplet is not None)
    if expected_quadruplet is not None:
        assert (i[0], j[0], k[0], l[0]) == expected_quadruplet
    expected = reference_batch_loss(loss.pddm, labels, embeddings, 0.3, 0.8, 0.7)
    value, grad = value_and_grad(lambda e: loss(labels, e), embeddings)
    np.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-4)
    assert np.all(np.isfinite(grad))
    # Only the quadruplet's four embeddings get a gradient.
    moved = set(np.flatnonzero(np.abs(grad).sum(axis=1) > 0))
    assert moved <= (set(expected_quadruplet) if expected_quadruplet else set())


def test_batch_quadruplet_of_a_hand_built_score_matrix():
    # Members of a positive pair share their negatives (every other class), so a pair
    # without negatives only occurs in a one-class batch (seed 5 above).
    labels = np.array([0, 0, 1, 1, 1, 2], "int32")
    scores = np.array([
        [0.0, 0.9, 0.1, 0.3, 0.8, 0.2],
        [0.9, 0.0, 0.5, 0.6, 0.1, 0.7],
        [0.1, 0.5, 0.0, 0.4, 0.6, 0.95],
        [0.3, 0.6, 0.4, 0.0, 0.05, 0.1],
        [0.8, 0.1, 0.6, 0.05, 0.0, 0.5],
        [0.2, 0.7, 0.95, 0.1, 0.5, 0.0],
    ], "float32")
    loss = PDDMLoss(2)
    loss.pddm.pairwise = lambda embeddings: ops.convert_to_tensor(scores)
    i, j, k, l, valid = (numpy(t) for t in loss.mine(ops.convert_to_tensor(labels), np.zeros((6, 2), "float32")))
    # positive pairs: (0, 1) 0.9, (2, 3) 0.4, (2, 4) 0.6, (3, 4) 0.05 -> (3, 4);
    # negatives of 3: 0 (0.3), 1 (0.6), 5 (0.1) -> 1; of 4: 0 (0.8), 1 (0.1), 5 (0.5) -> 0.
    assert (i[0], j[0], k[0], l[0], valid[0]) == (3, 4, 1, 0, True)


def test_mining_picks_the_hard_quadruplets_of_a_hand_built_score_matrix():
    labels = np.array([0, 0, 0, 1, 1, 2], "int32")
    scores = np.array([
        [0.0, 0.9, 0.1, 0.3, 0.8, 0.2],
        [0.9, 0.0, 0.5, 0.6, 0.1, 0.7],
        [0.1, 0.5, 0.0, 0.4, 0.2, 0.95],
        [0.3, 0.6, 0.4, 0.0, 0.35, 0.1],
        [0.8, 0.1, 0.2, 0.35, 0.0, 0.05],
        [0.2, 0.7, 0.95, 0.1, 0.05, 0.0],
    ], "float32")
    np.testing.assert_array_equal(scores, scores.T)
    loss = PDDMLoss(2, quadruplets="per_anchor")
    loss.pddm.pairwise = lambda embeddings: ops.convert_to_tensor(scores)
    i, j, k, l, valid = (numpy(t) for t in loss.mine(ops.convert_to_tensor(labels), np.zeros((6, 2), "float32")))
    np.testing.assert_array_equal(i, np.arange(6))
    # anchor 0: positives 1 (0.9), 2 (0.1) -> j = 2; negatives 3 (0.3), 4 (0.8), 5 (0.2) -> k = 4;
    # negatives of 2: 3 (0.4), 4 (0.2), 5 (0.95) -> l = 5.
    assert (j[0], k[0], l[0]) == (2, 4, 5)
    # anchor 3: only positive 4; negatives of 3: 1 (0.6) highest; of 4: 0 (0.8) highest.
    assert (j[3], k[3], l[3]) == (4, 1, 0)
    # anchor 1: positives 0 (0.9), 2 (0.5) -> j = 2; negatives 3 (0.6), 4 (0.1), 5 (0.7) -> k = 5; l = k[2] = 5.
    assert (j[1], k[1], l[1]) == (2, 5, 5)
    np.testing.assert_array_equal(valid, [True, True, True, True, True, False])  # class 2 has no positive


@pytest.mark.parametrize("quadruplets", ["batch", "per_anchor"])
def test_degenerate_batches_give_exactly_zero_with_zero_gradients(quadruplets):
    loss = PDDMLoss(4, quadruplets=quadruplets)
    randomise(loss.pddm)
    embeddings = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    for labels in (np.zeros(5, "int32"), np.arange(5, dtype="int32")):
        value, grad = value_and_grad(lambda e: loss(labels, e), embeddings)
        assert value == 0.0 and np.all(grad == 0.0)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = loss(np.zeros(5, "int32"), embeddings)
        grads = tape.gradient(value, loss.pddm.trainable_variables, unconnected_gradients="zero")
        assert all(np.all(numpy(g) == 0.0) for g in grads)


def test_bad_input_raises_clear_errors():
    pddm = PDDM()
    x = np.ones((3, 4), "float32")
    with pytest.raises(ValueError, match="same feature width"):
        pddm(x, np.ones((3, 5), "float32"))
    pddm(x, x)
    with pytest.raises(ValueError, match="built for features of width 4"):
        pddm(np.ones((3, 6), "float32"), np.ones((3, 6), "float32"))
    with pytest.raises(ValueError, match="features must have shape"):
        pddm.pairwise(np.ones((2, 3, 4), "float32"))
    with pytest.raises(ValueError, match="hidden_dim"):
        PDDM(hidden_dim=0)
    with pytest.raises(ValueError, match="embedding_dim=4"):
        PDDMLoss(4)(np.array([0, 0, 1]), np.ones((3, 5), "float32"))
    with pytest.raises(ValueError, match="embedding_dim"):
        PDDMLoss(0)
    with pytest.raises(ValueError, match="alpha"):
        PDDMLoss(4, alpha=-1.0)
    with pytest.raises(ValueError, match="quadruplets"):
        PDDMLoss(4, quadruplets="all")
    with pytest.raises(ValueError, match="labels"):
        PDDMLoss(4)(np.array([0.0, 1.0, 1.0]), np.ones((3, 4), "float32"))


def clusters(classes=4, per_class=8, dim=12, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    labels = np.repeat(np.arange(classes), per_class).astype("int32")
    return (centres[labels] + 0.8 * rng.normal(size=(len(labels), dim))).astype("float32"), labels


def model_with_pddm(seed=0):
    keras.utils.set_random_seed(seed)
    embedder = keras.Sequential([keras.Input((12,)), keras.layers.Dense(6)], name="embedder")
    return MetricModel(embedder, PDDMLoss(6, hidden_dim=8))


def test_fit_with_xla_lowers_loss_trains_the_unit_and_saves_it(tmp_path):
    x, labels = clusters()
    model = model_with_pddm()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
    before = [numpy(w) for w in model.criterion.pddm.weights]
    losses = model.fit(x, labels, batch_size=32, epochs=15, verbose=0).history["loss"]
    assert losses[-1] < 0.8 * losses[0]
    assert max(np.abs(numpy(w) - b).max() for w, b in zip(model.criterion.pddm.weights, before)) > 1e-2

    pddm_paths = {w.path for w in model.criterion.pddm.weights}
    assert len(pddm_paths) == 8 and not pddm_paths & {w.path for w in model.embedder.weights}
    assert len(model.embedder.weights) == 2

    path = str(tmp_path / "pddm.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.criterion, PDDMLoss)
    assert restored.criterion.get_config() == model.criterion.get_config()
    for mine, theirs in zip(model.criterion.pddm.weights, restored.criterion.pddm.weights):
        np.testing.assert_array_equal(numpy(mine), numpy(theirs))
    embeddings = model.predict(x, verbose=0)
    np.testing.assert_array_equal(restored.predict(x, verbose=0), embeddings)
    np.testing.assert_allclose(numpy(restored.criterion(labels, embeddings)), numpy(model.criterion(labels, embeddings)),
                               rtol=1e-6)


def test_rerank_orders_candidates_by_score():
    rng = np.random.default_rng(2)
    pddm = PDDM()
    queries = rng.normal(size=(3, 5)).astype("float32")
    candidates = rng.normal(size=(3, 6, 5)).astype("float32")
    ids = np.arange(18).reshape(3, 6) + 100
    pddm.build(queries.shape, queries.shape)
    randomise(pddm, seed=2)
    new_ids, scores = rerank(pddm, queries, candidates, ids)
    expected = reference_scores(pddm, queries[:, None, :], candidates)
    order = np.argsort(-expected, axis=1)
    np.testing.assert_array_equal(new_ids, np.take_along_axis(ids, order, axis=1))
    np.testing.assert_allclose(scores, np.take_along_axis(expected, order, axis=1), atol=1e-5)
    with pytest.raises(ValueError, match="candidate_embeddings"):
        rerank(pddm, queries, candidates[:, :, :4], ids)
    with pytest.raises(ValueError, match="candidate_ids"):
        rerank(pddm, queries, candidates, ids[:, :5])


def test_reranked_metrics_match_a_brute_force_reference():
    x, labels = clusters(classes=3, per_class=6, dim=5, seed=3)
    pddm = PDDM()
    pddm.build(x.shape, x.shape)
    randomise(pddm, seed=3)
    result = retrieval_metrics_reranked(x, labels, pddm, top_k=5, k=(1, 2, 4), chunk_size=7)
    dist = np.linalg.norm(x[:, None] - x[None], axis=-1) + np.diag(np.full(len(x), np.inf))
    top = np.argsort(dist, axis=1, kind="stable")[:, :5]
    scores = reference_scores(pddm, x[:, None, :], x[top])
    reranked = np.take_along_axis(top, np.argsort(-scores, axis=1, kind="stable"), axis=1)
    correct = labels[reranked] == labels[:, None]
    for K in (1, 2, 4):
        assert result[f"recall@{K}"] == pytest.approx(correct[:, :K].any(axis=1).mean())
    # Re-ranking by the search's own distance changes nothing.
    same = retrieval_metrics_reranked(x, labels, lambda a, b: -np.sum((a - b) ** 2, axis=-1), top_k=5, k=(1, 2, 4))
    plain = retrieval_metrics(x, labels, k=(1, 2, 4))
    assert all(same[f"recall@{K}"] == pytest.approx(plain[f"recall@{K}"]) for K in (1, 2, 4))
    with pytest.raises(ValueError, match="rerank_depth"):
        retrieval_metrics_reranked(x, labels, pddm, top_k=2, k=(1, 4))
    # retrieval_metrics takes the unit directly.
    assert retrieval_metrics(x, labels, k=(1, 2, 4), rerank=pddm, rerank_depth=5, chunk_size=7) == result
    with pytest.raises(ValueError, match="rerank"):
        retrieval_metrics(x, labels, k=(1,), rerank=pddm, nmi=True)


def test_a_pddm_unit_reranks_index_search():
    x, labels = clusters(classes=3, per_class=4, dim=5, seed=4)
    pddm = PDDM()
    pddm.build(x.shape, x.shape)
    randomise(pddm, seed=4)
    index = Index()
    index.add(x)
    ids, scores = index.search(x[:2], k=3, rerank=pddm, rerank_depth=6)
    candidates, _ = index.search(x[:2], k=6)
    expected_ids, expected_scores = rerank(pddm, x[:2], x[candidates], candidates)
    np.testing.assert_array_equal(ids, expected_ids[:, :3])
    np.testing.assert_allclose(scores, expected_scores[:, :3], atol=1e-6)
