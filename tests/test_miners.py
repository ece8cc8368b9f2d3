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
