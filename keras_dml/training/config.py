"""`TrainConfig`: every setting a training run depends on, its type, default, meaning and check.

A recipe fills a `TrainConfig`; `keras-dml train --set key=value` overrides single
settings as plain text, which `TrainConfig.parse` turns into the setting's type
(`--set dataset=photos/ weights=null learning_rate=3e-5`); only `loss` takes JSON.
`check()` raises a `ValueError` naming the setting before anything is built or written.

Example:

>>> from keras_dml.training import TrainConfig
>>> config = TrainConfig(epochs=3)
>>> TrainConfig.parse("weights", "null"), TrainConfig.parse("epochs", "5")
(None, 5)
"""
import dataclasses
import json

OPTIMIZERS = ("adam", "adamw")
STRATEGIES = ("default", "mirrored", "multiworker")
MIXED_PRECISION = (None, "mixed_float16", "mixed_bfloat16")
JIT_COMPILE = ("auto", True, False)


def _setting(default, help, kind=None):
    """A dataclass field with its help text and, where its default does not say it, its kind."""
    factory = {"default_factory": lambda: json.loads(json.dumps(default))} if isinstance(default, dict) \
        else {"default": default}
    return dataclasses.field(metadata={"help": help, "kind": kind or type(default).__name__}, **factory)


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run depends on; a recipe fills it, `--set key=value` overrides it."""

    dataset: str = _setting("digits", "digits, cars196, cub200, sop, or the path of an image folder "
                                      "(one sub-folder per class)")
    test_fraction: float = _setting(None, "image folders: fraction of the classes held out as the test "
                                          "split (class-disjoint, drawn with split_seed)", "float")
    split_seed: int = _setting(None, "image folders: seed of the test classes' draw (default 0; keep it "
                                     "fixed across training seeds)", "int")
    data_options: dict = _setting({}, 'other options of the dataset, e.g. glyphs {"by": "font", "renders": 5}')
    data_dir: str = _setting(None, "TFDS data directory", "str")
    manual_dir: str = _setting(None, "folder with the datasets' original archives (docs/data.md)", "str")
    backbone: str = _setting("mlp", "resnet50, efficientnet_b0, efficientnetv2_b0, efficientnetv2_s, "
                                    "convnext_tiny, mobilenetv3_small, mobilenetv3_large, vit_small, vit_base, dinov2_small, "
                                    "dinov2_base, small_cnn, small_resnet, mlp")
    weights: str = _setting(None, "imagenet (CNNs), pretrained or a keras-hub preset (transformers), glyphs "
                            "(small_resnet, shipped with keras_dml), a local weights file or preset directory, or "
                            "null (random initialisation)", "str")
    embedding_dim: int = _setting(16, "width of the embedding")
    image_size: int = _setting(8, "side of the square images the embedder takes (image datasets)")
    pooling: str = _setting("avg", "avg, max, avgmax or gem")
    freeze_batchnorm: bool = _setting(True, "keep the backbone's BatchNormalization layers frozen")
    loss: dict = _setting({"class_name": "TripletLoss", "config": {}},
                          'the criterion, Keras-serialized: {"class_name": "TripletLoss", "config": {...}}')
    optimizer: str = _setting("adam", "adam or adamw")
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
    strategy: str = _setting("default", "default, mirrored or multiworker (tf.distribute; several replicas "
                                        "train in keras_dml's own loop; docs/distributed.md)")

    @classmethod
    def from_dict(cls, values):
        """A checked `TrainConfig` from a dict of settings."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise ValueError(f"Unknown training setting(s) {unknown}; valid settings: {', '.join(cls.names())}.")
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
            raise ValueError(f"Unknown training setting {name!r}; valid settings: {', '.join(fields)}.")
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
            wanted, example = {"int": ("an integer", "3"), "float": ("a number", "3e-5"),
                               "bool": ("true or false", "true"), "auto|bool": ("auto, true or false", "auto"),
                               "dict": ("JSON", '{"class_name": "TripletLoss", "config": {"margin": 0.1}}')}[kind]
            raise ValueError(f"{name} takes {wanted}, e.g. {name}={example}; got {name}={text}.") from None
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
        """A `ValueError` naming the first setting that cannot work."""
        from keras_dml import checks

        for name in ("embedding_dim", "image_size", "classes_per_batch", "samples_per_class", "epochs",
                     "eval_every"):
            checks.positive_int(getattr(self, name), name)
        if self.steps_per_epoch is not None:
            checks.positive_int(self.steps_per_epoch, "steps_per_epoch")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0; got seed={self.seed!r}.")
        if isinstance(self.warmup_epochs, bool) or not isinstance(self.warmup_epochs, int) \
                or not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"warmup_epochs must be an integer in [0, epochs={self.epochs}); "
                             f"got warmup_epochs={self.warmup_epochs!r}.")
        for name in ("learning_rate", "proxy_lr_multiplier"):
            if not isinstance(getattr(self, name), (int, float)) or not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number; got {name}={getattr(self, name)!r}.")
        if not isinstance(self.weight_decay, (int, float)) or self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0; got weight_decay={self.weight_decay!r}.")
        if self.weight_decay and self.optimizer != "adamw":
            raise ValueError(f"weight_decay={self.weight_decay} needs optimizer=adamw "
                             f"(got optimizer={self.optimizer!r}).")
        if self.test_fraction is not None and (not isinstance(self.test_fraction, (int, float))
                                               or not 0.0 < self.test_fraction < 1.0):
            raise ValueError(f"test_fraction must be in (0, 1); got test_fraction={self.test_fraction!r}.")
        if self.split_seed is not None and (isinstance(self.split_seed, bool) or not isinstance(self.split_seed, int)):
            raise ValueError(f"split_seed must be an integer; got split_seed={self.split_seed!r}.")
        if not isinstance(self.data_options, dict):
            raise ValueError(f"data_options must be a dict of the dataset's options; got {self.data_options!r}.")
        checks.one_of(self.optimizer, "optimizer", OPTIMIZERS)
        checks.one_of(self.strategy, "strategy", STRATEGIES)
        checks.one_of(self.mixed_precision, "mixed_precision", MIXED_PRECISION)
        if self.jit_compile not in JIT_COMPILE or not isinstance(self.jit_compile, (str, bool)):
            raise ValueError(f"jit_compile must be 'auto', true or false; got jit_compile={self.jit_compile!r}.")
        for name in ("dataset", "backbone", "pooling"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name} must be a name; got {name}={getattr(self, name)!r}.")
        if not isinstance(self.loss, dict) or set(self.loss) - {"class_name", "config", "module",
                                                               "registered_name"} \
                or "class_name" not in self.loss:
            raise ValueError('loss must be {"class_name": NAME, "config": {...}} (Keras serialization); '
                             f"got loss={json.dumps(self.loss)}.")
