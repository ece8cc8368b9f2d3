"""The pair losses added with the Keras-shaped API: references, gradients, degenerate
batches, bad input, distances, sample weights, reductions, mined selections, functional forms.

Backend-neutral: also run under KERAS_BACKEND=jax by tests/test_backend_jax.py.
"""
import keras
import numpy as np
import pytest

from keras_dml import losses, miners
from tests import reference
from tests.helpers import compiled, is_nan_or_refused, random_batch, value_and_grad

# name: (class, reference, two settings); the first is the class's defaults
NEW_LOSSES = {
    "circle": (losses.CircleLoss, reference.circle, [{}, {"m": 0.25, "gamma": 32.0}]),
    "supcon": (losses.SupConLoss, reference.supcon, [{}, {"temperature": 0.5}]),
    "ntxent": (losses.NTXentLoss, reference.ntxent, [{}, {"temperature": 0.3}]),
    "lifted": (losses.LiftedStructureLoss, reference.lifted, [{}, {"neg_margin": 0.5, "pos_margin": 0.1}]),
    "generalized_lifted": (losses.GeneralizedLiftedStructureLoss, reference.generalized_lifted,
                           [{}, {"neg_margin": 0.5, "pos_margin": 0.1}]),
    "fastap": (losses.FastAPLoss, reference.fastap, [{}, {"num_bins": 20, "distance": "euclidean"}]),
    "margin": (losses.MarginLoss, reference.margin, [{}, {"margin": 0.1, "beta": 1.0, "nu": 0.1}]),
}


def make(name, setting=0):
    cls, _, settings = NEW_LOSSES[name]
    return cls(**settings[setting])


@pytest.mark.parametrize("setting", [0, 1])
@pytest.mark.parametrize("name", sorted(NEW_LOSSES))
def test_matches_reference(name, setting):
    cls, ref, settings = NEW_LOSSES[name]
    labels, x = random_batch(classes=3, per_class=4, dim=5, seed=setting)
    np.testing.assert_allclose(float(cls(**settings[setting])(labels, x)), ref(x, labels, **settings[setting]),
                               rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(NEW_LOSSES))
def test_gradient_matches_reference(name):
    cls, ref, settings = NEW_LOSSES[name]
    labels, x = random_batch(classes=3, per_class=3, dim=3, seed=7)
    if name == "circle":  # its pair weights carry no gradient: hold them at x
        expected = reference.numeric_gradient(lambda v: ref(v, labels, fixed=x), x)
    else:
        expected = reference.numeric_gradient(lambda v: ref(v, labels, **settings[1]), x)
    loss = cls() if name == "circle" else cls(**settings[1])
    _, grad = value_and_grad(lambda v: loss(labels, v), x)
    np.testing.assert_allclose(grad, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


ALL = {**{name: (lambda name=name: make(name)) for name in NEW_LOSSES},
       "multiple": lambda: losses.MultipleLosses([losses.CircleLoss(), losses.MarginLoss()], weights=[0.5, 2.0]),
       "triplet-cosine": lambda: losses.TripletLoss(distance="cosine"),
       "contrastive-dot": lambda: losses.ContrastiveLoss(pos_margin=0.9, neg_margin=0.1, distance="dot")}


@pytest.mark.parametrize("name", sorted(ALL))
def test_gradients_finite_with_coincident_points_and_zero_vectors(name):
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2], "int32")
    x = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
    x[1], x[3], x[7] = x[0], x[2], 0.0
    value, grad = value_and_grad(lambda v: ALL[name]()(labels, v), x)
    assert np.isfinite(value) and np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("labels", [np.arange(6), np.zeros(6)], ids=["singletons", "one-class"])
def test_degenerate_batch_gives_exact_zero(name, labels):
    if name == "contrastive-dot":
        pytest.skip("contrastive pair terms are separate: these batches still have valid pairs")
    x = np.random.default_rng(1).normal(size=(6, 4)).astype("float32")
    value, grad = value_and_grad(lambda v: ALL[name]()(labels.astype("int32"), v), x)
    assert value == 0.0 and np.all(grad == 0.0)
    assert float(ALL[name]()(np.zeros((0,), "int32"), np.zeros((0, 4), "float32"))) == 0.0


@pytest.mark.parametrize("name", sorted(ALL))
def test_non_finite_input_raises(name):
    labels, x = random_batch(seed=2)
    bad = x.copy()
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        ALL[name]()(labels, bad)



@pytest.mark.parametrize("name", ["circle", "fastap"])
def test_compiled_matches_eager_and_non_finite_input_gives_nan(name):
    labels, x = random_batch(classes=4, per_class=4, dim=6, seed=12)
    loss = ALL[name]()
    step = compiled(lambda v: loss(labels, v))
    np.testing.assert_allclose(float(step(x)), float(loss(labels, x)), rtol=1e-5)
    bad = x.copy()
    bad[3, 1] = np.inf  # inside a compiled step the values are not known: NaN, never a finite loss
    assert is_nan_or_refused(step, bad)


@pytest.mark.parametrize("cls,argument,value", [
    (losses.CircleLoss, "distance", "euclidean"),
    (losses.MultiSimilarityLoss, "distance", "squared_euclidean"),
    (losses.FastAPLoss, "distance", "cosine"),
    (losses.TripletLoss, "distance", "manhattan"),
    (losses.CircleLoss, "gamma", 0.0),
    (losses.CircleLoss, "m", -0.1),
    (losses.SupConLoss, "temperature", 0.0),
    (losses.NTXentLoss, "temperature", -1.0),
    (losses.FastAPLoss, "num_bins", 0),
    (losses.FastAPLoss, "normalize", False),
    (losses.MarginLoss, "margin", -0.2),
    (losses.MarginLoss, "nu", -1.0),
    (losses.MarginLoss, "num_classes", 0),
    (losses.TripletLoss, "reduction", "average"),
])
def test_bad_parameter_names_the_argument(cls, argument, value):
    with pytest.raises(ValueError, match=argument):
        cls(**{argument: value})


@pytest.mark.parametrize("name", sorted(ALL))
def test_bad_labels_and_sample_weight(name):
    labels, x = random_batch(seed=5)
    loss = ALL[name]()
    with pytest.raises(ValueError, match="integer"):
        loss(labels.astype("float32"), x)
    with pytest.raises(ValueError, match="entries"):
        loss(labels[:-1], x)
    with pytest.raises(ValueError, match="shape"):
        loss(labels, x[:, :, None])
    with pytest.raises(ValueError, match="sample_weight"):
        loss(labels, x, sample_weight=np.ones((len(labels), 2)))


@pytest.mark.parametrize("distance", ["euclidean", "squared_euclidean", "cosine", "dot"])
@pytest.mark.parametrize("positive,negative", [("all", "all"), ("easy", "semihard"), ("hard", "hard")])
def test_triplet_and_contrastive_distances_match_reference(distance, positive, negative):
    labels, x = random_batch(classes=3, per_class=4, dim=5, seed=3)
    triplet = losses.TripletLoss(margin=0.3, positive=positive, negative=negative, distance=distance)
    np.testing.assert_allclose(float(triplet(labels, x)), reference.triplet(
        x, labels, margin=0.3, positive=positive, negative=negative, distance=distance), rtol=1e-5, atol=1e-6)
    margins = {"pos_margin": 0.8, "neg_margin": 0.2} if distance in ("cosine", "dot") else {"pos_margin": 0.1, "neg_margin": 1.0}
    contrastive = losses.ContrastiveLoss(positive=positive, negative=negative, distance=distance, **margins)
    np.testing.assert_allclose(float(contrastive(labels, x)), reference.contrastive(
        x, labels, positive=positive, negative=negative, distance=distance, **margins), rtol=1e-5, atol=1e-6)


def test_sample_weight_weighs_each_anchor_and_every_reduction():
    labels, x = random_batch(classes=3, per_class=4, dim=5, seed=4)
    w = np.random.default_rng(4).uniform(0.0, 2.0, size=len(labels)).astype("float32")
    terms = reference.circle_terms(x, labels)
    weighted_sum = sum(w[i] * t for i, t in terms.items())
    expected = {"sum_over_batch_size": weighted_sum / len(terms), "mean": weighted_sum / len(terms),
                "sum": weighted_sum, "mean_with_sample_weight": weighted_sum / sum(w[i] for i in terms)}
    for reduction, value in expected.items():
        loss = losses.CircleLoss(reduction=reduction)
        np.testing.assert_allclose(float(loss(labels, x, sample_weight=w)), value, rtol=2e-5, err_msg=reduction)
        np.testing.assert_allclose(float(loss(labels, x, sample_weight=w[:, None])), value, rtol=2e-5)
    per_anchor = np.asarray(losses.CircleLoss(reduction="none")(labels, x, sample_weight=w))
    np.testing.assert_allclose(per_anchor, [w[i] * terms.get(i, 0.0) for i in range(len(labels))], rtol=2e-5)
    ones = losses.CircleLoss()(labels, x, sample_weight=np.ones(len(labels)))
    np.testing.assert_allclose(float(ones), float(losses.CircleLoss()(labels, x)), rtol=1e-6)


def test_sample_weight_refused_where_terms_are_not_per_anchor():
    labels, x = random_batch(classes=4, per_class=2, dim=5, seed=4)
    with pytest.raises(ValueError, match="sample_weight"):
        losses.ProxyAnchorLoss(4, 5)(labels, x, sample_weight=np.ones(len(labels)))


def test_mine_once_feed_two_losses():
    labels, x = random_batch(classes=4, per_class=4, dim=6, seed=8)
    selection = miners.PairMiner(positive="easy", negative="semihard")(labels, x)
    own = losses.TripletLoss(positive="easy", negative="semihard")(labels, x)
    np.testing.assert_allclose(float(losses.TripletLoss()(labels, x, selection=selection)), float(own), rtol=1e-6)
    np.testing.assert_allclose(float(own), reference.triplet(x, labels, positive="easy", negative="semihard"), rtol=1e-5)
    # the same selection restricts a mask-based loss to those pairs: each anchor's nearest
    # positive and the semi-hard negative beyond it
    d = reference.distances(reference.normalize(x))
    masked_circle = losses.CircleLoss()(labels, x, selection=selection)
    chosen = {i: (reference.positives(d, labels, i, "easy"), None) for i in range(len(labels))}
    terms = {}
    s = reference.pair_matrix(x, "cosine")
    for i, (p, _) in chosen.items():
        n = reference.negatives(d, labels, i, "semihard", d[i, p[0]])
        lp = reference._lse([-80 * max(1.4 - s[i, j], 0) * (s[i, j] - 0.6) for j in p])
        ln = reference._lse([80 * max(s[i, k] + 0.4, 0) * (s[i, k] - 0.4) for k in n])
        terms[i] = np.logaddexp(0.0, lp + ln)
    np.testing.assert_allclose(float(masked_circle), np.mean(list(terms.values())), rtol=1e-5)


def test_bad_selection_names_the_argument():
    labels, x = random_batch(classes=4, per_class=4, dim=6, seed=8)
    selection = miners.PairMiner()(labels[:8], x[:8])
    with pytest.raises(ValueError, match="selection"):
        losses.TripletLoss()(labels, x, selection=selection)
    with pytest.raises(ValueError, match="selection"):
        losses.TripletLoss()(labels, x, selection=(None, None))
    with pytest.raises(ValueError, match="selection"):
        losses.ProxyAnchorLoss(4, 6)(labels, x, selection=miners.PairMiner()(labels, x))


def test_functional_forms_equal_the_classes():
    labels, x = random_batch(seed=9)
    w = np.linspace(0.5, 1.5, len(labels)).astype("float32")
    for function, cls, config in [(losses.triplet_loss, losses.TripletLoss, {"margin": 0.1, "distance": "cosine"}),
                                  (losses.circle_loss, losses.CircleLoss, {"gamma": 30.0}),
                                  (losses.fast_ap_loss, losses.FastAPLoss, {"num_bins": 5}),
                                  (losses.supcon_loss, losses.SupConLoss, {})]:
        np.testing.assert_allclose(float(function(labels, x, sample_weight=w, **config)),
                                   float(cls(**config)(labels, x, sample_weight=w)), rtol=1e-6)
    assert "TripletLoss" in losses.triplet_loss.__doc__


def test_multiple_losses_is_the_weighted_sum_and_round_trips():
    labels, x = random_batch(classes=3, per_class=4, dim=5, seed=10)
    proxy = losses.ProxyAnchorLoss(3, 5)
    multiple = losses.MultipleLosses([losses.SupConLoss(), proxy], weights=[0.5, 2.0])
    expected = 0.5 * reference.supcon(x, labels) + 2.0 * float(proxy(labels, x))
    np.testing.assert_allclose(float(multiple(labels, x)), expected, rtol=1e-5)
    restored = losses.get(losses.serialize(multiple))
    restored.criteria[1].proxies.assign(proxy.proxies)
    np.testing.assert_allclose(float(restored(labels, x)), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="weights"):
        losses.MultipleLosses([losses.SupConLoss()], weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="losses"):
        losses.MultipleLosses([])


@pytest.mark.parametrize("name", sorted(ALL))
def test_config_round_trip(name):
    loss = ALL[name]()
    restored = losses.get(losses.serialize(loss))
    assert type(restored) is type(loss)
    labels, x = random_batch(classes=4, per_class=3, dim=5, seed=6)
    np.testing.assert_allclose(float(restored(labels, x)), float(loss(labels, x)), rtol=1e-6)


def test_configs_saved_before_distance_and_reduction_still_load():
    old = {"module": "keras_dml.losses.pair", "class_name": "TripletLoss", "registered_name": "keras_dml>TripletLoss",
           "config": {"name": "triplet_loss", "normalize": True, "cross_replica": True, "positive": "easy",
                      "negative": "semihard", "semihard_fallback": "nearest", "margin": 0.2}}
    loss = keras.saving.deserialize_keras_object(old)
    assert (loss.distance, loss.reduction) == ("euclidean", "sum_over_batch_size")
    labels, x = random_batch(seed=11)
    np.testing.assert_allclose(float(loss(labels, x)), reference.triplet(x, labels, positive="easy", negative="semihard"),
                               rtol=1e-5)


def test_margin_beta_trains_through_metric_model_and_per_class_beta():
    from keras_dml import models

    x = np.random.default_rng(13).normal(size=(12, 5)).astype("float32")
    y = np.arange(12) % 3
    for learn_beta in (True, False):
        criterion = losses.MarginLoss(learn_beta=learn_beta, nu=0.1, num_classes=3)
        model = models.MetricModel(keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)]), criterion)
        model.compile(optimizer=keras.optimizers.SGD(0.5))
        model.fit(x, y, batch_size=12, epochs=1, verbose=0)
        moved = np.abs(np.asarray(criterion.beta) - 1.2).max() > 1e-4
        assert moved == learn_beta and len(criterion.trainable_weights) == int(learn_beta)
    labels, z = random_batch(classes=3, per_class=4, dim=5, seed=14)
    criterion = losses.MarginLoss(num_classes=3, nu=0.2)
    betas = np.array([0.9, 1.1, 1.3], "float32")
    criterion.beta.assign(betas)
    np.testing.assert_allclose(float(criterion(labels, z)), reference.margin(z, labels, beta=betas, nu=0.2), rtol=2e-5)
    with pytest.raises(ValueError, match="num_classes"):
        criterion(labels + 3, z)


def test_fit_passes_sample_weight_to_a_compiled_loss():
    x = np.random.default_rng(15).normal(size=(8, 5)).astype("float32")
    y = np.arange(8) % 2
    for weight, expect_zero in ((np.zeros(8, "float32"), True), (np.ones(8, "float32"), False)):
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)])
        model.compile(optimizer="sgd", loss=losses.CircleLoss())
        history = model.fit(x, y, sample_weight=weight, batch_size=8, epochs=1, verbose=0)
        assert (history.history["loss"][0] == 0.0) == expect_zero
