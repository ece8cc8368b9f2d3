"""What a user trains, saves, searches and exports, on the backend this process runs (JAX or PyTorch).

Not collected by itself: `tests/test_backend_suites.py` runs it, beside the loss-core
tests, in a fresh process per backend (KERAS_BACKEND is fixed per process). The
TensorFlow backend has its fuller tests in the other files.
"""
import keras
import numpy as np
import pytest

from keras_dml import distributed, losses
from keras_dml.data import class_balanced, load_digits
from keras_dml.evaluation import retrieval_metrics
from keras_dml.models import MetricModel, build_embedder
from keras_dml.optimizers import with_proxy_lr_multiplier
from keras_dml.search import Index

DIM = 16
P, K = 5, 4  # the 5 training digits, 4 images each per batch


@pytest.fixture(scope="module")
def digits():
    return load_digits("train")


def small_embedder():
    return build_embedder("small_cnn", embedding_dim=DIM, input_shape=(8, 8, 1))


def test_this_is_the_backend_under_test():
    import os

    assert keras.backend.backend() == os.environ["KERAS_BACKEND"] != "tensorflow"


def test_an_embedder_trains_with_fit_on_pk_batches_and_retrieves_better(digits):
    x, y = digits
    keras.utils.set_random_seed(0)
    embedder = small_embedder()
    embedder.compile(optimizer=keras.optimizers.Adam(3e-3),
                     loss=losses.TripletLoss(margin=0.2, positive="easy", negative="semihard"))
    before = retrieval_metrics(embedder.predict(x, verbose=0), y)["map_at_r"]
    history = embedder.fit(class_balanced(digits, P, K, seed=0), steps_per_epoch=15, epochs=2, verbose=0)
    embeddings = embedder.predict(x, verbose=0)
    after = retrieval_metrics(embeddings, y)["map_at_r"]
    assert np.isfinite(history.history["loss"]).all()
    assert after > before + 0.05, (before, after)

    index = Index()
    index.add(embeddings, labels=y)
    ids, _ = index.search(embeddings[:5], k=1)
    np.testing.assert_array_equal(ids[:, 0], np.arange(5))  # each item is its own nearest


CRITERIA = {
    "potential_field": lambda: losses.PotentialFieldLoss(num_classes=5, embedding_dim=DIM, proxies_per_class=2),
    "proxy_anchor": lambda: losses.ProxyAnchorLoss(num_classes=5, embedding_dim=DIM),
    "pddm": lambda: losses.PDDMLoss(embedding_dim=DIM),
}


@pytest.mark.parametrize("name", sorted(CRITERIA))
def test_trainable_criteria_train_through_metric_model_and_reload(name, digits, tmp_path):
    keras.utils.set_random_seed(0)
    model = MetricModel(small_embedder(), CRITERIA[name]())
    model.compile(optimizer=with_proxy_lr_multiplier(keras.optimizers.Adam(1e-3), 10.0))
    model.build((None, 8, 8, 1))
    start = [np.array(w) for w in model.criterion.trainable_weights]
    history = model.fit(class_balanced(digits, P, K, seed=1), steps_per_epoch=3, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert start and any(not np.allclose(a, np.array(b)) for a, b in zip(start, model.criterion.trainable_weights))

    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    x = digits[0][:8]
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    for a, b in zip(reloaded.criterion.weights, model.criterion.weights):
        np.testing.assert_array_equal(np.array(a), np.array(b))


def test_density_adaptive_trains_with_compile_loss(digits):
    keras.utils.set_random_seed(0)
    embedder = small_embedder()
    embedder.compile(optimizer="adam", loss=losses.DensityAdaptive(losses.TripletLoss(), weight=0.5, rho=0.5))
    history = embedder.fit(class_balanced(digits, P, K, seed=2), steps_per_epoch=3, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_a_keras_hub_embedder_trains(digits):
    pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    tiny = {"num_layers": 1, "num_heads": 2, "hidden_dim": 16, "intermediate_dim": 32}
    embedder = build_embedder("dinov2_small", embedding_dim=DIM, input_shape=(28, 28, 3), backbone_options=tiny)
    embedder.compile(optimizer="adam", loss=losses.TripletLoss())
    images = np.random.default_rng(0).uniform(0, 255, size=(20, 28, 28, 3)).astype("float32")
    labels = np.repeat(np.arange(5), 4).astype("int32")
    history = embedder.fit(class_balanced((images, labels), 5, 2, seed=0), steps_per_epoch=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    np.testing.assert_allclose(np.linalg.norm(embedder.predict(images[:3], verbose=0), axis=1), 1.0, atol=1e-5)


def test_export_matches_this_backends_embedder(digits, tmp_path):
    if keras.backend.backend() == "jax":
        pytest.skip("tests/test_export_jax.py exports from JAX and checks the artefacts again on TensorFlow")
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("tensorflow")
    from keras_dml.export import export_embedder

    keras.utils.set_random_seed(0)
    embedder = small_embedder()
    embedder.compile(optimizer="adam", loss=losses.TripletLoss())
    embedder.fit(class_balanced(digits, P, K, seed=3), steps_per_epoch=2, verbose=0)
    card = export_embedder(embedder, tmp_path / "export", pixel_scale=1 / 255)
    assert card["versions"]["keras_backend"] == keras.backend.backend()
    assert set(card["verification"]["max_abs_diff"]) == {"saved_model", "onnx"}
    assert max(card["verification"]["max_abs_diff"].values()) <= 1e-4
    pixels = np.random.default_rng(1).integers(0, 256, size=(3, 8, 8, 1)).astype("uint8")
    session = onnxruntime.InferenceSession(str(tmp_path / "export" / "embedder.onnx"),
                                           providers=["CPUExecutionProvider"])
    expected = embedder.predict(pixels.astype("float32") / 255, verbose=0)
    np.testing.assert_allclose(session.run(["embeddings"], {"images": pixels})[0], expected, atol=1e-4, rtol=0)


def test_keras_dml_train_runs_a_recipe_on_this_backend(tmp_path):
    """`keras-dml train`'s path (tf.data P x K batches, XLA or torch.compile, retrieval
    evaluation each epoch, the run directory): under PyTorch the evaluation once failed in
    torch.compile on np.asarray's read-only view of a tf.data batch."""
    pytest.importorskip("tensorflow")
    from keras_dml import training
    from keras_dml.training import RunDir

    config = {**training.get_recipe("digits-triplet-easy"), "epochs": 2, "steps_per_epoch": 2,
              "classes_per_batch": 5, "samples_per_class": 4, "jit_compile": True}
    _, metrics = training.train(config, tmp_path / "run", verbose=0)
    assert [entry["epoch"] for entry in RunDir(tmp_path / "run").history()] == [1, 2]
    assert 0.0 < metrics["recall@1"] <= 1.0


def test_what_needs_tensorflow_says_so_on_this_backend():
    backend = keras.backend.backend()
    with pytest.raises(ValueError, match=f"strategy='mirrored' trains under tf.distribute.*backend is {backend}"):
        distributed.make_strategy("mirrored")
