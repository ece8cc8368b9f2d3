"""ArcFace, CosFace, SubCenterArcFace, NormalizedSoftmax, SoftTriple and ProxyNCA against the
float64 references of tests/reference.py: value, gradient, bad input, XLA, saving."""
import os

import keras
import numpy as np
import pytest
from keras import ops

from keras_dml import losses
from keras_dml.models import MetricModel
from tests import reference
from tests.helpers import compiled, is_nan_or_refused, random_batch, value_and_grad

# name -> (criterion from (num_classes, embedding_dim), reference(x, y, proxies)); two settings each.
CASES = {
    "arcface": (lambda c, d: losses.ArcFaceLoss(c, d), reference.arcface),
    "arcface_wide_margin": (lambda c, d: losses.ArcFaceLoss(c, d, margin=2.0, scale=8.0),
                            lambda x, y, p: reference.arcface(x, y, p, margin=2.0, scale=8.0)),
    "cosface": (lambda c, d: losses.CosFaceLoss(c, d), reference.cosface),
    "cosface_small": (lambda c, d: losses.CosFaceLoss(c, d, margin=0.1, scale=10.0),
                      lambda x, y, p: reference.cosface(x, y, p, margin=0.1, scale=10.0)),
    "subcenter_arcface": (lambda c, d: losses.SubCenterArcFaceLoss(c, d), reference.arcface),
    "subcenter_arcface_2": (lambda c, d: losses.SubCenterArcFaceLoss(c, d, margin=0.3, scale=16.0, sub_centers=2),
                            lambda x, y, p: reference.arcface(x, y, p, margin=0.3, scale=16.0)),
    "normalized_softmax": (lambda c, d: losses.NormalizedSoftmaxLoss(c, d), reference.normalized_softmax),
    "normalized_softmax_t": (lambda c, d: losses.NormalizedSoftmaxLoss(c, d, temperature=0.5),
                             lambda x, y, p: reference.normalized_softmax(x, y, p, temperature=0.5)),
    "soft_triple": (lambda c, d: losses.SoftTripleLoss(c, d, centers_per_class=3), reference.soft_triple),
    "soft_triple_tau": (lambda c, d: losses.SoftTripleLoss(c, d, centers_per_class=2, la=10.0, gamma=0.5,
                                                           margin=0.2, tau=0.2),
                        lambda x, y, p: reference.soft_triple(x, y, p, la=10.0, gamma=0.5, margin=0.2, tau=0.2)),
    "proxy_nca": (lambda c, d: losses.ProxyNCALoss(c, d), reference.proxy_nca),
    "proxy_nca_cosine": (lambda c, d: losses.ProxyNCALoss(c, d, scale=9.0, distance="cosine"),
                         lambda x, y, p: reference.proxy_nca(x, y, p, scale=9.0, distance="cosine")),
    "proxy_nca_euclidean": (lambda c, d: losses.ProxyNCALoss(c, d, scale=3.0, distance="euclidean"),
                            lambda x, y, p: reference.proxy_nca(x, y, p, scale=3.0, distance="euclidean")),
}
ONE_EACH = ["arcface", "cosface", "subcenter_arcface", "normalized_softmax", "soft_triple_tau", "proxy_nca"]


def _batch(seed=0, classes=3, dim=4):
    keras.utils.set_random_seed(seed)  # the weights' initial draw
    labels, x = random_batch(classes=classes, per_class=2, dim=dim, seed=seed)
    return labels, x


def proxy_gradient(loss, labels, embeddings):
    """(loss, d loss / d proxies), through `stateless_call` so that any backend can differentiate it."""
    labels, embeddings = ops.convert_to_tensor(labels, "int32"), ops.convert_to_tensor(embeddings, "float32")
    return value_and_grad(lambda p: loss.stateless_call([p], [], labels, embeddings)[0],
                          ops.convert_to_numpy(loss.proxies))



@pytest.mark.parametrize("case", CASES)
def test_value_and_gradient_match_the_reference(case):
    make, ref = CASES[case]
    labels, x = _batch(seed=1)
    loss = make(4, 4)  # class 3 has no sample: it still appears in every denominator
    proxies = ops.convert_to_numpy(loss.proxies).astype("float64")
    value, grad_x = value_and_grad(lambda e: loss(labels, e), x)
    np.testing.assert_allclose(value, ref(x, labels, proxies), rtol=1e-5)
    expected_x = reference.numeric_gradient(lambda e: ref(e, labels, proxies), x)
    np.testing.assert_allclose(grad_x, expected_x, rtol=1e-3, atol=1e-4 * np.abs(expected_x).max())
    _, grad_p = proxy_gradient(loss, labels, x)
    expected_p = reference.numeric_gradient(lambda p: ref(x, labels, p), proxies)
    np.testing.assert_allclose(grad_p, expected_p, rtol=1e-3, atol=1e-4 * np.abs(expected_p).max())
    assert np.abs(expected_x).max() > 0 and np.abs(expected_p).max() > 0


@pytest.mark.parametrize("case", [*ONE_EACH, "arcface_wide_margin"])
def test_gradients_stay_finite_on_and_opposite_the_class_weights(case):
    loss = CASES[case][0](3, 4)
    proxies = ops.convert_to_numpy(loss.proxies)
    first = proxies.reshape(3, -1, 4)[:, 0]
    labels = np.array([0, 1, 2, 0, 1, 2], "int32")
    x = np.concatenate([first, -first]).astype("float32")  # cosine exactly 1, then exactly -1, to the target
    value, grad = value_and_grad(lambda e: loss(labels, e), x)
    _, grad_p = proxy_gradient(loss, labels, x)
    assert np.isfinite(value) and np.all(np.isfinite(grad)) and np.all(np.isfinite(grad_p))


@pytest.mark.parametrize("case", ONE_EACH)
def test_empty_batch_gives_exactly_zero(case):
    loss = CASES[case][0](3, 4)
    value, grad = value_and_grad(lambda e: loss(np.zeros((0,), "int32"), e), np.zeros((0, 4), "float32"))
    assert value == 0.0 and grad.shape == (0, 4)


@pytest.mark.parametrize("make, message", [
    (lambda: losses.ArcFaceLoss(3, margin=-0.1), "margin"),
    (lambda: losses.ArcFaceLoss(3, margin=np.pi), "margin"),
    (lambda: losses.ArcFaceLoss(3, scale=0.0), "scale"),
    (lambda: losses.ArcFaceLoss(3, normalize=False), "normalize"),
    (lambda: losses.ArcFaceLoss(3, distance="squared_euclidean"), "distance='squared_euclidean'"),
    (lambda: losses.SoftTripleLoss(3, distance="dot"), "distance='dot'"),
    (lambda: losses.CosFaceLoss(3, margin=2.0), "margin"),
    (lambda: losses.CosFaceLoss(3, scale=-1.0), "scale"),
    (lambda: losses.SubCenterArcFaceLoss(3, sub_centers=0), "sub_centers"),
    (lambda: losses.SubCenterArcFaceLoss(3, margin=4.0), "margin"),
    (lambda: losses.NormalizedSoftmaxLoss(3, temperature=0.0), "temperature"),
    (lambda: losses.SoftTripleLoss(3, centers_per_class=1.5), "centers_per_class"),
    (lambda: losses.SoftTripleLoss(3, la=0.0), "la"),
    (lambda: losses.SoftTripleLoss(3, gamma=-0.1), "gamma"),
    (lambda: losses.SoftTripleLoss(3, margin=-0.01), "margin"),
    (lambda: losses.SoftTripleLoss(3, tau=-1.0), "tau"),
    (lambda: losses.ProxyNCALoss(3, scale=0.0), "scale"),
    (lambda: losses.ProxyNCALoss(3, distance="manhattan"), "distance"),
    (lambda: losses.ProxyNCALoss(0), "num_classes"),
    (lambda: losses.CosFaceLoss(3, embedding_dim=0), "embedding_dim"),
])
def test_bad_parameters_raise_naming_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("case", ONE_EACH)
def test_bad_inputs_raise_naming_the_argument(case):
    loss = CASES[case][0](3, None)
    x = np.ones((3, 4), "float32")
    for labels in ([0, 1, 3], [0, -1, 2]):
        with pytest.raises(ValueError, match="num_classes=3"):
            loss(np.array(labels), x)
    with pytest.raises(ValueError, match="labels"):
        loss(np.array([0.0, 1.0, 2.0]), x)
    with pytest.raises(ValueError, match="labels"):
        loss(np.zeros((3, 2), "int32"), x)
    with pytest.raises(ValueError, match="embeddings"):
        loss(np.array([0, 1, 2]), np.ones((3, 4, 1), "float32"))
    with pytest.raises(ValueError, match="NaN"):
        loss(np.array([0, 1, 2]), np.full((3, 4), np.nan, "float32"))
    assert loss.embedding_dim == 4  # the first call built the weights for its embeddings
    with pytest.raises(ValueError, match="embedding_dim=4"):
        loss(np.array([0, 1, 2]), np.ones((3, 5), "float32"))


@pytest.mark.parametrize("case", ONE_EACH)
def test_under_xla_the_value_matches_and_bad_input_gives_nan(case):
    make, ref = CASES[case]
    loss = make(3, 4)
    labels, x = _batch(seed=2)
    step = compiled(lambda labels, x: loss(labels, x))
    expected = ref(x, labels, ops.convert_to_numpy(loss.proxies).astype("float64"))
    np.testing.assert_allclose(float(step(labels, x)), expected, rtol=1e-5)
    bad = x.copy()
    bad[1, 2] = np.inf
    assert is_nan_or_refused(step, labels, bad)
    assert is_nan_or_refused(step, np.array([0, 1, 2, 3, 0, 1], "int32"), x)
    loss.proxies.assign(np.where(np.arange(loss.proxies.shape[-1]) == 0, np.nan, ops.convert_to_numpy(loss.proxies)))
    assert np.isnan(float(loss(labels, x)))


@pytest.mark.parametrize("case", ONE_EACH)
def test_metric_model_fits_under_xla_and_survives_a_keras_round_trip(case, tmp_path):
    keras.utils.set_random_seed(0)
    criterion = CASES[case][0](4, None)  # the width comes from MetricModel.build
    model = MetricModel(keras.Sequential([keras.Input((6,)), keras.layers.Dense(5)]), criterion)
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=True)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(24, 6)).astype("float32"), np.arange(24) % 4
    model.build((None, 6))
    assert criterion.embedding_dim == 5 and tuple(criterion.proxies.shape[::criterion.proxies.ndim - 1]) == (4, 5)
    before = ops.convert_to_numpy(criterion.proxies)
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert not np.allclose(ops.convert_to_numpy(criterion.proxies), before)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.criterion.get_config() == criterion.get_config()
    np.testing.assert_array_equal(ops.convert_to_numpy(restored.criterion.proxies),
                                  ops.convert_to_numpy(criterion.proxies))
    np.testing.assert_allclose(float(restored.criterion(y, restored.embedder(x))),
                               float(criterion(y, model.embedder(x))), rtol=1e-6)


@pytest.mark.parametrize("case", ONE_EACH)
def test_get_builds_from_the_class_name_and_serialize_round_trips(case):
    loss = CASES[case][0](5, None)
    rebuilt = losses.get(losses.serialize(loss))
    assert type(rebuilt) is type(loss) and rebuilt.get_config() == loss.get_config()
    assert losses.get(type(loss).__name__, num_classes=5, embedding_dim=8).embedding_dim == 8


@pytest.mark.parametrize("make", [
    lambda d: losses.ProxyAnchorLoss(3, d),
    lambda d: losses.PotentialFieldLoss(3, d, proxies_per_class=2),
    lambda d: losses.PDDMLoss(d),
], ids=["ProxyAnchorLoss", "PotentialFieldLoss", "PDDMLoss"])
def test_existing_criteria_take_their_width_from_build(make):
    built = make(None)
    assert not built.built and built.embedding_dim is None
    built.build((None,), (None, 6))
    given = make(6)
    assert built.embedding_dim == 6 and built.get_config() == {**given.get_config(), "name": built.name}
    assert [tuple(v.shape) for v in built.weights] == [tuple(v.shape) for v in given.weights]
    with pytest.raises(ValueError, match="embedding_dim=6"):
        make(6).build((None,), (None, 7))
    with pytest.raises(ValueError, match="embedding_dim"):
        make(None).build((None,), (None, None))
