"""The project stands alone: no file points at the shared folder outside it (the spec is docs/methods.md)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ["README.md", "docs", "keras_dml", "examples", "bench", "export", "tests"]
OUTSIDE = "../" + "shared"  # spelled in two parts so this file does not match itself


def test_no_file_mentions_the_shared_folder():
    files = []
    for entry in CHECKED:
        path = ROOT / entry
        files += [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
    readable = [p for p in files if p.suffix in {".md", ".py", ".txt", ".toml", ".cfg", ".json", ".yaml", ".yml", ".sh"}]
    assert any(p.name == "methods.md" for p in readable)  # the walk really reached docs/
    offenders = [str(p.relative_to(ROOT)) for p in readable if OUTSIDE in p.read_text(errors="replace")]
    assert not offenders, f"{OUTSIDE} is mentioned in {offenders}"
