#!/usr/bin/env python3
"""The classification-style criteria beside pytorch-metric-learning 2.9: value, gradients and time.

ArcFace, CosFace, SubCenterArcFace, NormalizedSoftmax, SoftTriple and ProxyNCA, each at
PML's defaults and at one other setting, on the same embeddings, labels and class
weights (PML's `W` of shape `(D, C * K)` is keras_dml's `proxies` `(C, K, D)` transposed):

- parity: the loss and its gradients with respect to the embeddings and the class
  weights, float32 on both sides; `max |ours - pml| / max |pml|` must be <= 1e-4;
- time (`--time`): forward + backward (both gradients) at batch 1024, 512-d, 1000
  classes, keras_dml under XLA and PML eagerly, median of `--repeats` after warm-up,
  the two sides in turn, `--rounds` times, with the load average beside each figure
  (`--threads 1` pins both to one thread, steadier on a busy machine).

    python bench/parity_proxy.py --pml-python /path/to/peer-pml/bin/python [--time]

The peer's half runs in its own venv (`bench/peers.py`'s header) with `--peer`: it
imports only NumPy, torch and PML, never keras_dml.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from bench.common import machine, median_seconds  # noqa: E402

TOLERANCE = 1e-4
# name -> (keras_dml class, its kwargs, PML class, its kwargs, weights per class).
# ArcFace's margin is in radians here and in degrees in PML.
CASES = {
    "arcface/pml_defaults": ("ArcFaceLoss", {"margin": 0.49916416, "scale": 64.0}, "ArcFaceLoss", {}, 1),
    "arcface/m100deg_s16": ("ArcFaceLoss", {"margin": 1.74532925, "scale": 16.0},  # past pi - m: the fallback
                            "ArcFaceLoss", {"margin": 100.0, "scale": 16}, 1),
    "cosface/pml_defaults": ("CosFaceLoss", {"margin": 0.35, "scale": 64.0}, "CosFaceLoss", {}, 1),
    "cosface/m0.2_s30": ("CosFaceLoss", {"margin": 0.2, "scale": 30.0}, "CosFaceLoss", {"margin": 0.2, "scale": 30}, 1),
    "subcenter_arcface/pml_defaults": ("SubCenterArcFaceLoss", {"margin": 0.49916416, "scale": 64.0, "sub_centers": 3},
                                       "SubCenterArcFaceLoss", {}, 3),
    "subcenter_arcface/m20deg_s32_k2": ("SubCenterArcFaceLoss", {"margin": 0.34906585, "scale": 32.0, "sub_centers": 2},
                                        "SubCenterArcFaceLoss", {"margin": 20.0, "scale": 32, "sub_centers": 2}, 2),
    "normalized_softmax/pml_defaults": ("NormalizedSoftmaxLoss", {"temperature": 0.05}, "NormalizedSoftmaxLoss", {}, 1),
    "normalized_softmax/t0.5": ("NormalizedSoftmaxLoss", {"temperature": 0.5},
                                "NormalizedSoftmaxLoss", {"temperature": 0.5}, 1),
    "soft_triple/pml_defaults": ("SoftTripleLoss", {"centers_per_class": 10, "la": 20.0, "gamma": 0.1, "margin": 0.01},
                                 "SoftTripleLoss", {}, 10),
    "soft_triple/k4_la10_g0.5_m0.1": ("SoftTripleLoss", {"centers_per_class": 4, "la": 10.0, "gamma": 0.5, "margin": 0.1},
                                      "SoftTripleLoss", {"centers_per_class": 4, "la": 10, "gamma": 0.5, "margin": 0.1}, 4),
    "proxy_nca/pml_defaults": ("ProxyNCALoss", {"scale": 1.0, "distance": "squared_euclidean"}, "ProxyNCALoss", {}, 1),
    "proxy_nca/cosine_s9": ("ProxyNCALoss", {"scale": 9.0, "distance": "cosine"},
                            "ProxyNCALoss", {"softmax_scale": 9, "distance": "cosine"}, 1),
}


def inputs(name, n, dim, classes, seed=0):
    """Embeddings `(n, dim)`, labels `(n,)` and class weights `(classes, K, dim)` for one case."""
    import numpy as np

    per_class = CASES[name][4]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype("float32")
    y = rng.integers(0, classes, size=n).astype("int64")
    w = rng.standard_normal((classes, per_class, dim)).astype("float32")
    return x, y, w


def pml_loss(name, classes, dim):
    """The PML criterion of case `name`; its weight tensor and how to set it from `(C, K, D)` weights."""
    import torch
    from pytorch_metric_learning import distances, losses

    _, _, cls, kwargs, per_class = CASES[name]
    kwargs = dict(kwargs)
    if kwargs.get("distance") == "cosine":
        kwargs["distance"] = distances.CosineSimilarity()
    loss = getattr(losses, cls)(num_classes=classes, embedding_size=dim, **kwargs)
    weight = loss.proxies if cls == "ProxyNCALoss" else (loss.fc if cls == "SoftTripleLoss" else loss.W)

    def set_weights(w):  # ours (C, K, D); PML's W / fc is (D, C * K), ProxyNCA's proxies (C, D)
        flat = torch.from_numpy(w.reshape(classes * per_class, dim))
        weight.data = flat.clone() if cls == "ProxyNCALoss" else flat.T.contiguous()

    def weight_grad():  # back in keras_dml's layout
        grad = weight.grad if cls == "ProxyNCALoss" else weight.grad.T
        return grad.reshape(classes, per_class, dim).numpy()

    return loss, weight, set_weights, weight_grad


def peer(job):
    """The PML half: value and gradients for the parity cases, or times."""
    import torch

    torch.manual_seed(0)
    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    result = {"peer": f"pytorch-metric-learning (torch {torch.__version__})", "threads": torch.get_num_threads()}
    for name in job["cases"]:
        n, dim, classes = job["n"], job["dim"], job["classes"]
        x, y, w = inputs(name, n, dim, classes)
        loss, weight, set_weights, weight_grad = pml_loss(name, classes, dim)
        set_weights(w)
        embeddings, labels = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(y)

        def step():
            embeddings.grad, weight.grad = None, None
            value = loss(embeddings, labels)
            value.backward()
            return value

        if job["mode"] == "parity":
            value = step()
            result[name] = {"value": float(value.detach()), "grad_x": embeddings.grad.numpy().tolist(),
                            "grad_w": weight_grad().tolist()}
        else:
            result[name] = {"ms": 1000 * median_seconds(step, job["repeats"]), "load": os.getloadavg()[0]}
    return result


def run_pml(pml_python, job):
    with tempfile.TemporaryDirectory() as tmp:
        job_path, out_path = os.path.join(tmp, "job.json"), os.path.join(tmp, "out.json")
        with open(job_path, "w") as f:
            json.dump(job, f)
        subprocess.run([pml_python, os.path.abspath(__file__), "--peer", job_path, out_path], check=True)
        with open(out_path) as f:
            return json.load(f)


def ours(name, classes, dim):
    import keras_dml

    cls, kwargs, _, _, _ = CASES[name]
    return getattr(keras_dml.losses, cls)(num_classes=classes, embedding_dim=dim, **kwargs)


def our_step(name, classes, dim, w, jit):
    """`step(x, y) -> (value, d/dx, d/dw)` of our criterion with weights `w`, `tf.function`-compiled."""
    import tensorflow as tf

    loss = ours(name, classes, dim)
    loss.proxies.assign(w.reshape(loss.proxies.shape))

    @tf.function(jit_compile=jit)
    def step(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = loss(y, x)
        grad_x, grad_w = tape.gradient(value, [x, loss.proxies])
        return value, grad_x, grad_w

    return step


def parity(pml_python, n=128, dim=64, classes=20):
    import numpy as np
    import tensorflow as tf

    theirs = run_pml(pml_python, {"mode": "parity", "cases": list(CASES), "n": n, "dim": dim, "classes": classes})
    rows = {}
    for name in CASES:
        x, y, w = inputs(name, n, dim, classes)
        value, grad_x, grad_w = our_step(name, classes, dim, w, jit=True)(tf.constant(x), tf.constant(y.astype("int32")))
        peer_case = theirs[name]

        def gap(mine, peer_value):
            peer_value = np.asarray(peer_value, "float64")
            return float(np.max(np.abs(np.asarray(mine, "float64").reshape(peer_value.shape) - peer_value))
                         / max(np.max(np.abs(peer_value)), 1e-30))

        rows[name] = {"ours": float(value), "pml": peer_case["value"], "value_gap": gap(value, peer_case["value"]),
                      "grad_x_gap": gap(grad_x, peer_case["grad_x"]), "grad_w_gap": gap(grad_w, peer_case["grad_w"])}
        rows[name]["ok"] = all(rows[name][k] <= TOLERANCE for k in ("value_gap", "grad_x_gap", "grad_w_gap"))
    print(f"parity: batch {n}, {dim}-d, {classes} classes, float32, relative to max |pml| (tolerance {TOLERANCE:g})")
    print(f"{'case':<36}{'keras_dml':>12}{'pml':>12}{'value':>10}{'d/dx':>10}{'d/dw':>10}  ok")
    for name, r in rows.items():
        print(f"{name:<36}{r['ours']:>12.6f}{r['pml']:>12.6f}{r['value_gap']:>10.1e}{r['grad_x_gap']:>10.1e}"
              f"{r['grad_w_gap']:>10.1e}  {'yes' if r['ok'] else 'NO'}")
    return rows


def timing(pml_python, repeats, rounds, threads, n=1024, dim=512, classes=1000):
    import tensorflow as tf

    cases = [name for name in CASES if name.endswith("pml_defaults")]
    print(f"\ntime: forward + backward (embeddings and weights), batch {n}, {dim}-d, {classes} classes, "
          f"PML defaults; median of {repeats}; keras_dml XLA (TF {tf.__version__}) then PML, {rounds} rounds, "
          f"{threads or 'default'} threads")
    print(f"{'case':<36}{'round':>6}{'keras_dml ms':>14}{'load':>6}{'pml ms':>10}{'load':>6}{'ratio':>8}")
    results = []
    for round_ in range(rounds):
        mine = {}
        for name in cases:
            x, y, w = inputs(name, n, dim, classes)
            step = our_step(name, classes, dim, w, jit=True)
            x, y = tf.constant(x), tf.constant(y.astype("int32"))
            mine[name] = (1000 * median_seconds(lambda: [t.numpy() for t in step(x, y)], repeats), os.getloadavg()[0])
        theirs = run_pml(pml_python, {"mode": "time", "cases": cases, "n": n, "dim": dim, "classes": classes,
                                      "repeats": repeats, "threads": threads})
        for name in cases:
            ratio = mine[name][0] / theirs[name]["ms"]
            results.append({"case": name, "round": round_, "keras_dml_ms": mine[name][0], "keras_dml_load": mine[name][1],
                            "pml_ms": theirs[name]["ms"], "pml_load": theirs[name]["load"], "ratio": ratio})
            print(f"{name:<36}{round_:>6}{mine[name][0]:>14.1f}{mine[name][1]:>6.1f}{theirs[name]['ms']:>10.1f}"
                  f"{theirs[name]['load']:>6.1f}{ratio:>8.2f}")
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pml-python", help="interpreter of a venv with pytorch-metric-learning 2.9")
    parser.add_argument("--time", action="store_true", help="also time both at batch 1024, 512-d")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, help="CPU threads for both sides (default: each library's own)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--peer", nargs=2, metavar=("JOB", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        with open(args.peer[0]) as f:
            job = json.load(f)
        with open(args.peer[1], "w") as f:
            json.dump(peer(job), f)
        return
    if not args.pml_python:
        parser.error("--pml-python is required")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    print(f"machine: {machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    result = {"machine": machine(), "parity": parity(args.pml_python)}
    if args.time:
        result["time"] = timing(args.pml_python, args.repeats, args.rounds, args.threads)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    if not all(row["ok"] for row in result["parity"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
