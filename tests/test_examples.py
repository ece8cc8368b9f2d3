"""Every tutorial in examples/ runs end to end in its fast mode (in this process, via runpy)."""
import runpy
import sys
from pathlib import Path

import keras
import pytest

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.py"))

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="examples use TensorFlow data")


def test_there_are_examples():
    names = {p.stem for p in EXAMPLES}
    assert {"quickstart", "potential_field", "custom_folder", "export_and_serve", "class_collapse", "density", "pddm"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_in_fast_mode(path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(path), "--fast"])
    runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    assert out.strip(), f"{path.name} printed nothing"
