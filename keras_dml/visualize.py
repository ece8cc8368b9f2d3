"""Pictures of an embedding space: retrieval grids, 2-D maps and TensorBoard projector files.

Everything renders off-screen with matplotlib's Agg canvas (no display, no pyplot state).

Example:

```python
from keras_dml import visualize
visualize.retrieval_grid("grid.png", images, labels, embeddings, num_queries=6, k=5)
visualize.embedding_map("map.png", embeddings, labels)          # t-SNE
visualize.write_projector("logs/projector", embeddings, labels, images)
```
"""
import os

import matplotlib
import matplotlib.image
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keras_dml.search import inputs, nearest_neighbors

RIGHT, WRONG, QUERY = "#1a9850", "#d73027", "#2c7bb6"


def _as_display_images(images, n):
    """`(n, H, W)` or `(n, H, W, 1|3|4)` images as floats in [0, 1] (uint8 kept as is)."""
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if len(images) != n or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (3, 4)):
        raise ValueError(
            f"images must have shape ({n}, H, W) or ({n}, H, W, 1|3|4); got {images.shape}."
        )
    if images.dtype == np.uint8:
        return images
    images = images.astype(np.float32)
    low, high = float(images.min()), float(images.max())
    return (images - low) / (high - low) if high > low else np.zeros_like(images)


def _figure(width, height, dpi):
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path):
    directory = os.path.dirname(os.fspath(path))
    if directory:
        os.makedirs(directory, exist_ok=True)
    figure.savefig(path, dpi=figure.dpi, format="png")
    return path


def retrieval_grid(path, images, labels, embeddings, num_queries=8, k=5, query_indices=None,
                   distance="euclidean", seed=0, cell_pixels=96):
    """PNG of queries (first column) and their `k` nearest other samples, closest first.

    Results with the query's label are framed green, others red; queries are framed
    blue. Queries are `query_indices`, or `num_queries` samples drawn with `seed`. The
    image is `(k + 1) * cell_pixels` wide and `num_queries * cell_pixels` high.
    Returns `path`.
    """
    embeddings = inputs.check_embeddings(embeddings)
    n = len(embeddings)
    labels = inputs.check_column(labels, n, "labels")
    images = _as_display_images(images, n)
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be in [1, {n - 1}]; got {k}.")
    if query_indices is None:
        query_indices = np.random.default_rng(seed).choice(n, size=min(num_queries, n), replace=False)
    query_indices = np.asarray(query_indices, np.int64).reshape(-1)
    if not len(query_indices) or query_indices.min() < 0 or query_indices.max() >= n:
        raise ValueError(f"query_indices must be non-empty indices into the {n} samples.")
    found, _ = nearest_neighbors(embeddings[query_indices], embeddings, k=k + 1, distance=distance)
    rows = len(query_indices)
    frame_pixels = max(2.0, cell_pixels / 12)
    inset = (frame_pixels / 2 + 1) / cell_pixels  # the frame, centred on the axes edge, stays in its cell
    figure = _figure((k + 1) * cell_pixels, rows * cell_pixels, dpi=cell_pixels)
    for row, (query, neighbors) in enumerate(zip(query_indices, found)):
        neighbors = [j for j in neighbors if j != query][:k]  # leave the query itself out
        for col, index in enumerate([query] + neighbors):
            axes = figure.add_axes([(col + inset) / (k + 1), 1 - (row + 1 - inset) / rows,
                                    (1 - 2 * inset) / (k + 1), (1 - 2 * inset) / rows])
            axes.imshow(images[index], cmap="gray" if images.ndim == 3 else None, aspect="auto")
            axes.set_xticks([])
            axes.set_yticks([])
            color = QUERY if col == 0 else (RIGHT if labels[index] == labels[query] else WRONG)
            for spine in axes.spines.values():
                spine.set_edgecolor(color)
                spine.set_linewidth(72.0 * frame_pixels / cell_pixels)  # points at dpi=cell_pixels
    return _save(figure, path)


def project_2d(embeddings, method="tsne", seed=0):
    """`(n, 2)` coordinates: t-SNE (scikit-learn), UMAP (`umap-learn`) or PCA."""
    x = inputs.check_embeddings(embeddings)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(1, (len(x) - 1) // 3)))
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise ValueError("method='umap' needs the umap-learn package (pip install umap-learn).")
        return umap.UMAP(n_components=2, random_state=seed).fit_transform(x)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(2, random_state=seed).fit_transform(x)
    raise ValueError(f"method must be 'tsne', 'umap' or 'pca'; got {method!r}.")


def embedding_map(path, embeddings, labels, method="tsne", seed=0, max_points=5000,
                  width=800, height=800):
    """PNG (`width` x `height` pixels) of a 2-D map of the embeddings coloured by class.

    At most `max_points` samples (drawn with `seed`) are projected. Returns `path`.
    """
    embeddings = inputs.check_embeddings(embeddings)
    labels = inputs.check_column(labels, len(embeddings), "labels")
    if len(embeddings) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(embeddings), max_points, replace=False))
        embeddings, labels = embeddings[keep], labels[keep]
    points = project_2d(embeddings, method, seed)
    classes, codes = np.unique(labels, return_inverse=True)
    palette = "tab10" if len(classes) <= 10 else ("tab20" if len(classes) <= 20 else "hsv")
    colors = matplotlib.colormaps[palette](np.linspace(0, 1, len(classes)) if palette == "hsv"
                                           else np.arange(len(classes)))
    figure = _figure(width, height, dpi=100)
    axes = figure.add_axes([0.02, 0.02, 0.96, 0.92])
    axes.scatter(points[:, 0], points[:, 1], color=colors[codes], s=6)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(f"{method} of {len(points)} embeddings, {len(classes)} classes", fontsize=10)
    if len(classes) <= 20:
        for label, color in zip(classes, colors):
            axes.scatter([], [], color=color, label=str(label), s=12)
        axes.legend(loc="best", fontsize=7, frameon=False)
    return _save(figure, path)


def write_projector(log_dir, embeddings, labels=None, images=None, thumbnail_pixels=32):
    """TensorBoard projector files in `log_dir`: tensors, metadata, optional sprite.

    Writes `embeddings.tsv`, `metadata.tsv` (labels), `sprite.png` (thumbnails of
    `images`) and `projector_config.pbtxt`; `tensorboard --logdir log_dir` then shows
    them under "Projector". Returns the list of written paths.
    """
    embeddings = inputs.check_embeddings(embeddings)
    n = len(embeddings)
    os.makedirs(log_dir, exist_ok=True)
    written = [os.path.join(log_dir, "embeddings.tsv")]
    np.savetxt(written[0], embeddings, delimiter="\t", fmt="%.6g")
    config = ['embeddings {', '  tensor_name: "embeddings"',
              f'  tensor_shape: {n}', f'  tensor_shape: {embeddings.shape[1]}',
              '  tensor_path: "embeddings.tsv"']
    if labels is not None:
        labels = inputs.check_column(labels, n, "labels")
        written.append(os.path.join(log_dir, "metadata.tsv"))
        with open(written[-1], "w") as f:
            f.writelines(f"{label}\n" for label in labels)
        config.append('  metadata_path: "metadata.tsv"')
    if images is not None:
        written.append(_write_sprite(os.path.join(log_dir, "sprite.png"), images, n, thumbnail_pixels))
        config += ['  sprite {', '    image_path: "sprite.png"',
                   f'    single_image_dim: {thumbnail_pixels}', f'    single_image_dim: {thumbnail_pixels}',
                   '  }']
    written.append(os.path.join(log_dir, "projector_config.pbtxt"))
    with open(written[-1], "w") as f:
        f.write("\n".join(config + ["}"]) + "\n")
    return written


def _write_sprite(path, images, n, size):
    """One PNG holding every image as a `size` x `size` thumbnail, row by row."""
    images = _as_display_images(images, n)
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    if images.ndim == 3:
        images = np.repeat(images[..., None], 3, axis=-1)
    side = int(np.ceil(np.sqrt(n)))
    if side * size > 8192:
        raise ValueError(f"{n} thumbnails of {size} pixels exceed TensorBoard's 8192-pixel sprite.")
    rows = np.arange(size) * images.shape[1] // size  # nearest-neighbour resize
    cols = np.arange(size) * images.shape[2] // size
    thumbnails = images[:, rows][:, :, cols, :3]
    sprite = np.ones((side * side, size, size, 3), np.float32)
    sprite[:n] = thumbnails
    sprite = sprite.reshape(side, side, size, size, 3).transpose(0, 2, 1, 3, 4)
    matplotlib.image.imsave(path, sprite.reshape(side * size, side * size, 3), format="png")
    return path


def save_plots(directory, embeddings, labels, images=None, k=5, num_queries=8, method="tsne",
               distance="euclidean", seed=0):
    """Every picture into `directory`: `map.png`, `retrieval_grid.png` (with images) and
    `projector/`. The `keras-dml evaluate --plots DIR` command writes these. Returns paths."""
    paths = [embedding_map(os.path.join(directory, "map.png"), embeddings, labels, method, seed)]
    if images is not None:
        paths.append(retrieval_grid(os.path.join(directory, "retrieval_grid.png"), images, labels,
                                    embeddings, num_queries, k, distance=distance, seed=seed))
    paths += write_projector(os.path.join(directory, "projector"), embeddings, labels, images)
    return paths
