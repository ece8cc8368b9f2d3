"""Wall time and images per second of the pretraining recipe `glyphs-pretrain`, so its weights can be rebuilt knowingly.

Runs `keras_dml.training.pretrain.pretrain` into a temporary folder (never the
package's weights), for the recipe's epochs or fewer, and prints the rendering time,
the training rate and the time the full recipe takes at that rate, beside the machine
and its load (a shared machine's rate varies with the load; compare runs side by side).

    python bench/pretrain.py                    # 1 epoch of each backbone, then the full-recipe estimate
    python bench/pretrain.py --epochs 6 --backbones small_resnet
"""
import argparse
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout, as the other benchmarks

from keras_dml.training.pretrain import pretrain  # noqa: E402
from keras_dml.training.recipes import PRETRAINING  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--backbones", nargs="*", default=["small_resnet", "small_cnn"])
    args = parser.parse_args()
    recipe = PRETRAINING["glyphs-pretrain"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {platform.machine()}, {cores} usable CPU cores, load average {os.getloadavg()[0]:.1f}")
    for backbone in args.backbones:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            card = pretrain({"epochs": args.epochs, "backbone": backbone}, out, verbose=0)
            wall = time.perf_counter() - start
        full = recipe["epochs"] * card["num_images"] / card["images_per_second"]
        print(f"{backbone}: {card['num_images']} images of {card['num_characters']} characters, "
              f"{args.epochs} epoch(s) in {card['fit_seconds']:.0f} s ({card['images_per_second']:.0f} images/s), "
              f"data {card['data_seconds']:.0f} s, all {wall:.0f} s; the recipe's {recipe['epochs']} epochs "
              f"take about {full / 60:.1f} min at this rate; train accuracy {card['train_accuracy']:.3f}, "
              f"load average {card['load_average']['start'][0]:.1f} -> {card['load_average']['end'][0]:.1f}")


if __name__ == "__main__":
    main()
