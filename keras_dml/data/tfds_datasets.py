"""The TFDS benchmarks (Cars196, CUB-200-2011, Stanford Online Products), read and re-split by class.

TFDS's own train/test splits of Cars196 and CUB are image splits (every class in
both), so both are read and split by class range: `classes[split] = (tfds_split,
first, end)` keeps the TFDS labels `first <= label < end`, relabelled `label - first`.
Images stay encoded (JPEG bytes). A dataset not yet prepared is prepared once from the
original archives in `manual_dir` (TFDS verifies their checksums).
"""
import dataclasses
import os
import pathlib

from keras_dml import backends

tf = backends.tensorflow("The TFDS datasets (Cars196, CUB-200, SOP)")


from keras_dml import checks


class ArchivesNotFoundError(checks.ArgumentError, FileNotFoundError):
    """A TFDS dataset that is not prepared and whose archives are not in `manual_dir`."""


@dataclasses.dataclass(frozen=True)
class TFDSDataset:
    """A TFDS builder and, per split, the TFDS split read and its class range.

    `classes[split] = (tfds_split, first, end)`: TFDS labels `first <= label < end` form
    the split, relabelled `label - first`.
    """

    builder: str
    label_key: str
    classes: dict
    source: str


TFDS_DATASETS = {
    "cars196": TFDSDataset(
        builder="cars196",
        label_key="label",
        classes={"train": ("train+test", 0, 98), "test": ("train+test", 98, 196)},
        source=(
            "the original Stanford Cars archives; their Stanford addresses now answer "
            "404, so find a byte-identical copy (TFDS checks its SHA-256)"
        ),
    ),
    "cub200": TFDSDataset(
        builder="caltech_birds2011",
        label_key="label",
        classes={"train": ("train+test", 0, 100), "test": ("train+test", 100, 200)},
        source="CaltechDATA (https://data.caltech.edu/records/65de6-vp158), the CUB-200-2011 record",
    ),
    "sop": TFDSDataset(
        builder="stanford_online_products",
        label_key="class_id",
        classes={"train": ("train", 0, 11318), "test": ("test", 11318, 22634)},
        source=(
            "the Stanford Online Products page (https://cvgl.stanford.edu/projects/lifted_struct/); "
            "TFDS's own address is an old FTP one"
        ),
    ),
}


def load_tfds(name, split, data_dir=None, manual_dir=None, download=False):
    """`(dataset, num_classes)` of one class split of a TFDS benchmark, images encoded."""
    import tensorflow_datasets as tfds

    spec = TFDS_DATASETS[name]
    builder = tfds.builder(spec.builder, data_dir=data_dir)
    if not builder.is_prepared():
        _prepare(name, spec, builder, manual_dir, download)
    tfds_split, first, end = spec.classes[split]
    # Keep the image encoded (no decode of unused pixels, masks or boxes).
    decoders = tfds.decode.PartialDecoding(
        {"image": True, spec.label_key: True}, decoders={"image": tfds.decode.SkipDecoding()}
    )
    examples = builder.as_dataset(split=tfds_split, decoders=decoders, shuffle_files=False)
    dataset = examples.map(lambda ex: (ex["image"], tf.cast(ex[spec.label_key], "int32")))
    dataset = dataset.filter(lambda image, label: (label >= first) & (label < end))
    return dataset.map(lambda image, label: (image, label - first)), end - first


def _prepare(name, spec, builder, manual_dir, download):
    """Builds the TFDS dataset from the archives in `manual_dir`, or says how to get them."""
    import tensorflow_datasets as tfds

    archives = {info.filename: info for info in builder.url_infos.values()}
    missing = [
        filename
        for filename in sorted(archives)
        if manual_dir is None or not (pathlib.Path(manual_dir) / filename).exists()
    ]
    if missing and not download:
        wanted = "\n".join(
            f"  {filename}  ({int(archives[filename].size):,} bytes, sha256 {archives[filename].checksum})"
            for filename in missing
        )
        searched = "no manual_dir given" if manual_dir is None else f"manual_dir={manual_dir}"
        raise ArchivesNotFoundError(
            "manual_dir",
            f"Dataset {name!r} (TFDS builder {spec.builder!r}) is not prepared in {builder.data_dir}, "
            f"and its original archives were not found ({searched}). Missing:\n{wanted}\n"
            f"Obtain them from {spec.source} and put them in one folder, which TFDS verifies (checksums) "
            "and prepares once into data_dir; or let TFDS try its original addresses (see docs/data.md)",
            {"manual_dir": "/path/to/that/folder", "download": True})
    config = tfds.download.DownloadConfig(manual_dir=None if manual_dir is None else os.fspath(manual_dir))
    builder.download_and_prepare(download_config=config)
