"""export_embedder: SavedModel and ONNX artefacts reload and match Keras; bad input and failures leave no trace."""
import json
import types

import keras
import numpy as np
import onnxruntime
import pytest
import tensorflow as tf

from keras_dml.export import verification
from keras_dml.export import ExportVerificationError, describe_export, export_embedder, export_pddm_scorer
from keras_dml.index import Index
from keras_dml.layers import PDDM
from keras_dml.models.embedder import build_embedder

DIGITS_SCALE = 1 / 255
pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export is TensorFlow-specific")


def _pixels(shape, batch_size, seed):
    return np.random.default_rng(seed).integers(0, 256, size=(batch_size, *shape)).astype("uint8")


def _check_artefacts(embedder, directory, card, uint8, pixel_scale):
    """Reload both artefacts independently of export_embedder and compare them with Keras."""
    shape = tuple(embedder.input_shape[1:])
    assert json.loads((directory / "model_card.json").read_text()) == card
    assert card["input"] == {"name": "images", "shape": [None, *shape], "dtype": "uint8" if uint8 else "float32"}
    assert card["output"]["shape"] == [None, embedder.output_shape[-1]] and card["normalized"] is True
    assert set(card["verification"]["max_abs_diff"]) == {"saved_model", "onnx"}
    assert max(card["verification"]["max_abs_diff"].values()) <= 1e-4
    assert card["verification"]["batch_sizes"] == [1, 3, 16]

    signature = tf.saved_model.load(str(directory / "saved_model")).signatures["serving_default"]
    session = onnxruntime.InferenceSession(str(directory / "embedder.onnx"), providers=["CPUExecutionProvider"])
    (onnx_input,), (onnx_output,) = session.get_inputs(), session.get_outputs()
    assert (onnx_input.name, onnx_output.name) == ("images", "embeddings")
    assert onnx_input.type == ("tensor(uint8)" if uint8 else "tensor(float)")
    assert onnx_input.shape == ["batch", *shape]
    for batch_size in (1, 3, 16):
        pixels = _pixels(shape, batch_size, seed=10 + batch_size)
        floats = pixels.astype("float32") * np.float32(pixel_scale)
        feed = pixels if uint8 else floats
        expected = keras.ops.convert_to_numpy(embedder(floats, training=False))
        from_saved_model = signature(images=tf.constant(feed))["embeddings"].numpy()
        from_onnx = session.run(["embeddings"], {"images": feed})[0]
        assert from_saved_model.shape == from_onnx.shape == (batch_size, embedder.output_shape[-1])
        np.testing.assert_allclose(from_saved_model, expected, atol=1e-4, rtol=0)
        np.testing.assert_allclose(from_onnx, expected, atol=1e-4, rtol=0)
    assert not [p for p in directory.parent.iterdir() if p.name.startswith(".")]  # no staging left


@pytest.fixture(scope="module")
def small_embedder():
    keras.utils.set_random_seed(0)
    return build_embedder("small_cnn", embedding_dim=16, input_shape=(8, 8, 1), pooling="gem")


@pytest.mark.parametrize("include_preprocessing", [True, False])
def test_small_cnn_export_reloads_and_matches_keras(small_embedder, tmp_path, include_preprocessing):
    directory = tmp_path / "export"
    card = export_embedder(small_embedder, directory, include_preprocessing=include_preprocessing,
                           pixel_scale=DIGITS_SCALE, metrics={"map_at_r": np.float32(0.5), "recall@1": 0.75})
    _check_artefacts(small_embedder, directory, card, uint8=include_preprocessing, pixel_scale=DIGITS_SCALE)
    assert card["metrics"] == {"map_at_r": 0.5, "recall@1": 0.75}
    assert card["pixel_scale"] == DIGITS_SCALE
    assert card["versions"]["tensorflow"] == tf.__version__ and "tf2onnx" in card["versions"]
    text = describe_export(card, directory)
    assert str(directory) in text and "embedder.onnx" in text and "serving_default" in text


# EfficientNet carries Normalization constants that freezing must turn into graph constants;
# the channel-normalisation layer ResNet-50 adds is exported by the transformer tests
# (tests/test_transformers.py), so the 25M-parameter ResNet-50 is left out to keep the suite short.
@pytest.mark.parametrize("backbone", ["efficientnet_b0"])
def test_application_backbone_export_takes_uint8_and_matches_keras(tmp_path, backbone):
    keras.utils.set_random_seed(0)
    embedder = build_embedder(backbone, embedding_dim=16, input_shape=(32, 32, 3))
    directory = tmp_path / backbone
    card = export_embedder(embedder, directory)
    _check_artefacts(embedder, directory, card, uint8=True, pixel_scale=1.0)


def test_grouped_convolution_and_exact_gelu_convert_to_onnx(tmp_path):
    # ConvNeXt's two obstacles in miniature: Keras runs a grouped convolution in a nested
    # XLA function, and TF's exact GELU uses Erfc, which tf2onnx 1.17 cannot convert.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(8, 3, padding="same", groups=4)(inputs)
    x = keras.layers.Activation("gelu")(x)
    x = keras.layers.Dense(16)(keras.layers.GlobalAveragePooling2D()(x))
    embedder = keras.Model(inputs, keras.layers.UnitNormalization()(x), name="grouped_gelu")
    card = export_embedder(embedder, tmp_path / "export", pixel_scale=DIGITS_SCALE)
    _check_artefacts(embedder, tmp_path / "export", card, uint8=True, pixel_scale=DIGITS_SCALE)


@keras.saving.register_keras_serializable(package="test_export")
class AttentionBlock(keras.layers.Layer):
    """A transformer block as keras-hub's ViT writes one: registered, its sublayers made in __init__ and not."""

    def __init__(self, dim, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.norm = keras.layers.LayerNormalization(epsilon=1e-6)
        self.attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=dim // 2)
        self.mlp = Mlp(dim)

    def call(self, x):
        y = self.norm(x)
        x = x + self.attention(y, y)
        return x + self.mlp(x)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim}


class Mlp(keras.layers.Layer):  # not registered: AttentionBlock rebuilds it from its own config
    def __init__(self, dim, **kwargs):
        super().__init__(**kwargs)
        self.hidden, self.out = keras.layers.Dense(2 * dim, activation="gelu"), keras.layers.Dense(dim)

    def call(self, x):
        return self.out(self.hidden(x))


def test_vit_like_attention_block_exports_and_matches_keras(tmp_path):
    # ViT / DINOv2 ingredients: patches as tokens, layer norm, multi-head attention (einsum),
    # exact GELU, a registered block whose inner layers are not registered.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    patches = keras.layers.Conv2D(8, 4, strides=4)(inputs)
    tokens = AttentionBlock(8)(keras.layers.Reshape((4, 8))(patches))
    embedding = keras.layers.Dense(16)(keras.layers.GlobalAveragePooling1D()(tokens))
    embedder = keras.Model(inputs, keras.layers.UnitNormalization()(embedding), name="vit_like")
    card = export_embedder(embedder, tmp_path / "export", pixel_scale=DIGITS_SCALE)
    _check_artefacts(embedder, tmp_path / "export", card, uint8=True, pixel_scale=DIGITS_SCALE)


def test_only_the_embedder_of_a_metric_model_is_exported(small_embedder, tmp_path):
    class WithProxies(keras.Model):
        def __init__(self, embedder):
            super().__init__()
            self.embedder = embedder
            self.proxies = self.add_weight(shape=(10, 16), name="proxies")

        def call(self, x):
            return self.embedder(x)

    card = export_embedder(WithProxies(small_embedder), tmp_path / "export", formats=("saved_model",),
                           pixel_scale=DIGITS_SCALE)
    saved = tf.train.list_variables(str(tmp_path / "export" / "saved_model" / "variables" / "variables"))
    assert card["model_name"] == small_embedder.name and set(card["artefacts"]) == {"saved_model"}
    assert sorted(shape for name, shape in saved if name != "_CHECKPOINTABLE_OBJECT_GRAPH") == \
        sorted(list(v.shape) for v in small_embedder.variables)
    assert not (tmp_path / "export" / "embedder.onnx").exists()


def test_onnx_only_export_without_verification(small_embedder, tmp_path):
    card = export_embedder(small_embedder, tmp_path / "export", formats="onnx", verify=False)
    assert card["verification"] is None and set(card["artefacts"]) == {"onnx"}
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["embedder.onnx", "model_card.json"]
    assert "not verified" in describe_export(card, tmp_path / "export")


def test_bad_models_and_arguments_give_clear_errors(small_embedder, tmp_path):
    feature_map = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3)])
    with pytest.raises(ValueError, match=r"outputs \(batch, embedding_dim\).*\(None, 6, 6, 4\)"):
        export_embedder(feature_map, tmp_path / "a")
    with pytest.raises(ValueError, match=r"Unknown export format\(s\) \['tflite'\]"):
        export_embedder(small_embedder, tmp_path / "a", formats=("onnx", "tflite"))
    for scale in (0, float("inf"), 1e30):
        with pytest.raises(ValueError, match=r"pixel_scale must be a number in \[1e-06, 1000\]"):
            export_embedder(small_embedder, tmp_path / "a", pixel_scale=scale)
    with pytest.raises(ValueError, match="metrics must be a JSON-serialisable dict"):
        export_embedder(small_embedder, tmp_path / "a", metrics={"when": object()})
    with pytest.raises(ValueError, match="keras.Model"):
        export_embedder(types.SimpleNamespace(embedder="not a model"), tmp_path / "a")

    class Unregistered(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    inputs = keras.Input((4,))
    custom = keras.Model(inputs, Unregistered()(keras.layers.Dense(3)(inputs)))
    with pytest.raises(ValueError, match=r"custom classes Keras cannot reload.*Unregistered.*register_keras_serializable"):
        export_embedder(custom, tmp_path / "a")
    assert not any(tmp_path.iterdir())


def test_failed_verification_raises_and_writes_nothing(small_embedder, tmp_path, monkeypatch):
    monkeypatch.setattr(verification, "TOLERANCE", -1.0)  # no difference, not even 0, passes
    with pytest.raises(ExportVerificationError, match="differ from Keras's.*saved_model.*onnx"):
        export_embedder(small_embedder, tmp_path / "export", pixel_scale=DIGITS_SCALE)
    assert not any(tmp_path.iterdir())



def test_tolerance_is_relative_to_the_outputs_scale():
    feed = {"images": np.zeros((1, 1), "float32")}
    assert verification.tolerance_for([(feed, np.array([[0.5, -0.9]], "float32"))]) == verification.TOLERANCE
    assert verification.tolerance_for([(feed, np.array([[300.0]], "float32"))]) == pytest.approx(300 * verification.TOLERANCE)
    assert verification.tolerance_for([(feed, np.array([[np.inf]], "float32"))]) == verification.TOLERANCE


def test_an_unnormalised_embedder_with_large_outputs_exports(tmp_path):
    # Outputs in the thousands: float32 rounding alone differs by about 3e-3 there.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    features = keras.layers.Conv2D(8, 3, kernel_initializer=keras.initializers.RandomNormal(stddev=1.0))(inputs)
    outputs = keras.layers.Dense(16, kernel_initializer=keras.initializers.RandomNormal(stddev=0.05))(
        keras.layers.Flatten()(features))
    card = export_embedder(keras.Model(inputs, outputs), tmp_path / "export", formats=("onnx",), pixel_scale=1.0)
    assert card["verification"]["tolerance"] > 1e-2
    assert card["verification"]["max_abs_diff"]["onnx"] <= card["verification"]["tolerance"]

def test_pddm_scorer_export_reloads_matches_keras_and_reranks_like_it(tmp_path):
    keras.utils.set_random_seed(0)
    pddm = PDDM(hidden_dim=8)
    pddm.build((None, 16), (None, 16))
    criterion = types.SimpleNamespace(pddm=pddm)  # what PDDMLoss looks like to the exporter
    card = export_pddm_scorer(criterion, tmp_path / "scorer")
    assert json.loads((tmp_path / "scorer" / "model_card.json").read_text()) == card
    assert card["kind"] == "pddm_scorer" and card["feature_dim"] == 16
    assert [t["name"] for t in card["inputs"]] == ["query", "candidates"] and card["output"]["shape"] == [None, None]
    assert max(card["verification"]["max_abs_diff"].values()) <= 1e-4
    assert "query float32 (None, 16), candidates float32 (None, None, 16) -> scores" in describe_export(card, "x")

    signature = tf.saved_model.load(str(tmp_path / "scorer" / "saved_model")).signatures["serving_default"]
    session = onnxruntime.InferenceSession(str(tmp_path / "scorer" / "pddm_scorer.onnx"),
                                           providers=["CPUExecutionProvider"])
    assert [i.shape for i in session.get_inputs()] == [["batch", 16], ["batch", "candidates", 16]]
    rng = np.random.default_rng(5)
    for n, c in [(1, 1), (4, 9), (16, 3)]:
        query, candidates = rng.normal(size=(n, 16)).astype("float32"), rng.normal(size=(n, c, 16)).astype("float32")
        expected = keras.ops.convert_to_numpy(pddm(query[:, None, :], candidates))
        from_saved_model = signature(query=tf.constant(query), candidates=tf.constant(candidates))["scores"].numpy()
        from_onnx = session.run(["scores"], {"query": query, "candidates": candidates})[0]
        assert from_onnx.shape == from_saved_model.shape == (n, c)
        np.testing.assert_allclose(from_saved_model, expected, atol=1e-4, rtol=0)
        np.testing.assert_allclose(from_onnx, expected, atol=1e-4, rtol=0)

    # The served scorer re-ranks an index search exactly as the Keras layer does.
    index = Index()
    index.add(rng.normal(size=(40, 16)).astype("float32"))
    queries = rng.normal(size=(5, 16)).astype("float32")
    onnx_scorer = lambda a, b: session.run(["scores"], {"query": np.ascontiguousarray(a[:, 0]), "candidates": b})[0]  # noqa: E731
    ids_keras, scores_keras = index.search(queries, k=4, rerank=pddm, rerank_depth=12)
    ids_onnx, scores_onnx = index.search(queries, k=4, rerank=onnx_scorer, rerank_depth=12)
    np.testing.assert_array_equal(ids_onnx, ids_keras)
    np.testing.assert_allclose(scores_onnx, scores_keras, atol=1e-4)

    with pytest.raises(ValueError, match="built keras_dml.layers.PDDM"):
        export_pddm_scorer(PDDM(), tmp_path / "unbuilt")

