"""The pretrained backbone weights that ship inside keras_dml, and how they are written, checked and loaded.

`build_embedder(backbone, ..., weights="glyphs")` starts the backbone from weights
that keras_dml made itself, by classifying rendered characters that no glyph split
holds (`load_glyphs(split="pretrain")`, recipe `glyphs-pretrain`): a pretrained start
that needs no download, as the papers start from ImageNet. The embedding head stays
new and random.

Each entry of `SHIPPED` names a weights file in `keras_dml/models/weights/` and its
model card (`<name>.json` beside it): provenance (recipe, seed, characters, fonts hash,
epochs, accuracy) and the file's SHA-256, which `load_weights` checks before loading.
The file is an `.npz` written by `save_weights`: one array per backbone variable,
keyed `layer/variable`, in a zip with fixed timestamps, so the same weights give the
same bytes.

Example:

>>> from keras_dml.models import build_embedder
>>> embedder = build_embedder("small_resnet", 64, input_shape=(32, 32, 1), weights="glyphs")  # doctest: +SKIP
"""
import hashlib
import io
import json
import os
import zipfile

import numpy as np

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
REBUILD_COMMAND = "python -m keras_dml.training.pretrain"

# weights name -> backbone, the file's stem in WEIGHTS_DIR, and the inputs it fits:
# (height, width, channels) with `channels` channels and sides of at least `min_side`.
SHIPPED = {
    "glyphs": {"backbone": "small_resnet", "stem": "small_resnet_glyphs", "channels": 1, "min_side": 16,
               "trained_shape": (32, 32, 1)},
}
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the zip format's earliest date: no clock in the file


def is_shipped(weights):
    """Whether `weights` names weights that ship with keras_dml (a string key of `SHIPPED`)."""
    return isinstance(weights, str) and weights in SHIPPED


def check_fit(weights, backbone, input_shape):
    """A `ValueError` unless the shipped `weights` fit `backbone` at `input_shape`, naming what fits."""
    entry = SHIPPED[weights]
    fits = (f"backbone={entry['backbone']!r} with input_shape=(height, width, {entry['channels']}), height and "
            f"width at least {entry['min_side']} (trained at {entry['trained_shape']})")
    shape = tuple(input_shape)
    if backbone != entry["backbone"] or len(shape) != 3 or shape[2] != entry["channels"] \
            or min(shape[:2]) < entry["min_side"]:
        raise ValueError(f"weights={weights!r} fit {fits}; got backbone={backbone!r}, input_shape={shape}.")


def paths(weights):
    """`(weights file, model card)` of the shipped `weights`."""
    stem = os.path.join(WEIGHTS_DIR, SHIPPED[weights]["stem"])
    return stem + ".npz", stem + ".json"


def model_card(weights):
    """The model card (a dict) of the shipped `weights`; an error naming the file if it cannot be read."""
    _, card_path = paths(weights)
    try:
        with open(card_path, encoding="utf-8") as file:
            return json.load(file)
    except (OSError, ValueError) as error:
        raise _broken(card_path, f"its model card cannot be read ({error})") from None


def load_weights(net, weights):
    """Set the variables of the backbone model `net` from the shipped `weights`, after checking the file's hash."""
    path, card_path = paths(weights)
    card = model_card(weights)
    if not os.path.isfile(path):
        raise _broken(path, "the weights file is missing", FileNotFoundError)
    digest = file_sha256(path)
    if digest != card.get("sha256"):
        raise _broken(path, f"its SHA-256 {digest} is not the {card.get('sha256')} that {os.path.basename(card_path)} "
                            "records (a corrupted or replaced file)")
    try:
        with np.load(path) as arrays:
            values = {key: arrays[key] for key in arrays.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise _broken(path, f"it cannot be read ({error})") from None
    variables = _variables(net)
    if set(values) != set(variables) or any(values[k].shape != tuple(v.shape) for k, v in variables.items()):
        raise _broken(path, "its arrays do not match the backbone's variables")
    for key, variable in variables.items():
        variable.assign(values[key])


def save_weights(net, path):
    """Write the variables of `net` to the `.npz` file `path` (atomically; same values, same bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for key, variable in sorted(_variables(net).items()):
            array = io.BytesIO()
            np.lib.format.write_array(array, np.asarray(variable.numpy(), np.float32), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, array.getvalue())
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "wb") as file:
        file.write(buffer.getvalue())
    os.replace(temporary, path)


def file_sha256(path):
    """The SHA-256 hex digest of the file `path`."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _variables(net):
    """`{"layer/variable": variable}` of every variable of `net`'s layers (trainable or not)."""
    return {f"{layer.name}/{variable.name}": variable for layer in net.layers for variable in layer.weights}


def _broken(path, problem, kind=ValueError):
    return kind(f"The pretrained weights {path} cannot be used: {problem}. Rebuild them with `{REBUILD_COMMAND}` "
                "(about 15 minutes on 2 CPU cores), or reinstall keras_dml.")
