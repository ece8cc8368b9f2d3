"""`keras_dml.losses.get` / `serialize`: one builder for every criterion configuration."""
import json

import numpy as np
import pytest

from keras_dml import losses


def test_get_returns_instances_as_they_are():
    loss = losses.TripletLoss(margin=0.3)
    assert losses.get(loss) is loss


def test_get_builds_from_class_name_and_short_form():
    assert isinstance(losses.get("NPairLoss"), losses.NPairLoss)
    loss = losses.get({"class_name": "TripletLoss", "config": {"margin": 0.1, "negative": "semihard"}})
    assert (loss.margin, loss.negative) == (0.1, "semihard")


@pytest.mark.parametrize(
    "loss",
    [
        losses.ContrastiveLoss(neg_margin=0.7, positive="easy"),
        losses.MultiSimilarityLoss(beta=40.0),
        losses.DensityAdaptive(losses.TripletLoss(margin=0.3), weight=1.5),
        losses.PotentialFieldLoss(num_classes=3, embedding_dim=4, proxies_per_class=2, alpha=2.0),
        losses.ProxyAnchorLoss(num_classes=3, embedding_dim=4, delta=0.2),
        losses.PDDMLoss(embedding_dim=4, lam=0.25),
    ],
    ids=lambda loss: type(loss).__name__,
)
def test_serialize_then_get_rebuilds_the_same_loss(loss):
    rebuilt = losses.get(json.loads(json.dumps(losses.serialize(loss))))
    assert type(rebuilt) is type(loss)
    assert losses.serialize(rebuilt) == losses.serialize(loss)


def test_nested_base_loss_in_short_or_serialized_form():
    short = {"class_name": "DensityAdaptive", "config": {"base_loss": {"class_name": "ContrastiveLoss", "config": {"neg_margin": 0.7}}}}
    assert losses.get(short).base_loss.neg_margin == 0.7
    serialized = {"class_name": "DensityAdaptive", "config": {"base_loss": losses.serialize(losses.TripletLoss(margin=0.3))}}
    assert losses.get(serialized).base_loss.margin == 0.3


def test_task_arguments_fill_only_what_the_class_takes_and_the_config_lacks():
    proxy = losses.get({"class_name": "PotentialFieldLoss", "config": {"proxies_per_class": 2}}, num_classes=5, embedding_dim=8)
    assert tuple(proxy.proxies.shape) == (5, 2, 8)
    kept = losses.get({"class_name": "ProxyAnchorLoss", "config": {"num_classes": 3}}, num_classes=5, embedding_dim=8)
    assert kept.num_classes == 3
    triplet = losses.get("TripletLoss", num_classes=5, embedding_dim=8)  # takes neither: ignored
    labels, x = np.array([0, 0, 1, 1]), np.random.default_rng(0).normal(size=(4, 8)).astype("float32")
    assert float(triplet(labels, x)) >= 0.0


@pytest.mark.parametrize(
    "identifier, message",
    [
        ("ArcFace", "Unknown loss class_name='ArcFace'; expected one of"),
        ("MetricLoss", "expected one of"),
        (3, "loss must be"),
        ({"config": {}}, "loss must be"),
        ({"class_name": "TripletLoss", "config": {"margni": 0.1}}, r"Unknown TripletLoss config key\(s\) \['margni'\]"),
        ("ProxyAnchorLoss", "ProxyAnchorLoss needs num_classes"),  # embedding_dim is optional (build)
        ({"class_name": "TripletLoss", "config": {"negative": "hardest"}}, "negative"),
    ],
)
def test_bad_identifiers_raise_value_error(identifier, message):
    with pytest.raises(ValueError, match=message):
        losses.get(identifier)
