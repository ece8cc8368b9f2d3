#!/usr/bin/env python3
"""keras_dml on a GPU against pytorch-metric-learning, in one call: criteria alone, ResNet-50 and DINOv2 train steps.

    python3 bench/gpu.py --json gpu.json            # a GPU machine: about 6 minutes on an H200
    python3 bench/gpu.py --smoke --json smoke.json  # every part at tiny sizes, on a CPU

It needs JAX and/or PyTorch, Keras and keras-hub; the peer needs pytorch-metric-learning
and torchvision. No TensorFlow. It installs nothing: a backend or peer that is missing
is skipped with a line naming what is missing. docs/benchmarks.md says how to bring the
wheels to a GPU machine. Without a GPU and without `--smoke` it says so and exits 1.

Each backend runs in its own process (Keras fixes the backend per process), with the
peer (pytorch-metric-learning on torch) in a third:

- `losses`: forward + backward of each criterion alone (gradients of the embeddings and
  of the criterion's weights) on `bench.common.loss_batch` (1024 x 512, 64 classes);
- `resnet50`: a full train step of ResNet-50 at 224x224, batch 32 classes x 4, mixed
  bfloat16, Adam: softmax cross-entropy (a Dense head on the embedding) and each of
  triplet (easy positives, semi-hard negatives), potential field, PDDM and density
  (on that triplet); the peer does cross-entropy and the triplet on torchvision's
  ResNet-50 (it has no potential field, PDDM or density loss);
- `dinov2`: DINOv2-S/14 from keras-hub (random weights) at 224x224, the same batch, with
  the triplet.

Timing: every step is read back (the loss as a float, as a training loop that logs it
does), median over `steps` after warm-up. JAX: Keras's own `train_step`, jitted as
`model.fit` jits it; the lower + compile time is reported apart, and peak memory is the
compiled step's own (arguments + outputs + temporaries - aliased buffers). PyTorch runs
eagerly (Keras's default there; `jit_compile=True` would be `torch.compile`): its first
step is the warm-up; peak memory is `torch.cuda.max_memory_allocated` per case.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.common import loss_batch, machine  # noqa: E402

FULL = {"loss_batch": 1024, "loss_dim": 512, "loss_classes": 64, "image_size": 224, "classes_per_batch": 32,
        "samples_per_class": 4, "num_classes": 98, "dim": 512, "steps": 20, "warmup": 3, "keras_backbone": "resnet50",
        "torchvision_backbone": "resnet50", "dinov2": {}, "dinov2_size": 224}
SMOKE = {"loss_batch": 64, "loss_dim": 16, "loss_classes": 8, "image_size": 32, "classes_per_batch": 4,
         "samples_per_class": 2, "num_classes": 10, "dim": 16, "steps": 2, "warmup": 1, "keras_backbone": "mlp",
         "torchvision_backbone": "resnet18",
         "dinov2": {"num_layers": 1, "num_heads": 2, "hidden_dim": 16, "intermediate_dim": 32}, "dinov2_size": 28}
WORKERS = {"pml": 0.15, "jax": 0.55, "torch": 0.30}  # the share of the time budget each may use, in this order
LOSS_CASES = ["triplet_easy_semihard", "contrastive", "multisimilarity", "proxy_anchor", "potential_field", "pddm",
              "density_triplet"]
STEP_CASES = ["cross_entropy", "triplet_easy_semihard", "potential_field", "pddm", "density_triplet"]
PEER_STEP_CASES = ["cross_entropy", "triplet_easy_semihard"]


# --- the orchestrating process: no backend imported here ---------------------------------------------------------


def gpu_name():
    """The GPU's name from nvidia-smi, or None (imports no framework, so no process holds the device)."""
    if not shutil.which("nvidia-smi"):
        return None
    done = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                          capture_output=True, text=True)
    lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    return lines[0] if done.returncode == 0 and lines else None


def run_worker(name, sizes, smoke, deadline, peer_python):
    """One worker process's results (written after every case, so a killed worker keeps what it measured)."""
    with tempfile.TemporaryDirectory(prefix="keras_dml_gpu_") as scratch:
        out = Path(scratch) / "result.json"
        python = peer_python if name == "pml" else sys.executable
        command = [python, os.path.abspath(__file__), "--worker", name, "--out", str(out),
                   "--sizes", json.dumps(sizes), "--deadline", str(deadline)] + (["--smoke"] if smoke else [])
        env = {**os.environ, "KERAS_BACKEND": name if name != "pml" else "torch", "TF_CPP_MIN_LOG_LEVEL": "3"}
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True,
                                  timeout=max(deadline - time.time(), 1) + 30)
            failure = None if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()[-1500:]}"
        except subprocess.TimeoutExpired:
            failure = "killed at the time budget"
        result = json.loads(out.read_text()) if out.exists() else {"cases": {}, "skipped": []}
    if failure:
        result["skipped"].append(f"{name}: {failure}")
    return result


def table(results, sizes):
    """The results as Markdown tables, one per part."""
    jax, torch, pml = (results.get(name, {}).get("cases", {}) for name in ("jax", "torch", "pml"))

    def get(cases, key, field, fmt):
        value = cases.get(key, {}).get(field)
        if value is not None and field == "peak_bytes":
            value /= 2**30
        return "-" if value is None else format(value, fmt)

    lines = [f"criterion alone, forward + backward, batch {sizes['loss_batch']} x {sizes['loss_dim']} (ms; "
             "ratio = faster keras_dml backend / pytorch-metric-learning)", "",
             "| criterion | keras_dml JAX | keras_dml PyTorch | pytorch-metric-learning | ratio |",
             "|---|---|---|---|---|"]
    for case in LOSS_CASES:
        key = f"losses/{case}"
        ours = [c[key]["ms"] for c in (jax, torch) if c.get(key, {}).get("ms") is not None]
        peer = pml.get(key, {}).get("ms")
        ratio = f"{min(ours) / peer:.2f}" if ours and peer else "-"
        lines.append(f"| {case} | {get(jax, key, 'ms', '.2f')} | {get(torch, key, 'ms', '.2f')} | "
                     f"{get(pml, key, 'ms', '.2f')} | {ratio} |")
    batch = sizes["classes_per_batch"] * sizes["samples_per_class"]
    for part, cases, title in (("resnet50", STEP_CASES, f"{sizes['keras_backbone']} train step"),
                               ("dinov2", ["triplet_easy_semihard"], "DINOv2-S/14 train step")):
        lines += ["", f"{title}, {sizes['image_size'] if part == 'resnet50' else sizes['dinov2_size']}px, batch "
                      f"{batch}, mixed bfloat16 (images/s; step vs cross-entropy; compile s; peak GiB)", "",
                  "| criterion | JAX img/s | vs CE | compile s | peak GiB | PyTorch img/s | vs CE | peak GiB | "
                  "PML + torchvision img/s | peak GiB |", "|---|---|---|---|---|---|---|---|---|---|"]
        for case in cases:
            key = f"{part}/{case}"
            row = [case]
            for cases_of in (jax, torch):
                row.append(get(cases_of, key, "images_per_s", ".1f"))
                base = cases_of.get("resnet50/cross_entropy", {}).get("images_per_s")
                rate = cases_of.get(key, {}).get("images_per_s")
                row.append(f"{base / rate - 1:+.1%}" if part == "resnet50" and base and rate else "-")
                if cases_of is jax:
                    row.append(get(jax, key, "compile_s", ".1f"))
                row.append(get(cases_of, key, "peak_bytes", ".2f"))
            row += [get(pml, key, "images_per_s", ".1f"), get(pml, key, "peak_bytes", ".2f")]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="every part at tiny sizes, on the CPU")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--backends", nargs="*", choices=list(WORKERS), default=list(WORKERS),
                        help="which processes to run (pml is the peer)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the whole run (default 330 on a GPU, 1800 for --smoke); cases that would "
                             "not fit are skipped, with a line")
    parser.add_argument("--peer-python", default=sys.executable,
                        help="the interpreter with torch and pytorch-metric-learning (default: this one)")
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, json.loads(args.sizes), args.smoke, args.deadline, Path(args.out))

    gpu = None if args.smoke else gpu_name()
    if not args.smoke and gpu is None:
        print("bench/gpu.py: no GPU found (nvidia-smi lists none). Run it on a GPU machine, or pass --smoke for "
              "the tiny CPU run that checks the script.", file=sys.stderr)
        return 1
    sizes = SMOKE if args.smoke else FULL
    budget = args.budget or (1800.0 if args.smoke else 330.0)
    start = time.time()
    print(f"machine: {machine()}; GPU: {gpu or 'none (smoke run on the CPU)'}", flush=True)
    report = {"machine": machine(), "gpu": gpu, "smoke": args.smoke, "sizes": sizes, "budget_s": budget,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "results": {}, "skipped": []}
    share = 0.0
    for name in WORKERS:
        share += WORKERS[name]
        if name not in args.backends:
            continue
        began = time.time()
        result = run_worker(name, sizes, args.smoke, start + share * budget, args.peer_python)
        report["results"][name] = result
        report["skipped"] += result["skipped"]
        print(f"{name}: {len(result['cases'])} cases in {time.time() - began:.0f} s", flush=True)
        for line in result["skipped"]:
            print(f"  skipped: {line}", flush=True)
    report["total_s"] = round(time.time() - start, 1)
    report["table"] = table(report["results"], sizes)
    print("\n" + report["table"])
    print(f"\ntotal {report['total_s']} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0


# --- the worker processes ---------------------------------------------------------------------------------------


class Recorder:
    """Collects a worker's cases and skips, rewritten to `out` after each; skips a case that would pass the deadline."""

    def __init__(self, out, deadline):
        self.out, self.deadline, self.cases, self.skipped, self.longest = out, deadline, {}, [], 0.0
        self.write()

    def write(self):
        partial = self.out.with_suffix(".partial")
        partial.write_text(json.dumps({"cases": self.cases, "skipped": self.skipped}))
        os.replace(partial, self.out)

    def skip(self, line):
        self.skipped.append(line)
        self.write()

    def run(self, key, measure):
        if time.time() + self.longest > self.deadline:
            return self.skip(f"{key}: not started, the time budget would be passed")
        began = time.time()
        try:
            self.cases[key] = measure()
        except Exception as error:  # one case failing must not lose the others
            self.skipped.append(f"{key}: failed, {type(error).__name__}: {str(error)[:300]}")
        self.longest = max(self.longest, time.time() - began)
        self.write()


def worker(name, sizes, smoke, deadline, out):
    record = Recorder(out, deadline)
    try:
        device = (pml_device if name == "pml" else keras_device)(name, smoke)
    except ImportError as error:
        record.skip(f"{name}: not installed here ({error})")
        return 0
    if device is None:
        record.skip(f"{name}: sees no GPU")
        return 0
    if name == "pml":
        pml_worker(sizes, record, device)
    else:
        keras_worker(name, sizes, record)
    return 0


def keras_device(backend, smoke):
    """The device Keras uses on `backend`, or None when a GPU run finds none."""
    import keras  # noqa: F401 (the ImportError, if any, names Keras)

    if backend == "jax":
        import jax

        platform = jax.devices()[0].platform
        return platform if smoke or platform == "gpu" else None
    import torch

    return "cpu" if smoke else ("cuda" if torch.cuda.is_available() else None)


def pml_device(_, smoke):
    import pytorch_metric_learning  # noqa: F401
    import torch

    return "cpu" if smoke else ("cuda" if torch.cuda.is_available() else None)


def median_step_seconds(step, steps, warmup):
    """`(first warm-up step time, median step time)`, every step read back by `step` itself."""
    import statistics

    began = time.perf_counter()
    step()
    first = time.perf_counter() - began
    for _ in range(warmup - 1):
        step()
    times = []
    for _ in range(steps):
        began = time.perf_counter()
        step()
        times.append(time.perf_counter() - began)
    return first, statistics.median(times)


def keras_criteria(num_classes, dim):
    from keras_dml import losses

    return {
        "triplet_easy_semihard": lambda: losses.TripletLoss(margin=0.2, positive="easy", negative="semihard"),
        "contrastive": lambda: losses.ContrastiveLoss(pos_margin=0.0, neg_margin=0.5),
        "multisimilarity": lambda: losses.MultiSimilarityLoss(),
        "proxy_anchor": lambda: losses.ProxyAnchorLoss(num_classes, dim),
        "potential_field": lambda: losses.PotentialFieldLoss(num_classes, dim),
        "pddm": lambda: losses.PDDMLoss(dim),
        "density_triplet": lambda: losses.DensityAdaptive(
            losses.TripletLoss(margin=0.2, positive="easy", negative="semihard")),
    }


def keras_worker(backend, sizes, record):
    import keras
    import numpy as np

    x, y = loss_batch(sizes["loss_batch"], sizes["loss_dim"], sizes["loss_classes"])
    criteria = keras_criteria(sizes["loss_classes"], sizes["loss_dim"])
    for case in LOSS_CASES:
        record.run(f"losses/{case}", lambda: keras_loss_case(backend, criteria[case](), x, y, sizes))

    keras.config.set_dtype_policy("mixed_bfloat16")
    rng = np.random.default_rng(0)
    batch = sizes["classes_per_batch"] * sizes["samples_per_class"]
    labels = np.repeat(rng.choice(sizes["num_classes"], sizes["classes_per_batch"], replace=False),
                       sizes["samples_per_class"]).astype("int32")
    images = rng.uniform(0, 255, size=(batch, sizes["image_size"], sizes["image_size"], 3)).astype("float32")
    criteria = keras_criteria(sizes["num_classes"], sizes["dim"])
    for case in STEP_CASES:
        record.run(f"resnet50/{case}", lambda: keras_step_case(
            backend, lambda: step_model(sizes["keras_backbone"], sizes, case, criteria), images, labels, sizes))
    try:
        import keras_hub  # noqa: F401
    except ImportError as error:
        return record.skip(f"dinov2: keras-hub is not importable here ({error})")
    size = sizes["dinov2_size"]
    images = rng.uniform(0, 255, size=(batch, size, size, 3)).astype("float32")
    record.run("dinov2/triplet_easy_semihard", lambda: keras_step_case(
        backend, lambda: step_model("dinov2_small", {**sizes, "image_size": size}, "triplet_easy_semihard", criteria,
                                    backbone_options=sizes["dinov2"] or None), images, labels, sizes))


def step_model(backbone, sizes, case, criteria, backbone_options=None):
    """A compiled model whose train step is the embedder with criterion `case` (or a cross-entropy head)."""
    import keras

    from keras_dml.models import MetricModel, build_embedder

    keras.utils.set_random_seed(0)
    shape = (sizes["image_size"], sizes["image_size"], 3)
    embedder = build_embedder(backbone, sizes["dim"], input_shape=shape, freeze_batchnorm=False,
                              backbone_options=backbone_options)
    optimizer = keras.optimizers.Adam(1e-4)
    if case == "cross_entropy":
        logits = keras.layers.Dense(sizes["num_classes"], dtype="float32")(embedder.output)
        model = keras.Model(embedder.input, logits)
        model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    else:
        model = MetricModel(embedder, criteria[case]())
        model.build((None, *shape))
        model.compile(optimizer=optimizer)
    return model


def keras_loss_case(backend, criterion, x, y, sizes):
    """Forward + backward of `criterion` alone: gradients of the embeddings and of its weights."""
    import keras

    if isinstance(criterion, keras.layers.Layer) and not criterion.built:
        criterion.build(y.shape, x.shape)
    weights = list(getattr(criterion, "trainable_variables", []))
    if backend == "jax":
        import jax

        labels, embeddings = jax.device_put(y), jax.device_put(x)

        def value(values, e):
            with keras.StatelessScope(state_mapping=list(zip(weights, values))):
                return criterion(labels, e)

        began = time.perf_counter()
        compiled = jax.jit(jax.value_and_grad(value, argnums=(0, 1))).lower([w.value for w in weights],
                                                                          embeddings).compile()
        compile_s = time.perf_counter() - began
        values = [w.value for w in weights]
        _, ms = median_step_seconds(lambda: float(compiled(values, embeddings)[0]), sizes["steps"], sizes["warmup"])
        return {"ms": round(1000 * ms, 3), "compile_s": round(compile_s, 2), "peak_bytes": jax_peak(compiled)}
    import torch

    device = keras_dml_torch_device()
    labels = torch.as_tensor(y, device=device)
    embeddings = torch.tensor(x, device=device, requires_grad=True)

    def step():
        value = criterion(labels, embeddings)
        value.backward()
        embeddings.grad = None
        for w in weights:
            w.value.grad = None
        return float(value)

    reset_torch_peak(device)
    first, ms = median_step_seconds(step, sizes["steps"], sizes["warmup"])
    return {"ms": round(1000 * ms, 3), "first_step_s": round(first, 2), "peak_bytes": torch_peak(device)}


def keras_step_case(backend, build, images, labels, sizes):
    """Images per second of `build()`'s train step on one device-resident batch."""
    import keras

    model = build()
    batch = len(labels)
    if backend == "jax":
        import jax

        data = (jax.device_put(images), jax.device_put(labels))
        model._symbolic_build(data_batch=data)  # what train_on_batch and fit do before their first step
        model.optimizer.build(model.trainable_variables)
        state = tuple([v.value for v in group] for group in (
            model.trainable_variables, model.non_trainable_variables, model.optimizer.variables,
            model.metrics_variables))
        began = time.perf_counter()
        compiled = jax.jit(model.train_step, donate_argnums=0).lower(state, data).compile()  # as fit jits it
        compile_s = time.perf_counter() - began
        peak = jax_peak(compiled)

        def step():
            nonlocal state
            logs, state = compiled(state, data)
            return float(logs["loss"])

        first, seconds = median_step_seconds(step, sizes["steps"], sizes["warmup"])
        return {"images_per_s": round(batch / seconds, 1), "step_ms": round(1000 * seconds, 2),
                "compile_s": round(compile_s, 2), "first_step_s": round(first, 3), "peak_bytes": peak}
    device = keras_dml_torch_device()
    x, y = keras.ops.convert_to_tensor(images), keras.ops.convert_to_tensor(labels)
    reset_torch_peak(device)
    first, seconds = median_step_seconds(lambda: float(model.train_on_batch(x, y, return_dict=True)["loss"]),
                                         sizes["steps"], sizes["warmup"])
    return {"images_per_s": round(batch / seconds, 1), "step_ms": round(1000 * seconds, 2),
            "first_step_s": round(first, 2), "peak_bytes": torch_peak(device)}


def keras_dml_torch_device():
    """The device Keras puts its tensors on (cuda when there is one)."""
    import keras

    return str(keras.ops.convert_to_tensor(0.0).device)


def jax_peak(compiled):
    """Bytes the compiled step needs on the device, by XLA's memory analysis (None where it has none)."""
    analysis = compiled.memory_analysis()
    if analysis is None:
        return None
    return int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes + analysis.temp_size_in_bytes
               - analysis.alias_size_in_bytes)


def reset_torch_peak(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def torch_peak(device):
    import torch

    return torch.cuda.max_memory_allocated() if str(device).startswith("cuda") else None


def pml_worker(sizes, record, device):
    import numpy as np
    import torch
    from pytorch_metric_learning import losses, miners

    def triplet():
        loss, miner = losses.TripletMarginLoss(margin=0.2), miners.BatchEasyHardMiner(pos_strategy="easy",
                                                                                      neg_strategy="semihard")
        return lambda e, y: loss(e, y, miner(e, y))

    def multisimilarity():
        loss, miner = losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5), miners.MultiSimilarityMiner(0.1)
        return lambda e, y: loss(e, y, miner(e, y))

    x, y = loss_batch(sizes["loss_batch"], sizes["loss_dim"], sizes["loss_classes"])
    cases = {"triplet_easy_semihard": triplet, "multisimilarity": multisimilarity,
             "contrastive": lambda: losses.ContrastiveLoss(pos_margin=0.0, neg_margin=0.5),
             "proxy_anchor": lambda: losses.ProxyAnchorLoss(sizes["loss_classes"], sizes["loss_dim"]).to(device)}
    for case in LOSS_CASES:
        if case not in cases:
            record.skip(f"pml losses/{case}: pytorch-metric-learning has no such loss")
            continue
        record.run(f"losses/{case}", lambda: pml_loss_case(cases[case](), x, y, sizes, device))
    try:
        import torchvision
    except ImportError as error:
        return record.skip(f"pml resnet50: torchvision is not importable here ({error})")
    rng = np.random.default_rng(0)
    batch = sizes["classes_per_batch"] * sizes["samples_per_class"]
    labels = np.repeat(rng.choice(sizes["num_classes"], sizes["classes_per_batch"], replace=False),
                       sizes["samples_per_class"]).astype("int64")
    images = rng.standard_normal((batch, 3, sizes["image_size"], sizes["image_size"])).astype("float32")
    for case in PEER_STEP_CASES:
        record.run(f"resnet50/{case}", lambda: pml_step_case(torchvision, case, triplet, images, labels, sizes,
                                                             device))


def pml_loss_case(loss, x, y, sizes, device):
    import torch

    labels = torch.as_tensor(y.astype("int64"), device=device)
    embeddings = torch.tensor(x, device=device, requires_grad=True)
    parameters = list(loss.parameters()) if isinstance(loss, torch.nn.Module) else []

    def step():
        value = loss(embeddings, labels)
        value.backward()
        embeddings.grad = None
        for p in parameters:
            p.grad = None
        return float(value)

    reset_torch_peak(device)
    _, ms = median_step_seconds(step, sizes["steps"], sizes["warmup"])
    return {"ms": round(1000 * ms, 3), "peak_bytes": torch_peak(device)}


def pml_step_case(torchvision, case, triplet, images, labels, sizes, device):
    """The same train step in PyTorch: torchvision's network -> Linear -> L2 norm, bfloat16 autocast, Adam."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    net = getattr(torchvision.models, sizes["torchvision_backbone"])(weights=None)
    net.fc = torch.nn.Linear(net.fc.in_features, sizes["dim"])
    head = torch.nn.Linear(sizes["dim"], sizes["num_classes"])
    net, head = net.to(device, memory_format=torch.channels_last), head.to(device)
    criterion = triplet() if case != "cross_entropy" else lambda e, y: F.cross_entropy(head(e), y)
    optimizer = torch.optim.Adam(list(net.parameters()) + list(head.parameters()), lr=1e-4)
    x = torch.as_tensor(images, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.as_tensor(labels, device=device)
    autocast = torch.autocast(device_type="cuda" if device == "cuda" else "cpu", dtype=torch.bfloat16)

    def step():
        with autocast:
            embeddings = F.normalize(net(x).float(), dim=1)
        loss = criterion(embeddings, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss)

    reset_torch_peak(device)
    first, seconds = median_step_seconds(step, sizes["steps"], sizes["warmup"])
    return {"images_per_s": round(len(labels) / seconds, 1), "step_ms": round(1000 * seconds, 2),
            "first_step_s": round(first, 2), "peak_bytes": torch_peak(device)}


if __name__ == "__main__":
    sys.exit(main())
