"""From a trained embedder to a production artefact and a search service.

1. `export_embedder` writes the embedder alone (never proxies or optimizer state) as a
   TF SavedModel and an ONNX model taking raw uint8 images, reloads both and checks
   they match Keras to 1e-4 before reporting them written.
2. ONNX Runtime embeds a gallery; `keras_dml.index.Index` answers nearest-neighbour
   queries (exact by default, faiss when installed) and is saved next to the model:
   `OUT/embedder/` holds the export, `OUT/index/` the index. (Export replaces only a
   previous export, so the index does not go inside it.)

    python examples/export_and_serve.py [--out exported]    # ~1 minute
    python examples/export_and_serve.py --fast

For a real model: `keras-dml export runs/cars196-potential-field --out exported`, then
export/serve_onnx.py serves a folder of images.
"""
import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_dml  # noqa: E402
from keras_dml.export import describe_export, export_embedder  # noqa: E402


def main(out, epochs):
    keras.utils.set_random_seed(0)
    images, labels = keras_dml.data.load_digits("train")
    test_images, test_labels = keras_dml.data.load_digits("test")
    embedder = keras_dml.models.build_embedder("mlp", embedding_dim=16, input_shape=(8, 8, 1))
    embedder.compile(optimizer="adam", loss=keras_dml.losses.TripletLoss(positive="easy", negative="semihard"))
    embedder.fit(images, labels, batch_size=128, epochs=epochs, verbose=0)

    # Digits pixels are 0..16 in uint8 form; the embedder was trained on pixels / 16.
    export_dir = os.path.join(out, "embedder")
    card = export_embedder(embedder, export_dir, pixel_scale=1 / 16, overwrite=True)
    print(describe_export(card, export_dir))

    import onnxruntime

    session = onnxruntime.InferenceSession(os.path.join(export_dir, "embedder.onnx"))
    raw = np.round(test_images * 16).astype("uint8")
    gallery = session.run(None, {session.get_inputs()[0].name: raw})[0]

    index = keras_dml.index.Index()
    index.add(gallery[10:], labels=test_labels[10:])
    ids, distances = index.search(gallery[:10], k=3)
    hits = (index.lookup(ids)[:, 0] == test_labels[:10]).mean()
    print(f"top-1 label agreement on 10 queries: {hits:.0%}; first query's neighbours {ids[0].tolist()}")
    index.save(os.path.join(out, "index"))
    return hits


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="folder for embedder/ and index/ (default: a temporary one)")
    parser.add_argument("--fast", action="store_true", help="2 epochs (smoke test)")
    args = parser.parse_args()
    epochs = 2 if args.fast else 20
    if args.out:
        main(args.out, epochs)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(os.path.join(tmp, "exported"), epochs)
