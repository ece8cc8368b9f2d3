"""Every tutorial in examples/ runs end to end in its fast mode (in this process, via runpy)."""
import runpy
import sys
from pathlib import Path

import keras
import pytest

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.py"))
# Examples whose fast-mode results are checked by a test of their own below (run once, not twice).
CHECKED = {"density", "class_collapse"}

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="examples use TensorFlow data")


def test_there_are_examples():
    names = {p.stem for p in EXAMPLES}
    assert {"quickstart", "potential_field", "custom_folder", "export_and_serve", "class_collapse", "density", "pddm"} <= names


@pytest.mark.parametrize("path", [p for p in EXAMPLES if p.stem not in CHECKED], ids=lambda p: p.stem)
def test_example_runs_in_fast_mode(path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(path), "--fast"])
    runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    assert out.strip(), f"{path.name} printed nothing"


def run_example(name, *argv):
    """The dict `main(argv)` of `examples/<name>.py` returns."""
    return runpy.run_path(str(EXAMPLES_DIR / f"{name}.py"))["main"](list(argv))


def test_density_example_hinge_is_shut_at_the_old_rho_and_opens_as_rho_grows():
    results = run_example("density", "--fast")
    for result in results.values():
        assert result["recall@1"] > result["untrained_recall@1"] + 0.1
        # rho = 0.125 needs a class 8 times tighter than its gap: no batch gets there
        assert result["R@0.125"] == 0.0
        assert result["R@0.5"] > result["R@0.25"] >= 0.0
        assert result["spread"] / result["gap"] > 0.125


def test_class_collapse_example_easy_positives_keep_more_characters_apart_early_on():
    results = run_example("class_collapse", "--fast")
    easy, hard = results["easy"], results["hard"]
    # after 40 steps hard positives have pulled the characters of a font together more
    assert easy["modes_train"] > hard["modes_train"] + 0.02
    assert easy["recall@1"] > max(hard["recall@1"], results["untrained"]["recall@1"])
