"""Throughput of the keras_dml train input pipeline: decode + augment + P x K batching,
and of the glyph renderer behind `load_glyphs` (first call, then from its cache).

Writes its own 500 x 375 JPEGs (smooth random scenes with noise, so they compress like
photos) into a temporary class-folder tree, loads it with `load_dataset`, and times
`class_balanced(..., transform=augment.train_transform(224))` batches after a warm-up.
Then renders the default glyph set into a temporary cache folder and loads it again.

    python bench/data.py                       # defaults below
    python bench/data.py --images 4000 --batches 60 --parallel 8
    python bench/data.py --glyphs-only --glyph-renders 3 --glyph-size 32
"""
import argparse
import os
import platform
import tempfile
import time

import numpy as np
import tensorflow as tf

from keras_dml.data import augment, class_balanced, glyphs, load_dataset


def write_jpegs(root, num_images, num_classes, width=500, height=375, seed=0):
    """`num_images` JPEGs in `root/<class>/`; returns their mean size in bytes."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 6, size=(8, height, width, 3)).astype("float32")  # reused, rolled
    sizes = []
    for i in range(num_images):
        folder = os.path.join(root, f"class{i % num_classes:04d}")
        os.makedirs(folder, exist_ok=True)
        scene = tf.image.resize(rng.uniform(0, 255, size=(6, 8, 3)), [height, width], method="bicubic")
        noisy = scene + np.roll(noise[i % 8], rng.integers(width), axis=1)
        data = tf.io.encode_jpeg(tf.cast(tf.clip_by_value(noisy, 0, 255), tf.uint8), quality=90).numpy()
        with open(os.path.join(folder, f"{i:06d}.jpg"), "wb") as handle:
            handle.write(data)
        sizes.append(len(data))
    return float(np.mean(sizes))


def images_per_second(dataset, transform, args):
    """`(setup seconds, images per second)`; the rate over `args.batches` batches after a warm-up.

    The setup is `class_balanced` reading every file into memory.
    """
    start = time.perf_counter()
    batches = class_balanced(
        dataset,
        args.classes_per_batch,
        args.samples_per_class,
        seed=0,
        transform=transform,
        num_parallel_calls=args.parallel,
    )
    setup = time.perf_counter() - start
    iterator = iter(batches)
    for _ in range(args.warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(args.batches):
        images, _ = next(iterator)
    images.numpy()
    elapsed = time.perf_counter() - start
    return setup, args.batches * args.classes_per_batch * args.samples_per_class / elapsed


def glyph_rendering(args):
    """Seconds and images per second of `load_glyphs` (both splits): rendering, then cached."""
    with tempfile.TemporaryDirectory() as cache:
        seconds, cpu_seconds = [], []
        for _ in range(2):  # first call renders and writes the cache, the second reads it
            start, cpu_start = time.perf_counter(), time.process_time()
            sizes = [len(glyphs.load_glyphs(split, image_size=args.glyph_size, renders=args.glyph_renders,
                                            cache_dir=cache)[1]) for split in glyphs.SPLITS]
            seconds.append(time.perf_counter() - start)
            cpu_seconds.append(time.process_time() - cpu_start)
    images = sum(sizes)
    print(f"load_glyphs, matplotlib's fonts, {images} images of {args.glyph_size} x {args.glyph_size} "
          f"({args.glyph_renders} renders per glyph), train + test:")
    for name, wall, cpu in zip(("first call (checks, rendering, cache write)", "cached call"), seconds, cpu_seconds):
        print(f"  {name}: {wall:.2f} s ({cpu:.2f} s of CPU), {images / wall:.0f} images/s")
    print(f"  the cached call is {seconds[0] / seconds[1]:.0f}x faster")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=50)
    parser.add_argument("--classes-per-batch", type=int, default=32)
    parser.add_argument("--samples-per-class", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--parallel", type=int, default=tf.data.AUTOTUNE, help="num_parallel_calls (default AUTOTUNE)")
    parser.add_argument("--glyph-renders", type=int, default=3)
    parser.add_argument("--glyph-size", type=int, default=32)
    parser.add_argument("--glyphs-only", action="store_true", help="time only the glyph rendering")
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {platform.machine()}, {cores} usable CPU cores (os.cpu_count {os.cpu_count()}), "
          f"load average {os.getloadavg()[0]:.1f}, TensorFlow {tf.__version__}")
    glyph_rendering(args)
    if args.glyphs_only:
        return
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        mean_bytes = write_jpegs(root, args.images, args.classes)
        print(f"wrote {args.images} JPEGs of 500 x 375 in {args.classes} classes "
              f"(mean {mean_bytes / 1024:.0f} KiB) in {time.perf_counter() - start:.1f} s")
        dataset, _ = load_dataset(root)
        parallel = "AUTOTUNE" if args.parallel == tf.data.AUTOTUNE else args.parallel
        print(f"P x K = {args.classes_per_batch} x {args.samples_per_class}, crop {args.image_size}, "
              f"num_parallel_calls={parallel}, {args.batches} batches timed after {args.warmup}")
        setup, rate = images_per_second(dataset, augment.train_transform(args.image_size), args)
        print(f"class_balanced setup (reads every file into memory): {setup:.1f} s")
        print(f"decode + augment + P x K batching: {rate:.0f} images/s, {rate / cores:.0f} per core")


if __name__ == "__main__":
    main()
