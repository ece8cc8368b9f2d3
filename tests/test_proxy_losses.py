"""PotentialFieldLoss and ProxyAnchorLoss against NumPy references written from the formulas."""
import keras
import numpy as np
import pytest
from keras import ops

from keras_dml.losses.proxy import PotentialFieldLoss, ProxyAnchorLoss, field_energy
from tests.helpers import compiled, random_batch, value_and_grad


def proxy_gradient(loss, labels, embeddings):
    """d loss / d proxies, through `stateless_call` so that any backend can differentiate it."""
    labels, embeddings = ops.convert_to_tensor(labels, "int32"), ops.convert_to_tensor(embeddings, "float32")

    def of_proxies(proxies):
        value, _ = loss.stateless_call([proxies], [v.value for v in loss.non_trainable_variables], labels, embeddings)
        return value

    return value_and_grad(of_proxies, ops.convert_to_numpy(loss.proxies))[1]



def _normalize(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def potential_field_reference(labels, embeddings, proxies, alpha, delta_att, delta_rep, proxy_targets,
                              radius_ratio=None):
    """docs/methods.md, potential field, one charge at a time, in float64."""
    num_classes, per_class, dim = proxies.shape
    z = _normalize(embeddings.astype("float64"))
    p = _normalize(proxies.reshape(-1, dim).astype("float64"))
    if radius_ratio is not None:  # both radii scaled so that neither exceeds radius_ratio x the mean distance
        mean_d = np.mean([np.linalg.norm(a - b) for i, a in enumerate(z) for j, b in enumerate(z) if i != j])
        scale = min(1.0, radius_ratio * mean_d / max(delta_att, delta_rep))
        delta_att, delta_rep = scale * delta_att, scale * delta_rep
    charges = [(z[i], labels[i]) for i in range(len(z))]
    charges += [(p[c * per_class + k], c) for c in range(num_classes) for k in range(per_class)]

    def g(x):
        return -np.log(x) if alpha == 0 else x ** (-alpha) / alpha

    def field(index):
        position, cls = charges[index]
        total = 0.0
        for other, (where, other_cls) in enumerate(charges):
            if other == index:
                continue
            d = max(np.linalg.norm(position - where), 1e-3)
            total += -g(max(d, delta_att)) if other_cls == cls else g(min(d, delta_rep))
        return total

    classes = range(num_classes) if proxy_targets == "all" else sorted(set(labels.tolist()))
    points = list(range(len(z))) + [len(z) + c * per_class + k for c in classes for k in range(per_class)]
    return np.mean([field(i) for i in points])


def proxy_anchor_reference(labels, embeddings, proxies, alpha, delta):
    """Kim et al. (CVPR 2020), eq. 4, with loops over proxies."""
    s = _normalize(embeddings.astype("float64")) @ _normalize(proxies.astype("float64")).T
    positive_terms, negative_terms = [], []
    for c in range(len(proxies)):
        positives, negatives = s[labels == c, c], s[labels != c, c]
        if len(positives):
            positive_terms.append(np.log1p(np.sum(np.exp(-alpha * (positives - delta)))))
        negative_terms.append(np.log1p(np.sum(np.exp(alpha * (negatives + delta)))))
    return np.mean(positive_terms) + np.mean(negative_terms)


@pytest.mark.parametrize("proxy_targets", ["all", "batch"])
@pytest.mark.parametrize("alpha", [0.0, 1.0, 3.0])
@pytest.mark.parametrize("deltas", [(0.2, 0.2), (0.05, 1.5)])
@pytest.mark.parametrize("radius_ratio", [None, 0.5])
def test_potential_field_matches_reference(alpha, proxy_targets, deltas, radius_ratio):
    keras.utils.set_random_seed(3)  # the proxies' initialisation: a reproducible draw
    labels, embeddings = random_batch(classes=3, per_class=3, dim=6, seed=1)
    loss = PotentialFieldLoss(5, 6, proxies_per_class=2, alpha=alpha, delta_att=deltas[0], delta_rep=deltas[1],
                              proxy_targets=proxy_targets, radius_ratio=radius_ratio)
    expected = potential_field_reference(labels, embeddings, ops.convert_to_numpy(loss.proxies), alpha, *deltas,
                                         proxy_targets, radius_ratio)
    np.testing.assert_allclose(float(loss(labels, embeddings)), expected, rtol=1e-4)


def test_potential_field_radii_follow_the_spread_the_embedder_starts_from():
    """The default radii shrink to the first batch's spread (a random network's small cap)
    and keep that scale; they are the set radii where the first batch is spread out."""
    labels, spread = random_batch(classes=4, per_class=4, dim=16, seed=5)
    spread = _normalize(spread.astype("float64"))
    cap = _normalize(np.eye(16)[0] + 0.05 * spread)  # every embedding within about 0.1 of one direction
    mean_d = np.mean([np.linalg.norm(a - b) for i, a in enumerate(cap) for j, b in enumerate(cap) if i != j])
    assert mean_d < 0.2

    def radii(loss, points):
        return [float(r) for r in loss.radii(ops.convert_to_tensor(points, "float32"))]

    from_cap = PotentialFieldLoss(4, 16, proxies_per_class=2)  # defaults: radii 0.2, radius_ratio 0.5
    np.testing.assert_allclose(radii(from_cap, cap), [0.5 * mean_d] * 2, rtol=1e-4)
    np.testing.assert_allclose(radii(from_cap, spread), [0.5 * mean_d] * 2, rtol=1e-4)  # the scale is kept
    from_spread = PotentialFieldLoss(4, 16, proxies_per_class=2)
    np.testing.assert_allclose(radii(from_spread, spread), [0.2, 0.2])
    np.testing.assert_allclose(radii(from_spread, cap), [0.2, 0.2])
    unset = PotentialFieldLoss(4, 16, proxies_per_class=2)
    np.testing.assert_allclose(radii(unset, cap[:1]), [0.2, 0.2])  # one embedding has no spread: not set yet
    np.testing.assert_allclose(radii(unset, cap), [0.5 * mean_d] * 2, rtol=1e-4)
    # At the small cap, same-class pairs now lie beyond the attraction radius: they attract.
    loss = PotentialFieldLoss(4, 16, proxies_per_class=2)
    fixed = PotentialFieldLoss(4, 16, proxies_per_class=2, radius_ratio=None)
    fixed.proxies.assign(loss.proxies)
    for criterion, attracts in ((loss, True), (fixed, False)):
        _, grad = value_and_grad(lambda x: criterion(labels, x), cap.astype("float32"))
        toward = np.sum(grad * (cap - cap[labels == labels[0]].mean(axis=0)), axis=1)[labels == labels[0]]
        assert np.all(toward > 0) == attracts  # a descent step moves class 0 toward its own centre


def test_potential_field_relative_radii_are_a_constant_for_the_gradient():
    """With `radius_ratio` the gradient is that of fixed radii at the batch's scaled values."""
    labels, embeddings = random_batch(classes=3, per_class=3, dim=6, seed=6)
    embeddings = np.eye(6, dtype="float32")[0] + 0.05 * embeddings  # a small cap: the radii scale
    relative = PotentialFieldLoss(3, 6, proxies_per_class=2, delta_att=0.2, delta_rep=0.3, radius_ratio=0.5)
    delta_att, delta_rep = (float(r) for r in relative.radii(ops.convert_to_tensor(_normalize(embeddings))))
    assert delta_att < 0.2 and delta_rep == pytest.approx(1.5 * delta_att, rel=1e-5)
    fixed = PotentialFieldLoss(3, 6, proxies_per_class=2, delta_att=delta_att, delta_rep=delta_rep, radius_ratio=None)
    fixed.proxies.assign(relative.proxies)
    value, grad = value_and_grad(lambda x: relative(labels, x), embeddings)
    expected_value, expected_grad = value_and_grad(lambda x: fixed(labels, x), embeddings)
    np.testing.assert_allclose(value, expected_value, rtol=1e-5)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6 * np.abs(expected_grad).max())
    assert np.all(np.isfinite(grad))


def test_potential_field_gradient_matches_finite_differences():
    labels, embeddings = random_batch(classes=2, per_class=3, dim=4, seed=2)
    loss = PotentialFieldLoss(3, 4, proxies_per_class=2, alpha=1.0, delta_att=0.05, delta_rep=1.5,
                              proxy_targets="batch", radius_ratio=None)
    proxies = ops.convert_to_numpy(loss.proxies)
    _, grad = value_and_grad(lambda x: loss(labels, x), embeddings)

    def reference(x):
        return potential_field_reference(labels, x, proxies, 1.0, 0.05, 1.5, "batch")

    step, numeric = 1e-5, np.zeros_like(grad, dtype="float64")
    for index in np.ndindex(*embeddings.shape):
        up, down = embeddings.astype("float64"), embeddings.astype("float64")
        up[index] += step
        down[index] -= step
        numeric[index] = (reference(up) - reference(down)) / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-3 * np.abs(numeric).max())


@pytest.mark.parametrize("alpha", [0.0, 3.0])
def test_forces_decay_and_vanish_in_flat_regions(alpha):
    """Two points on a line: the pull of a same-class charge is zero inside delta_att and
    falls as d^-(alpha+1) beyond it; the push of another class is d^-(alpha+1) inside
    delta_rep and zero beyond it."""

    def force(d, same_class):
        charge_labels = np.array([0, 0 if same_class else 1], "int32")

        def energy_of_first(x):
            return field_energy(x, charge_labels[:1], np.array([0], "int32"), x, charge_labels,
                                alpha=alpha, delta_att=0.2, delta_rep=0.2)[0]

        _, grad = value_and_grad(energy_of_first, np.array([[0.0], [d]]))
        return grad[1, 0]  # dU/dd: > 0 pulls the second point back, < 0 pushes it away

    inside, beyond = [0.05, 0.1, 0.15], [0.3, 0.5, 1.0, 1.5]
    pull_inside = [force(d, True) for d in inside]
    pull_beyond = np.array([force(d, True) for d in beyond])
    np.testing.assert_array_equal(pull_inside, 0.0)
    assert np.all(np.diff(pull_beyond) < 0) and np.all(pull_beyond > 0)
    np.testing.assert_allclose(pull_beyond, np.array(beyond) ** -(alpha + 1), rtol=1e-4)
    push_inside = np.array([force(d, False) for d in inside])
    np.testing.assert_allclose(-push_inside, np.array(inside) ** -(alpha + 1), rtol=1e-4)
    np.testing.assert_array_equal([force(d, False) for d in beyond], 0.0)


@pytest.mark.parametrize("alpha, delta", [(32.0, 0.1), (4.0, 0.0)])
def test_proxy_anchor_matches_reference(alpha, delta):
    labels, embeddings = random_batch(classes=3, per_class=4, dim=6, seed=3)
    loss = ProxyAnchorLoss(5, 6, alpha=alpha, delta=delta)  # classes 3 and 4 have no positive
    expected = proxy_anchor_reference(labels, embeddings, ops.convert_to_numpy(loss.proxies), alpha, delta)
    np.testing.assert_allclose(float(loss(labels, embeddings)), expected, rtol=1e-4)


def test_proxy_anchor_gradient_matches_finite_differences():
    labels, embeddings = random_batch(classes=2, per_class=3, dim=4, seed=4)
    loss = ProxyAnchorLoss(3, 4, alpha=8.0)
    proxies = ops.convert_to_numpy(loss.proxies)
    _, grad = value_and_grad(lambda x: loss(labels, x), embeddings)
    step, numeric = 1e-6, np.zeros_like(grad, dtype="float64")
    for index in np.ndindex(*embeddings.shape):
        up, down = embeddings.astype("float64"), embeddings.astype("float64")
        up[index] += step
        down[index] -= step
        numeric[index] = (proxy_anchor_reference(labels, up, proxies, 8.0, 0.1)
                          - proxy_anchor_reference(labels, down, proxies, 8.0, 0.1)) / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-4)


def test_proxy_shapes():
    assert tuple(PotentialFieldLoss(7, 5, proxies_per_class=3).proxies.shape) == (7, 3, 5)
    assert tuple(ProxyAnchorLoss(7, 5).proxies.shape) == (7, 5)


@pytest.mark.parametrize("make", [
    lambda: PotentialFieldLoss(3, 4, proxies_per_class=2),
    lambda: PotentialFieldLoss(3, 4, proxies_per_class=2, proxy_targets="batch"),
    lambda: ProxyAnchorLoss(3, 4),
])
def test_coincident_points_of_different_classes_stay_finite(make):
    loss = make()
    point = np.array([[1.0, 0.0, 0.0, 0.0]], "float32")
    loss.proxies.assign(np.broadcast_to(point, loss.proxies.shape))  # every proxy on the same spot too
    embeddings = np.repeat(point, 4, axis=0)
    labels = np.array([0, 1, 2, 1], "int32")
    value, grad = value_and_grad(lambda x: loss(labels, x), embeddings)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert np.all(np.isfinite(proxy_gradient(loss, labels, embeddings)))


@pytest.mark.parametrize("make", [
    lambda: PotentialFieldLoss(3, 4, proxies_per_class=2, proxy_targets="batch"),
    lambda: ProxyAnchorLoss(3, 4),
])
def test_proxies_receive_gradient(make):
    loss = make()
    labels, embeddings = random_batch(classes=3, per_class=2, dim=4, seed=5)
    grad = proxy_gradient(loss, labels, embeddings)
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


def test_batch_targets_differ_from_all_targets_when_classes_are_absent():
    labels = np.array([0, 0, 1, 1], "int32")
    embeddings = random_batch(classes=2, per_class=2, dim=4, seed=6)[1]
    batch = PotentialFieldLoss(4, 4, proxies_per_class=2, proxy_targets="batch")
    everything = PotentialFieldLoss(4, 4, proxies_per_class=2, proxy_targets="all")
    everything.proxies.assign(batch.proxies)
    assert float(batch(labels, embeddings)) != pytest.approx(float(everything(labels, embeddings)), rel=1e-3)
    full_labels = np.array([0, 1, 2, 3], "int32")
    np.testing.assert_allclose(float(batch(full_labels, embeddings)), float(everything(full_labels, embeddings)),
                               rtol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"proxies_per_class": 0}, "proxies_per_class"),
    ({"alpha": -1.0}, "alpha"),
    ({"delta_att": 0.0}, "delta_att"),
    ({"delta_rep": -0.1}, "delta_rep"),
    ({"proxy_targets": "present"}, "proxy_targets"),
    ({"radius_ratio": 0.0}, "radius_ratio"),
    ({"radius_ratio": "auto"}, "radius_ratio"),
    ({"num_classes": 0}, "num_classes"),
    ({"embedding_dim": 2.5}, "embedding_dim"),
])
def test_potential_field_rejects_bad_parameters(kwargs, message):
    arguments = {"num_classes": 3, "embedding_dim": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        PotentialFieldLoss(**arguments)


@pytest.mark.parametrize("kwargs, message", [({"alpha": 0.0}, "alpha"), ({"delta": -0.1}, "delta")])
def test_proxy_anchor_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ProxyAnchorLoss(3, 4, **kwargs)


@pytest.mark.parametrize("make", [lambda: PotentialFieldLoss(3, 4, proxies_per_class=2), lambda: ProxyAnchorLoss(3, 4)])
def test_bad_inputs_raise(make):
    loss = make()
    embeddings = np.ones((3, 4), "float32")
    with pytest.raises(ValueError, match="num_classes=3"):
        loss(np.array([0, 1, 3]), embeddings)
    with pytest.raises(ValueError, match="num_classes=3"):
        loss(np.array([0, -1, 2]), embeddings)
    with pytest.raises(ValueError, match="embedding_dim=4"):
        loss(np.array([0, 1, 2]), np.ones((3, 5), "float32"))
    with pytest.raises(ValueError, match="labels"):
        loss(np.array([0.0, 1.0, 2.0]), embeddings)
    with pytest.raises(ValueError, match="NaN"):
        loss(np.array([0, 1, 2]), np.full((3, 4), np.nan, "float32"))


@pytest.mark.parametrize("make", [
    lambda: PotentialFieldLoss(3, 4, proxies_per_class=2, proxy_targets="batch"),
    lambda: ProxyAnchorLoss(3, 4),
])
def test_out_of_range_labels_give_nan_under_xla_never_a_clipped_class(make):
    loss = make()
    embeddings = random_batch(classes=2, per_class=2, dim=4, seed=7)[1]
    step = compiled(lambda labels: loss(labels, embeddings))
    for labels in ([0, 7, 1, 2], [0, -1, 1, 2], [-4, -3, -2, -1]):
        assert np.isnan(float(step(np.array(labels, "int32"))))
    in_range = np.array([0, 2, 1, 0], "int32")
    np.testing.assert_allclose(float(step(in_range)), float(loss(in_range, embeddings)), rtol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_float32_math_under_mixed_precision(policy):
    labels, embeddings = random_batch(classes=3, per_class=3, dim=6, seed=8)
    keras.config.set_dtype_policy(policy)
    try:
        losses = [PotentialFieldLoss(3, 6, proxies_per_class=2), ProxyAnchorLoss(3, 6)]
        low = ops.cast(embeddings, policy.split("_")[1])
        values = [loss(labels, low) for loss in losses]
    finally:
        keras.config.set_dtype_policy("float32")
    for loss, value in zip(losses, values):
        assert loss.proxies.dtype == "float32" and keras.backend.standardize_dtype(value.dtype) == "float32"
        exact = float(loss(labels, ops.convert_to_numpy(ops.cast(low, "float32"))))
        np.testing.assert_allclose(float(value), exact, rtol=1e-6)


@pytest.mark.parametrize("make", [
    lambda: PotentialFieldLoss(5, 4, proxies_per_class=3, alpha=1.0, delta_att=0.1, delta_rep=0.3,
                               proxy_targets="batch", name="field"),
    lambda: ProxyAnchorLoss(5, 4, alpha=16.0, delta=0.2, name="anchor"),
])
def test_config_round_trip(make):
    loss = make()
    clone = type(loss).from_config(loss.get_config())
    assert clone.get_config() == loss.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss) and restored.get_config() == loss.get_config()
