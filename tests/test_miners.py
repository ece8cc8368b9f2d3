"""Miners on hand-built batches where the right choice can be read off."""
import numpy as np
import pytest

from keras_dml import distances, miners

# Points on a line: class 0 at 0, 1, 3; class 1 at 0.5, 2, 5.
POINTS = np.array([[0.0], [1.0], [3.0], [0.5], [2.0], [5.0]], "float32")
LABELS = np.array([0, 0, 0, 1, 1, 1])


def _mine():
    dist = distances.euclidean(POINTS)
    pos, neg = distances.label_masks(LABELS)
    return dist, pos, neg


@pytest.mark.parametrize("strategy,expected", [("easy", [1, 0, 1, 4, 3, 4]), ("hard", [2, 2, 0, 5, 5, 3])])
def test_single_positive_strategies(strategy, expected):
    dist, pos, _ = _mine()
    sel = miners.mine_positives(dist, pos, strategy)
    assert np.asarray(sel.index)[:, 0].tolist() == expected
    assert np.asarray(sel.valid).all()


def test_all_positives_is_the_mask():
    dist, pos, _ = _mine()
    sel = miners.mine_positives(dist, pos, "all")
    assert sel.index is None
    assert np.array_equal(np.asarray(sel.valid), np.asarray(pos))


def test_hard_negative_is_nearest_other_class():
    dist, _, neg = _mine()
    sel = miners.mine_negatives(dist, neg, "hard")
    assert np.asarray(sel.index)[:, 0].tolist() == [3, 3, 4, 0, 1, 2]  # anchor 4: tie between 1 and 2


def test_semihard_negative_one_threshold_per_anchor():
    dist, _, neg = _mine()
    # Anchor 0 (at 0), threshold 1.2: negatives at 0.5, 2, 5 -> semi-hard is the one at 2 (index 4).
    # Anchor 5 (at 5), threshold 10: none beyond -> the hardest negative (at 3, index 2).
    thresholds = np.array([[1.2], [1.2], [1.2], [1.2], [1.2], [10.0]], "float32")
    sel = miners.mine_negatives(dist, neg, "semihard", thresholds)
    assert np.asarray(sel.index)[:, 0].tolist() == [4, 5, 5, 2, 0, 2]


@pytest.mark.parametrize("fallback", ["nearest", "farthest", "none"])
def test_semihard_fallback_one_threshold_per_anchor(fallback):
    dist, _, neg = _mine()
    # Anchor 5 (at 5), threshold 10: no negative beyond; its negatives are at 0 (index 0), 1 (1), 3 (2).
    thresholds = np.array([[1.2], [1.2], [1.2], [1.2], [1.2], [10.0]], "float32")
    sel = miners.mine_negatives(dist, neg, "semihard", thresholds, fallback)
    index, valid = np.asarray(sel.index)[:, 0], np.asarray(sel.valid)[:, 0]
    assert index[:5].tolist() == [4, 5, 5, 2, 0] and valid[:5].all()
    expected = {"nearest": (2, True), "farthest": (0, True), "none": (None, False)}[fallback]
    assert bool(valid[5]) == expected[1]
    if expected[0] is not None:
        assert index[5] == expected[0]


@pytest.mark.parametrize("fallback", ["nearest", "farthest", "none"])
def test_semihard_with_many_thresholds_matches_a_loop(fallback):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3)).astype("float32")
    labels = rng.integers(0, 3, size=12)
    dist = np.asarray(distances.euclidean(x))
    _, neg = distances.label_masks(labels)
    thresholds = np.asarray(dist, dtype="float32")  # every column as a threshold
    sel = miners.mine_negatives(dist, neg, "semihard", thresholds, fallback)
    index, valid = np.asarray(sel.index), np.asarray(sel.valid)
    fallbacks_seen = 0
    for i in range(12):
        negatives = [k for k in range(12) if labels[k] != labels[i]]
        for a in range(12):
            beyond = [k for k in negatives if dist[i, k] > thresholds[i, a]]
            fallbacks_seen += bool(negatives) and not beyond
            if beyond:
                best = min(beyond, key=lambda k: (dist[i, k], k))
            elif negatives and fallback == "nearest":
                best = min(negatives, key=lambda k: (dist[i, k], k))
            elif negatives and fallback == "farthest":
                best = max(negatives, key=lambda k: (dist[i, k], -k))
            else:
                best = None
            assert valid[i, a] == (best is not None)
            if best is not None:
                assert index[i, a] == best
    assert fallbacks_seen > 0


def test_ties_go_to_lower_index():
    x = np.array([[0.0], [1.0], [1.0], [-1.0]], "float32")
    dist = distances.euclidean(x)
    pos, _ = distances.label_masks(np.array([0, 0, 0, 0]))
    assert int(np.asarray(miners.mine_positives(dist, pos, "hard").index)[0, 0]) == 1


def test_anchor_without_partner_is_invalid():
    dist = distances.euclidean(POINTS[:3])
    pos, neg = distances.label_masks(np.array([0, 1, 1]))
    assert np.asarray(miners.mine_positives(dist, pos, "easy").valid)[:, 0].tolist() == [False, True, True]
    assert np.asarray(miners.mine_negatives(dist, neg, "hard").valid)[:, 0].tolist() == [True, True, True]


def test_unknown_strategy():
    dist, pos, neg = _mine()
    with pytest.raises(ValueError, match="positive"):
        miners.mine_positives(dist, pos, "medium")
    with pytest.raises(ValueError, match="negative"):
        miners.mine_negatives(dist, neg, "easy")


def test_pair_miner_matches_the_low_level_miners_and_is_fixed_shape():
    labels = np.array([0, 0, 1, 1, 2, 2])
    x = np.random.default_rng(3).normal(size=(6, 4)).astype("float32")
    selection = miners.PairMiner(positive="hard", negative="semihard", normalize=False)(labels, x)
    dist = distances.squared_euclidean(x)
    pos, neg = distances.label_masks(labels)
    hard = miners.mine_positives(dist, pos, "hard")
    assert np.asarray(selection.positives.index).tolist() == np.asarray(hard.index).tolist()
    thresholds = np.take_along_axis(np.asarray(dist), np.asarray(hard.index), axis=1)
    semihard = miners.mine_negatives(dist, neg, "semihard", thresholds)
    assert np.asarray(selection.negatives.index).tolist() == np.asarray(semihard.index).tolist()
    assert tuple(selection.negatives.index.shape) == (6, 1)


def test_similarity_distances_mine_the_most_similar_as_nearest():
    labels = np.array([0, 0, 0, 1])
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.7, 0.7]], "float32")
    for distance in ("cosine", "dot", "euclidean"):
        selection = miners.PairMiner(positive="easy", negative="hard", distance=distance)(labels, x)
        assert np.asarray(selection.positives.index)[:3, 0].tolist() == [1, 0, 1], distance


def test_selection_mask_marks_each_chosen_pair_once():
    index = np.array([[1, 1], [0, 2], [0, 0]], "int32")
    valid = np.array([[True, True], [True, False], [False, False]])
    mask = np.asarray(miners.selection_mask(miners.Selection(index, valid), (3, 3)))
    assert mask.tolist() == [[False, True, False], [True, False, False], [False, False, False]]


def test_pairs_against_references_leave_out_empty_slots_and_the_anchor_itself():
    labels = np.array([0, 1])
    x = np.eye(2, dtype="float32")
    references = miners.References(np.array([0, 1, 0, 1], "int32"), np.eye(4, 2, dtype="float32"),
                                   np.array([True, True, True, False]), np.array([0, 1], "int32"))
    pairs = miners.pairs(labels, x, "euclidean", references)
    assert np.asarray(pairs.positive_mask).tolist() == [[False, False, True, False], [False, False, False, False]]
    assert np.asarray(pairs.negative_mask).tolist() == [[False, True, False, False], [True, False, True, False]]


def test_pair_miner_bad_arguments():
    with pytest.raises(ValueError, match="distance"):
        miners.PairMiner(distance="manhattan")
    with pytest.raises(ValueError, match="negative"):
        miners.PairMiner(negative="easy")
