"""Each list of valid names has one owner, `keras_dml.names`: the tables that implement the names match it."""
from keras_dml import distributed, names
from keras_dml.data import datasets
from keras_dml.export import layout
from keras_dml.layers import pooling
from keras_dml.models import embedder, pretrained, transformers


def test_every_table_is_keyed_by_the_names_it_implements():
    assert tuple(datasets.DATASET_INFOS) == names.DATASETS == datasets.DATASETS
    assert tuple(embedder.APPLICATIONS) == names.APPLICATION_BACKBONES
    assert tuple(transformers.TRANSFORMERS) == names.TRANSFORMER_BACKBONES
    assert embedder.BACKBONES == names.BACKBONES and embedder.SMALL_BACKBONES == names.SMALL_BACKBONES
    assert tuple(pooling.POOLINGS) == names.POOLINGS
    assert tuple(pretrained.SHIPPED) == names.SHIPPED_WEIGHTS
    assert distributed.STRATEGIES == names.STRATEGIES and layout.FORMATS == names.EXPORT_FORMATS


def test_help_texts_read_the_names(capsys):
    import pytest

    from keras_dml.cli import build_parser

    for command, flag, valid in [("evaluate", "--dataset", names.DATASETS), ("export", "--formats",
                                                                            names.EXPORT_FORMATS)]:
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert all(name in text for name in valid), (command, flag)
    assert names.listed(("a", "b", "c")) == "a, b or c"
