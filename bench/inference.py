"""Embeddings per second of one embedder served three ways: Keras predict, the SavedModel, ONNX Runtime.

The model is `build_embedder(backbone, 512, (size, size, 3), weights=None)` (random
weights: speed does not depend on them), exported with `export_embedder` (uint8 input,
verified). Each runtime embeds the same uint8 batch (Keras gets it as float32, which is
what the exported graph casts it to); the figure is batch size / median wall time of one
call, after warm-up calls. Everything runs on the CPU unless --gpu lets TensorFlow use one
(ONNX Runtime stays on its CPU provider).

    python bench/inference.py --backbone resnet50 --size 224 --batch-sizes 1 64
"""
import argparse
import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gpu", action="store_true", help="let TensorFlow use a GPU (default: hide GPUs)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    if not args.gpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""

    import numpy as np
    import onnxruntime
    import tensorflow as tf

    from bench.common import machine, median_seconds
    from keras_dml.export import export_embedder
    from keras_dml.models.embedder import build_embedder

    print(machine())
    print(f"TensorFlow {tf.__version__} on {tf.config.list_logical_devices()[-1].device_type}, "
          f"onnxruntime {onnxruntime.__version__} ({onnxruntime.get_device()})")
    embedder = build_embedder(args.backbone, 512, (args.size, args.size, 3))
    with tempfile.TemporaryDirectory() as tmp:
        card = export_embedder(embedder, os.path.join(tmp, "export"))
        signature = tf.saved_model.load(os.path.join(tmp, "export", "saved_model")).signatures["serving_default"]
        session = onnxruntime.InferenceSession(os.path.join(tmp, "export", "embedder.onnx"),
                                               providers=["CPUExecutionProvider"])
    print(f"{args.backbone} at {args.size}x{args.size}, 512-d; export parity "
          f"{card['verification']['max_abs_diff']}")

    runtimes = {
        "keras_predict": lambda x: embedder.predict(x.astype("float32"), batch_size=len(x), verbose=0),
        "saved_model": lambda x: signature(images=tf.constant(x))["embeddings"].numpy(),
        "onnxruntime": lambda x: session.run(["embeddings"], {"images": x})[0],
    }
    rng = np.random.default_rng(0)
    results = []
    for batch_size in args.batch_sizes:
        pixels = rng.integers(0, 256, size=(batch_size, args.size, args.size, 3)).astype("uint8")
        for name, run in runtimes.items():
            seconds = median_seconds(lambda: run(pixels), repeats=args.repeats, warmup=2)
            results.append({"runtime": name, "batch_size": batch_size, "embeddings_per_second": batch_size / seconds,
                            "ms_per_batch": 1000 * seconds})
            print(f"  batch {batch_size:>4}  {name:<14} {batch_size / seconds:9.1f} embeddings/s "
                  f"({1000 * seconds:8.1f} ms per batch)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "backbone": args.backbone, "size": args.size, "results": results}, f,
                      indent=2)


if __name__ == "__main__":
    main()
