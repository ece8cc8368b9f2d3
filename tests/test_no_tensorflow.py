"""The core without TensorFlow: with the TensorFlow side of the install hidden, the core imports, trains and searches.

A fresh `KERAS_BACKEND=jax` process hides every module of the packages that the README's
install without TensorFlow leaves out (TensorFlow, TFDS, tf2onnx, ONNX, ...), as if they
were not installed, then uses the core end to end; what needs TensorFlow must say so.
A second test keeps that README route and setup.cfg in step.
"""
import configparser
import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The distributions of install_requires that the install without TensorFlow leaves out, and their modules.
LEFT_OUT = {
    "tensorflow": ["tensorflow", "tf_keras"],
    "tensorflow-datasets": ["tensorflow_datasets"],
    "tf2onnx": ["tf2onnx"],
    "onnx": ["onnx"],
    "onnxruntime": ["onnxruntime"],
    "tensorboard": ["tensorboard"],
    "opencv-python-headless": ["cv2"],
    "importlib-resources": ["importlib_resources"],
}
HIDDEN = sorted({module for modules in LEFT_OUT.values() for module in modules} | {"tensorflow_text"})
# What the route installs besides those it names: dependencies of keras, scikit-learn and matplotlib.
PULLED_IN = {"numpy", "ml-dtypes", "pillow", "threadpoolctl"}

SCRIPT = textwrap.dedent("""
    import json, sys
    HIDDEN = set(sys.argv[2].split(","))

    class HideTensorFlow:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HIDDEN:
                raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)", name=name)

    sys.meta_path.insert(0, HideTensorFlow())

    import keras
    import numpy as np
    from keras_dml import distances, evaluation, layers, losses, miners, models, optimizers, search
    from keras_dml.data import class_balanced, load_digits, load_glyphs

    assert keras.backend.backend() == "jax"
    result = {}
    glyphs, glyph_labels = load_glyphs("train", characters="abcdef", renders=1)
    result["glyphs"] = [list(glyphs.shape), int(glyph_labels.max()) + 1]

    x, y = load_digits("train")
    keras.utils.set_random_seed(0)
    embedder = models.build_embedder("small_cnn", embedding_dim=8, input_shape=(8, 8, 1))
    embedder.compile(optimizer="adam", loss=losses.TripletLoss(positive="easy", negative="semihard"))
    history = embedder.fit(class_balanced((x, y), 5, 4, seed=0), steps_per_epoch=3, epochs=1, verbose=0)
    result["triplet_loss"] = history.history["loss"]

    criterion = losses.PotentialFieldLoss(num_classes=5, embedding_dim=8, proxies_per_class=2)
    model = models.MetricModel(models.build_embedder("small_cnn", embedding_dim=8, input_shape=(8, 8, 1)), criterion)
    model.compile(optimizer=optimizers.with_proxy_lr_multiplier(keras.optimizers.Adam(1e-3), 10.0))
    result["potential_field_loss"] = model.fit(class_balanced((x, y), 5, 4, seed=1), steps_per_epoch=2,
                                               verbose=0).history["loss"]
    embeddings = model.predict(x, verbose=0)
    result["recall@1"] = evaluation.retrieval_metrics(embeddings, y)["recall@1"]
    index = search.Index()
    index.add(embeddings, labels=y)
    result["nearest"] = index.search(embeddings[:3], k=1)[0][:, 0].tolist()

    applications = models.build_embedder("mobilenetv3_small", embedding_dim=8, input_shape=(32, 32, 3))
    hub = models.build_embedder("dinov2_small", embedding_dim=8, input_shape=(28, 28, 3),
                                backbone_options={"num_layers": 1, "num_heads": 2, "hidden_dim": 16,
                                                  "intermediate_dim": 32})
    result["embedder_outputs"] = [list(applications.output.shape), list(hub.output.shape)]

    def error_of(call):
        try:
            call()
        except Exception as error:
            return f"{type(error).__name__}: {error}"

    def tf_data():
        from keras_dml.data import load_dataset

        load_dataset("digits")

    def export():
        from keras_dml.export import export_embedder

        export_embedder(embedder, sys.argv[1] + "/export")

    result["tf_data_error"] = error_of(tf_data)
    result["export_error"] = error_of(export)
    result["imported"] = sorted(name for name in HIDDEN if name in sys.modules)
    print(json.dumps(result))
""")


def test_the_core_trains_and_searches_without_tensorflow(tmp_path):
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), ",".join(HIDDEN)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])

    assert result["imported"] == []
    assert result["glyphs"][0][1:] == [32, 32, 1] and result["glyphs"][1] >= 2
    assert len(result["triplet_loss"]) == len(result["potential_field_loss"]) == 1
    assert all(math.isfinite(loss) and loss > 0 for loss in result["triplet_loss"] + result["potential_field_loss"])
    assert 0.2 < result["recall@1"] <= 1.0
    assert result["nearest"] == [0, 1, 2]
    assert result["embedder_outputs"] == [[None, 8], [None, 8]]
    # What needs TensorFlow says so, with the backend and what to install or use instead.
    assert result["tf_data_error"].startswith("ImportError: keras_dml.data.get_dataset and load_dataset")
    assert "the Keras backend is jax" in result["tf_data_error"]
    assert "pip install tensorflow" in result["tf_data_error"]
    assert "load_glyphs or load_digits" in result["tf_data_error"]
    assert result["export_error"].startswith("RuntimeError: Export writes TensorFlow graphs")
    assert "KERAS_BACKEND=jax" in result["export_error"] and "pip install tensorflow" in result["export_error"]
    assert not (tmp_path / "export").exists()


def _requirement_names(lines):
    return {re.split(r"[<>=!\[ ;]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")
            for line in lines if line.strip()}


def test_the_readme_install_without_tensorflow_covers_install_requires():
    """Each dependency is installed by the README's route without TensorFlow, pulled in by it, or hidden above."""
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    required = _requirement_names(setup["options"]["install_requires"].splitlines())
    readme = (ROOT / "README.md").read_text()
    marker = readme.index("<!-- install-without-tensorflow -->")
    commands = re.search(r"```bash\n(.*?)```", readme[marker:], re.S).group(1)
    assert "--no-deps" in commands
    named = _requirement_names(word.strip('"\'') for line in commands.splitlines()
                               for word in line.split() if not word.startswith("-"))
    assert not named & set(LEFT_OUT), "the route without TensorFlow installs what it should leave out"
    unplaced = required - named - set(LEFT_OUT) - PULLED_IN
    assert not unplaced, f"install_requires entries neither in the README's route nor left out by it: {unplaced}"
