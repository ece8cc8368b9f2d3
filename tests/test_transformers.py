"""keras-hub vision transformers as backbones: build, XLA training step, .keras round trip, export parity."""
import keras
import numpy as np
import pytest

from keras_dml.losses import TripletLoss
from keras_dml.models import build_embedder, transformers

# Tiny stacks of each family at the smallest image of 2 x 2 patches: random weights, no download.
TINY = {
    "vit_small": ((32, 32, 3), {"num_layers": 1, "hidden_dim": 32, "num_heads": 2, "mlp_dim": 64}),
    "dinov2_small": ((28, 28, 3), {"num_layers": 1, "hidden_dim": 32, "num_heads": 2, "intermediate_dim": 64}),
}


def _tiny(backbone, **kwargs):
    shape, options = TINY[backbone]
    return build_embedder(backbone, embedding_dim=8, input_shape=shape, backbone_options=options, **kwargs)


def _images(shape, batch, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(batch, *shape)).astype("float32")


@pytest.mark.parametrize("backbone", sorted(TINY))
def test_one_xla_training_step_changes_the_embeddings(backbone):
    keras.utils.set_random_seed(0)
    embedder = _tiny(backbone)
    shape = TINY[backbone][0]
    images = _images(shape, 8)
    labels = np.repeat(np.arange(4), 2).astype("int32")
    before = embedder.predict(images, verbose=0)
    embedder.compile(optimizer=keras.optimizers.Adam(1e-2), loss=TripletLoss(), jit_compile=True)
    history = embedder.fit(images, labels, batch_size=8, epochs=1, verbose=0)
    after = embedder.predict(images, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert after.shape == (8, 8)
    np.testing.assert_allclose(np.linalg.norm(after, axis=1), 1.0, atol=1e-5)
    assert np.abs(after - before).max() > 1e-4


@pytest.mark.parametrize("token,width", [("class", 32), ("mean", 32), ("class_mean", 64)])
def test_token_pooling_reads_the_class_token_the_patch_mean_or_both(token, width):
    embedder = _tiny("dinov2_small", token=token)
    pooled = embedder.get_layer(f"{token}_token")
    assert pooled.output.shape == (None, width)
    tokens = np.random.default_rng(1).normal(size=(2, 5, 32)).astype("float32")
    out = keras.ops.convert_to_numpy(pooled(tokens))
    expected = {"class": tokens[:, 0], "mean": tokens[:, 1:].mean(axis=1),
                "class_mean": np.concatenate([tokens[:, 0], tokens[:, 1:].mean(axis=1)], axis=1)}[token]
    np.testing.assert_allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("backbone", sorted(TINY))
def test_preprocessing_inside_takes_0_255_rgb(backbone):
    embedder = _tiny(backbone)
    layer = embedder.get_layer("transformer_preprocessing")
    images = _images(TINY[backbone][0], 2)
    size = transformers.TRANSFORMERS[backbone]
    expected = (images / 255.0 - np.array(size.mean, "float32")) / np.array(size.std, "float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(images)), expected, atol=1e-5)


def test_keras_file_round_trip_gives_the_same_embeddings(tmp_path):
    embedder = _tiny("dinov2_small", token="class_mean")
    images = _images((28, 28, 3), 3)
    path = tmp_path / "vit.keras"
    embedder.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), embedder.predict(images, verbose=0), atol=1e-6)


def test_freezing_the_first_blocks_leaves_the_rest_trainable():
    shape, options = TINY["vit_small"]
    embedder = build_embedder("vit_small", embedding_dim=8, input_shape=shape,
                              backbone_options={**options, "num_layers": 2}, freeze_backbone=1)
    backbone = embedder.get_layer("backbone")
    frozen = {v.path for v in backbone.non_trainable_variables}
    trainable = {v.path for v in backbone.trainable_variables}
    assert any("embedding" in p for p in frozen)
    assert any("transformer_block_1/" in p for p in frozen)
    assert any("transformer_block_2/" in p for p in trainable)
    assert not any("transformer_block_1/" in p for p in trainable)
    whole = _tiny("vit_small", freeze_backbone=True)
    assert not whole.get_layer("backbone").trainable_variables
    assert whole.get_layer("embedding").trainable_variables


@pytest.mark.parametrize("backbone", sorted(TINY))
def test_export_matches_keras_at_batch_1_and_5(backbone, tmp_path):
    pytest.importorskip("tf2onnx")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("export runs on the TensorFlow backend")
    from keras_dml.export import export_embedder

    embedder = _tiny(backbone)
    card = export_embedder(embedder, tmp_path / "export")
    shape = TINY[backbone][0]
    import onnxruntime as ort
    import tensorflow as tf

    session = ort.InferenceSession(str(tmp_path / "export" / "embedder.onnx"))
    serving = tf.saved_model.load(str(tmp_path / "export" / "saved_model")).signatures["serving_default"]
    for batch in (1, 5):
        images = np.random.default_rng(batch).integers(0, 256, size=(batch, *shape), dtype=np.uint8)
        expected = embedder.predict(images.astype("float32"), verbose=0)
        (onnx_out,) = session.run(None, {session.get_inputs()[0].name: images})
        saved_out = next(iter(serving(tf.constant(images)).values())).numpy()
        np.testing.assert_allclose(onnx_out, expected, atol=1e-4)
        np.testing.assert_allclose(saved_out, expected, atol=1e-4)
    assert card["verification"]["max_abs_diff"]["onnx"] < 1e-4


def test_bad_sizes_and_options_give_clear_errors():
    with pytest.raises(ValueError, match="multiple of 14"):
        build_embedder("dinov2_small", input_shape=(30, 30, 3))
    with pytest.raises(ValueError, match="square RGB"):
        build_embedder("vit_small", input_shape=(32, 48, 3))
    with pytest.raises(ValueError, match="Unknown backbone='vit_tiny'"):
        build_embedder("vit_tiny", input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="token"):
        _tiny("vit_small", token="cls")
    with pytest.raises(ValueError, match="no pretrained preset"):
        build_embedder("vit_small", input_shape=(32, 32, 3), weights="pretrained")
    with pytest.raises(ValueError, match="backbone_options"):
        build_embedder("small_cnn", input_shape=(8, 8, 1), backbone_options={"num_layers": 1})


def test_an_offline_preset_download_says_what_to_do(monkeypatch):
    import keras_hub

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(keras_hub.models.DINOV2Backbone, "from_preset", offline)
    with pytest.raises(RuntimeError, match="weights=DIR"):
        build_embedder("dinov2_small", input_shape=(28, 28, 3), weights="pretrained")
