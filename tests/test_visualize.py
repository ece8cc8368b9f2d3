"""keras_dml.visualize: PNGs of the expected pixel size, projector files, no display."""
import struct

import numpy as np
import pytest

from keras_dml import visualize


def png_size(path):
    """`(width, height)` from a PNG's signature and IHDR chunk."""
    with open(path, "rb") as f:
        header = f.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


def small_set(n_per_class=8, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    embeddings = (3.0 * np.eye(classes, 6)[labels] + rng.normal(size=(len(labels), 6))).astype("float32")
    images = rng.random((len(labels), 8, 8)).astype("float32")
    return images, labels, embeddings


@pytest.mark.parametrize("channels", [None, 3])
def test_retrieval_grid_png(tmp_path, channels):
    images, labels, embeddings = small_set()
    if channels:
        images = np.repeat(images[..., None], channels, axis=-1)
    path = visualize.retrieval_grid(tmp_path / "grid.png", images, labels, embeddings, num_queries=3,
                                    k=4, cell_pixels=40)
    assert png_size(path) == (5 * 40, 3 * 40)


def test_retrieval_grid_frames_right_and_wrong_results(tmp_path):
    images, labels, embeddings = small_set()
    query = 0
    wrong_label = labels.copy()
    wrong_label[labels == labels[query]] = 99  # only the query keeps its class: all results wrong
    wrong_label[query] = labels[query]
    from matplotlib.image import imread

    for name, lab, color in (("right", labels, visualize.RIGHT), ("wrong", wrong_label, visualize.WRONG)):
        path = visualize.retrieval_grid(tmp_path / f"{name}.png", images, lab, embeddings, k=1,
                                        query_indices=[query], cell_pixels=48)
        pixel = imread(path)[24, 48 + 3, :3]  # left frame of the result cell (x = 48..95)
        assert np.allclose(pixel, np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)]) / 255, atol=0.02)


def test_embedding_map_png(tmp_path):
    _, labels, embeddings = small_set()
    for method in ("tsne", "pca"):
        path = visualize.embedding_map(tmp_path / f"{method}.png", embeddings, labels, method=method,
                                       width=320, height=240)
        assert png_size(path) == (320, 240)
    with pytest.raises(ValueError, match="method"):
        visualize.project_2d(embeddings, method="mds")


def test_projector_files(tmp_path):
    images, labels, embeddings = small_set()
    written = visualize.write_projector(tmp_path / "proj", embeddings, labels, images, thumbnail_pixels=16)
    names = sorted(p.name if hasattr(p, "name") else p.split("/")[-1] for p in map(str, written))
    assert names == ["embeddings.tsv", "metadata.tsv", "projector_config.pbtxt", "sprite.png"]
    np.testing.assert_allclose(np.loadtxt(tmp_path / "proj" / "embeddings.tsv"), embeddings, rtol=1e-5)
    assert (tmp_path / "proj" / "metadata.tsv").read_text().split() == [str(v) for v in labels]
    assert png_size(tmp_path / "proj" / "sprite.png") == (6 * 16, 6 * 16)  # ceil(sqrt(32)) = 6
    config = (tmp_path / "proj" / "projector_config.pbtxt").read_text()
    assert 'tensor_path: "embeddings.tsv"' in config and "single_image_dim: 16" in config


def test_save_plots_and_bad_input(tmp_path):
    images, labels, embeddings = small_set()
    paths = visualize.save_plots(tmp_path / "plots", embeddings, labels, images, k=3, num_queries=2,
                                 method="pca")
    assert png_size(tmp_path / "plots" / "map.png") == (800, 800)
    assert png_size(tmp_path / "plots" / "retrieval_grid.png") == (4 * 96, 2 * 96)
    assert len(paths) == 6
    with pytest.raises(ValueError, match="images"):
        visualize.retrieval_grid(tmp_path / "x.png", images[:3], labels, embeddings)
    with pytest.raises(ValueError, match="k must be"):
        visualize.retrieval_grid(tmp_path / "x.png", images, labels, embeddings, k=len(labels))
