import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@pytest.fixture(autouse=True, scope="session")
def glyph_cache_in_tmp(tmp_path_factory):
    """load_glyphs caches its renders in a temporary folder for the session, never in the home."""
    previous = os.environ.get("KERAS_DML_CACHE")
    os.environ["KERAS_DML_CACHE"] = str(tmp_path_factory.mktemp("keras_dml_cache"))
    yield
    if previous is None:
        del os.environ["KERAS_DML_CACHE"]
    else:
        os.environ["KERAS_DML_CACHE"] = previous
