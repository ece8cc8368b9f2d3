"""Every tutorial in examples/ runs end to end in its fast mode (in this process, via runpy)."""
import runpy
import sys
from pathlib import Path

import keras
import pytest

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.py"))
# Examples whose fast-mode results are checked by a test of their own below (run once, not twice).
RESULT_CHECKED = {"potential_field", "label_noise", "pddm", "density", "class_collapse"}

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="examples use TensorFlow data")


def test_there_are_examples():
    names = {p.stem for p in EXAMPLES}
    assert {"quickstart", "potential_field", "custom_folder", "export_and_serve", "class_collapse", "density", "pddm"} <= names


@pytest.mark.parametrize("path", [p for p in EXAMPLES if p.stem not in RESULT_CHECKED], ids=lambda p: p.stem)
def test_example_runs_in_fast_mode(path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(path), "--fast"])
    runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    assert out.strip(), f"{path.name} printed nothing"


def run_fast(name):
    """`main(fast=True)` of examples/<name>.py: what the tutorial measured in its fast mode."""
    path = next(p for p in EXAMPLES if p.stem == name)
    return runpy.run_path(str(path), run_name="example")["main"](fast=True)


def test_potential_field_example_default_radii_learn_from_a_random_start():
    results = run_fast("potential_field")
    untrained = results["untrained"]["recall@1"]
    paper = results["paper radii (0.2, fixed)"]
    default = results["defaults (radii relative to the start)"]
    # The paper's fixed radius from a random start: the embeddings spread, the classes do not form.
    assert paper["median_distance"] > 3 * results["untrained"]["median_distance"]
    assert paper["recall@1"] < untrained + 0.05
    # The defaults scale the radii to the starting spread (about 0.05) and learn at once.
    assert default["radius"] < 0.1 and paper["radius"] == 0.2
    # (fast mode, 2 epochs: about 0.45 against an untrained 0.26; the full run reaches 0.96)
    assert default["recall@1"] > untrained + 0.15
    assert default["recall@1"] > paper["recall@1"] + 0.1


def test_label_noise_example_potential_field_learns_through_noise():
    results = run_fast("label_noise")
    untrained = results[("untrained", "-")]["recall@1"]
    # 20% of the labels wrong, 40 steps: the potential field (defaults) still learns (fast mode: 0.30 -> 0.50).
    assert results[("PotentialFieldLoss", 0.2)]["recall@1"] > untrained + 0.1


def test_pddm_example_triplet_learns_pddm_does_not_here():
    results = run_fast("pddm")
    pddm, triplet = results["curves"]["PDDMLoss"], results["curves"]["TripletLoss"]
    assert pddm[0] == pytest.approx(triplet[0])  # the same untrained embedder
    assert triplet[-1] > triplet[0] + 0.1
    assert pddm[-1] < triplet[-1] - 0.1  # the paper's faster convergence is not reproduced here
    # Re-ranking the top 10 by the trained unit does not rescue it (fast mode: 0.18 -> 0.06).
    assert results["reranked_recall@1"] < pddm[-1] + 0.05


def run_example(name, *argv):
    """The dict `main(argv)` of `examples/<name>.py` returns (the tutorials that take their argv)."""
    return runpy.run_path(str(EXAMPLES_DIR / f"{name}.py"))["main"](list(argv))


def test_density_example_hinge_is_shut_at_the_old_rho_and_opens_as_rho_grows():
    results = run_example("density", "--fast")
    for result in results.values():
        assert result["recall@1"] > result["untrained_recall@1"] + 0.1
        # rho = 0.125 needs a class 8 times tighter than its gap: no batch gets there
        assert result["R@0.125"] == 0.0
        assert result["R@0.5"] > result["R@0.25"] >= 0.0
        assert result["spread"] / result["gap"] > 0.125


def test_class_collapse_example_easy_positives_keep_the_groups_modes_apart():
    results = run_example("class_collapse", "--fast")
    untrained = results["untrained"]
    # Groups of 4 characters: a collapsed group would score about 0.25. In fast mode (25 steps,
    # seed 0) easy positives end at 0.87 and hard ones at 0.77 (untrained 0.64); the 3-seed
    # runs of docs/easy_positives.md show the same order.
    assert results["easy"]["modes"] > results["hard"]["modes"] + 0.03
    assert results["easy"]["modes"] > untrained["modes"]
    assert results["easy"]["recall@1"] > untrained["recall@1"] + 0.1
