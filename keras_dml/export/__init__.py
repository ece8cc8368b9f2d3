"""Export a trained embedder as a TF SavedModel and an ONNX model, verified against Keras.

    embedder ─> serving function: images [uint8 -> float32 * pixel_scale] -> embeddings
             ├─> saved_model/      signature "serving_default" (TF Serving, tf.saved_model.load)
             ├─> embedder.onnx     the same function frozen, converted by tf2onnx, dynamic batch
             └─> model_card.json   shapes, dtypes, preprocessing, versions, metrics, parity

`export_pddm_scorer` does the same for a trained PDDM unit, as a re-ranking scorer
`(query (n, D), candidates (n, c, D)) -> scores (n, c)` (`pddm_scorer.onnx`).

Both artefacts come from one `tf.function`. The ONNX model is converted from its frozen
graph with `tf2onnx.convert.from_graph_def`, not with `tf2onnx.convert.from_function`
(which Keras's own `model.export(format="onnx")` uses): that path lists constants the
function captures, such as the mean and variance of the `Normalization` layer inside
EfficientNet and ConvNeXt, among the graph's inputs, so the ONNX model asks for them at
run time. Freezing first turns every capture into a constant.

Example:

>>> from keras_dml.models.embedder import build_embedder
>>> from keras_dml.export import export_embedder
>>> embedder = build_embedder("small_cnn", embedding_dim=16, input_shape=(8, 8, 1))
>>> card = export_embedder(embedder, "digits_export", pixel_scale=1 / 255)  # doctest: +SKIP
>>> card["verification"]["max_abs_diff"]  # doctest: +SKIP
{'saved_model': 0.0, 'onnx': 1.2e-07}
"""
import contextlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path

import keras
import numpy as np

FORMATS = ("saved_model", "onnx")
SAVED_MODEL_DIR = "saved_model"
ONNX_FILE = "embedder.onnx"
SCORER_ONNX_FILE = "pddm_scorer.onnx"
CARD_FILE = "model_card.json"
SIGNATURE = "serving_default"
INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"
QUERY_NAME, CANDIDATES_NAME, SCORES_NAME = "query", "candidates", "scores"
VERIFY_BATCH_SIZES = (1, 3, 16)
VERIFY_CANDIDATES = (1, 5, 7)  # candidates per query for the scorer, one count per batch size
TOLERANCE = 1e-4
ONNX_OPSET = 17


class ExportVerificationError(RuntimeError):
    """An exported artefact's embeddings differ from the Keras model's beyond the tolerance."""


def export_embedder(model, directory, formats=FORMATS, include_preprocessing=True, verify=True, overwrite=False,
                    metrics=None, pixel_scale=1.0, opset=ONNX_OPSET):
    """Write `model`'s embedder to `directory` as a SavedModel and/or ONNX model, plus a model card.

    Args:
        model: a Keras embedder with one image input of fixed shape (batch size free) and
            one `(batch, embedding_dim)` output, or a model with an `.embedder` attribute
            (`keras_dml.models.MetricModel`), whose embedder alone is exported: never the
            proxies, a PDDM unit or optimizer state.
        directory: where the artefacts go. It is written as a whole at the end (the files
            are made in a temporary sibling directory that is then renamed), so a failure
            leaves `directory` as it was.
        formats: any of `"saved_model"`, `"onnx"`.
        include_preprocessing: the artefacts take raw `uint8` pixels and compute
            `float32(pixels) * pixel_scale` before the embedder. With False they take the
            embedder's own float input.
        verify: reload the artefacts (`tf.saved_model.load`, onnxruntime) and compare their
            embeddings with the Keras model's on random images at batch sizes 1, 3 and 16;
            raise `ExportVerificationError` when the largest absolute difference exceeds 1e-4.
        overwrite: replace a non-empty `directory`; without it, a non-empty one is refused.
        metrics: optional JSON-serialisable dict (e.g. MAP@R on the test set) for the card.
        pixel_scale: what one `uint8` unit is in the embedder's input: 1.0 for embedders
            that take `[0, 255]` values (every `keras.applications` backbone of
            `build_embedder`), `1 / 255` for embedders trained on `[0, 1]` images.
        opset: the ONNX opset.

    Returns:
        The model card (a dict, also written to `directory/model_card.json`); with
        `verify=True` its `"verification"` entry holds the parity figures.
    """
    embedder = getattr(model, "embedder", model)
    formats = _check_formats(formats)
    input_shape = _check_embedder(embedder)
    metrics = _check_metrics(metrics)
    if not pixel_scale > 0:
        raise ValueError(f"pixel_scale must be positive; got pixel_scale={pixel_scale!r}.")
    serve = serving_function(embedder, include_preprocessing, pixel_scale)

    def write(staging):
        _write_artefacts(embedder, serve, staging, formats, ONNX_FILE, opset, ("batch",))
        parity = None
        if verify:
            cases = _embedder_cases(embedder, input_shape, include_preprocessing, pixel_scale)
            parity = {"batch_sizes": list(VERIFY_BATCH_SIZES), "tolerance": TOLERANCE,
                      "max_abs_diff": _verify(staging, formats, ONNX_FILE, OUTPUT_NAME, cases)}
        return _embedder_card(embedder, formats, input_shape, include_preprocessing, pixel_scale, opset, metrics,
                              parity)

    return _export(directory, overwrite, write)


def export_pddm_scorer(pddm, directory, formats=FORMATS, verify=True, overwrite=False, opset=ONNX_OPSET):
    """Write a trained PDDM unit as a re-ranking scorer: `(query, candidates) -> scores`.

    The artefacts take `query` `(n, D)` and `candidates` `(n, c, D)` float32 embeddings
    (both dimensions `n` and `c` free) and return `scores` `(n, c)`, `S(query_i,
    candidate_ij)`, higher = more similar: the scorer `keras_dml.index.Index.search(...,
    rerank=...)` takes, served without the embedder's training code. Written, verified
    (at `(n, c)` = (1, 1), (3, 5), (16, 7)) and moved into place like `export_embedder`.

    Args:
        pddm: a built `keras_dml.layers.PDDM`, or an object holding one as `.pddm` (the
            `PDDMLoss` criterion, e.g. `metric_model.criterion`).
        directory, formats, verify, overwrite, opset: as for `export_embedder`.

    Returns:
        The model card, also written to `directory/model_card.json`.
    """
    pddm = getattr(pddm, "pddm", pddm)
    formats = _check_formats(formats)
    _check_tensorflow_backend()
    if not isinstance(pddm, keras.layers.Layer) or not pddm.built or not getattr(pddm, "feature_dim", None):
        raise ValueError(f"pddm must be a built keras_dml.layers.PDDM (or hold one as .pddm); got {pddm!r}.")
    serve = scorer_function(pddm)

    def write(staging):
        _write_artefacts(pddm, serve, staging, formats, SCORER_ONNX_FILE, opset, ("batch", "candidates"))
        parity = None
        if verify:
            parity = {"batch_sizes": list(VERIFY_BATCH_SIZES), "candidates": list(VERIFY_CANDIDATES),
                      "tolerance": TOLERANCE,
                      "max_abs_diff": _verify(staging, formats, SCORER_ONNX_FILE, SCORES_NAME, _scorer_cases(pddm))}
        dim = pddm.feature_dim
        return {
            "model_name": pddm.name,
            "kind": "pddm_scorer",
            "feature_dim": dim,
            "inputs": [{"name": QUERY_NAME, "shape": [None, dim], "dtype": "float32"},
                       {"name": CANDIDATES_NAME, "shape": [None, None, dim], "dtype": "float32"}],
            "output": {"name": SCORES_NAME, "shape": [None, None], "dtype": "float32"},
            "higher_is_more_similar": True,
            "artefacts": _artefacts(formats, SCORER_ONNX_FILE, opset),
            "versions": _versions(formats),
            "verification": parity,
        }

    return _export(directory, overwrite, write)


def serving_function(embedder, include_preprocessing=True, pixel_scale=1.0):
    """The `tf.function` both artefacts are made from: `images -> {"embeddings": float32}`."""
    import tensorflow as tf

    shape = (None, *embedder.inputs[0].shape[1:])
    dtype = tf.uint8 if include_preprocessing else tf.as_dtype(embedder.inputs[0].dtype)

    @tf.function(input_signature=[tf.TensorSpec(shape, dtype, name=INPUT_NAME)])
    def serve(images):
        x = images
        if include_preprocessing:
            x = tf.cast(x, tf.float32)
            if pixel_scale != 1:
                x = x * tf.constant(pixel_scale, tf.float32)
        return {OUTPUT_NAME: tf.cast(embedder(x, training=False), tf.float32)}

    return serve


def scorer_function(pddm):
    """The `tf.function` a PDDM scorer is exported from: `(query, candidates) -> {"scores": float32}`."""
    import tensorflow as tf

    dim = pddm.feature_dim

    @tf.function(input_signature=[tf.TensorSpec((None, dim), tf.float32, name=QUERY_NAME),
                                  tf.TensorSpec((None, None, dim), tf.float32, name=CANDIDATES_NAME)])
    def score(query, candidates):
        return {SCORES_NAME: tf.cast(pddm(query[:, None, :], candidates), tf.float32)}

    return score


def load_embedder(source):
    """`(embedder, metrics)` from a `.keras` file or a training run directory.

    A run directory holds `embedder.keras` (or a single other `.keras` file) and, when
    present, `metrics.json`. A saved model with an `.embedder` attribute (MetricModel)
    gives its embedder.
    """
    import keras_dml.layers  # noqa: F401  (registers keras_dml's serialisable classes)
    import keras_dml.losses  # noqa: F401
    import keras_dml.models  # noqa: F401

    path = Path(source)
    metrics = None
    if path.is_dir():
        if (path / "metrics.json").is_file():
            metrics = json.loads((path / "metrics.json").read_text())
        files = [path / "embedder.keras"] if (path / "embedder.keras").is_file() else sorted(path.glob("*.keras"))
        if len(files) != 1:
            raise ValueError(f"{path} must hold embedder.keras or exactly one .keras file; "
                             f"found {[f.name for f in files]}.")
        path = files[0]
    elif path.suffix != ".keras" or not path.is_file():
        raise ValueError(f"source must be a .keras file or a run directory; got {source!r}.")
    model = keras.saving.load_model(path, compile=False)
    return getattr(model, "embedder", model), metrics


def describe_export(card, directory):
    """A few lines saying what `export_embedder` wrote to `directory` and how well it matched Keras."""
    lines = [f"Exported {card['model_name']} to {directory}:"]
    inputs = card["inputs"] if "inputs" in card else [card["input"]]
    signature = " -> ".join(", ".join(f"{t['name']} {t['dtype']} {tuple(t['shape'])}" for t in tensors)
                            for tensors in (inputs, [card["output"]]))
    for fmt, artefact in card["artefacts"].items():
        detail = f"signature {artefact['signature']!r}" if fmt == "saved_model" else f"opset {artefact['opset']}"
        lines.append(f"  {artefact['path']:<18} {fmt} ({detail}): {signature}")
    check = card["verification"]
    if check is None:
        lines.append("  not verified (verify=False)")
    else:
        diffs = ", ".join(f"{fmt} {diff:.1e}" for fmt, diff in check["max_abs_diff"].items())
        lines.append(f"  parity with Keras, max |difference| over batch sizes {check['batch_sizes']}: "
                     f"{diffs} (tolerance {check['tolerance']:.0e})")
    return "\n".join(lines)


def _check_formats(formats):
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"Unknown export format(s) {unknown}; formats must be a non-empty "
                         f"selection of {list(FORMATS)}, got formats={formats!r}.")
    return tuple(f for f in FORMATS if f in formats)


def _check_embedder(embedder):
    """The embedder's input shape without the batch; raises ValueError for what cannot be exported."""
    _check_tensorflow_backend()
    if not isinstance(embedder, keras.Model):
        raise ValueError(f"model must be a keras.Model (or have an .embedder that is one); got {type(embedder)}.")
    inputs, outputs = getattr(embedder, "inputs", None), getattr(embedder, "outputs", None)
    if not inputs or not outputs:
        raise ValueError(f"{embedder.name} has no known input shape: build it on keras.Input(shape) "
                         "(a functional or Sequential model) before exporting.")
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"An embedder has one input and one output; {embedder.name} has "
                         f"{len(inputs)} inputs and {len(outputs)} outputs.")
    if len(outputs[0].shape) != 2:
        raise ValueError(f"An embedder outputs (batch, embedding_dim); {embedder.name} outputs shape "
                         f"{tuple(outputs[0].shape)}.")
    input_shape = tuple(inputs[0].shape[1:])
    if None in input_shape:
        raise ValueError(f"Export needs a fixed input shape besides the batch; {embedder.name} takes "
                         f"{tuple(inputs[0].shape)}.")
    unregistered = sorted({f"{type(layer).__module__}.{type(layer).__qualname__}"
                           for layer in _rebuilt_layers(embedder) if not _is_serializable(type(layer))})
    if unregistered:
        raise ValueError(f"{embedder.name} uses custom classes Keras cannot reload: {unregistered}. "
                         "Decorate them with @keras.saving.register_keras_serializable() and give them "
                         "get_config, so the exported model can be traced back to a .keras file.")
    return input_shape


def _check_tensorflow_backend():
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(f"Export runs on the TensorFlow backend (KERAS_BACKEND=tensorflow); "
                           f"the current backend is {keras.backend.backend()!r}.")


def _rebuilt_layers(layer):
    """`layer` and the layers inside it that Keras rebuilds one by one from a .keras file.

    A registered model class outside Keras (a keras-hub backbone) rebuilds its own inner
    layers from its constructor arguments, so those need no registration of their own.
    """
    yield layer
    if isinstance(layer, keras.Model) and type(layer).__module__.split(".")[0] != "keras" and _is_serializable(type(layer)):
        return
    for sub in layer._flatten_layers(include_self=False, recursive=False):
        yield from _rebuilt_layers(sub)


def _is_serializable(cls):
    if cls.__module__.split(".")[0] == "keras":
        return True
    return keras.saving.get_registered_object(keras.saving.get_registered_name(cls)) is cls


def _check_metrics(metrics):
    if metrics is None:
        return None
    try:
        return json.loads(json.dumps(metrics, default=_numpy_scalar))
    except (TypeError, ValueError) as error:
        raise ValueError(f"metrics must be a JSON-serialisable dict; {error}") from None


def _numpy_scalar(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{value!r} of type {type(value).__name__} is not JSON-serialisable")


def _check_target(target, overwrite):
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a directory.")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"{target} exists and is not empty; pass overwrite=True to replace it.")


def _export(directory, overwrite, write):
    """Run `write(staging)` in a new sibling of `directory`, add the card it returns, then move it into place.

    Any failure removes the staging directory, so `directory` stays as it was.
    """
    target = Path(directory)
    _check_target(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.{uuid.uuid4().hex}.partial"
    staging.mkdir()
    try:
        card = write(staging)
        (staging / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
        _move_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return card


def _write_artefacts(layer, serve, directory, formats, onnx_file, opset, dynamic_dims):
    with _quiet_converters():
        if "saved_model" in formats:
            _write_saved_model(layer, serve, directory / SAVED_MODEL_DIR)
        if "onnx" in formats:
            _write_onnx(serve, directory / onnx_file, opset, dynamic_dims)


@contextlib.contextmanager
def _quiet_converters():
    """Silence TensorFlow's deprecation notices and tf2onnx's progress logs while converting."""
    loggers = [logging.getLogger(name) for name in ("tensorflow", "tf2onnx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _write_saved_model(layer, serve, path):
    """A SavedModel holding the layer's variables and `serve`, also as the serving signature.

    The root is a bare `tf.Module` rather than Keras's `ExportArchive`, whose walk over
    every layer looking for lookup tables (an image embedder has none) took most of the
    export time of an EfficientNet here; for the same reason the gradient functions an
    inference artefact never uses are not traced.
    """
    import tensorflow as tf

    root = tf.Module()
    root.model_variables = list(layer.variables)
    root.serve = serve
    tf.saved_model.save(root, str(path), signatures={SIGNATURE: serve.get_concrete_function()},
                        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))


def _write_onnx(serve, path, opset, dynamic_dims):
    """`serve` as an ONNX model whose inputs and output keep their names; free dimensions named `dynamic_dims`."""
    import onnx
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = serve.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete, aggressive_inlining=True)
    (output,), (output_name,) = frozen.outputs, concrete.structured_outputs
    names = {tensor.name: tensor.name.split(":")[0] for tensor in frozen.inputs}  # the TensorSpec names
    proto, _ = tf2onnx.convert.from_graph_def(
        _inlinable(frozen.graph.as_graph_def()), input_names=list(names), output_names=[output.name],
        opset=opset, custom_op_handlers={"Erfc": (_erfc_as_one_minus_erf, [])},
        tensors_to_rename={**names, output.name: output_name})
    for value in (*proto.graph.input, *proto.graph.output):
        for dim, name in zip(value.type.tensor_type.shape.dim, dynamic_dims):
            if not dim.HasField("dim_value"):
                dim.dim_param = name
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _inlinable(graph_def):
    """`graph_def` with its nested XLA functions made inlinable.

    Keras's TensorFlow backend runs grouped convolutions (ConvNeXt's depthwise 7x7) in a
    nested `tf.function(jit_compile=True)`, which freezing keeps as a no-inline function
    call that ONNX cannot express. Without these attributes the function inliner of
    grappler, which tf2onnx runs, inlines the plain Conv2D inside.
    """
    for function in graph_def.library.function:
        for key in ("_noinline", "_XlaMustCompile"):
            if key in function.attr:
                del function.attr[key]
    for node in graph_def.node:
        if "_XlaMustCompile" in node.attr:
            del node.attr["_XlaMustCompile"]
    return graph_def


def _erfc_as_one_minus_erf(ctx, node, name, args):
    """tf2onnx handler: `erfc(x) = 1 - erf(x)`. tf2onnx 1.17 cannot convert Erfc, which TF's exact GELU uses."""
    import tf2onnx

    erf = ctx.make_node("Erf", [node.input[0]])
    dtype = tf2onnx.utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
    one = ctx.make_const(tf2onnx.utils.make_name(f"{node.name}/one"), np.array(1, dtype=dtype))
    node.type = "Sub"
    ctx.replace_inputs(node, [one.output[0], erf.output[0]])
    return node


def _verify(directory, formats, onnx_file, output_name, cases):
    """Largest absolute difference of each reloaded artefact from Keras over `cases` of `(feed, expected)`.

    Raises `ExportVerificationError` when an artefact returns another shape or differs by
    more than `TOLERANCE`.
    """
    runners = {}
    if "saved_model" in formats:
        import tensorflow as tf

        signature = tf.saved_model.load(str(directory / SAVED_MODEL_DIR)).signatures[SIGNATURE]
        runners["saved_model"] = lambda feed: signature(**{k: tf.constant(v) for k, v in feed.items()})[output_name]
    if "onnx" in formats:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(directory / onnx_file), providers=["CPUExecutionProvider"])
        runners["onnx"] = lambda feed: session.run([output_name], feed)[0]

    worst = dict.fromkeys(runners, 0.0)
    for feed, expected in cases:
        for fmt, run in runners.items():
            got = np.asarray(run(feed))
            if got.shape != expected.shape:
                shapes = {name: value.shape for name, value in feed.items()}
                raise ExportVerificationError(f"{fmt} returned shape {got.shape} for inputs {shapes}; "
                                              f"Keras returned {expected.shape}.")
            worst[fmt] = max(worst[fmt], float(np.max(np.abs(got - expected))))
    failed = {fmt: diff for fmt, diff in worst.items() if not diff <= TOLERANCE}
    if failed:
        raise ExportVerificationError(f"Exported {output_name} differ from Keras's by up to {failed} "
                                      f"(tolerance {TOLERANCE}); nothing was written.")
    return worst


def _embedder_cases(embedder, input_shape, include_preprocessing, pixel_scale):
    """Random uint8 images at each verification batch size, fed as the artefacts take them, and Keras's embeddings."""
    rng = np.random.default_rng(0)
    cases = []
    for batch_size in VERIFY_BATCH_SIZES:
        pixels = rng.integers(0, 256, size=(batch_size, *input_shape)).astype("uint8")
        floats = pixels.astype("float32") * np.float32(pixel_scale)
        expected = keras.ops.convert_to_numpy(embedder(floats, training=False)).astype("float32")
        feed = pixels if include_preprocessing else floats.astype(keras.backend.standardize_dtype(embedder.inputs[0].dtype))
        cases.append(({INPUT_NAME: feed}, expected))
    return cases


def _scorer_cases(pddm):
    """Random unit-norm queries and candidates at each (batch, candidates) size, and Keras's scores."""
    rng = np.random.default_rng(0)
    cases = []
    for batch_size, candidates in zip(VERIFY_BATCH_SIZES, VERIFY_CANDIDATES):
        query = rng.normal(size=(batch_size, pddm.feature_dim)).astype("float32")
        pool = rng.normal(size=(batch_size, candidates, pddm.feature_dim)).astype("float32")
        query /= np.linalg.norm(query, axis=-1, keepdims=True)
        pool /= np.linalg.norm(pool, axis=-1, keepdims=True)
        expected = keras.ops.convert_to_numpy(pddm(query[:, None, :], pool)).astype("float32")
        cases.append(({QUERY_NAME: query, CANDIDATES_NAME: pool}, expected))
    return cases


def _embedder_card(embedder, formats, input_shape, include_preprocessing, pixel_scale, opset, metrics, parity):
    dim = int(embedder.outputs[0].shape[-1])
    if include_preprocessing:
        preprocessing = f"float32(images) * {pixel_scale!r}, then the embedder, whose own layers do the rest"
    else:
        preprocessing = "none outside the embedder: feed the float values the Keras model takes"
    probe = np.random.default_rng(0).uniform(0, 255 * pixel_scale, size=(2, *input_shape)).astype("float32")
    norms = np.linalg.norm(keras.ops.convert_to_numpy(embedder(probe, training=False)), axis=1)
    return {
        "model_name": embedder.name,
        "kind": "embedder",
        "embedding_dim": dim,
        "normalized": bool(np.allclose(norms, 1.0, atol=1e-3)),
        "distance": "euclidean",
        "input": {"name": INPUT_NAME, "shape": [None, *input_shape],
                  "dtype": "uint8" if include_preprocessing else keras.backend.standardize_dtype(embedder.inputs[0].dtype)},
        "output": {"name": OUTPUT_NAME, "shape": [None, dim], "dtype": "float32"},
        "preprocessing": preprocessing,
        "pixel_scale": float(pixel_scale) if include_preprocessing else None,
        "artefacts": _artefacts(formats, ONNX_FILE, opset),
        "versions": _versions(formats),
        "metrics": metrics,
        "verification": parity,
    }


def _artefacts(formats, onnx_file, opset):
    artefacts = {}
    if "saved_model" in formats:
        artefacts["saved_model"] = {"path": SAVED_MODEL_DIR, "signature": SIGNATURE}
    if "onnx" in formats:
        artefacts["onnx"] = {"path": onnx_file, "opset": opset}
    return artefacts


def _versions(formats):
    import tensorflow as tf

    import keras_dml

    versions = {"keras_dml": keras_dml.__version__, "tensorflow": tf.__version__, "keras": keras.__version__}
    if "onnx" in formats:
        import tf2onnx

        versions["tf2onnx"] = tf2onnx.__version__
    return versions


def _move_into_place(staging, target):
    """Rename `staging` to `target`, putting an existing `target` aside until the rename succeeded."""
    if not target.exists():
        os.rename(staging, target)
        return
    old = staging.with_name(staging.name + "-old")
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old)
