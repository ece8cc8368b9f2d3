"""`TrainConfig`: every setting a training run depends on, its type, default, meaning and check.

A recipe fills a `TrainConfig`; `keras-dml train --set key=value` overrides single
settings as plain text, which `TrainConfig.parse` turns into the setting's type
(`--set dataset=photos/ weights=null learning_rate=3e-5`); only `loss` takes JSON.
`check()` raises an `ArgumentError` (a `ValueError`) naming the setting before anything is
built or written. The valid names of each choice come from `keras_dml.names`, which the
checks below and the help texts both read.

Example:

>>> from keras_dml.training import TrainConfig
>>> config = TrainConfig(epochs=3)
>>> TrainConfig.parse("weights", "null"), TrainConfig.parse("epochs", "5")
(None, 5)
"""
import dataclasses
import json

from keras_dml import checks, names

MIXED_PRECISION = (None, "mixed_float16", "mixed_bfloat16")
JIT_COMPILE = ("auto", True, False)


def _setting(default, help, kind=None, example=None):
    """A dataclass field with its help text, its kind where its default does not say it, and an example."""
    factory = {"default_factory": lambda: json.loads(json.dumps(default))} if isinstance(default, dict) \
        else {"default": default}
    return dataclasses.field(metadata={"help": help, "kind": kind or type(default).__name__, "example": example},
                             **factory)


EXAMPLES = {"int": ("an integer", "3"), "float": ("a number", "3e-5"), "bool": ("true or false", "true"),
            "auto|bool": ("auto, true or false", "auto"), "dict": ("a JSON object", "{}")}


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run depends on; a recipe fills it, `--set key=value` overrides it."""

    dataset: str = _setting("digits", f"{', '.join(names.DATASETS)}, or the path of an image folder "
                                      "(one sub-folder per class)")
    test_fraction: float = _setting(None, "image folders: fraction of the classes held out as the test "
                                          "split (class-disjoint, drawn with split_seed)", "float")
    split_seed: int = _setting(None, "image folders: seed of the test classes' draw (default 0; keep it "
                                     "fixed across training seeds)", "int")
    data_options: dict = _setting({}, 'other options of the dataset, e.g. glyphs {"by": "font", "renders": 5}',
                                  example='{"by": "font", "renders": 5}')
    data_dir: str = _setting(None, "TFDS data directory", "str")
    manual_dir: str = _setting(None, "folder with the datasets' original archives (docs/data.md)", "str")
    backbone: str = _setting("mlp", names.listed(names.BACKBONES))
    weights: str = _setting(None, "imagenet (CNNs), pretrained or a keras-hub preset (transformers), glyphs "
                            "(small_resnet, shipped with keras_dml), a local weights file or preset directory, or "
                            "null (random initialisation)", "str")
    embedding_dim: int = _setting(16, "width of the embedding")
    image_size: int = _setting(8, "side of the square images the embedder takes (image datasets)")
    pooling: str = _setting("avg", names.listed(names.POOLINGS))
    freeze_batchnorm: bool = _setting(True, "keep the backbone's BatchNormalization layers frozen")
    loss: dict = _setting({"class_name": "TripletLoss", "config": {}},
                          'the criterion, Keras-serialized: {"class_name": "TripletLoss", "config": {...}}',
                          example='{"class_name": "TripletLoss", "config": {"margin": 0.1}}')
    optimizer: str = _setting("adam", names.listed(names.OPTIMIZERS))
    learning_rate: float = _setting(1e-3, "learning rate of the backbone and head")
    weight_decay: float = _setting(0.0, "decoupled weight decay (adamw only)")
    proxy_lr_multiplier: float = _setting(1.0, "proxies' learning rate / learning_rate")
    warmup_epochs: int = _setting(0, "first epochs with the backbone frozen (head and proxies train)")
    classes_per_batch: int = _setting(5, "P: classes in each batch")
    samples_per_class: int = _setting(16, "K: images of each class in each batch")
    epochs: int = _setting(10, "epochs to train")
    steps_per_epoch: int = _setting(None, "batches per epoch (default: training images // batch size)", "int")
    eval_every: int = _setting(1, "evaluate retrieval on the test split every N epochs")
    seed: int = _setting(0, "seed of the weights and the batches")
    jit_compile: object = _setting("auto", "auto, true or false (XLA)", "auto|bool")
    mixed_precision: str = _setting(None, "null, mixed_float16 or mixed_bfloat16", "str")
    strategy: str = _setting("default", f"{names.listed(names.STRATEGIES)} (tf.distribute; several replicas "
                                        "train in keras_dml's own loop; docs/distributed.md)")

    @classmethod
    def from_dict(cls, values):
        """A checked `TrainConfig` from a dict of settings."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise checks.ArgumentError(unknown[0], f"Unknown training setting(s) {unknown}; valid settings: "
                                                   f"{', '.join(cls.names())}.")
        config = cls(**values)
        config.check()
        return config

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def names(cls):
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def parse(cls, name, text):
        """The value of setting `name` written as `text` on the command line.

        Numbers and booleans as usual, `null` for None where the default is None, plain
        text for strings (no quotes), JSON for `loss`.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if name not in fields:
            raise checks.ArgumentError(name, f"Unknown training setting {name!r}; valid settings: {', '.join(fields)}.")
        kind = fields[name].metadata["kind"]
        if text.lower() in ("null", "none") and (fields[name].default is None or name == "jit_compile"):
            return None if name != "jit_compile" else "auto"
        try:
            if kind == "int":
                return int(text)
            if kind == "float":
                return float(text)
            if kind in ("bool", "auto|bool"):
                if kind == "auto|bool" and text.lower() == "auto":
                    return "auto"
                return {"true": True, "false": False, "1": True, "0": False}[text.lower()]
            if kind == "dict":
                value = json.loads(text)
                if not isinstance(value, dict):
                    raise ValueError
                return value
        except (ValueError, KeyError):
            wanted, example = EXAMPLES[kind]
            raise checks.ArgumentError(name, f"{name} takes {wanted}, e.g. {name}="
                                             f"{fields[name].metadata['example'] or example}; got {name}={text}.") from None
        return text

    @classmethod
    def describe_settings(cls):
        """One line per setting: name, kind, default, meaning (for `keras-dml train --help`)."""
        defaults = cls()
        lines = []
        for field in dataclasses.fields(cls):
            default = json.dumps(getattr(defaults, field.name))
            lines.append(f"  {field.name:<20} {field.metadata['kind']:<9} default {default:<10} "
                         f"{field.metadata['help']}")
        return "\n".join(lines)

    def check(self):
        """An `ArgumentError` naming the first setting that cannot work."""
        for name in ("embedding_dim", "image_size", "classes_per_batch", "samples_per_class", "epochs",
                     "eval_every"):
            checks.positive_int(getattr(self, name), name)
        if self.steps_per_epoch is not None:
            checks.positive_int(self.steps_per_epoch, "steps_per_epoch")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise checks.ArgumentError("seed", f"seed must be an integer >= 0; got seed={self.seed!r}.")
        if isinstance(self.warmup_epochs, bool) or not isinstance(self.warmup_epochs, int) \
                or not 0 <= self.warmup_epochs < self.epochs:
            raise checks.ArgumentError("warmup_epochs", f"warmup_epochs must be an integer in [0, epochs="
                                                        f"{self.epochs}); got warmup_epochs={self.warmup_epochs!r}.")
        for name in ("learning_rate", "proxy_lr_multiplier"):
            checks.positive(getattr(self, name), name, finite=True)
        checks.number(self.weight_decay, "weight_decay")
        checks.non_negative(self.weight_decay, "weight_decay")
        if self.weight_decay and self.optimizer != "adamw":
            raise checks.ArgumentError("weight_decay", f"weight_decay={self.weight_decay} needs optimizer=adamw "
                                                       f"(got optimizer={self.optimizer!r}).")
        if self.test_fraction is not None and (isinstance(self.test_fraction, bool) or not isinstance(
                self.test_fraction, (int, float)) or not 0.0 < self.test_fraction < 1.0):
            raise checks.ArgumentError("test_fraction", f"test_fraction must be in (0, 1); "
                                                        f"got test_fraction={self.test_fraction!r}.")
        if self.split_seed is not None and (isinstance(self.split_seed, bool) or not isinstance(self.split_seed, int)):
            raise checks.ArgumentError("split_seed", f"split_seed must be an integer; got split_seed={self.split_seed!r}.")
        if not isinstance(self.data_options, dict):
            raise checks.ArgumentError("data_options", "data_options must be a dict of the dataset's options; "
                                                       f"got {self.data_options!r}.")
        checks.one_of(self.optimizer, "optimizer", names.OPTIMIZERS)
        checks.one_of(self.strategy, "strategy", names.STRATEGIES)
        checks.one_of(self.mixed_precision, "mixed_precision", MIXED_PRECISION)
        if self.jit_compile not in JIT_COMPILE or not isinstance(self.jit_compile, (str, bool)):
            raise checks.ArgumentError("jit_compile", f"jit_compile must be 'auto', true or false; "
                                                      f"got jit_compile={self.jit_compile!r}.")
        if not isinstance(self.dataset, str) or not self.dataset:
            raise checks.ArgumentError("dataset", f"dataset must be a name or a folder; got dataset={self.dataset!r}.")
        checks.one_of(self.backbone, "backbone", names.BACKBONES)
        checks.one_of(self.pooling, "pooling", names.POOLINGS)
        if self.weights is not None and self.backbone in names.SMALL_BACKBONES \
                and self.weights not in names.SHIPPED_WEIGHTS:
            raise checks.ArgumentError("weights", f"backbone={self.backbone} has no pretrained weights but those "
                                                  f"that ship with keras_dml ({', '.join(names.SHIPPED_WEIGHTS)}); "
                                                  f"got weights={self.weights}", {"weights": None})
        if not isinstance(self.loss, dict) or set(self.loss) - {"class_name", "config", "module",
                                                               "registered_name"} \
                or "class_name" not in self.loss:
            raise checks.ArgumentError("loss", 'loss must be {"class_name": NAME, "config": {...}} (Keras '
                                               f"serialization); got loss={json.dumps(self.loss)}.")
