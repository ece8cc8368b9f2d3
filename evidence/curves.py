"""Pictures of the evidence: test Recall@1 and MAP@R after each epoch, read from evidence/results/*.json.

One panel per metric and start (random, glyphs) and, for the potential field, per label noise;
one line per method, the mean over seeds with a band of one standard deviation. The
convergence claims (PDDM's "faster convergence", the potential field's noise
robustness) are curves, so the pages show them as curves.

    python evidence/curves.py        # writes docs/images/pddm_curves.png, potential_field_curves.png
"""
import json
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "evidence", "results")
IMAGES = os.path.join(ROOT, "docs", "images")
STARTS = ("random", "glyphs")  # harness.STARTS
METRICS = (("recall@1", "Recall@1"), ("map_at_r", "MAP@R"))  # a row of panels each: from the glyph
# start Recall@1 begins at 94%, so MAP@R shows the movement
COLOURS = {"potential_field": "C0", "proxy_anchor": "C1", "multi_similarity": "C2",
           "triplet": "C1", "triplet_hard": "C2", "pddm": "C0"}  # one colour per method on every panel


def test_section(results, start):
    """The start's test rows with the most epochs: `longer_test` (the chosen settings run to the
    full budget) where a reduced `test` budget was extended, else `test`."""
    return "longer_test" if results.get(start, {}).get("longer_test") else "test"


def curves(results, start, metric="recall@1", keep=lambda entry: True):
    """`{label: (means, stds)}` of `metric` after each epoch, over the seeds of the test entries
    of one start that `keep` accepts, for the settings now chosen on validation (rows of an
    earlier choice stay in the results file, not in the picture)."""
    out = {}
    chosen = set(results.get(start, {}).get("chosen_on_validation", {}).values())
    for name, entry in results.get(start, {}).get(test_section(results, start), {}).items():
        if name.split(", noise")[0] in chosen and keep(entry) and entry.get("runs"):
            per_epoch = np.array([[e[metric] for e in run["epochs"]] for run in entry["runs"]]) * 100
            stds = per_epoch.std(0, ddof=1) if len(per_epoch) > 1 else np.zeros(per_epoch.shape[1])
            out[f"{name.split(', noise')[0]} (n={len(per_epoch)})"] = (per_epoch.mean(0).tolist(), stds.tolist())
    return out


def draw(path, panels, title, columns=2):
    """`panels`: a list of `(panel title, metric label, {label: (means, stds)})`, `columns` to a row."""
    rows = (len(panels) + columns - 1) // columns
    figure = Figure(figsize=(5.6 * columns, 4.0 * rows + 0.4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (panel_title, metric_label, lines) in zip(axes, panels):
        ax.set_title(panel_title, fontsize=10)
        ax.set_xlabel("epoch (0 = untrained)")
        ax.set_ylabel(f"test {metric_label} %")
        ax.grid(alpha=0.3)
        if not lines:
            ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
            ax.tick_params(labelleft=True)
            continue
        for label, (means, stds) in sorted(lines.items()):
            epochs = range(len(means))
            colour = COLOURS.get(label.split(" (")[0])
            ax.plot(epochs, means, marker="o", markersize=3, label=label, color=colour)
            ax.fill_between(epochs, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                            alpha=0.2, color=colour)
        ax.legend(fontsize=7, loc="center right")
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path + ".tmp.png")
    os.replace(path + ".tmp.png", path)
    return path


def load(page):
    path = os.path.join(RESULTS, f"{page}.json")
    return json.load(open(path)) if os.path.exists(path) else {}


def main():
    pddm = load("pddm")
    draw(os.path.join(IMAGES, "pddm_curves.png"),
         [(f"{start} start", label, curves(pddm, start, metric))
          for metric, label in METRICS for start in STARTS],
         "PDDM vs triplets on held-out glyphs: mean ± std over seeds")
    field = load("potential_field")
    draw(os.path.join(IMAGES, "potential_field_curves.png"),
         [(f"{start} start, {int(100 * noise)}% noisy labels", label,
           curves(field, start, metric, lambda entry, noise=noise: entry["label_noise"] == noise))
          for metric, label in METRICS for start in STARTS for noise in (0.0, 0.2)],
         "Potential field vs tuned Proxy Anchor and multi-similarity: mean ± std over seeds", columns=4)


if __name__ == "__main__":
    main()
