"""build_embedder for every backbone at a small input size, the pooling layers against NumPy, bad input."""
import keras
import numpy as np
import pytest

from keras_dml.layers import ChannelNormalization, GeneralizedMeanPooling2D, GlobalAvgMaxPooling2D, get_pooling
from keras_dml.models.embedder import APPLICATIONS, BACKBONES, build_embedder
from tests.helpers import value_and_grad


def _images(shape, batch=3, high=255.0, seed=0):
    return np.random.default_rng(seed).uniform(0, high, size=(batch, *shape)).astype("float32")


@pytest.mark.parametrize("backbone", list(APPLICATIONS))
def test_application_backbones_embed_raw_pixels_to_unit_vectors(backbone):
    embedder = build_embedder(backbone, embedding_dim=8, input_shape=(32, 32, 3), pooling="avgmax")
    embeddings = keras.ops.convert_to_numpy(embedder(_images((32, 32, 3)), training=False))
    assert embedder.output_shape == (None, 8)
    assert embeddings.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert embedder.get_layer("backbone").name == "backbone"


@pytest.mark.parametrize("backbone", ["small_cnn", "mlp"])
def test_small_backbones_take_digits_and_train(backbone):
    from keras_dml.data import load_digits
    from keras_dml.losses import TripletLoss

    images, labels = load_digits("train")
    embedder = build_embedder(backbone, embedding_dim=16, input_shape=(8, 8, 1))
    embedder.compile(optimizer="adam", loss=TripletLoss())
    history = embedder.fit(images[:64], labels[:64], batch_size=32, epochs=1, verbose=0)
    embeddings = embedder.predict(images[:5], verbose=0)
    assert embeddings.shape == (5, 16)
    assert np.isfinite(history.history["loss"][0])
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("pooling", ["avg", "max", "avgmax", "gem"])
def test_pooling_choices_and_unnormalised_output(pooling):
    embedder = build_embedder("small_cnn", embedding_dim=4, input_shape=(8, 8, 1), pooling=pooling, normalize=False)
    embeddings = keras.ops.convert_to_numpy(embedder(_images((8, 8, 1), high=1.0)))
    assert embeddings.shape == (3, 4)
    assert embedder.get_layer(f"{pooling}_pooling") is not None
    assert not np.allclose(np.linalg.norm(embeddings, axis=1), 1.0)


def test_resnet50_preprocessing_matches_keras_caffe_mode():
    embedder = build_embedder("resnet50", embedding_dim=4, input_shape=(32, 32, 3))
    images = _images((32, 32, 3))
    ours = keras.ops.convert_to_numpy(embedder.get_layer("resnet_preprocessing")(images))
    expected = images[..., ::-1] - np.array([103.939, 116.779, 123.68], "float32")
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    np.testing.assert_allclose(
        ours, keras.ops.convert_to_numpy(keras.applications.resnet50.preprocess_input(images.copy())), atol=1e-4)


def test_freeze_batchnorm_runs_batchnorm_in_inference_mode():
    images = _images((32, 32, 3), batch=4)
    frozen = build_embedder("mobilenetv3_small", embedding_dim=4, input_shape=(32, 32, 3))
    batchnorms = [layer for layer in frozen.get_layer("backbone").layers
                  if isinstance(layer, keras.layers.BatchNormalization)]
    assert batchnorms and not any(layer.trainable for layer in batchnorms)
    moving_mean = keras.ops.convert_to_numpy(batchnorms[0].moving_mean)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(frozen(images, training=True)),
                               keras.ops.convert_to_numpy(frozen(images, training=False)), atol=1e-6)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(batchnorms[0].moving_mean), moving_mean)

    trained = build_embedder("mobilenetv3_small", embedding_dim=4, input_shape=(32, 32, 3), freeze_batchnorm=False)
    assert not np.allclose(keras.ops.convert_to_numpy(trained(images, training=True)),
                           keras.ops.convert_to_numpy(trained(images, training=False)), atol=1e-4)


def _gem_reference(x, p, eps=1e-6):
    x = np.maximum(np.asarray(x, "float64"), eps)
    return np.mean(x ** p, axis=(1, 2)) ** (1.0 / p)


@pytest.mark.parametrize("p", [1.0, 3.0, 7.5])
def test_gem_pooling_matches_numpy(p):
    x = np.random.default_rng(1).normal(size=(2, 5, 4, 6)).astype("float32")  # negatives get clamped
    pooled = keras.ops.convert_to_numpy(GeneralizedMeanPooling2D(p=p)(x))
    np.testing.assert_allclose(pooled, _gem_reference(x, p), rtol=1e-5, atol=1e-6)


def test_gem_exponent_below_one_acts_as_average_pooling():
    x = np.random.default_rng(4).uniform(0, 2, size=(2, 3, 3, 4)).astype("float32")
    layer = GeneralizedMeanPooling2D(p=3.0)
    layer.build(x.shape)
    layer.p.assign(0.25)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), x.mean(axis=(1, 2)), rtol=1e-5)


def test_gem_exponent_is_learnable_with_finite_gradients():
    x = np.random.default_rng(2).uniform(-1, 2, size=(2, 3, 3, 4)).astype("float32")
    x[0, 0, 0, 0] = 0.0
    layer = GeneralizedMeanPooling2D(p=3.0)
    layer.build(x.shape)
    assert [w.name for w in layer.trainable_weights] == ["p"]

    def pooled_sum(p):
        outputs, _ = layer.stateless_call([p], [], x)
        return keras.ops.sum(outputs)

    value, grad_p = value_and_grad(pooled_sum, np.float32(3.0))
    numeric = (_gem_reference(x, 3.0 + 1e-3).sum() - _gem_reference(x, 3.0 - 1e-3).sum()) / 2e-3
    np.testing.assert_allclose(value, _gem_reference(x, 3.0).sum(), rtol=1e-5)
    np.testing.assert_allclose(grad_p, numeric, rtol=1e-3)
    _, grad_x = value_and_grad(lambda v: keras.ops.sum(layer(v)), x)
    assert np.all(np.isfinite(grad_x)) and np.any(grad_x != 0)

    fixed = GeneralizedMeanPooling2D(p=2.0, trainable_p=False)
    fixed.build(x.shape)
    assert not fixed.trainable_weights and len(fixed.weights) == 1


def test_avgmax_pooling_matches_numpy():
    x = np.random.default_rng(3).normal(size=(2, 4, 3, 5)).astype("float32")
    expected = x.mean(axis=(1, 2)) + x.max(axis=(1, 2))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(GlobalAvgMaxPooling2D()(x)), expected, rtol=1e-5, atol=1e-6)


def test_layers_round_trip_through_config_and_keras_file(tmp_path):
    for layer in (GeneralizedMeanPooling2D(p=4.0, trainable_p=False, epsilon=1e-5), GlobalAvgMaxPooling2D(),
                  ChannelNormalization((1.0, 2.0), std=(0.5, 4.0), reverse_channels=True)):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()

    embedder = build_embedder("small_cnn", embedding_dim=6, input_shape=(8, 8, 1), pooling="gem")
    embedder.get_layer("gem_pooling").p.assign(4.5)
    images = _images((8, 8, 1), high=1.0)
    path = tmp_path / "embedder.keras"
    embedder.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded.get_layer("gem_pooling"), GeneralizedMeanPooling2D)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(reloaded.get_layer("gem_pooling").p), 4.5)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), embedder.predict(images, verbose=0), atol=1e-6)


def test_resnet50_embedder_round_trips_through_keras_file(tmp_path):
    embedder = build_embedder("resnet50", embedding_dim=4, input_shape=(32, 32, 3), pooling="gem")
    path = tmp_path / "resnet50.keras"
    embedder.save(path)
    reloaded = keras.saving.load_model(path)
    images = _images((32, 32, 3), batch=2)
    assert isinstance(reloaded.get_layer("resnet_preprocessing"), ChannelNormalization)
    assert not any(layer.trainable for layer in reloaded.get_layer("backbone").layers
                   if isinstance(layer, keras.layers.BatchNormalization))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(reloaded(images, training=False)),
                               keras.ops.convert_to_numpy(embedder(images, training=False)), atol=1e-5)


def test_bad_arguments_give_clear_errors():
    with pytest.raises(ValueError, match=r"Unknown backbone='vgg'.*resnet50.*small_cnn"):
        build_embedder("vgg")
    with pytest.raises(ValueError, match=r"Unknown pooling='median'.*avgmax.*gem"):
        build_embedder("small_cnn", input_shape=(8, 8, 1), pooling="median")
    with pytest.raises(ValueError, match=r"Unknown pooling='median'"):
        get_pooling("median")
    for dim in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="embedding_dim"):
            build_embedder("small_cnn", embedding_dim=dim, input_shape=(8, 8, 1))
    for shape in [(8, 8, 1), (16, 16, 3), (64, 64, 1), (64, 64)]:
        with pytest.raises(ValueError, match=r"backbone='resnet50' takes RGB images.*at least 32"):
            build_embedder("resnet50", input_shape=shape)
    with pytest.raises(ValueError, match="small_cnn.*height, width, channels"):
        build_embedder("small_cnn", input_shape=(64,))
    with pytest.raises(ValueError, match="input_shape must be positive integers"):
        build_embedder("mlp", input_shape=(8, None))
    with pytest.raises(ValueError, match="'mlp' has no feature map"):
        build_embedder("mlp", input_shape=(8, 8, 1), pooling="gem")
    with pytest.raises(ValueError, match="no pretrained weights"):
        build_embedder("small_cnn", input_shape=(8, 8, 1), weights="imagenet")
    with pytest.raises(ValueError, match="p must be at least 1"):
        GeneralizedMeanPooling2D(p=0.5)
    with pytest.raises(ValueError, match="3 channel means but the input has 1"):
        ChannelNormalization((1.0, 2.0, 3.0))(np.zeros((1, 2, 2, 1), "float32"))
    assert set(BACKBONES) >= {"resnet50", "efficientnetv2_s", "efficientnetv2_b0", "efficientnet_b0",
                              "convnext_tiny", "mobilenetv3_small", "mobilenetv3_large", "small_cnn", "mlp"}
