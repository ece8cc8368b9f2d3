"""A minimal serving example: embed a folder of images with the exported ONNX model, answer k-NN queries.

    python export/serve_onnx.py exported/cars196 gallery/ --query query.jpg -k 5
    python export/serve_onnx.py exported/cars196 gallery/ -k 5 --json   # every image queries the rest

The model runs in onnxruntime and the search is `keras_dml.index.Index`; images are
decoded by `keras_dml.data.read_image`, the decoder training uses (so a 16-bit PNG gets
the pixels training saw, and a damaged file is named). The model is `embedder.onnx`
from `keras_dml.export.export_embedder` (or the path to any `.onnx` file with one
`(batch, height, width, channels)` image input). Images are converted to greyscale
when the model takes one channel, and resized to its input size with Pillow. A model
exported with `include_preprocessing=True` takes the uint8 pixels as they are; one with
a float input gets `float32(pixels) * --pixel-scale`.

Search is exact: Euclidean distance to every gallery embedding, ties broken by gallery
order (`Index(backend="faiss")` would scale it to millions of images).
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np


class OnnxEmbedder:
    """Embeds images with an ONNX embedder through onnxruntime."""

    def __init__(self, path, pixel_scale=1.0):
        import onnxruntime

        path = Path(path)
        if path.is_dir():
            path = path / "embedder.onnx"
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (model_input,) = self.session.get_inputs()
        if len(model_input.shape) != 4 or not all(isinstance(d, int) for d in model_input.shape[1:]):
            raise ValueError(f"{path} must take (batch, height, width, channels) images; its input is "
                             f"{model_input.name} {model_input.shape}.")
        self.input_name = model_input.name
        self.height, self.width, self.channels = model_input.shape[1:]
        self.takes_uint8 = model_input.type == "tensor(uint8)"
        self.pixel_scale = pixel_scale

    def embed(self, paths, batch_size=64):
        """`(len(paths), D)` float32 embeddings of the image files."""
        batches = []
        for start in range(0, len(paths), batch_size):
            pixels = np.stack([load_image(p, self.height, self.width, self.channels)
                               for p in paths[start:start + batch_size]])
            feed = pixels if self.takes_uint8 else pixels.astype("float32") * np.float32(self.pixel_scale)
            batches.append(self.session.run(None, {self.input_name: feed})[0])
        return np.concatenate(batches).astype("float32")


def load_image(path, height, width, channels):
    """One image file as uint8 `(height, width, channels)` pixels, decoded as in training.

    `keras_dml.data.read_image` decodes it (raising `ValueError` naming a file it cannot
    decode); Pillow converts it to greyscale for one channel and resizes it bilinearly.
    """
    from PIL import Image

    from keras_dml.data import read_image

    image = Image.fromarray(read_image(path))
    if channels == 1:
        image = image.convert("L")
    pixels = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype="uint8")
    return pixels.reshape(height, width, channels)


def image_files(folder):
    """Every image file under `folder`, sorted."""
    from keras_dml.data.images import IMAGE_EXTENSIONS

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise ValueError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found under {folder}.")
    return files


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="export directory (holding embedder.onnx) or an .onnx file")
    parser.add_argument("gallery", help="folder of images to search (searched recursively)")
    parser.add_argument("--query", nargs="+", help="query images; default: every gallery image queries the others")
    parser.add_argument("-k", type=int, default=5, help="neighbours per query (default 5)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--pixel-scale", type=float, default=1.0,
                        help="for float-input models only: input = float32(pixels) * pixel_scale")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.k < 1:
        raise SystemExit(f"-k must be at least 1; got {args.k}.")
    from keras_dml.index import Index

    from keras_dml.data.images import find_corrupt

    embedder = OnnxEmbedder(args.model, pixel_scale=args.pixel_scale)
    gallery_files = image_files(args.gallery)
    corrupt = find_corrupt(gallery_files)
    for path, reason in corrupt.items():
        print(f"Skipped corrupt image file {path}: {reason}", file=sys.stderr)
    gallery_files = [p for p in gallery_files if str(p) not in corrupt]
    if not gallery_files:
        raise SystemExit(f"No readable images under {args.gallery}.")
    gallery = embedder.embed(gallery_files, args.batch_size)
    index = Index(distance="euclidean")
    index.add(gallery)  # ids are gallery positions
    if args.query:
        query_files = [Path(q) for q in args.query]
        missing = [str(q) for q in query_files if not q.is_file()]
        if missing:
            raise SystemExit(f"Query images not found: {missing}.")
        try:
            queries = embedder.embed(query_files, args.batch_size)
        except ValueError as error:  # names the file that does not decode
            raise SystemExit(str(error)) from None
        indices, distances = index.search(queries, min(args.k, len(index)))
    else:  # every gallery image queries the others: one neighbour more, then drop the query itself
        query_files = gallery_files
        k = min(args.k, len(index) - 1)
        found, values = index.search(gallery, k + 1)
        keep = found != np.arange(len(gallery))[:, None]
        keep[keep.sum(axis=1) > k, -1] = False  # the query was not among its own k + 1 nearest
        indices, distances = found[keep].reshape(-1, k), values[keep].reshape(-1, k)

    results = [{"query": str(query),
                "neighbours": [{"path": str(gallery_files[j]), "distance": round(float(d), 6)}
                               for j, d in zip(row, dist)]}
               for query, row, dist in zip(query_files, indices, distances)]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{len(gallery_files)} gallery images embedded to {gallery.shape[1]} dimensions")
        for result in results:
            neighbours = ", ".join(f"{Path(n['path']).name} ({n['distance']:.4f})" for n in result["neighbours"])
            print(f"{Path(result['query']).name}: {neighbours}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
