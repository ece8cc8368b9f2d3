"""bfloat16 screening of the exact k-NN search (keras_dml.search.screen).

The search logic is tested on every machine with a stand-in screen whose keys are off by
up to 99.9% of the error bound, in the worst direction for each pair; the real bfloat16
multiply is tested where `screen.supported()` says this CPU has one.
"""
import numpy as np
import pytest

from keras_dml.evaluation import nearest_neighbors, retrieval_metrics
from keras_dml.search import exact, screen
from keras_dml.search.keys import Frame
from tests.test_evaluation_metrics import brute_force_neighbors, integer_set, reference_metrics

needs_bfloat16 = pytest.mark.skipif(not screen.supported(), reason="no float32-accumulating bfloat16 matmul")


class AdversarialScreen(screen.BFloat16Screen):
    """Exact keys pushed up or down by 0.999 of each pair's error bound `C * S`."""

    def __init__(self, left, right):
        super().__init__(left, right)
        self.exact_left, self.exact_right = left.astype(np.float64), right.astype(np.float64)
        self.rng = np.random.default_rng(0)

    def keys(self, rows, cols):
        exact = self.exact_left[rows] @ self.exact_right[cols].T
        bound = (np.outer(self.left_norms[rows], self.right_norms[cols]) + self.left_extra[rows][:, None]
                 + self.right_extra[cols][None, :]) * self.coefficient
        return (exact + 0.999 * bound * self.rng.choice([-1.0, 1.0], size=exact.shape)).astype(np.float32)


@pytest.fixture
def adversarial(monkeypatch):
    """Screening on, with `AdversarialScreen`; yields a count of pairs rescored one by one."""
    monkeypatch.setattr(screen, "supported", lambda: True)
    monkeypatch.setattr(screen, "BFloat16Screen", AdversarialScreen)
    monkeypatch.setattr(exact, "_MAX_DENSE_SHARE", 1.0)  # keep screening however many pass
    rescored = []
    pair_keys = exact.KeyBlocks._pair_keys

    def counting(self, query_ids, gallery_ids):
        rescored.append(len(query_ids))
        return pair_keys(self, query_ids, gallery_ids)

    monkeypatch.setattr(exact.KeyBlocks, "_pair_keys", counting)
    return rescored


@pytest.mark.parametrize("high", [1, 3, 40])  # from massive ties to almost none
@pytest.mark.parametrize("distance", ["euclidean", "squared_euclidean", "dot"])
def test_screened_neighbors_equal_brute_force(adversarial, high, distance):
    x, _ = integer_set(400, 6, 5, high, seed=high)
    order, _ = brute_force_neighbors(x, distance=distance)
    for chunk_size in (16, 64, 1000):
        ids, _ = nearest_neighbors(x, k=5, distance=distance, chunk_size=chunk_size, screen=True)
        np.testing.assert_array_equal(ids, order[:, :5])
    assert sum(adversarial) > 0  # some pairs passed the screen sparsely


def test_screened_separate_gallery_and_query_chunks_equal_brute_force(adversarial, monkeypatch):
    x, _ = integer_set(300, 5, 4, 3, seed=1)
    q, _ = integer_set(70, 5, 4, 3, seed=2)
    order, _ = brute_force_neighbors(q, x)
    np.testing.assert_array_equal(nearest_neighbors(q, x, k=7, chunk_size=32, screen=True)[0], order[:, :7])
    monkeypatch.setattr(exact, "_LIST_BUDGET_BYTES", 20_000)  # symmetric search in query chunks
    order, _ = brute_force_neighbors(x)
    np.testing.assert_array_equal(nearest_neighbors(x, k=7, chunk_size=32, screen=True)[0], order[:, :7])


def test_screened_metrics_equal_reference_with_auto(adversarial, monkeypatch):
    monkeypatch.setattr(exact, "_SCREEN_MIN_DIM", 1)
    monkeypatch.setattr(exact, "_SCREEN_DEPTH_RATIO", 1)
    x, y = integer_set(500, 6, 40, 2, seed=4)
    expected, _ = reference_metrics(x, y, (1, 4))
    result = retrieval_metrics(x, y, k=(1, 4), chunk_size=64)
    for name, value in expected.items():
        np.testing.assert_allclose(result[name], value, rtol=1e-12, err_msg=name)
    assert sum(adversarial) > 0


def test_auto_screens_only_wide_rows_and_short_lists(adversarial):
    narrow, _ = integer_set(300, 6, 4, 3, seed=5)
    wide, _ = integer_set(1300, 64, 4, 3, seed=5)
    nearest_neighbors(narrow, k=2)
    nearest_neighbors(wide, k=10)  # 10 + 8 of 1299: a list too deep next to the gallery
    assert not adversarial
    order, _ = brute_force_neighbors(wide)
    np.testing.assert_array_equal(nearest_neighbors(wide, k=2, chunk_size=64)[0], order[:, :2])
    assert adversarial


def test_screening_stops_where_most_queries_need_float32_rows(adversarial, monkeypatch):
    monkeypatch.setattr(exact, "_MAX_DENSE_SHARE", 0.15)
    screened = []
    keys = AdversarialScreen.keys
    monkeypatch.setattr(AdversarialScreen, "keys", lambda self, rows, cols: screened.append(1) or keys(self, rows, cols))
    x, _ = integer_set(600, 8, 3, 2, seed=9)
    order, _ = brute_force_neighbors(x)  # 150 of 599: ~16 of every 64-row block are neighbours
    np.testing.assert_array_equal(nearest_neighbors(x, k=150, chunk_size=64, screen=True)[0], order[:, :150])
    off_diagonal_blocks = 10 * 9 // 2
    assert 0 < len(screened) < off_diagonal_blocks // 2


@needs_bfloat16
@pytest.mark.parametrize("distance", ["euclidean", "cosine", "dot"])
def test_real_screen_matches_the_float32_search(distance):
    rng = np.random.default_rng(6)
    centres = rng.normal(size=(40, 96))
    y = rng.integers(0, 40, size=1500)
    x = (centres[y] + 1.5 * rng.normal(size=(1500, 96))) * rng.uniform(0.5, 2.0, size=(1500, 1))
    x = x.astype("float32")
    plain_ids, plain_values = nearest_neighbors(x, k=10, distance=distance, chunk_size=256, screen=False)
    ids, values = nearest_neighbors(x, k=10, distance=distance, chunk_size=256, screen=True)
    np.testing.assert_array_equal(ids, plain_ids)
    np.testing.assert_allclose(values, plain_values, rtol=1e-5, atol=1e-5)


@needs_bfloat16
def test_real_bfloat16_error_stays_within_the_margin():
    rng = np.random.default_rng(7)
    for dim, scale in ((8, 1.0), (512, 1.0), (1000, 1e4), (300, 1e-6)):
        x = (rng.normal(size=(200, dim)) * scale * rng.uniform(0.01, 10.0, size=(200, 1))).astype("float32")
        frame = Frame("euclidean", x)  # its augmented rows, here of x itself (not centred or scaled)
        left, right = frame.left(x, own_term=True), frame.right(x)
        approximate = screen.BFloat16Screen(left, right)
        rows = slice(0, 200)
        error = np.abs(approximate.keys(rows, rows) - (left.astype(np.float64) @ right.T.astype(np.float64)))
        assert np.all(error <= approximate.margin(rows, rows)[:, None])
        assert np.all(error <= approximate.margin(rows, rows, transposed=True)[None, :])


def test_margin_coefficient_covers_the_roundings():
    # Inputs (2u), the bfloat16 output (2^-7) and two float32 accumulations of 514 terms.
    assert 2 * 2.0 ** -8 + 2.0 ** -7 < screen.margin_coefficient(514) < 0.0162
    assert screen.margin_coefficient(4096) > screen.margin_coefficient(514)


def test_values_out_of_the_safe_range_are_not_screened():
    assert screen.screenable(np.array([[0.0, 1.0], [-3.0, 2.0 ** 40]], "float32"))
    assert not screen.screenable(np.array([[1e-20, 1.0]], "float32"))
    assert not screen.screenable(np.array([[1e20, 1.0]], "float32"))


def test_tiny_values_fall_back_to_the_exact_search(adversarial):
    x, _ = integer_set(200, 6, 4, 3, seed=8)
    x = x * np.float32(2.0 ** -60)  # below the safe range, yet exact in float32
    order, _ = brute_force_neighbors(x)
    np.testing.assert_array_equal(nearest_neighbors(x, k=4, screen=True)[0], order[:, :4])
    assert not adversarial


def test_unsupported_cpu_is_detected(monkeypatch):
    screen.supported.cache_clear()
    try:
        monkeypatch.setattr(screen, "_cpu_flags", lambda: {"avx2", "fma"})
        assert not screen.supported()
        screen.supported.cache_clear()
        monkeypatch.setattr(screen, "_cpu_flags", lambda: {"amx_bf16"})
        monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
        assert not screen.supported()
    finally:
        screen.supported.cache_clear()


def test_bad_screen_argument_is_a_clear_error():
    with pytest.raises(ValueError, match="screen must be"):
        nearest_neighbors(np.eye(4, dtype="float32"), k=1, screen="always")
